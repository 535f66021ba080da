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
from robench.report.render import (  # noqa: E402
    eps_unit,
    family_label,
    threat_label,
    threat_of,
    threat_unit,
)

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
    the eligible samples. The colour scale spans the off-diagonal cells only (0 to their largest
    value, at least 5 %): the diagonal (surrogate = victim, white-box in effect) is drawn grey and
    labelled ``diag.``, so it cannot wash the transfer cells out. Every cell is annotated with its
    value, 95% Wilson interval and n; a pair that was not run is blank."""
    mats = board.get("transfer") or []
    if not mats:
        return None
    ncol = min(3, len(mats))
    nrow = math.ceil(len(mats) / ncol)
    widths = [max(3.4, 1.2 + 1.25 * len(m["victims"])) for m in mats]
    heights = [max(2.8, 1.4 + 0.75 * len(m["surrogates"])) for m in mats]
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(ncol * max(widths) + 1.4, nrow * max(heights) + 0.8),
        squeeze=False,
        layout="constrained",
    )
    grids = []
    for m in mats:
        vals = np.array(
            [[np.nan if p is None or p["value"] is None else 100 * p["value"] for p in row]
             for row in m["success_rate"]],
            dtype=float,
        ).reshape(len(m["surrogates"]), len(m["victims"]))  # fmt: skip
        diag = np.zeros(vals.shape, dtype=bool)
        for r, c in m.get("diagonal") or []:
            diag[r, c] = True
        grids.append((vals, diag))
    off = [v[~d & np.isfinite(v)] for v, d in grids]
    top = max([5.0, *(float(o.max()) for o in off if o.size)])
    top = 5.0 * math.ceil(top / 5.0)
    im = None
    for ax, m, (vals, diag) in zip(axes.flat, mats, grids, strict=False):
        shown = np.ma.masked_where(~np.isfinite(vals) | diag, vals)
        ax.imshow(np.where(diag, 1.0, np.nan), cmap="Greys", vmin=0, vmax=5, aspect="auto")
        im = ax.imshow(shown, cmap="viridis", vmin=0, vmax=top, aspect="auto")
        ax.set_xticks(range(len(m["victims"])), m["victims"], rotation=25, ha="right", fontsize=8)
        ax.set_yticks(range(len(m["surrogates"])), m["surrogates"], fontsize=8)
        ax.set_xlabel("victim", fontsize=8)
        ax.set_ylabel("surrogate", fontsize=8)
        off_p = m.get("off_diagonal")
        mean = (
            ""
            if not off_p or off_p["value"] is None
            else f"; off-diagonal {100 * off_p['value']:.1f}%"
        )
        ax.set_title(f"{m['attack']}  ({_threat_title(board, m['threat'])}{mean})", fontsize=8.5)
        for (r, c), v in np.ndenumerate(vals):
            if not np.isfinite(v):
                continue
            p = m["success_rate"][r][c]
            text = f"{v:.1f}%\n[{100 * p['ci'][0]:.0f}, {100 * p['ci'][1]:.0f}]\nn={p['n']}"
            if diag[r, c]:
                text = "diag.\n" + text
                colour = "black"
            else:
                colour = "black" if v > 0.6 * top else "white"
            ax.text(c, r, text, ha="center", va="center", fontsize=6.5, color=colour)
    for ax in list(axes.flat)[len(mats) :]:
        ax.set_visible(False)
    fig.colorbar(
        im, ax=axes.ravel().tolist(), shrink=0.8,
        label=f"transfer success rate (%), off-diagonal scale 0-{top:g}",
    )  # fmt: skip
    fig.suptitle(
        f"Transfer success: {board['benchmark']['id']} (grey: diagonal, surrogate = victim)",
        fontsize=10,
    )
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
        factor, unit = eps_unit(_unit(board, sel))
        for c in sel:
            pts = [p for p in c["points"] if p["robust_accuracy"]["value"] is not None]
            if not pts:
                continue
            x = np.array([p["eps"] for p in pts]) * factor
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
        ax.set_xlabel(f"ε ({unit})")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(f"threat model {family_label(fam)}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.suptitle(
        f"Robust accuracy against ε: {board['benchmark']['id']} (bands: 95% Wilson)", fontsize=10
    )
    fig.tight_layout()
    return save_figure(fig, path)


def _unit(board: dict[str, Any], curves: list[dict[str, Any]]) -> str | None:
    names = {p["threat"] for c in curves for p in c["points"]}
    units = {threat_unit(t) for t in board.get("threat_models", []) if t["name"] in names}
    return units.pop() if len(units) == 1 else None


def _threat_title(board: dict[str, Any], name: str) -> str:
    return threat_label(threat_of(board, name), name)
