"""Defended board rows against their undefended base, paired on the same clips.

A defended row is compared with the undefended row of the same model: for a run-time defense (an
input transform or BEAT's heads) the row of the same victim source without a defense; for an
adversarially trained checkpoint the row whose source is the base its metadata records
(``defense_training.base``). A row with no undefended base on the board is not compared.

For every primary threat model, every attack both rows ran (transfer cells off the diagonal only)
and the per-clip worst case over those common attacks, the clips scored in every one of those cells
in both rows are paired. A clip is robust when it was classified correctly and no selected cell (of
any seed) fooled it. With ``b`` the clips robust only behind the defense and ``c`` those robust only
undefended: ``difference`` = (b - c)/n, the change in robust accuracy in points/100, and
``p_mcnemar`` the exact McNemar test of b against c. Pairing on the clips resolves differences that
two independent intervals cannot.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from robench.report.aggregate import WORST, mcnemar_p, prepare, proportion
from robench.report.tables import (
    Cell,
    Section,
    Table,
    p_text,
    prop_cell,
    threat_label,
    threat_of,
)


def undefended_bases(victims: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Board victim label of each defended row -> the label of its undefended base row."""
    plain = {
        v["source"]: label
        for label, v in victims.items()
        if v.get("defense") in (None, "none") and not v.get("defense_training")
    }
    out = {}
    for label, v in victims.items():
        if label in plain.values():
            continue
        trained = v.get("defense_training") or {}
        base = plain.get(trained.get("base") if trained else v["source"])
        if base is not None:
            out[label] = base
    return out


def _robust(g: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Per clip: robust to every cell of ``keys`` (only clips present in all of them)."""
    sel = g[g["attack_key"].isin(keys)]
    per = sel.groupby("sample_id").agg(robust=("robust", "all"), n=("attack_key", "nunique"))
    return per.loc[per["n"] == len(keys), "robust"]


def defense_pairs(
    frame: pd.DataFrame, victims: dict[str, dict[str, Any]], primary: set[str]
) -> list[dict[str, Any]]:
    """The paired comparisons of the module docstring, sorted by (threat, victim, attack), the
    worst case first; ``[]`` when the board has no defended row with an undefended base."""
    bases = undefended_bases(victims)
    if not bases or frame.empty:
        return []
    df = prepare(frame)
    df = df[~df["diagonal"] & df["threat"].isin(primary)]
    df = df.assign(
        label=df["victim"].where(df["defense"] == "none", df["victim"] + "+" + df["defense"])
    )
    out = []
    for threat, g in df.groupby("threat", sort=True):
        for label, base in sorted(bases.items()):
            gd, gb = g[g["label"] == label], g[g["label"] == base]
            common = sorted(set(gd["attack_key"]) & set(gb["attack_key"]))
            for key in [WORST, *common] if common else []:
                keys = common if key == WORST else [key]
                both = pd.concat(
                    [_robust(gd, keys).rename("d"), _robust(gb, keys).rename("u")],
                    axis=1,
                    join="inner",
                )
                n = len(both)
                if n == 0:
                    continue
                b = int((both["d"] & ~both["u"]).sum())
                c = int((~both["d"] & both["u"]).sum())
                out.append({
                    "threat": threat, "victim": label, "undefended": base, "attack": key,
                    "suite": keys, "n": n,
                    "defended_robust": proportion(int(both["d"].sum()), n),
                    "undefended_robust": proportion(int(both["u"].sum()), n),
                    "only_defended": b, "only_undefended": c,
                    "difference": (b - c) / n, "p_mcnemar": mcnemar_p(b, c),
                })  # fmt: skip
    return out


def defense_section(board: dict[str, Any]) -> Section | None:
    """The board section of the comparisons (one table per threat model), or None without any."""
    pairs = board.get("defense_pairs") or []
    if not pairs:
        return None
    tables = []
    for threat in sorted({p["threat"] for p in pairs}):
        rows = [
            [
                Cell(p["victim"], sort=p["victim"], cls="t"),
                Cell(p["undefended"], sort=p["undefended"], cls="t"),
                Cell(p["attack"], sort=p["attack"], cls="t", title=", ".join(p["suite"])),
                prop_cell(p["defended_robust"]),
                prop_cell(p["undefended_robust"]),
                Cell(f"{100 * p['difference']:+.1f}", sort=p["difference"]),
                Cell(f"{p['only_defended']} / {p['only_undefended']}", sort=p["only_defended"]),
                Cell(p_text(p["p_mcnemar"]), sort=p["p_mcnemar"]),
            ]
            for p in pairs
            if p["threat"] == threat
        ]
        tables.append(
            Table(
                threat_label(threat_of(board, threat), threat),
                [
                    "defended",
                    "undefended",
                    "attack",
                    "robust, defended",
                    "robust, undefended",
                    "Δ (points)",
                    "b / c",
                    "p (McNemar)",
                ],
                rows,
                show_title=True,
            )  # fmt: skip
        )
    note = (
        "robust accuracy (%) on the clips both rows scored (95% Wilson interval); worst-case = per "
        "clip over the attacks both rows ran; b / c = clips robust only behind the defense / only "
        "undefended; Δ = (b - c)/n, in points; exact McNemar p"
    )
    return Section("Defended vs undefended, paired on the same clips", tables, note)
