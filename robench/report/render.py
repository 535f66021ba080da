"""What a rendered board shows, as plain tables; the Markdown and CSV renderings.

:func:`board_sections` turns a ``robench.board/2`` board into titled sections of :class:`Table`
objects that both the Markdown page (here) and the HTML page (:mod:`robench.report.html`) print, so
the two never disagree. The layout, per primary threat model:

1. **headline**: one row per victim: clean accuracy, the worst case over every attack (the diagonal
   transfer cells, white-box in effect, excluded), then the worst case of each attack family
   (white-box, transfer, query, no-box) -- narrow enough for a laptop screen;
2. one table per family: victim rows x attack columns of robust accuracy; each attack's header says
   its iteration budget (``10 it.``), the full config is in the attack-configuration table;
3. transfer attacks as surrogate x victim matrices of success rate, the diagonal marked, with the
   pooled off-diagonal rate (the transfer mean; the diagonal never enters it);

then the eps sweeps (threat models that differ only in eps), victim provenance, attack
configurations, flags and invalid cells. Accuracies are in % with the 95% Wilson interval; eps is
shown in centimetres when the data are metric (:func:`threat_label`). CSV: one row per entry x
attack (:data:`CSV_COLUMNS`).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from robench.report.aggregate import KNOWLEDGE_ORDER, STAT_KEYS
from robench.report.paired import clustered_p_text
from robench.report.tables import (  # noqa: F401 - re-exported for html, figures and plugins
    Cell,
    Section,
    Table,
    eps_display,
    eps_unit,
    family_label,
    fmt_prop,
    interval,
    p_text,
    pct,
    prop_cell,
    threat_label,
    threat_of,
    threat_unit,
)

FAMILY_TITLES = {
    "white-box": "White-box",
    "transfer": "Transfer",
    "query": "Query",
    "no-box": "No-box",
}
_BUDGET_FIELDS = (
    ("steps", "it."), ("iterations", "it."), ("restarts", "restarts"), ("n_restarts", "restarts"),
    ("eot", "EOT"), ("eot_samples", "EOT"), ("eot_iter", "EOT"),
)  # fmt: skip


def attack_config(board: dict[str, Any], a: dict[str, Any]) -> dict[str, Any] | None:
    return (board.get("attack_configs") or {}).get(a.get("config_sha256") or "")


def budget(cfg: dict[str, Any] | None) -> str:
    """``10 it.``, ``100 it., 5 restarts``, ``budget 1000 q.`` from an attack config entry."""
    if not cfg:
        return ""
    c = cfg.get("config") or {}
    parts = []
    for k, label in _BUDGET_FIELDS:
        v = c.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and (label == "it." or v > 1):
            parts.append(f"{v} {label}")
    if cfg.get("budget") is not None:
        parts.append(f"≤{cfg['budget']} queries")
    return ", ".join(dict.fromkeys(parts))


def config_text(c: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(c.items()))


def attack_columns(entries: list[dict[str, Any]], knowledge: str | None = None) -> list[str]:
    """Attack keys of ``entries`` (of one knowledge level when given), white-box first, then
    transfer, query, no-box; by name within."""
    kinds: dict[str, str] = {}
    for e in entries:
        for k, a in e["attacks"].items():
            kinds.setdefault(k, a["knowledge"])
    keys = [k for k in kinds if knowledge is None or kinds[k] == knowledge]
    return sorted(keys, key=lambda k: (KNOWLEDGE_ORDER.get(kinds[k], 9), k))


def threat_groups(board: dict[str, Any]) -> list[tuple[str, bool, list[dict[str, Any]]]]:
    """(threat name, primary, entries) per threat model, primary ones first."""
    by: dict[str, list[dict[str, Any]]] = {}
    for e in board["entries"]:
        by.setdefault(e["threat"], []).append(e)
    prim = {t["name"]: t.get("primary", True) for t in board["threat_models"]}
    return sorted(
        ((t, prim.get(t, True), es) for t, es in by.items()), key=lambda g: (not g[1], g[0])
    )


def row_name(e: dict[str, Any]) -> str:
    return e["victim"] if e["defense"] == "none" else f"{e['victim']}+{e['defense']}"


def _families(entries: list[dict[str, Any]]) -> list[str]:
    kinds = {k for e in entries for k in (e.get("families") or {})}
    return sorted(kinds, key=lambda k: KNOWLEDGE_ORDER.get(k, 9))


def _flags_cell(e: dict[str, Any]) -> Cell:
    codes = ", ".join(sorted({f["code"] for f in e["flags"]}))
    return Cell(codes, sort=codes, cls="t flag", title="\n".join(f["message"] for f in e["flags"]))


# ---------------------------------------------------------------------- sections


def board_sections(board: dict[str, Any]) -> list[Section]:
    """Everything a rendered board shows, in order (see the module docstring)."""
    out: list[Section] = []
    groups = threat_groups(board)
    for threat, primary, entries in groups:
        if not primary:
            continue
        label = threat_label(threat_of(board, threat), threat)
        entries = sorted(entries, key=row_name)
        out.append(Section(f"Threat model {label}", [_headline(board, entries)]))
        for kind in KNOWLEDGE_ORDER:
            if kind == "transfer":
                mats = [t for t in board["transfer"] if t["threat"] == threat]
                declared = [c for c in board.get("transfer_comparisons") or []
                            if c["threat"] == threat]  # fmt: skip
                if mats:
                    out.append(_transfer_section(mats, label, declared))
                continue
            cols = attack_columns(entries, kind)
            if cols:
                title = f"{FAMILY_TITLES[kind]} attacks, {label}: robust accuracy (%)"
                out.append(Section(title, [_attack_table(board, entries, cols, title)]))
    sweeps = [(t, es) for t, p, es in groups if not p]
    if sweeps:
        tables = []
        for threat, entries in sweeps:
            cols = attack_columns(entries)
            tables.append(_attack_table(board, sorted(entries, key=row_name), cols,
                                        threat_label(threat_of(board, threat), threat), worst=True))  # fmt: skip
        for t in tables:
            t.show_title = True
        tables[-1].figure = "robust_vs_eps.png"
        out.append(Section("Robust accuracy against ε (eps sweeps)", tables,
                           "the same attacks at other radii; worst case over the attacks run at this radius"))  # fmt: skip
    from robench.report.defended import defense_section

    paired = defense_section(board)
    if paired is not None:
        out.append(paired)
    if board.get("victims"):
        out.append(Section("Victims", [_victims_table(board)]))
    if board.get("attack_configs"):
        out.append(Section("Attack configurations", [_configs_table(board)],
                           "every field each attack ran with; board.json has them under attack_configs"))  # fmt: skip
    flags = [f"{row_name(e)} / {e['threat']}: **{f['code']}**: {f['message']}"
             for e in board["entries"] for f in e["flags"]]  # fmt: skip
    if flags:
        out.append(Section("Flags", [], items=flags))
    if board["invalid_cells"]:
        rows = [
            [Cell(str(c.get(k) if c.get(k) is not None else ""), sort=str(c.get(k)), cls="t")
             for k in ("status", "victim", "attack", "surrogate", "threat", "seed", "reason")]
            for c in board["invalid_cells"]
        ]  # fmt: skip
        head = ["status", "victim", "attack", "surrogate", "threat", "seed", "reason"]
        out.append(Section("Invalid and failed cells (excluded from every number)",
                           [Table("invalid cells", head, rows, text_cols=7)]))  # fmt: skip
    return out


def _headline(board: dict[str, Any], entries: list[dict[str, Any]]) -> Table:
    fams = _families(entries)
    head = ["victim", "clean", "worst case", *(FAMILY_TITLES.get(k, k) for k in fams), "flags"]
    sub = ["", "", "all attacks", *(_family_sub(entries, k) for k in fams), ""]
    rows = []
    for e in entries:
        row = [Cell(row_name(e), sort=row_name(e), cls="t", title=e.get("weights_sha256") or ""),
               prop_cell(e["clean_accuracy"]), prop_cell(e["worst_case"], "worst")]  # fmt: skip
        for k in fams:
            f = (e.get("families") or {}).get(k)
            row.append(prop_cell(f["worst_case"]) if f else Cell("—", sort=""))
        row.append(_flags_cell(e))
        rows.append(row)
    note = (
        "robust accuracy (%) with the 95% Wilson interval; worst case: a clip counts only if it "
        "survives every attack of its row (per sample), the diagonal transfer cells (surrogate = "
        "victim, white-box in effect) excluded; a family column is the worst case over that "
        "family's attacks"
    )
    return Table("headline", head, rows, sub, note)


def _family_sub(entries: list[dict[str, Any]], kind: str) -> str:
    n = max(
        (e["families"][kind]["attacks"] for e in entries if kind in (e.get("families") or {})),
        default=0,
    )
    return f"worst of {n}" if n != 1 else "1 attack"


def _attack_table(
    board: dict[str, Any],
    entries: list[dict[str, Any]],
    cols: list[str],
    title: str,
    worst: bool = False,
) -> Table:
    first = {c: next(e["attacks"][c] for e in entries if c in e["attacks"]) for c in cols}
    head = ["victim", "clean", *cols, *(["worst case"] if worst else [])]
    sub = [
        "",
        "",
        *(budget(attack_config(board, first[c])) for c in cols),
        *([""] if worst else []),
    ]
    rows = []
    for e in entries:
        row = [Cell(row_name(e), sort=row_name(e), cls="t"), prop_cell(e["clean_accuracy"])]
        for c in cols:
            a = e["attacks"].get(c)
            row.append(prop_cell(a["robust_accuracy"]) if a else Cell("—", sort=""))
        if worst:
            row.append(prop_cell(e["worst_case"], "worst"))
        rows.append(row)
    return Table(title, head, rows, sub)


def _comparison_table(mats: list[dict[str, Any]]) -> Table | None:
    """Transfer attacks ranked by pooled off-diagonal success, each paired against the reference."""
    refs = [t["vs_reference"]["reference"] for t in mats if t.get("vs_reference")]
    if not refs:
        return None
    ref = refs[0]
    rows = []
    for t in sorted(mats, key=lambda t: -((t.get("off_diagonal") or {}).get("value") or 0)):
        v = t.get("vs_reference")
        if v is None:
            text = "reference" if t["attack"] == ref else "—"
            why = "" if t["attack"] == ref else f"no units in common with {ref}"
            paired = [Cell(text, cls="t", title=why), Cell(""), Cell(""), Cell("")]
        else:
            lo, hi = v["ci"]
            paired = [
                Cell(f"{100 * v['difference']:+.1f}", f"[{100 * lo:+.1f}, {100 * hi:+.1f}]",
                     sort=v["difference"], title=f"{v['n']} paired units over {v['clips']} clips"),
                Cell(clustered_p_text(v["p_value"]), sort=v["p_value"]),
                Cell(p_text(v["p_mcnemar"]), sort=v["p_mcnemar"]),
                Cell(f"{v['only_attack']} / {v['only_reference']}", sort=v["only_attack"]),
            ]  # fmt: skip
        rows.append([Cell(t["attack"], sort=t["attack"], cls="t"), prop_cell(t.get("off_diagonal")),
                     *paired])  # fmt: skip
    note = (
        f"transfer success pooled over every off-diagonal surrogate → victim pair (95% Wilson "
        f"interval); Δ = success minus {ref}'s on the same (surrogate, victim, clip) units, with a "
        f"95% interval clustered by clip; p = sign-flip randomisation test clustered by clip; "
        f"McNemar = the exact test treating every unit as independent; b / c = units only this "
        f"attack / only {ref} fools; an ensemble meets {ref} once per member surrogate"
    )
    return Table(
        "transfer attacks compared",
        ["attack", "transfer success", f"Δ vs {ref} (points)", "p (clips)", "p (McNemar)", "b / c"],
        rows,
        note=note,
        show_title=True,
    )


def _declared_table(comparisons: list[dict[str, Any]]) -> Table:
    """The benchmark's declared (attack, reference) pairs, each with its paired result and the
    verdict board.json records."""
    from robench.report.paired import ALPHA

    rows = []
    for c in comparisons:
        v = c["result"]
        names = [Cell(c["attack"], sort=c["attack"], cls="t"),
                 Cell(c["reference"], sort=c["reference"], cls="t")]  # fmt: skip
        if v is None:
            rows.append([*names, *(Cell("—", sort="") for _ in range(6)),
                         Cell(f"{c['verdict']}: no units in common", cls="t")])  # fmt: skip
            continue
        lo, hi = v["ci"]
        rows.append([
            *names,
            Cell(pct(v["attack_success"]), sort=v["attack_success"]),
            Cell(pct(v["reference_success"]), sort=v["reference_success"]),
            Cell(f"{100 * v['difference']:+.1f}", f"[{100 * lo:+.1f}, {100 * hi:+.1f}]",
                 sort=v["difference"], title=f"{v['n']} paired units over {v['clips']} clips"),
            Cell(clustered_p_text(v["p_value"]), sort=v["p_value"]),
            Cell(p_text(v["p_mcnemar"]), sort=v["p_mcnemar"]),
            Cell(f"{v['only_attack']} / {v['only_reference']}", sort=v["only_attack"]),
            Cell(c["verdict"], sort=c["verdict"], cls="t"),
        ])  # fmt: skip
    note = (
        "pairs the benchmark declares (a paper's ordering, an attack against its ablations), each on "
        "the units both attacks share; success on those units; Δ with its 95% interval and p "
        "clustered by clip as above; verdict: attack > reference (or the reverse) when the "
        f"clustered p < {ALPHA:g} and the interval excludes 0, else not resolved"
    )
    head = ["attack", "reference", "attack success", "reference success", "Δ (points)",
            "p (clips)", "p (McNemar)", "b / c", "verdict"]  # fmt: skip
    return Table("declared comparisons", head, rows, note=note, show_title=True, text_cols=2)


def _transfer_section(
    mats: list[dict[str, Any]], label: str, declared: list[dict[str, Any]] | None = None
) -> Section:
    tables = []
    comparison = _comparison_table(mats)
    if comparison is not None:
        tables.append(comparison)
    if declared:
        tables.append(_declared_table(declared))
    for t in mats:
        diag = {tuple(rc) for rc in t.get("diagonal") or []}
        rows = []
        for r, (s, row) in enumerate(zip(t["surrogates"], t["success_rate"], strict=True)):
            cells = [Cell(s, sort=s, cls="t")]
            for c, p in enumerate(row):
                if (r, c) in diag:
                    cell = prop_cell(
                        p,
                        "diag",
                        "diagonal: surrogate = victim (white-box in effect), not in the mean",
                    )
                    cell.sub = f"{cell.sub} diag.".strip()
                    cells.append(cell)
                else:
                    cells.append(prop_cell(p))
            rows.append(cells)
        off = t.get("off_diagonal")
        mean = (
            f": off-diagonal {fmt_prop(off)}"
            if off is not None and off["value"] is not None
            else ""
        )
        tables.append(
            Table(
                f"{t['attack']}{mean}",
                ["surrogate \\ victim", *t["victims"]],
                rows,
                show_title=True,
            )
        )
    tables[-1].figure = "transfer_heatmap.png"
    note = (
        "success rate (%) over the clips surrogate and victim both classify correctly; rows: the "
        "surrogate the examples were made on, columns: the victim; diag. = the surrogate is the "
        "victim (white-box in effect), kept out of the off-diagonal mean (pooled over the other pairs) "
        "and out of every worst case"
    )
    return Section(f"Transfer attacks, {label}: success rate (%)", tables, note)


def _victims_table(board: dict[str, Any]) -> Table:
    head = [
        "victim",
        "architecture",
        "paper",
        "parameters",
        "trained on",
        "recipe",
        "defense",
        "weights sha256",
    ]
    rows = []
    for vid, v in sorted(board["victims"].items()):
        tr = v.get("training") or {}
        rec = tr.get("recipe") or {}
        recipe = ", ".join(
            f"{k} {rec[k]}" for k in ("epochs", "lr", "batch_size", "augment") if k in rec
        )
        dt = v.get("defense_training") or {}
        if dt:  # fine-tuned from a base by a weights defense: that is its recipe
            cfg = dt.get("config") or {}
            recipe = f"{dt.get('name')} of {dt.get('base')}" + "".join(
                f", {k} {cfg[k]}" for k in ("epochs", "eps", "steps", "beta") if k in cfg
            )
        data = f"{tr.get('dataset') or '?'} ({str(tr.get('dataset_sha256') or '')[:12]})"
        rows.append([
            Cell(vid, sort=vid, cls="t"), Cell(str(v.get("architecture") or v.get("error") or "?"), cls="t"),
            Cell(str(v.get("paper") or ""), cls="t wrap"), Cell(f"{v['num_parameters']:,}" if v.get("num_parameters") else "", sort=v.get("num_parameters")),
            Cell(data, cls="t", title=str(tr.get("command") or "")), Cell(recipe, cls="t"),
            Cell(str(v.get("defense") or "none"), cls="t"),
            Cell(str(v.get("weights_sha256") or "")[:16], cls="t", title=str(v.get("weights_sha256") or "")),
        ])  # fmt: skip
    return Table("victims", head, rows, text_cols=8)


def _configs_table(board: dict[str, Any]) -> Table:
    used: dict[str, list[str]] = {}
    for e in board["entries"]:
        for a in e["attacks"].values():
            base = a["attack"]
            if a.get("config_sha256"):
                used.setdefault(a["config_sha256"], [])
                if base not in used[a["config_sha256"]]:
                    used[a["config_sha256"]].append(base)
    rows = []
    for sha, a in board["attack_configs"].items():
        ids = ", ".join(used.get(sha, [])) or a["name"]
        rows.append([Cell(ids, sort=ids, cls="t"), Cell(a["name"], cls="t"), Cell(a.get("knowledge", ""), cls="t"),
                     Cell(budget(a), cls="t"), Cell(config_text(a["config"]), cls="t cfg"), Cell(sha[:12], cls="t", title=sha)])  # fmt: skip
    rows.sort(key=lambda r: r[0].text)
    return Table(
        "attack configurations",
        ["attack", "name", "knowledge", "budget", "config", "sha256"],
        rows,
        text_cols=6,
    )


# ---------------------------------------------------------------------- Markdown


def _md(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def header_lines(board: dict[str, Any]) -> list[str]:
    """The board's provenance line items (dataset, subset, schema, generator)."""
    ds, sub = board["dataset"], board["subset"]
    return [
        f"dataset {ds['name']} (sha256 {str(ds['hash'])[:16]})",
        f"subset n = {sub['n']} (sha256 {str(sub['hash'])[:16]})",
        f"schema {board['schema']}, robench {board['generated_by']['robench']}",
    ]


