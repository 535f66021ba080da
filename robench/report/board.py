"""Standardised leaderboards: ``board.json`` (schema ``robench.board/2``) and its renderings.

``build_board(frame, cells, meta)`` turns the joined results frame (ok cells only) plus the cells
table (all statuses) into a board dict; ``write_board(board, out_dir)`` writes ``board.json``,
``board.md``, ``board.csv``, ``board.html`` and the figures ``transfer_heatmap.png`` and
``robust_vs_eps.png`` (each only when there is something to draw; a stale one is removed).
The numbers come from :mod:`robench.report.aggregate` (AutoAttack-style per-sample worst case, 95% Wilson
intervals). The same inputs give byte-identical JSON: keys sorted, floats rounded to 6 decimals,
no timestamps.

Schema ``robench.board/2`` (``P`` = a proportion ``{"value": float|null, "n": int, "ci": [lo, hi]}``,
value = k/n, ci = 95% Wilson score interval; n = 0 gives value null and ci [0, 1]):

=========================  ==========================================================================
``schema``                 ``"robench.board/2"`` (``/1`` boards, without ``attack_configs``,
                           ``victims``, ``families`` and the transfer ``diagonal`` fields, are
                           still read, e.g. as regression baselines)
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
``attack_configs``         ``{config_sha256: {"name", "knowledge", "config": {every field: steps,
                           step size, restarts, EOT samples, ...}[, "budget"]}}``: what each attack
                           of the board ran with, keyed by the hash its entries cite
``victims``                ``{victim: {"source", "architecture", "paper", "num_parameters",
                           "weights_sha256", "config", "training": {"dataset", "dataset_sha256",
                           "command", "recipe", "clean_accuracy", ...}, "defense"}}``: provenance
                           from the checkpoint metadata (``{"source", "error"}`` when unreadable)
``transfer``               list of ``{"threat", "attack", "surrogates": [str] (rows), "victims": [str]
                           (columns, ``victim+defense`` when defended), "success_rate": rows x columns
                           of P over the eligible samples, or null where not run, "diagonal":
                           [[row, column]] where the victim is (one of) the surrogate(s),
                           "off_diagonal": P pooled over every other pair, "vs_reference":
                           the attack paired with I-FGSM on the same units, or null}``
``eps_curves``             list of ``{"family": threat without eps, "victim", "defense", "attack"
                           (attack key or "worst-case"), "points": [{"eps", "threat",
                           "robust_accuracy": P}] sorted by eps}`` (at least two eps values)
``transfer_comparisons``   only on boards whose benchmark declares ``comparisons``: list, in
                           declaration order per threat, of ``{"threat", "attack", "reference",
                           "result", "verdict"}``, result null when the two share no unit, else
                           the paired comparison of ``vs_reference`` (:mod:`robench.report.paired`)
                           plus ``attack_success`` / ``reference_success`` on the paired units;
                           verdict ``attack > reference``, ``reference > attack`` or ``not
                           resolved`` (clustered p < 0.05 and the interval on one side of 0)
``defense_pairs``          only on boards with a defended row and its undefended base: list of
                           ``{"threat", "victim", "undefended", "attack" (key or "worst-case"),
                           "suite", "n", "defended_robust": P, "undefended_robust": P,
                           "only_defended", "only_undefended", "difference", "p_mcnemar"}``, the
                           two rows paired on the same clips (:mod:`robench.report.defended`)
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
                           (each float or null); key = attack, ``attack<-surrogate`` for transfer;
                           each also has ``"diagonal"`` (surrogate = victim: white-box in effect)
                           and ``"config_sha256"`` (a key of ``attack_configs``)
``worst_case``             P: robust to every attack of the entry (per-sample worst case) except
                           the diagonal transfer cells
``worst_case_white_box``   P: robust to every white-box attack of the entry
``worst_case_incl_diagonal`` P: robust to every attack, diagonal transfer cells included
``families``               ``{knowledge: {"worst_case": P, "attacks": int}}``: the worst case over
                           each family's non-diagonal attacks
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
from robench.io import atomic_folder
from robench.report.aggregate import aggregate, attack_config_sha256, config_part
from robench.report.defended import defense_pairs
from robench.report.render import render_csv, render_markdown
from robench.report.schema import READABLE_SCHEMAS, SCHEMA, validate_board

__all__ = [
    "SCHEMA", "board_from_store", "board_json", "build_board", "read_board", "render_csv",
    "render_markdown", "validate_board", "write_board", "READABLE_SCHEMAS",
]  # fmt: skip
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
    ones, a list of ThreatModel dicts or names), ``runs`` (list of run dicts), ``comparisons``
    (the benchmark's declared ``[attack, reference]`` transfer pairs).
    """
    meta = dict(meta or {})
    cells = cells if cells is not None else pd.DataFrame(columns=["cell_key", "status"])
    bad_keys = set(cells.loc[cells["status"] != "ok", "cell_key"]) if "status" in cells else set()
    ok = frame
    if "status" in frame.columns:
        ok = ok[ok["status"] == "ok"]
    if bad_keys and "cell_key" in ok.columns:
        ok = ok[~ok["cell_key"].isin(bad_keys)]
    agg = aggregate(ok, meta.get("comparisons") or None)
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
        "attack_configs": _attack_configs(cells),
        "victims": dict(meta.get("victims") or {}),
    }
    if "comparisons" in agg:  # only boards whose benchmark declares comparisons carry the key
        board["transfer_comparisons"] = agg["comparisons"]
    pairs = defense_pairs(ok, board["victims"], primary)
    if pairs:  # only boards with a defended row and its undefended base carry the key
        board["defense_pairs"] = pairs
    return canonical(board)


