"""``robench.evaluate``: the white-box attack suite on your own model and tensors, in one call.

AutoAttack-style: each attack runs on every clip the model classifies correctly, every returned
batch is checked against the threat model independently of the attack (a violation raises
:class:`~robench.errors.ThreatViolation`), and the **worst case** counts a clip as robust only if it
is classified correctly on clean input and survives every attack::

    import robench
    res = robench.evaluate(robench.create_victim("stgcn.synth_ntu25"), x, y, threat="linf:0.01")
    print(res.robust_accuracy, res.per_attack)

The numbers are the harness's: for the same attack config, subset, batch size and generator seed,
each attack's per-sample outcome equals that of a benchmark cell (the harness seeds a cell's
generator with ``robench.run.cells.derive_seed(cell.seed, cell.key)``; here ``seed`` is that
generator's seed). Unlike the harness, the attack runs in this process: this is for evaluating a
model you own, not for scoring plugins you do not trust.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from robench.access import Knowledge, WhiteBox
from robench.attack import Attack, create_attack
from robench.data.dataset import SkeletonSet
from robench.errors import ConfigError, DataError, ThreatViolation
from robench.run.metrics import sample_metrics, wilson_interval
from robench.threat import ThreatModel

DEFAULT_ATTACKS: tuple[str, ...] = ("fgsm", "pgd", "apgd-ce")
"""The suite :func:`evaluate` runs when ``attacks`` is not given (each at its own defaults)."""

SAMPLE_COLUMNS = (
    "clean_pred", "adv_pred", "success", "margin_clean", "margin_adv",
    "linf", "l2", "joint_disp_cm", "bone_dev_pct", "accel_dev",
)  # fmt: skip


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured.

    ``samples``: one row per (attack, clip): ``attack``, ``index`` (position in ``x``), ``label``,
    ``clean_correct``, ``robust`` (correct on clean input and not fooled by this attack) and the
    per-sample metrics (``adv_pred``, ``success``, margins, ``linf``, ``l2``, ``joint_disp_cm``,
    ``bone_dev_pct``, ``accel_dev``). ``robust``: (N,) bool, the per-clip worst case over all
    attacks. ``x_adv``: attack name -> adversarial tensor (clean where the attack was not run).
    """

    threat: ThreatModel
    attacks: dict[str, dict[str, Any]]
    clean_correct: torch.Tensor
    robust: torch.Tensor
    samples: pd.DataFrame
    x_adv: dict[str, torch.Tensor] = field(repr=False)

    @property
    def n(self) -> int:
        return int(self.clean_correct.numel())

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.float().mean()) if self.n else float("nan")

    @property
    def robust_accuracy(self) -> float:
        """Worst case: the fraction of clips correct on clean input and robust to every attack."""
        return float(self.robust.float().mean()) if self.n else float("nan")

    @property
    def per_attack(self) -> dict[str, float]:
        """Attack name -> robust accuracy under that attack alone."""
        return {k: a["robust_accuracy"] for k, a in self.attacks.items()}

    def summary(self) -> str:
        """A small table: clean, each attack and the worst case, in % with 95% Wilson intervals."""

        def row(name: str, k: int) -> str:
            lo, hi = wilson_interval(k, self.n)
            return f"{name:<16} {100 * k / max(1, self.n):5.1f}%  [{100 * lo:.1f}, {100 * hi:.1f}]"

        lines = [f"threat {self.threat.name}, n = {self.n} clips", "attack           robust"]
        lines.append(row("clean", int(self.clean_correct.sum())))
        lines += [row(k, a["robust"]) for k, a in self.attacks.items()]
        lines.append(row("worst case", int(self.robust.sum())))
        return "\n".join(lines)


def parse_threat(
    threat: ThreatModel | str | float | dict[str, Any], model: nn.Module
) -> ThreatModel:
    """A ThreatModel from ``"linf:0.01"`` / ``"l2:0.05"``, a bare number (L∞ radius), a dict of
    ThreatModel fields or a ThreatModel; the topology defaults to the model's (``model.topology``)."""
    if isinstance(threat, ThreatModel):
        return threat
    topo = getattr(model, "topology", None)
    base: dict[str, Any] = {"topology": topo} if topo is not None else {}
    if isinstance(threat, dict):
        return ThreatModel.from_dict({**base, **threat}, source="'threat'")
    if isinstance(threat, bool):
        raise ConfigError(
            f"expected 'NORM:EPS', a number or a ThreatModel, got {threat!r} in 'threat'"
        )
    if isinstance(threat, int | float):
        return ThreatModel(norm="linf", eps=float(threat), **base)
    if isinstance(threat, str) and threat.count(":") == 1:
        norm, eps = threat.split(":")
        try:
            value = float(eps)
        except ValueError:
            raise ConfigError(f"expected a number after ':', got {eps!r} in 'threat'") from None
        return ThreatModel(norm=norm.strip(), eps=value, **base)
    raise ConfigError(
        f"expected 'NORM:EPS' (e.g. 'linf:0.01'), a number or a ThreatModel, got {threat!r} in 'threat'"
    )


