"""How fragile is a world? White-box success against ε and iterations, and the clean logit margins.

:func:`measure` is the core of ``robench fragility VICTIM...``: for each victim it takes the first
``n`` correctly classified test clips (as ``robench attack`` does), records their clean logit margin
``z_y - max_{j≠y} z_j`` (quantiles), and runs every (attack, ε, iteration count) combination on them
with the registered white-box attacks (``pgd``, ``bim`` = I-FGSM, ...), each returned batch verified
against the threat model. A row is the success rate with its 95% Wilson interval.

``early_stop`` (default on) passes the ``early_stop`` option of BIM, PGD and the TASAR benchmark's
iterative ``tasar-fgsm`` / ``tasar-mifgsm``: a clip leaves the batch at the
first iterate that fools the victim and that iterate is judged, so a row reads "fooled at some
iterate ≤ steps". That is never below the final-iterate rate and is the convention of the TASAR
benchmark code; on a fragile victim it costs a fraction of the gradients. ``early_stop=False``
judges the final iterate, as a board does. Attacks without the option (``mifgsm``, ...) always
judge their final iterate; each row records ``early_stop_applied``.

Long measurements resume: with ``out`` every finished row is written at once (atomically) to that
JSON file, and a later call with the same file skips the rows it already holds (a row is keyed by
victim, weights, data set fingerprint, attack, ε, steps, n, seed and early stop). A file belongs to
one setup (data set fingerprint, n, seed, early stop) and each victim label to one set of weights:
a call that differs is refused, naming the field, so rows of two setups never mix in one table.
Two measurements may write one file at the same time: each write merges what is on disk.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robench.access import WhiteBox
from robench.attack import ATTACKS, create_attack
from robench.data import SkeletonSet
from robench.errors import ConfigError, DataError, ThreatViolation
from robench.io import atomic_write_text
from robench.run.metrics import _margin, wilson_interval
from robench.run.oneoff import _attack_overrides, _first_correct
from robench.threat import ThreatModel

FORMAT = "robench.fragility/1"
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def margin_quantiles(margins: torch.Tensor) -> dict[str, float]:
    """Quantiles (10, 25, 50, 75, 90 %) and mean of a 1-d tensor of clean logit margins."""
    m = margins.double()
    q = torch.quantile(m, torch.tensor(QUANTILES, dtype=torch.float64))
    return {**{f"q{round(100 * p)}": float(v) for p, v in zip(QUANTILES, q, strict=True)},
            "mean": float(m.mean())}  # fmt: skip


def linear_radius(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean logit margins, linearised L∞ flip radii) of clips ``x``: the margin
    ``μ = z_y - max_{j≠y} z_j`` and ``μ / ‖∇_x μ‖₁`` (data units), the L∞ radius at which the margin's
    first-order expansion reaches zero (exact for a linear model while the runner-up class does not
    change). A radius far below ε says the victim is locally steep; far above, that an attack
    within ε needs the model's curvature."""
    margins, radii = [], []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            mu = _margin(model(xb), y[i : i + batch_size])
            (g,) = torch.autograd.grad(mu.sum(), xb)
        margins.append(mu.detach())
        radii.append(mu.detach() / g.abs().flatten(1).sum(1).clamp_min(1e-12))
    return torch.cat(margins), torch.cat(radii)


def _row_key(row: dict[str, Any]) -> tuple:
    return tuple(
        row[k]
        for k in ("victim", "weights", "data", "attack", "eps", "steps", "n", "seed", "early_stop")
    )


def _load(out: Path | None) -> dict[str, Any]:
    if out is None or not out.exists():
        return {"format": FORMAT, "victims": {}, "rows": []}
    try:
        doc = json.loads(out.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"expected a robench fragility JSON file, got unreadable {out}: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(
            f"expected format {FORMAT!r}, got {doc.get('format') if isinstance(doc, dict) else doc!r}"
            f" in {out} field 'format' (not overwritten)"
        )
    return doc


