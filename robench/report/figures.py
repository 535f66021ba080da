"""Board figures (matplotlib, Agg backend): transfer heatmaps and robust accuracy against eps.

Both take a ``robench.board/1`` dict and a PNG path, write atomically and return the path, or None
when the board has nothing to draw (no transfer matrix / no threat models differing only in eps).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robench.io import atomic_write  # noqa: E402

DPI = 110


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically (no software/date metadata) and close it."""
    try:
        return atomic_write(
            path, lambda p: fig.savefig(p, format="png", dpi=DPI, metadata={"Software": None})
        )
    finally:
        plt.close(fig)


def transfer_heatmap(board: dict[str, Any], path: str | Path) -> Path | None:
    """One panel per (transfer attack, threat): surrogate (rows) x victim (columns) success rate over
    the eligible samples, colour 0-100 %, each cell annotated with its value (and blank when the
    pair was not run)."""
    mats = board.get("transfer") or []
    if not mats:
        return None
    ncol = min(3, len(mats))
    nrow = math.ceil(len(mats) / ncol)
    widths = [max(3.2, 1.0 + 0.9 * len(m["victims"])) for m in mats]
    heights = [max(2.6, 1.3 + 0.55 * len(m["surrogates"])) for m in mats]
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(ncol * max(widths) + 1.2, nrow * max(heights) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    im = None
    for ax, m in zip(axes.flat, mats, strict=False):
        vals = np.array(
            [
                [np.nan if p is None or p["value"] is None else 100 * p["value"] for p in row]
                for row in m["success_rate"]
            ],
            dtype=float,
        ).reshape(len(m["surrogates"]), len(m["victims"]))
        im = ax.imshow(np.ma.masked_invalid(vals), cmap="magma", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(m["victims"])), m["victims"], rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(m["surrogates"])), m["surrogates"], fontsize=8)
        ax.set_xlabel("victim")
        ax.set_ylabel("surrogate")
        ax.set_title(f"{m['attack']}  ({m['threat']})", fontsize=9)
        for (r, c), v in np.ndenumerate(vals):
            if np.isfinite(v):
                n = m["success_rate"][r][c]["n"]
                ax.text(c, r, f"{v:.0f}%\nn={n}", ha="center", va="center", fontsize=7,
                        color="black" if v > 60 else "white")  # fmt: skip
    for ax in list(axes.flat)[len(mats) :]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="transfer success rate (%)", shrink=0.8)
    fig.suptitle(f"Transfer success: {board['benchmark']['id']}", fontsize=10)
    return save_figure(fig, path)


def robust_vs_eps(board: dict[str, Any], path: str | Path) -> Path | None:
    """One panel per threat family (threat model without eps): robust accuracy (%) against eps, one
    line per (victim, attack) with its 95% interval as a band; the worst case is drawn thick."""
    curves = board.get("eps_curves") or []
    if not curves:
        return None
    families = sorted({c["family"] for c in curves})
    fig, axes = plt.subplots(
        1, len(families), figsize=(6.5 * len(families) + 2.5, 4.2), squeeze=False
    )
    cmap = plt.get_cmap("tab10")
    victims = sorted({(c["victim"], c["defense"]) for c in curves})
    attacks = sorted({c["attack"] for c in curves if c["attack"] != "worst-case"})
    styles = [("--", "o"), (":", "s"), ("-.", "^"), ((0, (5, 1, 1, 1)), "v"), ((0, (1, 1)), "D")]
    for ax, fam in zip(axes.flat, families, strict=True):
        sel = [c for c in curves if c["family"] == fam]
        for c in sel:
            pts = [p for p in c["points"] if p["robust_accuracy"]["value"] is not None]
            if not pts:
                continue
            x = np.array([p["eps"] for p in pts])
            y = np.array([100 * p["robust_accuracy"]["value"] for p in pts])
            lo = np.array([100 * p["robust_accuracy"]["ci"][0] for p in pts])
            hi = np.array([100 * p["robust_accuracy"]["ci"][1] for p in pts])
            worst = c["attack"] == "worst-case"
            victim = c["victim"] if c["defense"] == "none" else f"{c['victim']}+{c['defense']}"
            colour = cmap(victims.index((c["victim"], c["defense"])) % 10)
            ls, mk = ("-", "o") if worst else styles[attacks.index(c["attack"]) % len(styles)]
            ax.plot(x, y, marker=mk, ms=4, lw=2.6 if worst else 1.3, ls=ls, color=colour,
                    label=f"{victim}: {c['attack']}")  # fmt: skip
            ax.fill_between(x, lo, hi, color=colour, alpha=0.15, lw=0)
        ax.set_xlabel(f"eps ({_unit(board, sel)})")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(_family_title(fam), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.suptitle(
        f"Robust accuracy against eps: {board['benchmark']['id']} (bands: 95% Wilson)", fontsize=10
    )
    fig.tight_layout()
    return save_figure(fig, path)


def _unit(board: dict[str, Any], curves: list[dict[str, Any]]) -> str:
    names = {p["threat"] for c in curves for p in c["points"]}
    units = {
        t.get("unit")
        for t in board.get("threat_models", [])
        if t["name"] in names and t.get("unit")
    }
    return units.pop() if len(units) == 1 else "data units"


def _family_title(family: str) -> str:
    if family.startswith("{"):
        import json

        d = json.loads(family)
        keep = {
            k: v
            for k, v in d.items()
            if v not in (None, False) and k not in ("topology", "unit", "bone_tolerance")
        }
        if d.get("preserve_bones"):
            keep["bone_tolerance"] = d.get("bone_tolerance")
        return ", ".join(f"{k}={v}" for k, v in sorted(keep.items()))
    return family
