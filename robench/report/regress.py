"""Robustness regression check: compare a new board with a baseline board (pure functions).

For every baseline entry (victim, defense, threat) and every robust accuracy in it — one per attack
key and the per-sample worst case — the new board's value comes with its 95% Wilson interval
``[lo, hi]`` (Wilson, JASA 1927; taken from the new board, or recomputed from value and n). With a
tolerance ``tol`` (absolute, in accuracy units) the decision is:

- ``regression`` when ``baseline > hi + tol``: robustness fell by more than sampling noise explains;
- ``improved`` when ``baseline < lo - tol``: robustness rose beyond sampling noise — a failure by
  default too (an attack that silently weakened looks exactly like this; update the baseline when
  the model really got more robust), or only reported with ``fail_on_improvement=False``;
- ``ok`` otherwise — the interval decides, never a bare difference of two numbers;
- ``missing`` when the new board lacks the entry or the attack (a failure: a silently dropped attack
  would otherwise pass);
- ``weights-changed`` (a warning row, not a failure) when a victim's weights sha256 differs, so a
  reader knows the comparison is across different checkpoints;
- ``new`` for entries/attacks only the new board has (informational).

Boards follow ``robench.board/1`` (:mod:`robench.report.board`): ``entries`` of ``{"victim", "defense",
"threat", "weights_sha256", "attacks": {key: {"robust_accuracy": P}}, "worst_case": P}`` with
``P = {"value", "n", "ci": [lo, hi]}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from robench.errors import DataError

FAILING = ("regression", "missing")
FAILING_TWO_SIDED = (*FAILING, "improved")


@dataclass(frozen=True)
class RegressRow:
    entry: str
    baseline: float | None
    new: float | None
    lo: float | None
    hi: float | None
    verdict: str
    note: str = ""


@dataclass(frozen=True)
class RegressReport:
    rows: tuple[RegressRow, ...]
    tolerance: float
    fail_on_improvement: bool = True

    @property
    def failed(self) -> bool:
        failing = FAILING_TWO_SIDED if self.fail_on_improvement else FAILING
        return any(r.verdict in failing for r in self.rows)

    @property
    def exit_code(self) -> int:
        """1 on a regression, a missing entry or (two-sided) an improvement, else 0."""
        return 1 if self.failed else 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.verdict] = out.get(r.verdict, 0) + 1
        return out

    def format(self) -> str:
        """A readable fixed-width table: entry, baseline, new, interval, verdict."""
        head = ("entry", "baseline", "new", "interval (95% Wilson ± tol)", "verdict")
        body = [
            (
                r.entry,
                _f(r.baseline),
                _f(r.new),
                f"[{_f(r.lo)}, {_f(r.hi)}]" if r.lo is not None else "—",
                r.verdict + (f" ({r.note})" if r.note else ""),
            )
            for r in self.rows
        ]
        widths = [
            max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
        ]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body
        ]
        c = self.counts()
        summary = ", ".join(f"{c[k]} {k}" for k in sorted(c))
        lines.append("")
        lines.append(
            f"{'FAILED' if self.failed else 'PASSED'}: {summary or 'nothing to compare'} (tolerance {self.tolerance:g})"
        )
        return "\n".join(lines)


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def wilson(value: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``value`` observed on ``n`` samples."""
    if n <= 0:
        return 0.0, 1.0
    p = min(1.0, max(0.0, value))
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _prop(p: Any, where: str) -> tuple[float | None, int, tuple[float, float]]:
    if not isinstance(p, dict) or "value" not in p:
        raise DataError(
            f"expected a proportion {{'value', 'n', 'ci'}}, got {type(p).__name__} in {where}"
        )
    v, n = p.get("value"), int(p.get("n") or 0)
    if v is None:
        return None, n, (0.0, 1.0)
    ci = p.get("ci")
    if (
        isinstance(ci, list | tuple)
        and len(ci) == 2
        and all(isinstance(c, int | float) for c in ci)
    ):
        return float(v), n, (float(ci[0]), float(ci[1]))
    return float(v), n, wilson(float(v), n)