def _attack_configs(cells: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """config_sha256 -> {name, knowledge, config[, budget]} of every cell's attack."""
    out: dict[str, dict[str, Any]] = {}
    for cj in cells.get("config_json", pd.Series(dtype=object)).dropna():
        sha = attack_config_sha256(cj)
        if sha is None or sha in out:
            continue
        out[sha] = {k: v for k, v in config_part(cj, "attack").items() if k != "id"}
    return dict(sorted(out.items()))


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
            d = config_part(r.get("config_json"), "threat") or {
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
        if isinstance(b.get("victims"), list):  # boards of folders written before provenance
            from robench.zoo import victim_provenance

            meta["victims"] = {
                (v["id"] if not v.get("defense") else f"{v['id']}+{v['defense']}"):
                victim_provenance(str(v["source"]), v.get("defense"))
                for v in b["victims"] if isinstance(v, dict) and "id" in v and "source" in v
            }  # fmt: skip
    sub = _read_json(folder / "subset.json")
    hashes = set(cells["subset_hash"].dropna()) if "subset_hash" in cells else set()
    if isinstance(sub, dict) and sub.get("sha256") in hashes and isinstance(sub.get("ids"), list):
        meta["subset_hash"], meta["subset_n"] = sub["sha256"], len(sub["ids"])
        meta["subset_ids"] = [str(i) for i in sub["ids"]]
    prints = set()
    for cj in cells.get("config_json", pd.Series(dtype=object)).dropna():
        try:
            fp = json.loads(cj).get("dataset", {}).get("fingerprint")
        except (json.JSONDecodeError, AttributeError, TypeError):
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def read_board(path: str | Path) -> dict[str, Any]:
    """Load and validate a ``board.json`` (a folder holding one is accepted too)."""
    p = Path(path)
    if p.is_dir():
        p = p / "board.json"
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(f"expected a board.json file, got no file at {p}") from None
    except UnicodeDecodeError as e:
        raise DataError(
            f"expected UTF-8 JSON, got byte 0x{e.object[e.start]:02x} at offset {e.start} in {p}"
        ) from None
    except json.JSONDecodeError as e:
        raise DataError(f"expected valid JSON, got {e.msg} at line {e.lineno} in {p}") from None
    try:
        validate_board(d)
    except DataError as e:
        raise DataError(f"{e} ({p})") from None
    return d


BOARD_FILES = (
    "board.json", "board.md", "board.csv", "board.html", "transfer_heatmap.png", "robust_vs_eps.png",
)  # fmt: skip


def write_board(board: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Validate ``board`` and write board.json/.md/.csv/.html and the figures into ``out_dir`` as
    one set (:func:`robench.io.atomic_folder`: a temporary folder renamed into place, so a reader
    or a killed writer never leaves a mix of old and new files). Returns the written paths; a
    figure with nothing to draw is absent."""
    from robench.report import figures
    from robench.report.html import render_html

    validate_board(board)
    out = Path(out_dir)
    names: list[str] = []

    def fill(tmp: Path) -> None:
        (tmp / "board.json").write_text(board_json(board))
        (tmp / "board.md").write_text(render_markdown(board))
        (tmp / "board.csv").write_text(render_csv(board))
        names.extend(["board.json", "board.md", "board.csv"])
        figs = []
        for name, draw in (
            ("transfer_heatmap.png", figures.transfer_heatmap),
            ("robust_vs_eps.png", figures.robust_vs_eps),
        ):
            if draw(board, tmp / name) is not None:
                figs.append(name)
        embedded = {n: (tmp / n).read_bytes() for n in figs}
        (tmp / "board.html").write_text(render_html(board, figures=embedded))
        names.extend(["board.html", *figs])

    atomic_folder(out, fill, BOARD_FILES)
    return [out / n for n in names]