def _save(out: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``out`` merged with what another process wrote there meanwhile (rows by key,
    victims by label), under an advisory lock (``out.lock``), atomically: two measurements into one
    file never lose each other's rows."""
    import fcntl

    with open(f"{out}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        disk = _load(out)
        keys = {_row_key(r) for r in doc["rows"]}
        doc["rows"][:0] = [r for r in disk["rows"] if _row_key(r) not in keys]
        doc["victims"] = {**disk["victims"], **doc["victims"]}
        atomic_write_text(out, json.dumps(doc, indent=1) + "\n")


def _same_setup(doc: dict[str, Any], setup: dict[str, Any], out: Path | None) -> None:
    old = doc.setdefault("setup", setup)
    for key, value in setup.items():
        if old.get(key) != value:
            raise DataError(
                f"expected {key} = {old.get(key)!r} (the setup of {out}), got {value!r} in field "
                f"'setup.{key}' (write to another -o file)"
            )


def _check_list(values: Sequence, field: str, kind: type) -> None:
    if not values:
        raise ConfigError(f"expected at least one value, got none in option {field!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, kind) or not v > 0:
            raise ConfigError(f"expected positive values, got {v!r} in option {field!r}")


def measure(
    victims: dict[str, nn.Module],
    dataset: SkeletonSet,
    eps: Sequence[float] = (0.005, 0.01, 0.02),
    steps: Sequence[int] = (10, 50, 200),
    attacks: Sequence[str] = ("pgd", "bim"),
    n: int = 300,
    seed: int = 0,
    early_stop: bool = True,
    batch_size: int = 64,
    out: Path | None = None,
    weights: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure every (victim, attack, ε, steps) row; returns ``{format, victims, rows}``.

    ``victims`` maps a label to a model; ``weights`` optionally maps the label to the sha256 of its
    checkpoint (part of the resume key). ``victims[label]`` in the result holds the clean accuracy
    over the scanned test clips and the margin quantiles of the ``n`` attacked ones.
    """
    _check_list(list(eps), "eps", (int, float))
    _check_list(list(steps), "steps", int)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"expected an integer >= 1, got {n!r} in option 'n'")
    doc = _load(out)
    done = {_row_key(r) for r in doc["rows"]}
    data = dataset.fingerprint()
    _same_setup(doc, {"data": data, "n": n, "seed": seed, "early_stop": early_stop}, out)
    threat_base = {"unit": dataset.unit, "topology": dataset.topology}
    for label, model in victims.items():
        model.eval()
        pick, scanned, correct = _first_correct(model, dataset.x, dataset.y, n, batch_size)
        if pick.numel() < n:
            raise DataError(
                f"expected {n} correctly classified test clips, got {pick.numel()} of "
                f"{len(dataset)} for victim {label!r} (lower --n)"
            )
        x, y = dataset.x[pick], dataset.y[pick]
        margins, radii = linear_radius(model, x, y, batch_size)
        sha = (weights or {}).get(label, "")
        known = doc["victims"].get(label)
        if known is not None and known.get("weights") != sha:
            raise DataError(
                f"expected weights {known.get('weights')!r} for victim {label!r} (as in {out}), got "
                f"{sha!r} in field 'victims.{label}.weights' (write to another -o file)"
            )
        doc["victims"][label] = {
            "weights": sha,
            "clean_accuracy": correct / scanned,
            "n_scanned": scanned,
            "margin": margin_quantiles(margins),
            "linear_radius": margin_quantiles(radii),
        }
        if out is not None:
            _save(out, doc)
        for attack_name in attacks:
            for s in steps:
                for e in eps:
                    row = {
                        "victim": label,
                        "weights": (weights or {}).get(label, ""),
                        "data": data,
                        "attack": attack_name,
                        "eps": float(e),
                        "steps": int(s),
                        "n": n,
                        "seed": seed,
                        "early_stop": early_stop,
                    }
                    if _row_key(row) in done:
                        continue
                    if progress:
                        progress(f"{label}: {attack_name}-{s} at eps {e:g} on {n} clips")
                    row.update(_run(model, x, y, attack_name, float(e), int(s), seed,
                                    early_stop, batch_size, threat_base))  # fmt: skip
                    doc["rows"].append(row)
                    done.add(_row_key(row))
                    if out is not None:
                        _save(out, doc)
    if out is not None:
        _save(out, doc)
    return doc


def _run(model, x, y, attack_name, eps, steps, seed, early_stop, batch_size, threat_base):
    options = _attack_overrides(attack_name, steps)
    fields = {f.name for f in dataclasses.fields(ATTACKS.get(attack_name).Config)}
    stopped = early_stop and "early_stop" in fields
    if stopped:
        options["early_stop"] = True
    attack = create_attack(attack_name, **options)
    threat = ThreatModel(norm="linf", eps=eps, **threat_base)
    generator = torch.Generator().manual_seed(seed)
    fooled = []
    start = time.perf_counter()
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        x_adv = attack(WhiteBox(model), xb, yb, threat, generator)
        violations = threat.check(xb, x_adv)
        if violations:
            raise ThreatViolation(f"attack {attack_name!r} left the threat model: {violations[0]}")
        with torch.inference_mode():
            fooled.append(model(x_adv).argmax(1) != yb)
    k = int(torch.cat(fooled).sum())
    lo, hi = wilson_interval(k, x.shape[0])
    return {
        "early_stop_applied": stopped,
        "successes": k,
        "success_rate": k / x.shape[0],
        "ci_low": lo,
        "ci_high": hi,
        "seconds": round(time.perf_counter() - start, 2),
    }


def table(doc: dict[str, Any], unit_cm: float = 100.0) -> str:
    """Markdown: one row per (victim, attack, steps), one column per ε (cm), plus the margins.
    Rows come grouped by victim (in the file's order of victims), then attack and steps ascending,
    whatever order the measurements landed in."""
    rows = doc["rows"]
    eps = sorted({r["eps"] for r in rows})
    head = (
        "| victim | attack | steps | " + " | ".join(f"ε = {e * unit_cm:g} cm" for e in eps) + " |"
    )
    lines = [head, "|" + "---|" * (3 + len(eps))]
    groups: dict[tuple, dict[float, dict]] = {}
    for r in rows:
        groups.setdefault((r["victim"], r["attack"], r["steps"]), {})[r["eps"]] = r
    order = {v: i for i, v in enumerate(doc["victims"])}
    for victim, attack, steps in sorted(groups, key=lambda k: (order.get(k[0], len(order)), *k)):
        by_eps = groups[(victim, attack, steps)]
        cells = [
            f"{100 * by_eps[e]['success_rate']:.1f} [{100 * by_eps[e]['ci_low']:.0f}, "
            f"{100 * by_eps[e]['ci_high']:.0f}]"
            if e in by_eps
            else "—"
            for e in eps
        ]
        lines.append(f"| {victim} | {attack} | {steps} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| victim | clean acc. | margin q10 | q25 | median | q75 | q90 | linear flip radius "
        "q10 / median / q90 (cm) |",
        "|" + "---|" * 8,
    ]
    for victim, v in doc["victims"].items():
        m = v["margin"]
        r = v.get("linear_radius")
        radius = " / ".join(f"{unit_cm * r[k]:.2f}" for k in ("q10", "q50", "q90")) if r else "—"
        lines.append(
            f"| {victim} | {100 * v['clean_accuracy']:.1f} | "
            + " | ".join(f"{m[k]:.2f}" for k in ("q10", "q25", "q50", "q75", "q90"))
            + f" | {radius} |"
        )
    return "\n".join(lines)