def _entries(board: Any, name: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    if not isinstance(board, dict) or not isinstance(board.get("entries"), list):
        raise DataError(
            f"expected a board with an 'entries' list, got {type(board).__name__} in {name}"
        )
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for i, e in enumerate(board["entries"]):
        if not isinstance(e, dict) or "victim" not in e:
            raise DataError(
                f"expected an entry with a 'victim', got {type(e).__name__} in {name} field 'entries[{i}]'"
            )
        key = (str(e["victim"]), str(e.get("defense") or "none"), str(e.get("threat") or ""))
        out[key] = e
    return out


def _values(e: dict[str, Any], where: str) -> dict[str, Any]:
    """``{attack_key: P, 'worst-case': P}`` of one entry."""
    vals = {}
    for k, a in (e.get("attacks") or {}).items():
        if isinstance(a, dict) and "robust_accuracy" in a:
            vals[k] = a["robust_accuracy"]
    if "worst_case" in e:
        vals["worst-case"] = e["worst_case"]
    return vals


def compare_boards(
    baseline: dict[str, Any],
    new: dict[str, Any],
    tolerance: float = 0.0,
    fail_on_improvement: bool = True,
) -> RegressReport:
    """Compare every robust accuracy of ``baseline`` with ``new`` (see the module docstring)."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance >= 0:
        raise DataError(f"expected a tolerance >= 0, got {tolerance!r} in option '--tolerance'")
    base_e, new_e = _entries(baseline, "baseline board"), _entries(new, "new board")
    rows: list[RegressRow] = []
    for key in sorted(base_e):
        b = base_e[key]
        name = " / ".join(
            k for k in (key[0] if key[1] == "none" else f"{key[0]}+{key[1]}", key[2]) if k
        )
        n_entry = new_e.get(key)
        if n_entry is None:
            rows.append(
                RegressRow(name, None, None, None, None, "missing", "entry not in the new board")
            )
            continue
        bs, ns = b.get("weights_sha256"), n_entry.get("weights_sha256")
        if bs and ns and bs != ns:
            rows.append(
                RegressRow(
                    name,
                    None,
                    None,
                    None,
                    None,
                    "weights-changed",
                    f"sha256 {str(bs)[:12]}… -> {str(ns)[:12]}…",
                )
            )
        bv, nv = _values(b, f"baseline {name}"), _values(n_entry, f"new {name}")
        for ak in sorted(bv, key=lambda k: (k == "worst-case", k)):
            label = f"{name} / {ak}"
            bval, _, _ = _prop(bv[ak], f"baseline {label}")
            if ak not in nv:
                rows.append(
                    RegressRow(
                        label, bval, None, None, None, "missing", "attack not in the new board"
                    )
                )
                continue
            nval, _, (lo, hi) = _prop(nv[ak], f"new {label}")
            lo_t, hi_t = lo - tolerance, hi + tolerance
            if bval is None or nval is None:
                verdict = "ok"
            elif bval > hi_t:
                verdict = "regression"
            elif bval < lo_t:
                verdict = "improved"
            else:
                verdict = "ok"
            rows.append(RegressRow(label, bval, nval, lo_t, hi_t, verdict))
        for ak in sorted(set(nv) - set(bv)):
            nval, _, (lo, hi) = _prop(nv[ak], f"new {name} / {ak}")
            rows.append(
                RegressRow(f"{name} / {ak}", None, nval, lo - tolerance, hi + tolerance, "new")
            )
    for key in sorted(set(new_e) - set(base_e)):
        name = " / ".join(
            k for k in (key[0] if key[1] == "none" else f"{key[0]}+{key[1]}", key[2]) if k
        )
        rows.append(RegressRow(name, None, None, None, None, "new", "entry not in the baseline"))
    return RegressReport(tuple(rows), float(tolerance), fail_on_improvement)
