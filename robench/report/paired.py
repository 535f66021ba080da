"""Paired comparisons of transfer attacks on the same (surrogate, victim, clip) units.

Two transfer attacks run on the same clips can be compared clip by clip, which resolves far smaller
differences than two independent intervals. A *unit* is one eligible off-diagonal (surrogate,
victim, clip, seed) of a transfer cell (eligible: surrogate and victim both classify the clip
correctly; off-diagonal: the victim is not (one of) the surrogate(s)). For an attack A and a
reference R on their common units, ``b`` = units only A fools, ``c`` = units only R fools, and the
difference is ``Δ = (b - c)/n``.

An ensemble attack (surrogate ``a+b``) compared with a single-surrogate one faces it once per
member: its outcome on (``a+b``, victim, clip) is paired with the single attack's outcome on
(``a``, victim, clip) and on (``b``, victim, clip), wherever the victim is off-diagonal for both.
Δ is then the ensemble's gain over the average of its members used alone.

A clip enters once per surrogate → victim pair and seed, and those units are correlated, so the
interval and ``p_value`` are clustered by clip (all of a clip's units, every seed included, form one
cluster) (:func:`clustered_test`: a cluster-robust standard
error and a sign-flip randomisation test); ``p_mcnemar`` is the exact McNemar test that treats every
unit as independent (reported beside it; too small when the pairs of one clip agree).

Every transfer attack of a board is compared with :data:`TRANSFER_REFERENCE` (I-FGSM); a benchmark
may also declare its own pairs (``comparisons:``, e.g. a paper's ordering TASAR > BA > MI-FGSM >
I-FGSM, or an attack against its ablations), which :func:`declared_comparisons` evaluates with a
verdict at :data:`ALPHA` (:func:`verdict`).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from robench.errors import DataError

TRANSFER_REFERENCE = "transfer-ifgsm"
SIGN_FLIPS = 9999  # random sign vectors of the clip-clustered randomisation test
ALPHA = 0.05  # the level of a declared comparison's verdict
VERDICTS = ("attack > reference", "reference > attack", "not resolved")
UNIT = ["surrogate", "target", "sample_id", "seed"]


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: the binomial test of min(b, c) in b + c trials at 1/2,
    ``min(1, 2·Σ_{k ≤ min(b, c)} C(b + c, k) / 2^(b + c))`` in exact integer arithmetic."""
    n = b + c  # n = 0: tail = 1, 2·1/1 -> p = 1
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, float(Fraction(2 * tail, 2**n)))


