"""Standardised leaderboards: ``board.json`` (schema ``robench.board/1``) and its renderings.

``build_board(frame, cells, meta)`` turns the joined results frame (ok cells only) plus the cells
table (all statuses) into a board dict; ``write_board(board, out_dir)`` writes ``board.json``,
``board.md``, ``board.csv``, ``board.html`` and the figures ``transfer_heatmap.png`` and
``robust_vs_eps.png`` (each only when there is something to draw; a stale one is removed).
The numbers come from :mod:`robench.aggregate` (AutoAttack-style per-sample worst case, 95% Wilson
intervals). The same inputs give byte-identical JSON: keys sorted, floats rounded to 6 decimals,
no timestamps.

Schema ``robench.board/1`` (``P`` = a proportion ``{"value": float|null, "n": int, "ci": [lo, hi]}``,
value = k/n, ci = 95% Wilson score interval; n = 0 gives value null and ci [0, 1]):

=========================  ==========================================================================
``schema``                 ``"robench.board/1"``
``benchmark``              ``{"id": str, "version": int|str|null, "description": str}``
``dataset``                ``{"name": str|null, "hash": str|null}`` (hash: SkeletonSet.fingerprint)
``subset``                 ``{"hash": str|null, "n": int}``: sha256 of the attacked sample ids, count
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

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from robench import __version__
from robench.aggregate import STAT_KEYS, aggregate
from robench.errors import DataError
from robench.io import atomic_write_text

SCHEMA = "robench.board/1"
DECIMALS = 6
KNOWLEDGE_ORDER = {"white-box": 0, "transfer": 1, "query": 2, "no-box": 3}
FLAG_CODES = (
    "zero-gradients", "transfer-beats-white-box", "query-beats-white-box", "no-box-beats-white-box",
    "non-monotone-eps", "random-forward", "mixed-weights",
)  # fmt: skip


# ---------------------------------------------------------------------- building


def build_board(frame: pd.DataFrame, cells: pd.DataFrame, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The board dict of the schema above (floats rounded to 6 decimals).

    ``frame``: joined per-sample frame (rows of non-ok cells are dropped); ``cells``: the cells table
    including invalid/error cells. ``meta`` (every key optional, derived from the tables when
    absent): ``benchmark`` (id), ``benchmark_version``, ``description``, ``dataset`` (name),
    ``dataset_hash``, ``subset_hash``, ``subset_n``, ``threat_models`` (the primary ones, a list of
    ThreatModel dicts or names), ``runs`` (list of run dicts).
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
        "subset": {
            "hash": meta.get("subset_hash") or _single(cells, "subset_hash") or _single(ok, "subset_hash"),
            "n": int(meta["subset_n"]) if meta.get("subset_n") is not None else int(ok["sample_id"].nunique()) if "sample_id" in ok else 0,
        },
        "threat_models": threats,
        "generated_by": {"robench": __version__, "runs": _runs(meta.get("runs") or [])},
        "entries": entries,
        "transfer": agg["transfer"],
        "eps_curves": agg["eps_curves"],
        "invalid_cells": _invalid(cells),
    }
    return canonical(board)


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


def _threat_models(frame: pd.DataFrame, cells: pd.DataFrame, meta: dict[str, Any]) -> list[dict[str, Any]]:
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
    for _, c in bad.iterrows():
        def get(k: str) -> Any:
            v = c.get(k)
            return None if _isnan(v) else v

        out.append({
            "cell_key": get("cell_key"), "victim": get("victim"), "defense": get("defense") or "none",
            "attack": get("attack"), "surrogate": get("surrogate") or None, "threat": get("threat"),
            "seed": None if get("seed") is None else int(get("seed")), "status": get("status"),
            "reason": get("error") or "",
        })  # fmt: skip
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in ("threat", "victim", "attack", "cell_key")))


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
    return json.dumps(canonical(board), sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False) + "\n"


def board_from_store(
    store: Any, meta: dict[str, Any] | None = None, benchmark: str | None = None, keys: Any = None
) -> dict[str, Any]:
    """Build the board of a results folder (or an open ``robench.store.Store``).

    Reads ``frame()`` (ok cells), the cells table (all statuses) and the runs table from the store,
    and ``DIR/benchmark.json`` / ``DIR/subset.json`` (written by the harness) for the benchmark
    version, description, primary threat models and subset; the dataset hash comes from the cells'
    config JSON. ``benchmark`` selects one benchmark id when the folder holds several; ``keys``
    (optional set of cell keys) restricts the board to those cells (e.g. the cells of the current
    definition, :func:`robench.harness.benchmark_frame`). ``meta`` overrides what is read."""
    from robench.store import Store, store_exists

    if not isinstance(store, Store) and not store_exists(store):
        raise DataError(f"expected a results folder with results.sqlite, got none at {store}")
    st = store if isinstance(store, Store) else Store(store)
    frame, cells, runs = st.frame(status="ok"), st.cells(), st.runs()
    if keys is not None:
        keys = set(keys)
        frame, cells = frame[frame["cell_key"].isin(keys)], cells[cells["cell_key"].isin(keys)]
    have = sorted({str(b) for b in cells["benchmark"].dropna()})
    if benchmark is not None:
        if benchmark not in have:
            raise DataError(f"expected a benchmark of the results folder ({', '.join(have) or 'none'}), got {benchmark!r} in --benchmark")
        frame, cells = frame[frame["benchmark"] == benchmark], cells[cells["benchmark"] == benchmark]
        runs = runs[runs["benchmark"].astype(str) == benchmark]
    elif len(have) > 1:
        raise DataError(f"expected one benchmark per board, got {len(have)} ({', '.join(have)}) in {st.path}; pass --benchmark ID")
    bench_id = benchmark or (have[0] if have else None)
    derived = _store_meta(st.dir, bench_id, cells, runs)
    return build_board(frame, cells, {**derived, **(meta or {})})


def _store_meta(folder: Path, bench_id: str | None, cells: pd.DataFrame, runs: pd.DataFrame) -> dict[str, Any]:
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
        raise DataError(f"expected one data set per board, got {len(prints)} fingerprints in the cells' config_json")
    return meta


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------------- validation


def _fail(field: str, expected: str, got: Any) -> DataError:
    g = type(got).__name__ if not isinstance(got, str | int | float) or isinstance(got, bool) else repr(got)
    if got is None:
        g = "null"
    return DataError(f"expected {expected}, got {g} in board field '{field}'")


def _req(d: dict[str, Any], key: str, field: str) -> Any:
    if key not in d:
        raise DataError(f"expected field {key!r}, got none in board field '{field or '<top level>'}'")
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
        raise _fail(f"{field}.ci", "[lo, hi] with 0 <= lo <= hi <= 1", ci if not isinstance(ci, list) else str(ci))


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
    for i, t in enumerate(_list(_req(d, "threat_models", ""), "threat_models")):
        _str(_req(_obj(t, f"threat_models[{i}]"), "name", f"threat_models[{i}]"), f"threat_models[{i}].name")
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
        rows, cols = _list(_req(t, "surrogates", f), f"{f}.surrogates"), _list(_req(t, "victims", f), f"{f}.victims")
        mat = _list(_req(t, "success_rate", f), f"{f}.success_rate")
        if len(mat) != len(rows) or any(not isinstance(r, list) or len(r) != len(cols) for r in mat):
            raise _fail(f"{f}.success_rate", f"a {len(rows)} x {len(cols)} matrix", "a different shape")
        for r, row in enumerate(mat):
            for c, p in enumerate(row):
                if p is not None:
                    _prop(p, f"{f}.success_rate[{r}][{c}]")
    for i, c in enumerate(_list(_req(d, "eps_curves", ""), "eps_curves")):
        f = f"eps_curves[{i}]"
        for j, p in enumerate(_list(_req(_obj(c, f), "points", f), f"{f}.points")):
            p = _obj(p, f"{f}.points[{j}]")
            if isinstance(_req(p, "eps", f"{f}.points[{j}]"), bool) or not isinstance(p["eps"], int | float):
                raise _fail(f"{f}.points[{j}].eps", "a number", p["eps"])
            _prop(_req(p, "robust_accuracy", f"{f}.points[{j}]"), f"{f}.points[{j}].robust_accuracy")
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


# ---------------------------------------------------------------------- renderings


def attack_columns(entries: list[dict[str, Any]]) -> list[str]:
    """Attack keys of ``entries``, white-box first, then transfer, query, no-box; by name within."""
    kinds: dict[str, str] = {}
    for e in entries:
        for k, a in e["attacks"].items():
            kinds.setdefault(k, a["knowledge"])
    return sorted(kinds, key=lambda k: (KNOWLEDGE_ORDER.get(kinds[k], 9), k))


def fmt_prop(p: dict[str, Any] | None, with_n: bool = False) -> str:
    """``"63.0 [55.1, 70.2]"`` in percent (``"—"`` when missing)."""
    if p is None or p.get("value") is None:
        return "—"
    s = f"{100 * p['value']:.1f} [{100 * p['ci'][0]:.1f}, {100 * p['ci'][1]:.1f}]"
    return f"{s} (n={p['n']})" if with_n else s


def _md_cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def threat_groups(board: dict[str, Any]) -> list[tuple[str, bool, list[dict[str, Any]]]]:
    """(threat name, primary, entries) per threat model, primary ones first."""
    by: dict[str, list[dict[str, Any]]] = {}
    for e in board["entries"]:
        by.setdefault(e["threat"], []).append(e)
    prim = {t["name"]: t.get("primary", True) for t in board["threat_models"]}
    return sorted(((t, prim.get(t, True), es) for t, es in by.items()), key=lambda g: (not g[1], g[0]))


def render_markdown(board: dict[str, Any]) -> str:
    """Markdown: per threat model a victim x attack table of robust accuracy (%, 95% CI), clean
    accuracy and worst case; then the transfer matrices, flags and invalid cells."""
    b, ds, sub = board["benchmark"], board["dataset"], board["subset"]
    ver = f" v{b['version']}" if b.get("version") is not None else ""
    out = [f"# robench board: {b['id']}{ver}", ""]
    if b.get("description"):
        out += [b["description"], ""]
    out += [
        f"- dataset: {ds['name']} (sha256 {str(ds['hash'])[:16]})",
        f"- subset: n = {sub['n']} (sha256 {str(sub['hash'])[:16]})",
        f"- schema: {board['schema']}; generated by robench {board['generated_by']['robench']}",
        "- numbers: accuracy in %, with the 95% Wilson interval; worst case = robust to every attack "
        "of the row (per sample)",
        "",
    ]
    for threat, primary, entries in threat_groups(board):
        cols = attack_columns(entries)
        out += [f"## Threat model {threat}" + ("" if primary else " (eps sweep)"), ""]
        head = ["victim", "defense", "clean", *cols, "worst case", "flags"]
        out += ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
        for e in sorted(entries, key=lambda e: (e["victim"], e["defense"])):
            row = [e["victim"], e["defense"], fmt_prop(e["clean_accuracy"])]
            row += [fmt_prop(e["attacks"][c]["robust_accuracy"]) if c in e["attacks"] else "—" for c in cols]
            row += [fmt_prop(e["worst_case"], with_n=True), ", ".join(sorted({f["code"] for f in e["flags"]}))]
            out.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
        out.append("")
    for t in board["transfer"]:
        out += [f"## Transfer success rate: {t['attack']}, {t['threat']} (rows: surrogate, columns: victim)", ""]
        out += ["| surrogate \\ victim | " + " | ".join(_md_cell(v) for v in t["victims"]) + " |"]
        out += ["|" + "---|" * (len(t["victims"]) + 1)]
        for s, row in zip(t["surrogates"], t["success_rate"], strict=True):
            out.append("| " + " | ".join([_md_cell(s), *(fmt_prop(p) for p in row)]) + " |")
        out.append("")
    flags = [(e, f) for e in board["entries"] for f in e["flags"]]
    if flags:
        out += ["## Flags", ""]
        out += [f"- {_md_cell(e['victim'])} / {_md_cell(e['defense'])} / {e['threat']}: **{f['code']}**: "
                f"{_md_cell(f['message'])}" for e, f in flags]  # fmt: skip
        out.append("")
    if board["invalid_cells"]:
        out += ["## Invalid and failed cells (excluded from every number)", ""]
        out += [f"- {c['status']}: {c['attack']} on {c['victim']} ({c['threat']}, seed {c['seed']}): "
                f"{_md_cell(c['reason'])}" for c in board["invalid_cells"]]  # fmt: skip
        out.append("")
    return "\n".join(out)


CSV_COLUMNS = [
    "benchmark", "threat", "primary", "victim", "defense", "weights_sha256",
    "clean_accuracy", "clean_lo", "clean_hi", "clean_n",
    "worst_case", "worst_case_lo", "worst_case_hi", "worst_case_n",
    "attack_key", "attack", "knowledge", "surrogate", "seed",
    "robust_accuracy", "robust_lo", "robust_hi", "n",
    "success_rate", "success_lo", "success_hi", "n_eligible",
    *[f"success_mean_{k}" for k in (*STAT_KEYS, "queries")],
    *[f"eligible_mean_{k}" for k in (*STAT_KEYS, "queries")],
    "flags",
]  # fmt: skip


def render_csv(board: dict[str, Any]) -> str:
    """One row per entry x attack (columns :data:`CSV_COLUMNS`; empty = not available)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for e in board["entries"]:
        base = {
            "benchmark": board["benchmark"]["id"], "threat": e["threat"], "primary": e.get("primary", True),
            "victim": e["victim"], "defense": e["defense"], "weights_sha256": e["weights_sha256"],
            **_pcols("clean", e["clean_accuracy"], "clean_accuracy"), **_pcols("worst_case", e["worst_case"]),
            "flags": ";".join(f["code"] for f in e["flags"]),
        }  # fmt: skip
        for key in attack_columns([e]):
            a = e["attacks"][key]
            row = dict(base, attack_key=key, attack=a["attack"], knowledge=a["knowledge"],
                       surrogate=a["surrogate"], seed=a["seed"])  # fmt: skip
            row.update(_pcols("robust", a["robust_accuracy"], "robust_accuracy"))
            row.update(_pcols("success", a["success_rate"], "success_rate"))
            row["n_eligible"] = row.pop("success_n")
            for where in ("success", "eligible"):
                for k, v in a["stats"][f"over_{where}"].items():
                    row[f"{where}_mean_{k}"] = v
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def _pcols(prefix: str, p: dict[str, Any], value_name: str | None = None) -> dict[str, Any]:
    n_name = "n" if prefix == "robust" else f"{prefix}_n"
    return {value_name or prefix: p["value"], f"{prefix}_lo": p["ci"][0], f"{prefix}_hi": p["ci"][1], n_name: p["n"]}


def write_board(board: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Validate ``board`` and write board.json/.md/.csv/.html and the figures into ``out_dir``
    (atomically). Returns the written paths."""
    from robench import figures
    from robench.board_html import render_html

    validate_board(board)
    out = Path(out_dir)
    paths = [
        atomic_write_text(out / "board.json", board_json(board)),
        atomic_write_text(out / "board.md", render_markdown(board)),
        atomic_write_text(out / "board.csv", render_csv(board)),
    ]
    figs = []
    for name, draw in (("transfer_heatmap.png", figures.transfer_heatmap), ("robust_vs_eps.png", figures.robust_vs_eps)):
        p = draw(board, out / name)
        if p is None:
            (out / name).unlink(missing_ok=True)
        else:
            figs.append(p)
    paths.append(atomic_write_text(out / "board.html", render_html(board, figures=[p.name for p in figs])))
    return paths + figs
