"""The results store: one SQLite file ``DIR/results.sqlite`` in WAL mode.

Tables (the issue-4 contract):

- ``runs(run_id, started, finished, robench_version, torch_version, git_commit, host, benchmark, argv)``
- ``cells(cell_key PRIMARY KEY, run_id, benchmark, dataset, victim, defense, attack, knowledge,
  surrogate, threat, norm, eps, seed, subset_hash, config_json, weights_sha256, status, error,
  seconds, n, zero_grad_frac, forward_random, inputs_sha256)`` — ``cell_key`` is the sha256 of the
  cell's canonical config JSON; ``status`` is ``ok`` | ``invalid`` (a RobenchError, e.g. a
  threat-model violation; never in a board) | ``error`` (any other exception; retried by the next
  run); ``inputs_sha256`` hashes what the cell read beyond its config (checkpoint file bytes, the
  attack plugin's source), so a failed cell is retried when one of them changes.
- ``samples(cell_key, sample_id, label, target, clean_pred, adv_pred, clean_correct, eligible,
  success, margin_clean, margin_adv, linf, l2, joint_disp_cm, bone_dev_pct, accel_dev, queries)``,
  primary key ``(cell_key, sample_id)``.

A cell's sample rows and its cell row are written in ONE transaction, the cell row (with its status)
last, so a killed run never leaves a half cell: either the cell and all its rows exist, or neither.

Only robench's own files are opened for writing: an existing file must be SQLite with
``PRAGMA application_id`` = :data:`APPLICATION_ID` (or, from before that mark, exactly robench's
tables); anything else is refused untouched (no table created, no WAL switched on). A run holds
``DIR/.robench.lock`` (an ``flock`` with the holder's pid, host, start time and command) for as
long as it runs; a second run into the folder is refused naming the holder.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from robench.errors import ConfigError, DataError

FILENAME = "results.sqlite"
LOCKNAME = ".robench.lock"
APPLICATION_ID = 0x52424E43  # "RBNC"
_TABLES = {"runs", "cells", "samples", "sqlite_sequence"}
LOCK_WAIT_S = 5.0  # how long opening or locking waits for another process
STATUSES = ("ok", "invalid", "error")

CELL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cell_key", "TEXT PRIMARY KEY"),
    ("run_id", "INTEGER"),
    ("benchmark", "TEXT"),
    ("dataset", "TEXT"),
    ("victim", "TEXT"),
    ("defense", "TEXT"),
    ("attack", "TEXT"),
    ("knowledge", "TEXT"),
    ("surrogate", "TEXT"),
    ("threat", "TEXT"),
    ("norm", "TEXT"),
    ("eps", "REAL"),
    ("seed", "INTEGER"),
    ("subset_hash", "TEXT"),
    ("config_json", "TEXT"),
    ("weights_sha256", "TEXT"),
    ("status", "TEXT NOT NULL"),
    ("error", "TEXT"),
    ("seconds", "REAL"),
    ("n", "INTEGER"),
    ("zero_grad_frac", "REAL"),
    ("forward_random", "INTEGER"),
    ("inputs_sha256", "TEXT"),
)
SAMPLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cell_key", "TEXT NOT NULL"),
    ("sample_id", "TEXT NOT NULL"),
    ("label", "INTEGER"),
    ("target", "INTEGER"),
    ("clean_pred", "INTEGER"),
    ("adv_pred", "INTEGER"),
    ("clean_correct", "INTEGER"),
    ("eligible", "INTEGER"),
    ("success", "INTEGER"),
    ("margin_clean", "REAL"),
    ("margin_adv", "REAL"),
    ("linf", "REAL"),
    ("l2", "REAL"),
    ("joint_disp_cm", "REAL"),
    ("bone_dev_pct", "REAL"),
    ("accel_dev", "REAL"),
    ("queries", "INTEGER"),
)
SAMPLE_BOOL = ("clean_correct", "eligible", "success")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL, finished REAL, robench_version TEXT, torch_version TEXT, git_commit TEXT,
    host TEXT, benchmark TEXT, argv TEXT
);
CREATE TABLE IF NOT EXISTS cells ({", ".join(f"{c} {t}" for c, t in CELL_COLUMNS)});
CREATE TABLE IF NOT EXISTS samples (
    {", ".join(f"{c} {t}" for c, t in SAMPLE_COLUMNS)},
    PRIMARY KEY (cell_key, sample_id)
) WITHOUT ROWID;
"""


