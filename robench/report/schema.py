"""Validation of ``board.json`` (schema ``robench.board/2``, documented in
:mod:`robench.report.board`; ``robench.board/1`` boards are still read): every failure is a one-line
:class:`~robench.errors.DataError` naming the field."""

from __future__ import annotations

import math
from typing import Any

from robench.errors import DataError
from robench.report.aggregate import KNOWLEDGE_ORDER

SCHEMA = "robench.board/2"
READABLE_SCHEMAS = ("robench.board/1", SCHEMA)


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


def _number(v: Any, field: str, lo: float | None = None, hi: float | None = None) -> float:
    ok = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
    if not ok or (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f" in [{lo}, {hi}]" if lo is not None else ""
        raise _fail(field, f"a number{rng}", v)
    return float(v)


def _paired(p: Any, field: str) -> None:
    """A paired comparison: n >= 1 units over >= 1 clips with only_attack + only_reference <= n,
    a difference in [-1, 1] inside its interval, p-values in [0, 1]."""
    p = _obj(p, field)
    _str(_req(p, "reference", field), f"{field}.reference")
    counts = {}
    for k in ("n", "clips", "only_attack", "only_reference"):
        v = _req(p, k, field)
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if k in ("n", "clips") else 0):
            raise _fail(f"{field}.{k}", "an integer >= 1" if k in ("n", "clips") else ">= 0", v)
        counts[k] = v
    if counts["only_attack"] + counts["only_reference"] > counts["n"]:
        raise _fail(f"{field}.n", "at least only_attack + only_reference", counts["n"])
    diff = _number(_req(p, "difference", field), f"{field}.difference", -1.0, 1.0)
    b, c, n = counts["only_attack"], counts["only_reference"], counts["n"]
    if abs(diff - (b - c) / n) > 1e-5:
        raise _fail(
            f"{field}.difference", f"(only_attack - only_reference)/n = {(b - c) / n:.6f}", diff
        )
    for k in ("p_value", "p_mcnemar"):
        _number(_req(p, k, field), f"{field}.{k}", 0.0, 1.0)
    ci = _req(p, "ci", field)
    if not isinstance(ci, list) or len(ci) != 2:
        raise _fail(f"{field}.ci", "[lo, hi]", str(ci))
    lo, hi = (_number(c, f"{field}.ci", None, None) for c in ci)
    if not lo <= diff <= hi:
        raise _fail(f"{field}.ci", "[lo, hi] around the difference", str(ci))
    rates = {k: _number(p[k], f"{field}.{k}", 0.0, 1.0)
             for k in ("attack_success", "reference_success") if k in p}  # fmt: skip
    if len(rates) == 2:
        a, r = rates["attack_success"], rates["reference_success"]
        # both at least the units only they fool, and apart by exactly (b - c)/n
        for k, v, own in (("attack_success", a, b), ("reference_success", r, c)):
            if v < own / n - 1e-5:
                raise _fail(f"{field}.{k}", f"at least {own}/{n} (units only it fools)", v)
        if abs(a - r - (b - c) / n) > 1e-5:
            raise _fail(
                f"{field}.reference_success",
                f"attack_success - (only_attack - only_reference)/n = {a - (b - c) / n:.6f}",
                r,
            )


def _comparison(c: Any, field: str, threats: set[str]) -> None:
    """A declared comparison: a threat of the board, attack and reference names, a paired result
    (with both success rates) or null, and the verdict that result gives."""
    from robench.report.paired import VERDICTS, verdict

    c = _obj(c, field)
    for k in ("threat", "attack", "reference", "verdict"):
        _str(_req(c, k, field), f"{field}.{k}")
    if c["threat"] not in threats:
        raise _fail(
            f"{field}.threat",
            f"a threat model of the board ({', '.join(sorted(threats))})",
            c["threat"],
        )
    res = _req(c, "result", field)
    if res is not None:
        res = _obj(res, f"{field}.result")
        for k in ("attack_success", "reference_success"):
            _req(res, k, f"{field}.result")
        _paired(res, f"{field}.result")
        if res["reference"] != c["reference"]:
            raise _fail(f"{field}.result.reference", repr(c["reference"]), res["reference"])
    if c["verdict"] not in VERDICTS or c["verdict"] != verdict(res):
        raise _fail(f"{field}.verdict", repr(verdict(res)), c["verdict"])


