"""The table model every board rendering shares (:class:`Cell`, :class:`Table`, :class:`Section`)
and the formatting of numbers, intervals and threat models in it; :mod:`robench.report.render`
builds the board's sections from these, :mod:`robench.report.html` prints them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_CM = {"m": 100.0, "cm": 1.0, "mm": 0.1}
_NORM = {"linf": "L∞", "l2": "L2"}


# ---------------------------------------------------------------------- the table model


@dataclass
class Cell:
    """One table cell: ``text`` (main), ``sub`` (secondary line, e.g. the interval), ``sort``
    (numeric sort key), ``cls`` (``t`` text, ``diag``, ``flag``, ``worst``) and a tooltip."""

    text: str
    sub: str = ""
    sort: Any = None
    cls: str = ""
    title: str = ""


@dataclass
class Table:
    title: str
    head: list[str]
    rows: list[list[Cell]]
    head_sub: list[str] = field(default_factory=list)
    note: str = ""
    text_cols: int = 1
    figure: str = ""  # a figure file name shown with this table (HTML)
    show_title: bool = False  # print the title above the table (the section title names it else)


@dataclass
class Section:
    title: str
    tables: list[Table]
    note: str = ""
    items: list[str] = field(default_factory=list)  # a bullet list instead of / after tables


# ---------------------------------------------------------------------- formatting helpers


def p_text(p: float) -> str:
    """A p-value for a table; the board rounds to 6 decimals, so 0 reads ``< 1e-06``."""
    return "< 1e-06" if p == 0 else f"{p:.2g}"


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def interval(p: dict[str, Any] | None) -> str:
    if p is None or p.get("value") is None:
        return ""
    return f"[{100 * p['ci'][0]:.1f}, {100 * p['ci'][1]:.1f}]"


def fmt_prop(p: dict[str, Any] | None, with_n: bool = False) -> str:
    """``"63.0 [55.1, 70.2]"`` in percent (``"—"`` when missing)."""
    if p is None or p.get("value") is None:
        return "—"
    s = f"{pct(p['value'])} {interval(p)}"
    return f"{s} (n={p['n']})" if with_n else s


def prop_cell(p: dict[str, Any] | None, cls: str = "", note: str = "") -> Cell:
    if p is None or p.get("value") is None:
        return Cell("—", sort="")
    title = f"n = {p['n']}" + (f"; {note}" if note else "")
    return Cell(pct(p["value"]), interval(p), p["value"], cls, title)


def eps_display(eps: float | None, unit: str | None) -> str:
    """``1 cm`` for 0.01 m; data units otherwise (``0.5 u``)."""
    if eps is None:
        return "?"
    if unit in _CM:
        return f"{eps * _CM[unit]:g} cm"
    return f"{eps:g} {unit or 'data units'}"


def eps_unit(unit: str | None) -> tuple[float, str]:
    """(factor, label) that turns eps in ``unit`` into what boards show (cm when metric)."""
    return (_CM[unit], "cm") if unit in _CM else (1.0, unit or "data units")


def threat_unit(t: dict[str, Any]) -> str:
    """A board threat model's unit; a dict without one had ThreatModel's default."""
    from robench.threat import ThreatModel

    return str(t.get("unit") or ThreatModel.__dataclass_fields__["unit"].default)


def threat_label(t: dict[str, Any] | None, name: str = "") -> str:
    """``L∞, ε = 1 cm`` (+ ``, bone lengths ±1%``, ``, joints 0,3``, ``, frames 0-32``)."""
    if not t or "norm" not in t:
        return name or "?"
    unit = threat_unit(t)
    s = f"{_NORM.get(t['norm'], t['norm'])}, ε = {eps_display(t.get('eps'), unit)}"
    if t.get("preserve_bones"):
        s += f", bone lengths ±{100 * float(t.get('bone_tolerance') or 0):g}%"
    if t.get("joints"):
        s += ", joints " + ",".join(str(j) for j in t["joints"])
    if t.get("frames"):
        s += f", frames {t['frames'][0]}-{t['frames'][1]}"
    return s


def family_label(family: str) -> str:
    """A threat family (threat model without eps, canonical JSON) in words: ``L∞``."""
    try:
        d = json.loads(family)
    except (json.JSONDecodeError, TypeError):
        return family.replace("-eps*", "")
    return threat_label({**d, "eps": None}).replace(", ε = ?", "")


def threat_of(board: dict[str, Any], name: str) -> dict[str, Any]:
    return next((t for t in board["threat_models"] if t["name"] == name), {"name": name})