def render_markdown(board: dict[str, Any]) -> str:
    """The board as Markdown: the sections of :func:`board_sections`."""
    b = board["benchmark"]
    ver = f" v{b['version']}" if b.get("version") is not None else ""
    out = [f"# robench board: {b['id']}{ver}", ""]
    if b.get("description"):
        out += [b["description"], ""]
    out += [f"- {line}" for line in header_lines(board)] + [""]
    for sec in board_sections(board):
        out += [f"## {sec.title}", ""]
        if sec.note:
            out += [f"_{_md(sec.note)}_", ""]
        for t in sec.tables:
            if t.show_title:
                out += [f"**{_md(t.title)}**", ""]
            head = [
                h + (f" ({s})" if s else "")
                for h, s in zip(t.head, t.head_sub or [""] * len(t.head), strict=False)
            ]
            out += ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
            for row in t.rows:
                out.append("| " + " | ".join(_md(f"{c.text} {c.sub}".strip()) for c in row) + " |")
            out.append("")
            if t.note:
                out += [_md(t.note), ""]
        out += [f"- {_md(i)}" for i in sec.items]
        if sec.items:
            out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------- CSV

CSV_COLUMNS = [
    "benchmark", "threat", "primary", "victim", "defense", "weights_sha256",
    "clean_accuracy", "clean_lo", "clean_hi", "clean_n",
    "worst_case", "worst_case_lo", "worst_case_hi", "worst_case_n",
    "attack_key", "attack", "knowledge", "surrogate", "diagonal", "seed", "config_sha256",
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
                       surrogate=a["surrogate"], diagonal=bool(a.get("diagonal")),
                       seed=a["seed"], config_sha256=a.get("config_sha256"))  # fmt: skip
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
    return {
        value_name or prefix: p["value"],
        f"{prefix}_lo": p["ci"][0],
        f"{prefix}_hi": p["ci"][1],
        n_name: p["n"],
    }
