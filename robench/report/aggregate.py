"""Aggregation of per-sample results into leaderboard numbers, AutoAttack style.

Input is the joined frame of :meth:`robench.run.store.Store.frame` (one row per cell x sample, the sample
columns of the store plus the cell columns: victim, defense, attack, knowledge, surrogate, threat,
eps, seed, weights_sha256, zero_grad_frac, forward_random, ...). Only ``status == "ok"`` cells may
be passed; invalid and error cells never enter a number.

An *entry* is one (victim, defense, threat) triple. For an entry with subset S (the sample ids that
appear in its cells) the numbers are, with ``k/n`` reported together with n and the 95% Wilson
score interval (:func:`robench.run.metrics.wilson_interval`):

- clean accuracy = |{s in S : clean_correct(s) in every cell}| / |S|;
- per attack cell c (white-box cells keyed by the attack name; transfer cells keyed
  ``"attack<-surrogate"``; a suffix ``@seedN`` when one attack runs with several seeds and
  ``#<cell_key[:8]>`` when two configs share a name):
  robust accuracy = |{s : clean_correct(s, c) and adv_pred(s, c) == label(s)}| / |S|,
  attack success rate = |{s : success(s, c)}| / |{s : eligible(s, c)}|,
  mean perceptual statistics (linf, l2, joint_disp_cm, bone_dev_pct, accel_dev, queries) over the
  successful samples and over the eligible samples (queries only where recorded, i.e. >= 0);
- worst case (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
  diverse parameter-free attacks", ICML 2020): a sample counts as robust only if it is clean-correct
  and survives EVERY attack cell of the entry (per-sample worst case, never the minimum of
  per-attack accuracies); ``worst_case`` uses all attacks except the *diagonal* transfer cells,
  ``worst_case_white_box`` only the white-box ones. Samples missing from some cell of the entry are
  left out of both (n says so);
- a transfer cell is *diagonal* (``"diagonal": true`` on its attack) when its victim is its
  surrogate or one of its ensemble's surrogates (``surrogate`` ``a+b+c``): white-box in effect, it
  is reported but kept out of the worst case and of the ``*-beats-white-box`` flags;
  ``worst_case_incl_diagonal`` is the worst case over every cell, diagonal ones included;
- per attack family (knowledge level: white-box, transfer, query, no-box) ``families[k]`` = the
  per-sample worst case over that family's non-diagonal cells and their count;
- each attack's ``config_sha256``: sha256 of the canonical JSON of the cell's attack (its registered
  name, full config and, for query attacks, budget; not the benchmark's label for it).

Transfer matrices: for each (threat, transfer attack), surrogate x victim success rate pooled over
the eligible samples of every seed; ``diagonal`` lists the [row, column] pairs whose victim is
(one of) the surrogate(s), and ``off_diagonal`` is the success rate pooled over every other pair (the
transfer mean, which the diagonal never enters). ``vs_reference`` compares the attack with the
reference transfer attack (I-FGSM) on the same (surrogate, victim, clip, seed) units, an ensemble
once per member surrogate (:mod:`robench.report.paired`: the difference with an interval and a
p-value clustered by clip, and the exact McNemar p; None when the two share no unit). Paired on the
same clips, the comparison resolves differences far smaller than two independent intervals. Eps curves: for threat models that differ only in eps (same
"family", i.e. the threat name with its ``eps`` field replaced by ``*``), robust accuracy against eps
per (victim, defense, attack) and for the worst case.

Flags (``{"code", "message"}`` on the entry), in the spirit of AutoAttack's sanity checks:

- ``zero-gradients``: a cell's ``zero_grad_frac`` > 0.5 (gradient masking or a saturated loss);
- ``transfer-beats-white-box`` / ``query-beats-white-box`` / ``no-box-beats-white-box``: the upper
  end of that attack's robust-accuracy interval is below the white-box worst-case value, i.e. the
  white-box suite is too weak for this victim;
- ``non-monotone-eps``: robust accuracy at a larger eps has an interval whose lower end lies above
  the value at a smaller eps (flag on the entry of the larger eps);
- ``random-forward``: a cell recorded a randomised forward pass and no attack of the entry uses EOT
  (an attack config with ``eot``, ``eot_samples`` or ``eot_iter`` > 1);
- ``mixed-weights``: cells of one entry carry different weights sha256.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd

from robench.errors import DataError
from robench.report.paired import (  # noqa: F401 - mcnemar_p and clustered_test re-exported
    TRANSFER_REFERENCE,
    clustered_test,
    declared_comparisons,
    mcnemar_p,
    paired_comparison,
    transfer_units,
)
from robench.run.metrics import wilson_interval

ENTRY = ["victim", "defense", "threat"]
KNOWLEDGE_ORDER = {"white-box": 0, "transfer": 1, "query": 2, "no-box": 3}
STAT_KEYS = ("linf", "l2", "joint_disp_cm", "bone_dev_pct", "accel_dev")
WHITE_BOX = "white-box"
WORST = "worst-case"
ZERO_GRAD_LIMIT = 0.5
REQUIRED = (
    "cell_key", "victim", "attack", "knowledge", "threat", "sample_id", "label", "clean_correct",
    "adv_pred", "eligible", "success",
)  # fmt: skip
_BOOL = ("clean_correct", "eligible", "success")
_EPS_RE = re.compile(r"-eps[0-9.]+(?:e[+-]?[0-9]+)?(?:mm|cm|m|u)(?=-|$)")


def proportion(k: int, n: int) -> dict[str, Any]:
    """``{"value": k/n, "n": n, "ci": [lo, hi]}`` with the 95% Wilson interval; n = 0 gives value
    None and the uninformative interval [0, 1]."""
    k, n = int(k), int(n)
    if n <= 0:
        return {"value": None, "n": 0, "ci": [0.0, 1.0]}
    lo, hi = wilson_interval(k, n)
    return {"value": k / n, "n": n, "ci": [float(lo), float(hi)]}


def config_part(config_json: Any, key: str) -> dict[str, Any] | None:
    """The ``key`` part (``threat``, ``attack``, ...) of a cell's config JSON, or None when the JSON
    is missing, malformed or has no such dict."""
    if not isinstance(config_json, str) or not config_json:
        return None
    try:
        cfg = json.loads(config_json)
    except json.JSONDecodeError:
        return None
    part = cfg.get(key) if isinstance(cfg, dict) else None
    return dict(part) if isinstance(part, dict) else None


def threat_family(threat: str, config_json: Any = None) -> str:
    """The threat model without its eps: the ``threat`` dict of the cell's config JSON minus ``eps``
    (canonical JSON) when present, else the threat name with ``-eps<value><unit>`` -> ``-eps*``."""
    t = config_part(config_json, "threat")
    if t is not None:
        return json.dumps({k: v for k, v in t.items() if k != "eps"}, sort_keys=True)
    return _EPS_RE.sub("-eps*", str(threat), count=1)


def attack_config_sha256(config_json: Any) -> str | None:
    """sha256 of the canonical JSON of a cell config's ``attack`` part without its ``id`` label
    (None when the config JSON has no attack part)."""
    a = config_part(config_json, "attack")
    if a is None:
        return None
    text = json.dumps(
        {k: v for k, v in a.items() if k != "id"}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Validate the joined frame's columns and normalise it (a copy): booleans, defense "none" when
    missing, surrogate "" when missing, ``robust`` column, ``attack_key`` and ``family`` columns."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(
            f"expected columns {list(REQUIRED)}, got none named {missing[0]!r} in the results frame"
        )
    df = frame.copy()
    if "status" in df.columns and (df["status"] != "ok").any():
        bad = df.loc[df["status"] != "ok", "status"].iloc[0]
        raise DataError(
            f"expected only status 'ok' cells, got {bad!r} in the results frame column 'status'"
        )
    for col in _BOOL:
        df[col] = df[col].fillna(0).astype(bool)
    df["defense"] = _text(df, "defense", "none")
    df["surrogate"] = _text(df, "surrogate", "")
    df["knowledge"] = _text(df, "knowledge", WHITE_BOX)
    for col in (
        "seed",
        "eps",
        "zero_grad_frac",
        "forward_random",
        "queries",
        "weights_sha256",
        "config_json",
    ):
        if col not in df.columns:
            df[col] = np.nan
    for col in STAT_KEYS:
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else np.nan
    df["queries"] = pd.to_numeric(df["queries"], errors="coerce").fillna(-1)
    df["robust"] = df["clean_correct"] & (
        df["adv_pred"].astype("int64") == df["label"].astype("int64")
    )
    df["success"] = df["success"] & df["eligible"]
    base = (
        df["attack"]
        .astype(str)
        .where(df["surrogate"] == "", df["attack"].astype(str) + "<-" + df["surrogate"])
    )
    df["attack_key"] = base
    df["diagonal"] = [
        s != "" and v in s.split("+") for v, s in zip(df["victim"], df["surrogate"], strict=True)
    ]
    cells = df.drop_duplicates("cell_key")[["cell_key", *ENTRY, "attack_key", "seed"]].copy()
    grp = cells.groupby([*ENTRY, "attack_key"], dropna=False)
    seeds = grp["seed"].transform("nunique")
    cells.loc[seeds > 1, "attack_key"] = (
        cells.loc[seeds > 1, "attack_key"]
        + "@seed"
        + cells.loc[seeds > 1, "seed"].astype("Int64").astype(str)
    )
    dup = cells.groupby([*ENTRY, "attack_key"], dropna=False)["cell_key"].transform("size") > 1
    cells.loc[dup, "attack_key"] = (
        cells.loc[dup, "attack_key"] + "#" + cells.loc[dup, "cell_key"].str[:8]
    )
    df["attack_key"] = df["cell_key"].map(
        dict(zip(cells["cell_key"], cells["attack_key"], strict=True))
    )
    fam = df.drop_duplicates("cell_key")
    fam_map = {
        ck: threat_family(t, cj)
        for ck, t, cj in zip(fam["cell_key"], fam["threat"], fam["config_json"], strict=True)
    }
    df["family"] = df["cell_key"].map(fam_map)
    cfg_map = {
        ck: attack_config_sha256(cj)
        for ck, cj in zip(fam["cell_key"], fam["config_json"], strict=True)
    }
    df["attack_config"] = df["cell_key"].map(cfg_map)
    eot_map = {
        ck: uses_eot(config_part(cj, "attack"))
        for ck, cj in zip(fam["cell_key"], fam["config_json"], strict=True)
    }
    df["eot"] = df["cell_key"].map(eot_map).fillna(False).astype(bool)
    return df


EOT_FIELDS = ("eot", "eot_samples", "eot_iter")  # attack config fields counting EOT draws


def uses_eot(attack: dict[str, Any] | None) -> bool:
    """An attack part of a cell config that averages gradients over more than one draw."""
    cfg = (attack or {}).get("config") or {}
    return any(isinstance(cfg.get(f), int) and cfg[f] > 1 for f in EOT_FIELDS)


def _text(df: pd.DataFrame, col: str, default: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series(default, index=df.index, dtype=object)
    s = df[col].astype(object).where(df[col].notna(), default).astype(str)
    return s.where(s != "", default)


def cell_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: n, k_robust, n_eligible, k_success, mean stats over success / eligible."""
    g = df.groupby("cell_key", sort=True)
    out = g[[*ENTRY, "attack", "attack_key", "knowledge", "surrogate", "diagonal", "family", "eps",
             "seed", "zero_grad_frac", "forward_random", "weights_sha256",
             "attack_config", "eot"]].first()  # fmt: skip
    out["n"] = g.size()
    out["k_robust"] = g["robust"].sum()
    out["n_eligible"] = g["eligible"].sum()
    out["k_success"] = g["success"].sum()
    for where, mask in (("success", df["success"]), ("eligible", df["eligible"])):
        sub = df[mask]
        means = sub.groupby("cell_key")[list(STAT_KEYS)].mean()
        for key in STAT_KEYS:
            out[f"{where}:{key}"] = means[key] if key in means else np.nan
        q = sub[sub["queries"] >= 0].groupby("cell_key")["queries"].mean()
        out[f"{where}:queries"] = q
    return out