def git_commit() -> str:
    """``git rev-parse HEAD`` of the robench source tree, or "" when unavailable."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _check_ours(p: Path, busy_ok: bool = False) -> None:
    """Refuse (untouched) a file that is not a robench store; read-only inspection. ``busy_ok``: a
    database locked by another process passes (the run lock, taken next, names that process)."""
    try:
        with p.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise DataError(
            f"expected a readable robench results database, got {e.strerror} at {p}"
        ) from None
    if head and head != b"SQLite format 3\x00":
        raise DataError(
            f"expected a robench results database (SQLite), got a file that is not SQLite at {p}; "
            "nothing was changed: pass another --out"
        )
    if not head:
        return  # an empty file: SQLite treats it as a new database
    try:
        con = sqlite3.connect(
            f"file:{p}?mode=ro", uri=True, timeout=0.2 if busy_ok else LOCK_WAIT_S
        )
        try:
            app = con.execute("PRAGMA application_id").fetchone()[0]
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        if busy_ok and "locked" in str(e):
            return
        raise _open_error(e, p) from None
    if app == APPLICATION_ID or (app == 0 and {"runs", "cells", "samples"} <= tables <= _TABLES):
        return  # ours, or a store from before the application_id stamp (exactly robench's tables)
    raise DataError(
        f"expected a robench results database, got a foreign SQLite file (application_id {app}, "
        f"tables {sorted(tables - {'sqlite_sequence'})}) at {p}; nothing was changed: pass another --out"
    )


def hold_lock(folder: Path) -> Any:
    """Take ``folder/.robench.lock`` (an exclusive ``flock``) and write the holder into it; when
    another process holds it, raise a one-line DataError naming that process. Returns the open file
    (closing it releases the lock; so does the process's death)."""
    import fcntl
    import os

    path = folder / LOCKNAME
    try:
        f = path.open("a+")
    except OSError as e:
        raise DataError(
            f"expected a writable results folder, got {e.strerror} at {folder}"
        ) from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise DataError(
            f"expected no other run on the results folder {folder}, got one in progress ({holder}): "
            "wait for it to finish or pass another --out"
        ) from None
    f.seek(0)
    f.truncate()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    cmd = " ".join(sys.argv[:6])[:200]
    f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {cmd}\n")
    f.flush()
    return f


def _open_error(e: sqlite3.DatabaseError, p: Path) -> DataError:
    if "locked" in str(e):
        return DataError(
            f"expected no other open connection to {p}, got it locked (another run into the same "
            "folder is in progress, or a Store on it is still open: wait, close it or pass another --out)"
        )
    if "disk is full" in str(e) or "disk I/O" in str(e):
        return DataError(
            f"expected free disk space for the results database, got the disk full at {p}"
        )
    if "readonly" in str(e) or "read-only" in str(e):
        return DataError(
            f"expected a writable results database, got a read-only file or folder at {p}"
        )
    return DataError(f"expected a robench results database, got {e} in {p}")


class Store:
    """Open (creating if needed) the store at ``path``: a results folder or a ``.sqlite`` file.

    ``lock=True`` takes the folder's run lock (:func:`hold_lock`) before touching the database, so a
    second run is refused naming the first instead of waiting on SQLite."""

    def __init__(self, path: str | Path, *, lock: bool = False) -> None:
        p = Path(path)
        if p.suffix not in (".sqlite", ".db"):
            p = p / FILENAME
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            from robench.io import write_error

            raise write_error(e, p.parent) from None
        self.path = p
        self.dir = p.parent
        if p.exists():
            _check_ours(
                p, busy_ok=True
            )  # before the lock file: a foreign folder gets nothing added
        self._lock: Any = hold_lock(p.parent) if lock else None
        try:
            if p.exists():
                _check_ours(p)
        except DataError:
            self._release()
            raise
        try:
            self._con = sqlite3.connect(str(p), timeout=LOCK_WAIT_S, isolation_level=None)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_S * 1000)}")
            self._con.executescript(_SCHEMA)
            have = {r[1] for r in self._con.execute("PRAGMA table_info(cells)")}
            for col, typ in CELL_COLUMNS:
                if col not in have:  # a store from before this column: add it, empty
                    self._con.execute(f"ALTER TABLE cells ADD COLUMN {col} {typ}")
            if self._con.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                self._con.execute(f"PRAGMA application_id={APPLICATION_ID}")
        except sqlite3.DatabaseError as e:
            self._release()
            raise _open_error(e, p) from None

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._con.close()
        self._release()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Store]:
        """Hold the folder's lock file and the database exclusively (SQLite
        ``locking_mode=EXCLUSIVE``) for the duration: no other process can read or write it, so
        during a run the harness is its only writer (an attack worker that found the file could not
        open it) and a second run into the same folder is refused with a one-line error naming the
        run that holds it."""
        took = self._lock is None
        if took:
            self._lock = hold_lock(self.dir)
        try:
            self._con.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._con.execute("BEGIN EXCLUSIVE")
            self._con.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            self._con.execute("PRAGMA locking_mode=NORMAL")
            if took:
                self._release()
            raise _open_error(e, self.path) from None
        try:
            yield self
        finally:
            self._con.execute("PRAGMA locking_mode=NORMAL")
            self._con.execute("SELECT 1 FROM runs LIMIT 1").fetchall()  # releases the lock
            if took:  # a lock taken by Store(lock=True) lasts until close(): the board is written under it
                self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # the flock goes with the descriptor
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ runs
    def begin_run(self, benchmark: str, argv: Iterable[str] = ()) -> int:
        """Record a run (versions, git commit, host); returns its ``run_id``."""
        import torch

        from robench import __version__

        cur = self._con.execute(
            "INSERT INTO runs (started, finished, robench_version, torch_version, git_commit, host, benchmark, argv) "
            "VALUES (?, NULL, ?, ?, ?, ?, ?, ?)",
            (
                time.time(),
                __version__,
                torch.__version__,
                git_commit(),
                socket.gethostname(),
                benchmark,
                json.dumps(list(argv)),
            ),
        )
        return int(cur.lastrowid)

    def finish_run(self, run_id: int) -> None:
        self._con.execute("UPDATE runs SET finished = ? WHERE run_id = ?", (time.time(), run_id))

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", self._con)

    # ------------------------------------------------------------------ cells
    def cell_status(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """``{cell_key: status}`` of the recorded cells (all, or those among ``keys``)."""
        return self._cell_column("status", keys)

    def cell_inputs(self, keys: Iterable[str] | None = None) -> dict[str, str | None]:
        """``{cell_key: inputs_sha256}`` of the recorded cells (all, or those among ``keys``)."""
        return self._cell_column("inputs_sha256", keys)

    def _cell_column(self, column: str, keys: Iterable[str] | None) -> dict[str, Any]:
        out = dict(self._con.execute(f"SELECT cell_key, {column} FROM cells").fetchall())
        if keys is not None:
            wanted = set(keys)
            out = {k: v for k, v in out.items() if k in wanted}
        return out

    def write_cell(self, cell: Mapping[str, Any], samples: Mapping[str, Any] | None = None) -> None:
        """Write one cell and its per-sample rows in ONE transaction (the cell row last).

        ``cell`` holds the cell columns (``cell_key`` and ``status`` required); ``samples`` maps each
        sample column to a sequence (or 1-D tensor/array) of equal length. Earlier rows of the same
        ``cell_key`` are replaced.
        """
        names = [c for c, _ in CELL_COLUMNS]
        unknown = [k for k in cell if k not in names]
        if unknown:
            raise ConfigError(
                f"expected cell columns {names}, got unknown {unknown[0]!r} in Store.write_cell"
            )
        if cell.get("status") not in STATUSES:
            raise ConfigError(
                f"expected status in {STATUSES}, got {cell.get('status')!r} in Store.write_cell"
            )
        key = cell["cell_key"]
        rows: list[tuple] = []
        if samples:
            cols = [c for c, _ in SAMPLE_COLUMNS if c != "cell_key"]
            missing = [c for c in cols if c not in samples]
            if missing:
                raise ConfigError(
                    f"expected sample column {missing[0]!r}, got none in Store.write_cell"
                )
            lists = [_as_list(samples[c]) for c in cols]
            n = len(lists[0])
            if any(len(v) != n for v in lists):
                raise DataError(
                    "expected sample columns of equal length, got ragged columns in Store.write_cell"
                )
            rows = [(key, *vals) for vals in zip(*lists, strict=True)]
        values = [_py(cell.get(c)) for c in names]
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM samples WHERE cell_key = ?", (key,))
            con.execute("DELETE FROM cells WHERE cell_key = ?", (key,))
            if rows:
                con.executemany(
                    f"INSERT INTO samples VALUES ({', '.join('?' * len(SAMPLE_COLUMNS))})", rows
                )
            con.execute(
                f"INSERT INTO cells ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                values,
            )
            con.execute("COMMIT")
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):  # a failed COMMIT may have rolled back already
                con.execute("ROLLBACK")
            text = str(e)
            if isinstance(e, sqlite3.OperationalError) and any(
                w in text for w in ("disk is full", "readonly", "locked")
            ):
                raise _open_error(e, self.path) from None  # the user's folder or disk: one line
            raise

    def cells(self, status: str | None = None) -> pd.DataFrame:
        """The cells table (optionally one status), ordered by benchmark, victim, attack, threat, seed."""
        q = "SELECT * FROM cells"
        args: tuple = ()
        if status is not None:
            q += " WHERE status = ?"
            args = (status,)
        q += " ORDER BY benchmark, victim, attack, surrogate, eps, threat, seed, cell_key"
        return pd.read_sql_query(q, self._con, params=args)

    def samples(self, cell_key: str) -> pd.DataFrame:
        df = pd.read_sql_query(
            "SELECT * FROM samples WHERE cell_key = ? ORDER BY sample_id",
            self._con,
            params=(cell_key,),
        )
        return _bools(df)

    def frame(self, status: str | None = "ok") -> pd.DataFrame:
        """Samples joined with their cell columns: one row per (cell, sample).

        Only cells of ``status`` (default ``"ok"``; invalid and error cells never enter a board);
        ``None`` keeps every status. ``clean_correct``, ``eligible``, ``success`` are bool.
        """
        cell_cols = [c for c, _ in CELL_COLUMNS if c != "cell_key"]
        q = (
            "SELECT s.*, "
            + ", ".join(f"c.{c}" for c in cell_cols)
            + " FROM samples s JOIN cells c ON s.cell_key = c.cell_key"
        )
        args: tuple = ()
        if status is not None:
            q += " WHERE c.status = ?"
            args = (status,)
        q += " ORDER BY c.benchmark, c.victim, c.attack, c.surrogate, c.eps, c.threat, c.seed, s.cell_key, s.sample_id"
        return _bools(pd.read_sql_query(q, self._con, params=args))

    def benchmark_meta(self) -> dict[str, Any]:
        """Board meta of the last benchmark run into this folder (``DIR/benchmark.json``), or {}."""
        f = self.dir / "benchmark.json"
        if not f.exists():
            return {}
        try:
            return dict(json.loads(f.read_text()).get("board_meta") or {})
        except (
            OSError,
            UnicodeDecodeError,
            json.JSONDecodeError,
            AttributeError,
            TypeError,
            ValueError,
        ):
            return {}

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` (``"ok"`` when the file is sound)."""
        return str(self._con.execute("PRAGMA integrity_check").fetchone()[0])

    def summary(self) -> pd.DataFrame:
        """Per-cell summary: victim, attack, surrogate, threat, seed, status, n, eligible,
        robust accuracy (clean-correct and not successful over n) and attack success rate."""
        q = """
        SELECT c.victim, c.attack, c.knowledge, COALESCE(c.surrogate, '') AS surrogate, c.threat, c.seed,
               c.status, c.n, ROUND(c.seconds, 2) AS seconds,
               SUM(s.clean_correct) AS clean_correct, SUM(s.eligible) AS eligible, SUM(s.success) AS successes,
               c.error
        FROM cells c LEFT JOIN samples s ON s.cell_key = c.cell_key
        GROUP BY c.cell_key
        ORDER BY c.victim, c.attack, surrogate, c.eps, c.threat, c.seed
        """
        df = pd.read_sql_query(q, self._con)
        n = df["n"].where(df["n"] > 0)
        df["clean_acc"] = (df["clean_correct"] / n).round(3)
        df["robust_acc"] = ((df["clean_correct"] - df["successes"]) / n).round(3)
        df["asr"] = (df["successes"] / df["eligible"].where(df["eligible"] > 0)).round(3)
        return df


def _as_list(v: Any) -> list:
    if hasattr(v, "detach"):
        v = v.detach().cpu()
        if v.dtype.is_floating_point:
            return [float(a) for a in v.double().tolist()]
        return [int(a) for a in v.tolist()]
    if hasattr(v, "tolist"):
        return list(v.tolist())
    return [_py(a) for a in v]


def _py(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if hasattr(v, "item") and not isinstance(v, str):
        return v.item()
    return v


def _bools(df: pd.DataFrame) -> pd.DataFrame:
    for c in SAMPLE_BOOL:
        if c in df.columns:
            df[c] = df[c].astype(bool)
    return df


def store_exists(path: str | Path) -> bool:
    p = Path(path)
    return (p if p.suffix in (".sqlite", ".db") else p / FILENAME).exists()