def _defense_pair(p: Any, field: str) -> None:
    """A defended row against its undefended base (optional ``defense_pairs``): names, n >= 1
    clips, both robust accuracies over those n, only_defended + only_undefended <= n, the
    difference (b - c)/n and a p-value in [0, 1]."""
    p = _obj(p, field)
    for k in ("threat", "victim", "undefended", "attack"):
        _str(_req(p, k, field), f"{field}.{k}")
    n = _req(p, "n", field)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise _fail(f"{field}.n", "an integer >= 1", n)
    for k in ("defended_robust", "undefended_robust"):
        _prop(_req(p, k, field), f"{field}.{k}")
        if p[k]["n"] != n:
            raise _fail(f"{field}.{k}.n", f"n = {n}", p[k]["n"])
    b, c = _req(p, "only_defended", field), _req(p, "only_undefended", field)
    for k, v in (("only_defended", b), ("only_undefended", c)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise _fail(f"{field}.{k}", "an integer >= 0", v)
    if b + c > n:
        raise _fail(f"{field}.n", "at least only_defended + only_undefended", n)
    diff = _number(_req(p, "difference", field), f"{field}.difference", -1.0, 1.0)
    if abs(diff - (b - c) / n) > 1e-6:
        raise _fail(
            f"{field}.difference", f"(only_defended - only_undefended)/n = {(b - c) / n:.6f}", diff
        )
    _number(_req(p, "p_mcnemar", field), f"{field}.p_mcnemar", 0.0, 1.0)


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
    if _req(d, "schema", "") not in READABLE_SCHEMAS:
        raise _fail("schema", " or ".join(map(repr, READABLE_SCHEMAS)), d["schema"])
    v2 = d["schema"] == SCHEMA
    if v2:
        for sha, a in _obj(_req(d, "attack_configs", ""), "attack_configs").items():
            a = _obj(a, f"attack_configs.{sha}")
            _str(_req(a, "name", f"attack_configs.{sha}"), f"attack_configs.{sha}.name")
            _obj(_req(a, "config", f"attack_configs.{sha}"), f"attack_configs.{sha}.config")
        for vid, v in _obj(_req(d, "victims", ""), "victims").items():
            _str(
                _req(_obj(v, f"victims.{vid}"), "source", f"victims.{vid}"), f"victims.{vid}.source"
            )
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
        for k in ("clean_accuracy", "worst_case") + (("worst_case_incl_diagonal",) if v2 else ()):
            _prop(_req(e, k, f), f"{f}.{k}")
        if v2:
            for kn, fam in _obj(_req(e, "families", f), f"{f}.families").items():
                if kn not in KNOWLEDGE_ORDER:
                    raise _fail(f"{f}.families", f"keys in {list(KNOWLEDGE_ORDER)}", kn)
                _prop(_req(_obj(fam, f"{f}.families.{kn}"), "worst_case", f"{f}.families.{kn}"),
                      f"{f}.families.{kn}.worst_case")  # fmt: skip
        for ak, a in _obj(_req(e, "attacks", f), f"{f}.attacks").items():
            fa = f"{f}.attacks.{ak}"
            a = _obj(a, fa)
            kn = _req(a, "knowledge", fa)
            if kn not in KNOWLEDGE_ORDER:
                raise _fail(f"{fa}.knowledge", f"one of {list(KNOWLEDGE_ORDER)}", kn)
            _prop(_req(a, "robust_accuracy", fa), f"{fa}.robust_accuracy")
            _prop(_req(a, "success_rate", fa), f"{fa}.success_rate")
            _obj(_req(a, "stats", fa), f"{fa}.stats")
            if v2:
                sha = _req(a, "config_sha256", fa)
                _str(sha, f"{fa}.config_sha256", nullable=True)
                if sha is not None and sha not in d["attack_configs"]:
                    raise _fail(f"{fa}.config_sha256", "a key of attack_configs", sha)
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
        if v2:
            for j, rc in enumerate(_list(_req(t, "diagonal", f), f"{f}.diagonal")):
                if (
                    not isinstance(rc, list) or len(rc) != 2
                    or not all(isinstance(i, int) and not isinstance(i, bool) for i in rc)
                    or not (0 <= rc[0] < len(rows) and 0 <= rc[1] < len(cols))
                ):  # fmt: skip
                    raise _fail(
                        f"{f}.diagonal[{j}]", "a [row, column] pair inside the matrix", str(rc)
                    )
            _prop(_req(t, "off_diagonal", f), f"{f}.off_diagonal")
            if t.get("vs_reference") is not None:
                _paired(t["vs_reference"], f"{f}.vs_reference")
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
    threats = {e.get("threat") for e in d["entries"] if isinstance(e, dict)}
    threats |= {t.get("name") for t in d.get("threat_models") or [] if isinstance(t, dict)}
    for i, c in enumerate(_list(d.get("transfer_comparisons", []), "transfer_comparisons")):
        _comparison(c, f"transfer_comparisons[{i}]", {str(t) for t in threats if t})
    for i, p in enumerate(_list(d.get("defense_pairs", []), "defense_pairs")):
        _defense_pair(p, f"defense_pairs[{i}]")
    for i, c in enumerate(_list(_req(d, "invalid_cells", ""), "invalid_cells")):
        f = f"invalid_cells[{i}]"
        c = _obj(c, f)
        if _req(c, "status", f) not in ("invalid", "error"):
            raise _fail(f"{f}.status", "'invalid' or 'error'", c["status"])
        _str(_req(c, "reason", f), f"{f}.reason")