def _build_attacks(attacks: Iterable[Any] | Mapping[str, Any] | None) -> dict[str, Attack]:
    out: dict[str, Attack] = {}
    specs = DEFAULT_ATTACKS if attacks is None else attacks
    pairs = list(specs.items()) if isinstance(specs, Mapping) else [(None, s) for s in specs]
    for given, spec in pairs:
        if isinstance(spec, Attack):
            attack, label = spec, spec.name
        elif isinstance(spec, str):
            attack, label = create_attack(spec), spec
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
            attack, label = create_attack(spec[0], **spec[1]), str(spec[0])
        else:
            raise ConfigError(
                f"expected an attack name, (name, params) or an Attack, got {spec!r} in 'attacks'"
            )
        label = label if given is None else str(given)
        if attack.knowledge is not Knowledge.WHITE_BOX:
            raise ConfigError(
                f"expected white-box attacks, got {attack.knowledge.value} attack {label!r} in "
                "'attacks' (transfer, query and no-box attacks run through a benchmark)"
            )
        if label in out:
            raise ConfigError(
                f"expected distinct attacks, got {label!r} twice in 'attacks' (pass a dict "
                "{label: attack} to run one attack with several configs)"
            )
        out[label] = attack
    if not out:
        raise ConfigError("expected at least one attack, got none in 'attacks'")
    return out


def evaluate(
    model: nn.Module | str,
    x: torch.Tensor | SkeletonSet,
    y: torch.Tensor | None = None,
    attacks: Sequence[Any] | Mapping[str, Any] | None = None,
    threat: ThreatModel | str | float | dict[str, Any] = "linf:0.01",
    *,
    unit: str | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> EvaluationResult:
    """Run white-box ``attacks`` on ``model`` over ``(x, y)`` and return per-sample results.

    ``model``: any module mapping (N, 3, T, V, M) skeletons to logits (a robench victim or your
    own; it is put in eval mode) or a name for :func:`robench.zoo.create_victim`. ``x``, ``y``:
    tensors, or a :class:`~robench.data.SkeletonSet` as ``x`` alone (its labels, unit and topology
    are used). ``attacks``: names (``"pgd"``, ``"torchattacks:PGD"``), ``(name,
    params)`` pairs or :class:`~robench.attack.Attack` objects, or a dict ``{label: any of those}``
    (labels name the results); default :data:`DEFAULT_ATTACKS`.
    ``threat``: see :func:`parse_threat`; ``unit`` (``m``, ``cm``, ``mm``, ...) overrides the threat
    model's unit for the statistics. Each attack gets a fresh generator seeded with ``seed`` and
    runs on the correctly classified clips in batches of ``batch_size``, in order.
    """
    if isinstance(model, str):
        from robench.zoo import create_victim

        model = create_victim(model)
    if isinstance(x, SkeletonSet):
        if y is not None:
            raise DataError(
                "expected y = None with a SkeletonSet (its labels are used) in evaluate"
            )
        if isinstance(threat, ThreatModel):
            if threat.unit != x.unit:
                raise ConfigError(
                    f"expected a threat model in the data's unit {x.unit!r}, got {threat.unit!r} in 'threat'"
                )
        elif not isinstance(threat, bool):
            threat = dataclasses.replace(
                parse_threat(threat, model), unit=x.unit, topology=x.topology
            )
        x, y = x.x, x.y
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise DataError(
            "expected tensors x (N, 3, T, V, M) and y (N,), got other types in evaluate"
        )
    if x.dim() != 5 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise DataError(
            f"expected x (N >= 1, 3, T, V, M) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)} in evaluate"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"expected an integer >= 1, got {batch_size!r} in 'batch_size'")
    tm = parse_threat(threat, model)
    if unit is not None:
        tm = dataclasses.replace(tm, unit=unit)
    suite = _build_attacks(attacks)
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x, y = x.to(device), y.to(device).long()
    n = x.shape[0]
    with torch.inference_mode():
        clean_logits = torch.cat([model(x[i : i + batch_size]) for i in range(0, n, batch_size)])
    correct = clean_logits.argmax(1) == y
    attacked = correct.nonzero().flatten()
    robust = correct.clone()
    frames, results, advs = [], {}, {}
    for label, attack in suite.items():
        gen = torch.Generator(device=device).manual_seed(int(seed))
        x_adv = x.clone()
        for i in range(0, attacked.numel(), batch_size):
            idx = attacked[i : i + batch_size]
            xb = x[idx]
            out = attack(WhiteBox(model), xb, y[idx], tm, gen)
            violations = tm.check(xb, out)
            if violations:
                raise ThreatViolation(
                    f"attack {label!r} left the threat model: " + "; ".join(map(str, violations))
                )
            x_adv[idx] = out.detach()
        with torch.inference_mode():
            adv_logits = clean_logits.clone()
            for i in range(0, attacked.numel(), batch_size):
                idx = attacked[i : i + batch_size]
                adv_logits[idx] = model(x_adv[idx])
        cols = sample_metrics(clean_logits, adv_logits, y, x, x_adv, tm.topology, tm.unit)
        success = correct & (cols["adv_pred"] != y)
        robust_here = correct & ~success
        robust &= robust_here
        k = int(robust_here.sum())
        lo, hi = wilson_interval(k, n)
        results[label] = {
            "attack": attack.name, "config": dataclasses.asdict(attack.config),
            "robust": k, "robust_accuracy": k / n if n else float("nan"), "ci": (lo, hi),
            "successes": int(success.sum()), "eligible": int(correct.sum()),
        }  # fmt: skip
        advs[label] = x_adv
        frame = pd.DataFrame({"attack": label, "index": range(n), "label": y.cpu().numpy()})
        frame["clean_correct"] = correct.cpu().numpy()
        frame["robust"] = robust_here.cpu().numpy()
        cols["success"] = success
        for c in SAMPLE_COLUMNS:
            frame[c] = cols[c].detach().cpu().numpy()
        frames.append(frame)
    return EvaluationResult(
        threat=tm,
        attacks=results,
        clean_correct=correct.cpu(),
        robust=robust.cpu(),
        samples=pd.concat(frames, ignore_index=True),
        x_adv=advs,
    )
