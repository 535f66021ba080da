"""Standardised leaderboards: ``board.json`` (schema ``robench.board/1``) and its renderings.

``build_board(frame, cells, meta)`` turns the joined results frame (ok cells only) plus the cells
table (all statuses) into a board dict; ``write_board(board, out_dir)`` writes ``board.json``,
``board.md``, ``board.csv``, ``board.html`` and the figures ``transfer_heatmap.png`` and
``robust_vs_eps.png`` (each only when there is something to draw; a stale one is removed).
The numbers come from :mod:`robench.report.aggregate` (AutoAttack-style per-sample worst case, 95% Wilson
intervals). The same inputs give byte-identical JSON: keys sorted, floats rounded to 6 decimals,
no timestamps.

Schema ``robench.board/1`` (``P`` = a proportion ``{"value": float|null, "n": int, "ci": [lo, hi]}``,
value = k/n, ci = 95% Wilson score interval; n = 0 gives value null and ci [0, 1]):

=========================  ==========================================================================
``schema``                 ``"robench.board/1"``
``benchmark``              ``{"id": str, "version": int|str|null, "description": str}``
``dataset``                ``{"name": str|null, "hash": str|null}`` (hash: SkeletonSet.fingerprint)
``subset``                 ``{"hash": str|null, "n": int[, "ids": [str]]}``: sha256 of the attacked
                           sample ids (newline-joined, in order), their count and, when known, ids
``threat_models``          list sorted by name of ``{"name": str, "primary": bool, ...}`` plus the
                           ThreatModel fields when known (norm, eps, unit, preserve_bones, ...);
                           primary = the benchmark's own threat models (the others come from eps
                           sweeps)
``generated_by``           ``{"robench": version that built the board, "runs": [{"run_id",
                           "robench_version", "torch_version", "git_commit"}]}`` sorted by run_id
``entries``                list sorted by (threat, victim, defense) of entries (below)
``transfer``               list of ``{"threat", "attack", "surrogates": [str] (rows), "victims": [str]
                           (columns, ``victim+defense`` when defended), "success_rate": rows x columns
                           of P over the eligible samples, or null where not run}``
``eps_curves``             list of ``{"family": threat without eps, "victim", "defense", "attack"
                           (attack key or "worst-case"), "points": [{"eps", "threat",
                           "robust_accuracy": P}] sorted by eps}`` (at least two eps values)
``invalid_cells``          list of ``{"cell_key", "victim", "defense", "attack", "surrogate",
                           "threat", "seed", "status": "invalid"|"error", "reason"}``: cells that
                           failed their threat-model check or crashed; they enter no number
=========================  ==========================================================================

Entry fields:

=========================  ==========================================================================
``victim``, ``defense``    victim row name; defense name or ``"none"``
``threat``, ``eps``        threat-model name and its eps (null when unknown)
``primary``                whether ``threat`` is one of the benchmark's primary threat models
``weights_sha256``         sha256 of the victim's weights (comma-joined if cells disagree, flagged)
``clean_accuracy``         P over the subset
``attacks``                ``{attack_key: {"attack", "knowledge" (white-box|transfer|query|no-box),
                           "surrogate": str|null, "seed": int|null, "robust_accuracy": P over the
                           subset, "success_rate": P over the eligible samples, "stats":
                           {"over_success": S, "over_eligible": S}}}`` with S = mean ``linf``,
                           ``l2``, ``joint_disp_cm``, ``bone_dev_pct``, ``accel_dev``, ``queries``
                           (each float or null); key = attack, ``attack<-surrogate`` for transfer
``worst_case``             P: robust to every attack of the entry (per-sample worst case)
``worst_case_white_box``   P: robust to every white-box attack of the entry
``flags``                  ``[{"code", "message"}]`` sorted; codes: zero-gradients,
                           transfer-beats-white-box, query-beats-white-box, no-box-beats-white-box,
                           non-monotone-eps, random-forward, mixed-weights
=========================  ==========================================================================
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from robench import __version__
from robench.errors import DataError
from robench.io import atomic_write_text
from robench.report.aggregate import aggregate
from robench.report.render import KNOWLEDGE_ORDER, render_csv, render_markdown

__all__ = [
    "SCHEMA", "board_from_store", "board_json", "build_board", "read_board", "render_csv",
    "render_markdown", "validate_board", "write_board",
]  # fmt: skip
SCHEMA = "robench.board/1"
DECIMALS = 6
FLAG_CODES = (
    "zero-gradients", "transfer-beats-white-box", "query-beats-white-box", "no-box-beats-white-box",
    "non-monotone-eps", "random-forward", "mixed-weights",
)  # fmt: skip


# ---------------------------------------------------------------------- building


def build_board(
    frame: pd.DataFrame, cells: pd.DataFrame, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The board dict of the schema above (floats rounded to 6 decimals).

    ``frame``: joined per-sample frame (rows of non-ok cells are dropped); ``cells``: the cells table
    including invalid/error cells. ``meta`` (every key optional, derived from the tables when
    absent): ``benchmark`` (id), ``benchmark_version``, ``description``, ``dataset`` (name),
    ``dataset_hash``, ``subset_hash``, ``subset_n``, ``subset_ids``, ``threat_models`` (the primary
    ones, a list of ThreatModel dicts or names), ``runs`` (list of run dicts).
    """
    meta = dict(meta or {})
    cells = cells if cells is not None else pd.DataFrame(columns=["cell_key", "status"])
    bad_keys = set(cells.loc[cells["status"] != "ok", "cell_key"]) if "status" in cells else set()
    ok = frame
    if "status" in frame.columns:
        ok = ok[ok["status"] == "ok"]
    if bad_keys and "cell_key" in ok.columns:
        ok = ok[~ok["cell_key"].isin(bad_keys)]
    agg = aggregate(ok)
    threats = _threat_models(ok, cells, meta)
    primary = {t["name"] for t in threats if t["primary"]}
    entries = []
    for e in agg["entries"]:
        e = dict(e)
        e.pop("family", None)
        e["primary"] = e["threat"] in primary
        entries.append(e)
    board = {
        "schema": SCHEMA,
        "benchmark": {
            "id": meta.get("benchmark") or _single(cells, "benchmark") or _single(ok, "benchmark"),
            "version": meta.get("benchmark_version"),
            "description": meta.get("description") or "",
        },
        "dataset": {
            "name": meta.get("dataset") or _single(cells, "dataset") or _single(ok, "dataset"),
            "hash": meta.get("dataset_hash"),
        },
        "subset": _subset(ok, cells, meta),
        "threat_models": threats,
        "generated_by": {"robench": __version__, "runs": _runs(meta.get("runs") or [])},
        "entries": entries,
        "transfer": agg["transfer"],
        "eps_curves": agg["eps_curves"],
        "invalid_cells": _invalid(cells),
    }
    return canonical(board)