def _per_sample_worst(df: pd.DataFrame) -> pd.DataFrame:
    """Per entry: k robust to all cells, n samples present in all cells (AutoAttack worst case)."""
    if df.empty:
        return pd.DataFrame(columns=["k", "n"])
    per = df.groupby([*ENTRY, "sample_id"], sort=True).agg(
        robust=("robust", "all"), cells=("cell_key", "nunique")
    )
    ncell = df.groupby(ENTRY)["cell_key"].nunique().rename("ncell")
    per = per.join(ncell, on=ENTRY)
    full = per[per["cells"] == per["ncell"]]
    return full.groupby(level=ENTRY)["robust"].agg(k="sum", n="size")


def _stats(row: pd.Series) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for where in ("success", "eligible"):
        out[f"over_{where}"] = {
            key: _num(row.get(f"{where}:{key}")) for key in (*STAT_KEYS, "queries")
        }
    return out


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def aggregate(
    frame: pd.DataFrame, comparisons: list[list[str]] | list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """Aggregate an ok-only joined frame into ``{"entries", "transfer", "eps_curves"}`` (see module
    docstring); entries sorted by (threat, victim, defense), attacks by key. With ``comparisons``
    (declared ``(attack, reference)`` transfer pairs) also ``"comparisons"``:
    :func:`robench.report.paired.declared_comparisons` of them."""
    df = prepare(frame)
    if df.empty:
        return {"entries": [], "transfer": [], "eps_curves": [],
                **({"comparisons": []} if comparisons else {})}  # fmt: skip
    cells = cell_summary(df)
    clean = (
        df.groupby([*ENTRY, "sample_id"])["clean_correct"]
        .all()
        .groupby(level=ENTRY)
        .agg(k="sum", n="size")
    )
    worst = _per_sample_worst(df[~df["diagonal"]])
    worst_wb = _per_sample_worst(df[df["knowledge"] == WHITE_BOX])
    worst_all = _per_sample_worst(df)
    kinds = sorted(set(df["knowledge"]), key=lambda k: (KNOWLEDGE_ORDER.get(k, 9), k))
    worst_fam = {k: _per_sample_worst(df[(df["knowledge"] == k) & ~df["diagonal"]]) for k in kinds}
    entries: dict[tuple, dict[str, Any]] = {}
    for key, cg in cells.groupby(ENTRY, sort=True):
        key = tuple(key)
        shas = sorted({str(s) for s in cg["weights_sha256"] if isinstance(s, str) and s})
        entry: dict[str, Any] = {
            "victim": key[0], "defense": key[1], "threat": key[2],
            "weights_sha256": ",".join(shas) if shas else None,
            "clean_accuracy": proportion(*_kn(clean, key)),
            "attacks": {}, "flags": [],
            "worst_case": proportion(*_kn(worst, key)),
            "worst_case_white_box": proportion(*_kn(worst_wb, key)),
            "worst_case_incl_diagonal": proportion(*_kn(worst_all, key)),
            "families": {
                k: {"worst_case": proportion(*_kn(worst_fam[k], key)),
                    "attacks": int(((cg["knowledge"] == k) & ~cg["diagonal"]).sum())}
                for k in kinds if ((cg["knowledge"] == k) & ~cg["diagonal"]).any()
            },
            "family": cg["family"].iloc[0],
            "eps": _num(cg["eps"].iloc[0]),
        }  # fmt: skip
        if len(shas) > 1:
            _flag(
                entry,
                "mixed-weights",
                f"cells of this entry carry {len(shas)} different weights sha256",
            )
        randomised = []
        for _, c in cg.sort_values("attack_key").iterrows():
            ak = c["attack_key"]
            entry["attacks"][ak] = {
                "attack": c["attack"],
                "knowledge": c["knowledge"],
                "surrogate": c["surrogate"] or None,
                "diagonal": bool(c["diagonal"]),
                "config_sha256": c["attack_config"]
                if isinstance(c["attack_config"], str)
                else None,
                "seed": None if pd.isna(c["seed"]) else int(c["seed"]),
                "robust_accuracy": proportion(c["k_robust"], c["n"]),
                "success_rate": proportion(c["k_success"], c["n_eligible"]),
                "stats": _stats(c),
            }
            zg = _num(c["zero_grad_frac"])
            if zg is not None and zg > ZERO_GRAD_LIMIT:
                _flag(entry, "zero-gradients",
                      f"{ak}: {zg:.0%} of samples had all-zero input gradients (gradient masking or "
                      "saturated loss); its numbers overstate robustness")  # fmt: skip
            if _num(c["forward_random"]):
                randomised.append(ak)
        if randomised and not cg["eot"].any():  # an EOT cell is the adaptive evaluation
            _flag(entry, "random-forward",
                  f"the forward pass was randomised in {', '.join(randomised)}; evaluate with EOT "
                  "(expectation over transformation) attacks")  # fmt: skip
        _beats_white_box(entry)
        entries[key] = entry
    curves = eps_curves(df, cells, entries)
    for e in entries.values():
        e["flags"].sort(key=lambda f: (f["code"], f["message"]))
    out = {
        "entries": list(entries.values()),
        "transfer": transfer_matrices(df),
        "eps_curves": curves,
    }
    if comparisons:
        out["comparisons"] = declared_comparisons(transfer_units(_transfer_rows(df)), comparisons)
    return out


def _kn(table: pd.DataFrame, key: tuple) -> tuple[int, int]:
    if key in table.index:
        r = table.loc[key]
        return int(r["k"]), int(r["n"])
    return 0, 0


def _flag(entry: dict[str, Any], code: str, message: str) -> None:
    entry["flags"].append({"code": code, "message": message})


def _beats_white_box(entry: dict[str, Any]) -> None:
    wb = entry["worst_case_white_box"]
    if wb["value"] is None:
        return
    for ak, a in entry["attacks"].items():
        ra = a["robust_accuracy"]
        if a["knowledge"] == WHITE_BOX or a.get("diagonal") or ra["value"] is None:
            continue
        if ra["ci"][1] < wb["value"]:
            _flag(entry, f"{a['knowledge']}-beats-white-box",
                  f"{ak} ({a['knowledge']}) leaves robust accuracy {ra['value']:.4f} "
                  f"(95% CI {ra['ci'][0]:.4f}-{ra['ci'][1]:.4f}) below the white-box worst case "
                  f"{wb['value']:.4f}: the white-box attacks are too weak for this victim")  # fmt: skip


def _worst_curves(
    df: pd.DataFrame, cells: pd.DataFrame
) -> list[tuple[tuple, list[dict[str, Any]], list[str]]]:
    out = []
    for (family, victim, defense), g in cells.groupby(["family", "victim", "defense"], sort=True):
        if g["eps"].isna().any() or g["threat"].nunique() < 2:
            continue
        common = sorted(set.intersection(*(set(s) for _, s in g.groupby("threat")["attack_key"])))
        if len(common) < 2:
            continue
        keys = set(g.index[g["attack_key"].isin(common)])
        wc = _per_sample_worst(df[df["cell_key"].isin(keys)])
        eps = g.groupby("threat")["eps"].first()
        pts = [
            {
                "eps": float(eps[t]),
                "threat": t,
                "robust_accuracy": proportion(*_kn(wc, (victim, defense, t))),
            }
            for t in sorted(eps.index)
        ]
        out.append(((family, victim, defense, WORST), pts, common))
    return out


def _transfer_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The transfer rows of a prepared frame, with ``target`` = the victim row (``victim+defense``
    when defended)."""
    tr = df[df["surrogate"] != ""]
    return tr.assign(
        target=tr["victim"].where(tr["defense"] == "none", tr["victim"] + "+" + tr["defense"])
    )


def transfer_matrices(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (threat, transfer attack): surrogate x victim success rate over the eligible samples.

    Victims with a defense are labelled ``victim+defense``. Returns dicts with ``threat``,
    ``attack``, ``surrogates`` (rows), ``victims`` (columns) and ``success_rate`` (rows x columns of
    ``{"value", "n", "ci"}`` or None where the pair was not run)."""
    tr = _transfer_rows(df)
    if tr.empty:
        return []
    sums = tr.groupby(["threat", "attack", "surrogate", "target"], sort=True).agg(
        k=("success", "sum"), n=("eligible", "sum")
    )
    out = []
    for (threat, attack), g in sums.groupby(level=["threat", "attack"], sort=True):
        g = g.droplevel(["threat", "attack"])
        rows = sorted(g.index.get_level_values("surrogate").unique())
        cols = sorted(g.index.get_level_values("target").unique())
        mat = [
            [proportion(*g.loc[(s, v), ["k", "n"]]) if (s, v) in g.index else None for v in cols]
            for s in rows
        ]
        diag = [[r, c] for r, s in enumerate(rows) for c, v in enumerate(cols)
                if v.split("+")[0] in s.split("+")]  # fmt: skip
        off = [
            (s, v)
            for s in rows
            for v in cols
            if (s, v) in g.index and [rows.index(s), cols.index(v)] not in diag
        ]
        k_off = sum(int(g.loc[p, "k"]) for p in off)
        n_off = sum(int(g.loc[p, "n"]) for p in off)
        out.append(
            {
                "threat": threat,
                "attack": attack,
                "surrogates": rows,
                "victims": cols,
                "success_rate": mat,
                "diagonal": diag,
                "off_diagonal": proportion(k_off, n_off),
            }
        )
    units = transfer_units(tr)
    for m in out:
        if m["attack"] != TRANSFER_REFERENCE:
            m["vs_reference"] = paired_comparison(units, m["threat"], m["attack"])
    return out


def eps_curves(
    df: pd.DataFrame, cells: pd.DataFrame, entries: dict[tuple, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Robust accuracy against eps for threat models of one family; flags non-monotone curves.

    Returns dicts ``{"family", "victim", "defense", "attack", "suite", "points": [{"eps", "threat",
    "robust_accuracy"}]}`` sorted by eps, for every (family, victim, defense, attack key) with at
    least two eps values, plus ``attack == "worst-case"``: the per-sample worst case over ``suite``,
    the attack keys run at EVERY eps of the family (at least two of them), so that the curve compares
    the same suite at each eps (an eps sweep of one attack must not look like a weaker suite)."""
    series: dict[tuple, list[dict[str, Any]]] = {}
    for _, c in cells.iterrows():
        eps = _num(c["eps"])
        if eps is None:
            continue
        key = (c["family"], c["victim"], c["defense"], c["attack_key"])
        series.setdefault(key, []).append(
            {
                "eps": eps,
                "threat": c["threat"],
                "robust_accuracy": proportion(c["k_robust"], c["n"]),
            }
        )
    suites: dict[tuple, list[str]] = {}
    for key, pts, suite in _worst_curves(df, cells):
        series[key] = pts
        suites[key] = suite
    out = []
    for (family, victim, defense, attack), pts in sorted(series.items()):
        if len({p["eps"] for p in pts}) < 2:
            continue
        pts.sort(key=lambda p: (p["eps"], p["threat"]))
        suite = suites.get((family, victim, defense, attack), [attack])
        out.append({"family": family, "victim": victim, "defense": defense, "attack": attack,
                    "suite": suite, "points": pts})  # fmt: skip
        for j, hi in enumerate(pts):
            b = hi["robust_accuracy"]
            for lo in pts[:j]:
                a = lo["robust_accuracy"]
                if (
                    hi["eps"] > lo["eps"]
                    and a["value"] is not None
                    and b["value"] is not None
                    and b["ci"][0] > a["value"]
                ):
                    _flag(entries[(victim, defense, hi["threat"])], "non-monotone-eps",
                          f"{attack}: robust accuracy rises from {a['value']:.4f} at eps {lo['eps']:g} to "
                          f"{b['value']:.4f} (95% CI {b['ci'][0]:.4f}-{b['ci'][1]:.4f}) at eps {hi['eps']:g}; "
                          "the attack does not converge at the larger eps")  # fmt: skip
                    break
    return out