def clustered_test(d: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """Clip-clustered paired comparison of per-clip discordance ``d_i = b_i - c_i`` over ``m_i``
    units (one clip appears under several surrogate → victim pairs and seeds; its units are not
    independent). Returns ``(se, p)``: the cluster-robust standard error of
    ``Δ = Σd/Σm``, ``se = sqrt(G/(G-1)·Σ(d_i - Δ·m_i)²)/Σm`` over G clips, and the two-sided p of a
    sign-flip randomisation test (under H0 the attack and the reference are exchangeable within a
    clip, so each d_i's sign is a fair coin): ``(1 + #{|Σ s_i d_i| ≥ |Σ d_i|})/(1 + R)``, R =
    :data:`SIGN_FLIPS` sign vectors from a fixed seed (the board is deterministic)."""
    g, total = len(d), float(m.sum())
    if total == 0:  # no clip (every clip has at least one unit)
        return 0.0, 1.0
    diff = d.sum() / total
    se = math.sqrt(g / max(g - 1, 1) * float(((d - diff * m) ** 2).sum())) / total
    if not d.any():
        return se, 1.0
    signs = np.random.default_rng(0).integers(0, 2, size=(SIGN_FLIPS, g)) * 2 - 1
    stat = np.abs(signs @ d)
    p = (1 + int((stat >= abs(d.sum())).sum())) / (1 + SIGN_FLIPS)  # integer counts: exact sums
    return se, p


def clustered_p_text(p: float) -> str:
    """The clustered p for a table: at its floor ``1/(1 + SIGN_FLIPS)`` no sign vector reached the
    observed sum, so the test says only ``p ≤ 1/(1 + R)``."""
    floor = 1 / (1 + SIGN_FLIPS)
    return f"≤ {floor:.2g}" if p <= floor else f"{p:.2g}"


def transfer_units(tr: pd.DataFrame) -> pd.DataFrame:
    """The units of the transfer rows ``tr`` (a prepared frame with a ``target`` column): eligible
    and off-diagonal."""
    return tr[tr["eligible"] & ~tr["diagonal"]]


def _outcomes(sel: pd.DataFrame, attack: str, explode: bool) -> pd.Series:
    """Success per unit of ``attack``; with ``explode`` an ensemble's units are repeated once per
    member surrogate (``a+b`` -> ``a`` and ``b``). Two outcomes for one unit (cells of an older
    definition beside the current ones) are a DataError."""
    rows = sel[sel["attack"] == attack][[*UNIT, "success"]]
    if explode:
        rows = rows.assign(surrogate=rows["surrogate"].str.split("+")).explode("surrogate")
    dup = rows.duplicated(UNIT)
    if dup.any():
        s, v, clip, _ = rows.loc[dup, UNIT].iloc[0]
        raise DataError(
            f"expected one outcome per (surrogate, victim, clip, seed) of attack {attack!r}, got "
            f"{int(dup.sum())} repeated (e.g. {s} -> {v}, clip {clip}): stale cells of another "
            "definition; build the board with --definition"
        )
    return rows.set_index(UNIT)["success"]


def _is_ensemble(sel: pd.DataFrame, attack: str) -> bool:
    return bool(sel.loc[sel["attack"] == attack, "surrogate"].str.contains("+", regex=False).any())


def paired_comparison(
    units: pd.DataFrame, threat: str, attack: str, reference: str = TRANSFER_REFERENCE
) -> dict[str, Any] | None:
    """``attack`` against ``reference`` under ``threat`` on their common units (rows of ``units``:
    threat, attack, surrogate, target, sample_id, seed, success); see the module docstring. None
    when they share no unit: the reference was not run, no victim is off-diagonal for both, or both
    are ensembles over different surrogate sets (never within one benchmark, whose ensembles all
    get every surrogate)."""
    sel = units[units["threat"] == threat]
    ens_a, ens_r = _is_ensemble(sel, attack), _is_ensemble(sel, reference)
    att = _outcomes(sel, attack, ens_a and not ens_r)
    ref = _outcomes(sel, reference, ens_r and not ens_a)
    both = pd.concat([att.rename("a"), ref.rename("r")], axis=1, join="inner")
    n = len(both)
    if n == 0:
        return None
    only_a = both["a"] & ~both["r"]
    only_r = ~both["a"] & both["r"]
    b, c = int(only_a.sum()), int(only_r.sum())
    diff = (b - c) / n
    per_clip = (
        pd.DataFrame({"d": only_a.astype(int) - only_r.astype(int), "m": 1}, index=both.index)
        .groupby(level="sample_id")
        .sum()
    )
    se, p_clip = clustered_test(per_clip["d"].to_numpy(float), per_clip["m"].to_numpy(float))
    return {
        "reference": reference,
        "n": n,
        "clips": len(per_clip),
        "only_attack": b,
        "only_reference": c,
        "difference": diff,
        "ci": [diff - 1.96 * se, diff + 1.96 * se],
        "p_value": p_clip,
        "p_mcnemar": mcnemar_p(b, c),
        "attack_success": int(both["a"].sum()) / n,
        "reference_success": int(both["r"].sum()) / n,
    }


def declared_comparisons(
    units: pd.DataFrame, pairs: list[list[str]] | list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Each declared ``(attack, reference)`` pair under every threat model with transfer units
    (threats sorted by name, pairs in declaration order): ``{"threat", "attack", "reference",
    "result", "verdict"}``, ``result`` the :func:`paired_comparison` dict or None when the two share
    no unit, ``verdict`` :func:`verdict` of it."""
    out = []
    for threat in sorted(set(units["threat"])):
        for attack, reference in pairs:
            res = paired_comparison(units, threat, str(attack), str(reference))
            out.append(
                {"threat": threat, "attack": str(attack), "reference": str(reference),
                 "result": res, "verdict": verdict(res)}
            )  # fmt: skip
    return out


def verdict(result: dict[str, Any] | None, alpha: float = ALPHA) -> str:
    """``"attack > reference"`` when the clustered p is below ``alpha`` and the interval lies above
    zero, ``"reference > attack"`` when it lies below, else ``"not resolved"`` (also when there is
    no result)."""
    if result is None or result["p_value"] >= alpha:
        return "not resolved"
    lo, hi = result["ci"]
    if lo > 0:
        return "attack > reference"
    if hi < 0:
        return "reference > attack"
    return "not resolved"