def _subset(ok: pd.DataFrame, cells: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    h = meta.get("subset_hash") or _single(cells, "subset_hash") or _single(ok, "subset_hash")
    ids = meta.get("subset_ids")
    if meta.get("subset_n") is not None:
        n = int(meta["subset_n"])
    elif ids is not None:
        n = len(ids)
    else:
        n = int(ok["sample_id"].nunique()) if "sample_id" in ok else 0
    out: dict[str, Any] = {"hash": h, "n": n}
    if ids is not None:
        out["ids"] = [str(i) for i in ids]
    return out


def _single(df: pd.DataFrame, col: str) -> str | None:
    """The one distinct non-empty value of ``col`` (None when absent); several raise DataError."""
    if col not in df.columns:
        return None
    vals = sorted({str(v) for v in df[col].dropna() if str(v)})
    if len(vals) > 1:
        raise DataError(
            f"expected one {col} per board, got {len(vals)} ({', '.join(vals[:4])}) in the results "
            f"column {col!r}; select one (e.g. robench board --benchmark ID)"
        )
    return vals[0] if vals else None


def _threat_models(
    frame: pd.DataFrame, cells: pd.DataFrame, meta: dict[str, Any]
) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for df in (cells, frame):
        if "threat" not in df.columns:
            continue
        cols = [c for c in ("threat", "config_json", "norm", "eps") if c in df.columns]
        for row in df[cols].drop_duplicates("threat").itertuples(index=False):
            r = row._asdict()
            name = str(r["threat"])
            if name in found:
                continue
            d = _threat_from_config(r.get("config_json")) or {
                k: r[k] for k in ("norm", "eps") if k in r and not _isnan(r[k])
            }
            found[name] = {**d, "name": name}
    declared = meta.get("threat_models")
    primary_names: set[str] | None = None
    if declared:
        primary_names = set()
        from robench.threat import ThreatModel

        for t in declared:
            d = t if isinstance(t, dict) else {"name": str(t)}
            name = d.get("name") or ThreatModel.from_dict(d).name
            primary_names.add(name)
            found.setdefault(name, {})
            found[name] = {**d, **found[name], "name": name}
    return [
        {**found[n], "primary": primary_names is None or n in primary_names} for n in sorted(found)
    ]


def _threat_from_config(config_json: Any) -> dict[str, Any] | None:
    if not isinstance(config_json, str) or not config_json:
        return None
    try:
        cfg = json.loads(config_json)
    except json.JSONDecodeError:
        return None
    t = cfg.get("threat") if isinstance(cfg, dict) else None
    return dict(t) if isinstance(t, dict) else None


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("run_id", "robench_version", "torch_version", "git_commit")
    out = [{k: (None if _isnan(r.get(k)) else r.get(k)) for k in keys} for r in runs]
    return sorted(out, key=lambda r: str(r["run_id"]))


def _invalid(cells: pd.DataFrame) -> list[dict[str, Any]]:
    if "status" not in cells.columns:
        return []
    bad = cells[cells["status"] != "ok"]
    out = []
    for rec in bad.to_dict("records"):
        c = {k: (None if _isnan(v) else v) for k, v in rec.items()}
        out.append({
            "cell_key": c.get("cell_key"), "victim": c.get("victim"), "defense": c.get("defense") or "none",
            "attack": c.get("attack"), "surrogate": c.get("surrogate") or None, "threat": c.get("threat"),
            "seed": None if c.get("seed") is None else int(c["seed"]), "status": c.get("status"),
            "reason": c.get("error") or "",
        })  # fmt: skip
    return sorted(
        out, key=lambda r: tuple(str(r[k]) for k in ("threat", "victim", "attack", "cell_key"))
    )


def canonical(obj: Any) -> Any:
    """JSON-ready copy: floats rounded to 6 decimals (NaN/inf -> None, -0.0 -> 0.0), numpy scalars
    to Python, tuples to lists, dict keys to str."""
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [canonical(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str | bytes):  # numpy / torch scalars
        obj = obj.item()
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        r = round(obj, DECIMALS)
        return 0.0 if r == 0 else r
    raise DataError(f"expected JSON data, got {type(obj).__name__} in the board")


def board_json(board: dict[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, 2-space indent, ASCII, trailing newline."""
    return (
        json.dumps(canonical(board), sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False)
        + "\n"
    )


def board_from_store(
    store: Any, meta: dict[str, Any] | None = None, benchmark: str | None = None, keys: Any = None
) -> dict[str, Any]:
    """Build the board of a results folder (or an open ``robench.run.store.Store``).

    Reads ``frame()`` (ok cells), the cells table (all statuses) and the runs table from the store,
    and ``DIR/benchmark.json`` / ``DIR/subset.json`` (written by the harness) for the benchmark
    version, description, primary threat models and subset (the harness's saved ``board_meta`` wins
    when it matches the cells); the dataset hash comes from the cells' config JSON. ``benchmark`` selects one benchmark id when the folder holds several; ``keys``
    (optional set of cell keys) restricts the board to those cells (e.g. the cells of the current
    definition, :func:`robench.run.harness.benchmark_frame`). ``meta`` overrides what is read."""
    from robench.run.store import Store, store_exists

    if not isinstance(store, Store) and not store_exists(store):
        raise DataError(f"expected a results folder with results.sqlite, got none at {store}")
    if not isinstance(store, Store):
        with Store(store) as st:
            return board_from_store(st, meta, benchmark, keys)
    st = store
    frame, cells, runs = st.frame(status="ok"), st.cells(), st.runs()
    if keys is not None:
        keys = set(keys)
        frame, cells = frame[frame["cell_key"].isin(keys)], cells[cells["cell_key"].isin(keys)]
    have = sorted({str(b) for b in cells["benchmark"].dropna()})
    if benchmark is not None:
        if benchmark not in have:
            raise DataError(
                f"expected a benchmark of the results folder ({', '.join(have) or 'none'}), got {benchmark!r} in --benchmark"
            )
        frame, cells = (
            frame[frame["benchmark"] == benchmark],
            cells[cells["benchmark"] == benchmark],
        )
        runs = runs[runs["benchmark"].astype(str) == benchmark]
    elif len(have) > 1:
        raise DataError(
            f"expected one benchmark per board, got {len(have)} ({', '.join(have)}) in {st.path}; pass --benchmark ID"
        )
    bench_id = benchmark or (have[0] if have else None)
    derived = _store_meta(st.dir, bench_id, cells, runs)
    saved = st.benchmark_meta() if callable(getattr(st, "benchmark_meta", None)) else {}
    if saved.get("benchmark") == bench_id and saved.get("subset_hash") in set(
        cells["subset_hash"].dropna()
    ):
        derived.update({k: v for k, v in saved.items() if v is not None})
    return build_board(frame, cells, {**derived, **(meta or {})})


def _store_meta(
    folder: Path, bench_id: str | None, cells: pd.DataFrame, runs: pd.DataFrame
) -> dict[str, Any]:
    """benchmark id/version/description, primary threat models, subset, dataset hash and runs."""
    meta: dict[str, Any] = {"benchmark": bench_id, "runs": runs.to_dict("records")}
    b = _read_json(folder / "benchmark.json")
    if isinstance(b, dict) and b.get("id") == bench_id:
        meta["benchmark_version"] = b.get("version")
        meta["description"] = b.get("description") or ""
        if isinstance(b.get("threats"), list):
            meta["threat_models"] = b["threats"]
    sub = _read_json(folder / "subset.json")
    hashes = set(cells["subset_hash"].dropna()) if "subset_hash" in cells else set()
    if isinstance(sub, dict) and sub.get("sha256") in hashes and isinstance(sub.get("ids"), list):
        meta["subset_hash"], meta["subset_n"] = sub["sha256"], len(sub["ids"])
        meta["subset_ids"] = [str(i) for i in sub["ids"]]
    prints = set()
    for cj in cells.get("config_json", pd.Series(dtype=object)).dropna():
        try:
            fp = json.loads(cj).get("dataset", {}).get("fingerprint")
        except (json.JSONDecodeError, AttributeError):
            fp = None
        if fp:
            prints.add(fp)
    if len(prints) == 1:
        meta["dataset_hash"] = prints.pop()
    elif prints:
        raise DataError(
            f"expected one data set per board, got {len(prints)} fingerprints in the cells' config_json"
        )
    return meta


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------------- validation


def _fail(field: str, expected: str, got: Any) -> DataError:
    g = (
        type(got).__name__
        if not isinstance(got, str | int | float) or isinstance(got, bool)
        else repr(got)
    )
    if got is None:
        g = "null"
    return DataError(f"expected {expected}, got {g} in board field '{field}'")


def _req(d: dict[str, Any], key: str, field: str) -> Any:
    if key not in d:
        raise DataError(
            f"expected field {key!r}, got none in board field '{field or '<top level>'}'"
        )
    return d[key]


def _obj(v: Any, field: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _fail(field, "an object", v)
    return v


def _list(v: Any, field: str) -> list[Any]:
    if not isinstance(v, list):
        raise _fail(field, "a list", v)
    return v


def _str(v: Any, field: str, nullable: bool = False) -> None:
    if not (isinstance(v, str) or (nullable and v is None)):
        raise _fail(field, "a string" + (" or null" if nullable else ""), v)


def _prop(p: Any, field: str) -> None:
    p = _obj(p, field)
    n = _req(p, "n", field)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise _fail(f"{field}.n", "an integer >= 0", n)
    v = _req(p, "value", field)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1):
        raise _fail(f"{field}.value", "a number in [0, 1] or null", v)
    if v is None and n > 0:
        raise _fail(f"{field}.value", "a number when n > 0", v)
    ci = _req(p, "ci", field)
    if (
        not isinstance(ci, list) or len(ci) != 2
        or any(isinstance(c, bool) or not isinstance(c, int | float) or not 0 <= c <= 1 for c in ci)
        or ci[0] > ci[1]
    ):  # fmt: skip
        raise _fail(
            f"{field}.ci",
            "[lo, hi] with 0 <= lo <= hi <= 1",
            ci if not isinstance(ci, list) else str(ci),
        )


def validate_board(d: Any) -> None:
    """Raise a one-line DataError naming the field when ``d`` is not a ``robench.board/1`` board."""
    d = _obj(d, "<top level>")
    if _req(d, "schema", "") != SCHEMA:
        raise _fail("schema", repr(SCHEMA), d["schema"])
    b = _obj(_req(d, "benchmark", ""), "benchmark")
    _str(_req(b, "id", "benchmark"), "benchmark.id", nullable=True)
    ds = _obj(_req(d, "dataset", ""), "dataset")
    _str(_req(ds, "name", "dataset"), "dataset.name", nullable=True)
    _str(_req(ds, "hash", "dataset"), "dataset.hash", nullable=True)
    sub = _obj(_req(d, "subset", ""), "subset")
    _str(_req(sub, "hash", "subset"), "subset.hash", nullable=True)
    if not isinstance(_req(sub, "n", "subset"), int) or isinstance(sub["n"], bool) or sub["n"] < 0:
        raise _fail("subset.n", "an integer >= 0", sub["n"])
    if "ids" in sub and (
        not isinstance(sub["ids"], list)
        or len(sub["ids"]) != sub["n"]
        or not all(isinstance(i, str) for i in sub["ids"])
    ):
        raise _fail("subset.ids", f"a list of {sub['n']} sample id strings", sub["ids"])
    for i, t in enumerate(_list(_req(d, "threat_models", ""), "threat_models")):
        _str(
            _req(_obj(t, f"threat_models[{i}]"), "name", f"threat_models[{i}]"),
            f"threat_models[{i}].name",
        )
    _obj(_req(d, "generated_by", ""), "generated_by")
    for i, e in enumerate(_list(_req(d, "entries", ""), "entries")):
        f = f"entries[{i}]"
        e = _obj(e, f)
        for k in ("victim", "defense", "threat"):
            _str(_req(e, k, f), f"{f}.{k}")
        _str(_req(e, "weights_sha256", f), f"{f}.weights_sha256", nullable=True)
        for k in ("clean_accuracy", "worst_case"):
            _prop(_req(e, k, f), f"{f}.{k}")
        for ak, a in _obj(_req(e, "attacks", f), f"{f}.attacks").items():
            fa = f"{f}.attacks.{ak}"
            a = _obj(a, fa)
            kn = _req(a, "knowledge", fa)
            if kn not in KNOWLEDGE_ORDER:
                raise _fail(f"{fa}.knowledge", f"one of {list(KNOWLEDGE_ORDER)}", kn)
            _prop(_req(a, "robust_accuracy", fa), f"{fa}.robust_accuracy")
            _prop(_req(a, "success_rate", fa), f"{fa}.success_rate")
            _obj(_req(a, "stats", fa), f"{fa}.stats")
        for j, fl in enumerate(_list(_req(e, "flags", f), f"{f}.flags")):
            fl = _obj(fl, f"{f}.flags[{j}]")
            _str(_req(fl, "code", f"{f}.flags[{j}]"), f"{f}.flags[{j}].code")
            _str(_req(fl, "message", f"{f}.flags[{j}]"), f"{f}.flags[{j}].message")
    for i, t in enumerate(_list(_req(d, "transfer", ""), "transfer")):
        f = f"transfer[{i}]"
        t = _obj(t, f)
        rows, cols = (
            _list(_req(t, "surrogates", f), f"{f}.surrogates"),
            _list(_req(t, "victims", f), f"{f}.victims"),
        )
        mat = _list(_req(t, "success_rate", f), f"{f}.success_rate")
        if len(mat) != len(rows) or any(
            not isinstance(r, list) or len(r) != len(cols) for r in mat
        ):
            raise _fail(
                f"{f}.success_rate", f"a {len(rows)} x {len(cols)} matrix", "a different shape"
            )
        for r, row in enumerate(mat):
            for c, p in enumerate(row):
                if p is not None:
                    _prop(p, f"{f}.success_rate[{r}][{c}]")
    for i, c in enumerate(_list(_req(d, "eps_curves", ""), "eps_curves")):
        f = f"eps_curves[{i}]"
        for j, p in enumerate(_list(_req(_obj(c, f), "points", f), f"{f}.points")):
            p = _obj(p, f"{f}.points[{j}]")
            if isinstance(_req(p, "eps", f"{f}.points[{j}]"), bool) or not isinstance(
                p["eps"], int | float
            ):
                raise _fail(f"{f}.points[{j}].eps", "a number", p["eps"])
            _prop(
                _req(p, "robust_accuracy", f"{f}.points[{j}]"), f"{f}.points[{j}].robust_accuracy"
            )
    for i, c in enumerate(_list(_req(d, "invalid_cells", ""), "invalid_cells")):
        f = f"invalid_cells[{i}]"
        c = _obj(c, f)
        if _req(c, "status", f) not in ("invalid", "error"):
            raise _fail(f"{f}.status", "'invalid' or 'error'", c["status"])
        _str(_req(c, "reason", f), f"{f}.reason")


def read_board(path: str | Path) -> dict[str, Any]:
    """Load and validate a ``board.json`` (a folder holding one is accepted too)."""
    p = Path(path)
    if p.is_dir():
        p = p / "board.json"
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(f"expected a board.json file, got no file at {p}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"expected valid JSON, got {e.msg} at line {e.lineno} in {p}") from None
    try:
        validate_board(d)
    except DataError as e:
        raise DataError(f"{e} ({p})") from None
    return d


def write_board(board: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Validate ``board`` and write board.json/.md/.csv/.html and the figures into ``out_dir``
    (atomically). Returns the written paths."""
    from robench.report import figures
    from robench.report.html import render_html

    validate_board(board)
    out = Path(out_dir)
    paths = [
        atomic_write_text(out / "board.json", board_json(board)),
        atomic_write_text(out / "board.md", render_markdown(board)),
        atomic_write_text(out / "board.csv", render_csv(board)),
    ]
    figs = []
    for name, draw in (
        ("transfer_heatmap.png", figures.transfer_heatmap),
        ("robust_vs_eps.png", figures.robust_vs_eps),
    ):
        p = draw(board, out / name)
        if p is None:
            (out / name).unlink(missing_ok=True)
        else:
            figs.append(p)
    paths.append(
        atomic_write_text(out / "board.html", render_html(board, figures=[p.name for p in figs]))
    )
    return paths + figs
