"""Transfer-attack baselines: I-FGSM, MI-FGSM, their SMI-gradient variants, logit ensemble, MIG, DIM
and SVRE.

Every attack here has ``knowledge = TRANSFER``: it reads only ``access.surrogates`` (eval-mode modules
handed over by the harness; the victim is never passed) and computes gradients w.r.t. the input only.
All are untargeted by default and support targets (``targeted=True``: descend ``CE(f(x), t)``), work
under the L∞ (sign steps) and L2 (``α·d/‖d‖₂`` steps) threat models, and call ``threat.project``
after every step, so padding, absent bodies, joint/frame masks and bone constraints always hold.
Gradients are masked by ``threat.allowed_mask(x)`` before any normalisation.

Defaults (``Config`` fields; ε comes from the threat model):

- ``steps = 200``: the iteration count of the TASAR benchmark (Diao et al., ICLR 2025), which is
  where robench's transfer boards come from; the image papers use 10. Benchmarks on CPU override it.
- step sizes are relative: ``α = alpha_factor·ε/steps``. I-FGSM uses 1.25 (the ``~1.25·ε/steps``
  convention of BIM implementations), the momentum attacks 1.0 (``α = ε/T`` of Dong et al. 2018,
  Xie et al. 2019, Xiong et al. 2022, Ma et al. 2023). The TASAR benchmark's copies step ``ε`` per
  iteration (``x ← x − 0.01·sign(N(g))``), which robench does not copy.
- With several surrogates the single-model attacks attack their logit ensemble (mean logits; Dong
  et al., CVPR 2018); ``ensemble`` exposes the fusion rule and weights; SVRE needs the per-model
  gradients and uses their mean.

Departures from the TASAR benchmark's copies (deliberate): DIM back-propagates through the transform
(the benchmark differentiates w.r.t. the already-transformed copy); MIG multiplies by ``(x − b)`` as
integrated gradients require, from a per-channel minimum baseline instead of zeros (centred skeletons
have coordinates of both signs, see :class:`MIG`); SVRE runs the real inner loop (the benchmark's
copy has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from robench.access import Knowledge, Transfer
from robench.attack import Attack, AttackConfig, register_attack
from robench.errors import ConfigError
from robench.ops import transfer as ops
from robench.threat import ThreatModel


def _surrogates(access: Any) -> tuple[torch.nn.Module, ...]:
    return tuple(access.surrogates)


def _check_common(cfg: Any, name: str) -> None:
    src = f"attack {name!r} config"
    ops.require_int(cfg.steps, "steps", src)
    ops.require_float(cfg.alpha_factor, "alpha_factor", src, low_open=True)
    if hasattr(cfg, "decay"):
        ops.require_float(cfg.decay, "decay", src)


def _step(cfg: Any, threat: Any) -> float:
    return cfg.alpha_factor * threat.eps / cfg.steps


def _surrogate_iterate(
    cfg: Any, access: Any, x: Tensor, y: Tensor, threat: Any, target: Tensor | None,
    decay: float, smi: bool = False,
) -> Tensor:  # fmt: skip
    """I-FGSM (``decay = 0``) / MI-FGSM on the fused surrogates' objective gradient; with ``smi``
    the masked gradient goes through the SMI transform of a motion model fitted on the clean
    clip and is accumulated unnormalised (``m ← μ·m + g̃``)."""
    models = _surrogates(access)
    tgt = target if cfg.targeted else None
    grad = lambda z, _t: ops.objective_gradient(models, z, y, tgt)  # noqa: E731
    if smi:
        from robench.ops.motion import fit_tvar

        allowed = threat.allowed_mask(x)
        fit = fit_tvar(x, bandwidth_frac=cfg.bandwidth_frac)
        plain = grad
        grad = lambda z, t: fit.motion_gradient(plain(z, t) * allowed)  # noqa: E731
    return ops.momentum_iterate(
        x, threat, grad, cfg.steps, _step(cfg, threat), decay, normalize=not smi
    )


# ============================================================================ I-FGSM
@dataclass(frozen=True)
class IFGSMConfig(AttackConfig):
    """I-FGSM / BIM (Kurakin et al., ICLR 2017 workshop) from the surrogate(s).

    steps: iterations (TASAR benchmark: 200). alpha_factor: ``α = alpha_factor·ε/steps`` (1.25).
    """

    steps: int = 200
    alpha_factor: float = 1.25

    def __post_init__(self) -> None:
        _check_common(self, "transfer-ifgsm")


@register_attack("transfer-ifgsm")
class TransferIFGSM(Attack):
    """I-FGSM on the surrogate: ``x' ← Π(x' + α·sign(∇ₓ J(f_s(x'))))``, ``J`` = CE (untargeted).

    Shapes: x (N, 3, T, V, M) -> x_adv of the same shape. Starts at the clean x (no random start).
    Several surrogates are fused by mean logits. Paper: Kurakin, Goodfellow, Bengio, "Adversarial
    examples in the physical world", ICLR 2017 workshop; the paper's ``min(ε+4, 1.25ε)`` pixel-unit
    step rule has no meaning in metres, so steps and α follow the TASAR benchmark count and the
    ``1.25·ε/steps`` convention instead.
    """

    knowledge = Knowledge.TRANSFER
    norms = ("linf", "l2")
    randomized = False
    supports_targeted = True
    Config = IFGSMConfig

    def run(
        self,
        access: Transfer,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        generator: torch.Generator,
        target: Tensor | None,
    ) -> Tensor:
        return _surrogate_iterate(self.config, access, x, y, threat, target, 0.0)


# ============================================================================ MI-FGSM
@dataclass(frozen=True)
class MIFGSMConfig(AttackConfig):
    """MI-FGSM (Dong et al., CVPR 2018).

    steps: iterations (200, TASAR benchmark; paper 10). alpha_factor: ``α = alpha_factor·ε/steps``
    (1.0, the paper's ``α = ε/T``). decay: momentum μ (1.0, paper).
    """

    steps: int = 200
    alpha_factor: float = 1.0
    decay: float = 1.0

    def __post_init__(self) -> None:
        _check_common(self, "transfer-mifgsm")


@register_attack("transfer-mifgsm")
class TransferMIFGSM(Attack):
    """MI-FGSM on the surrogate: ``m ← μ·m + g/‖g‖₁``, ``x' ← Π(x' + α·sign(m))``, ``g = ∇ₓ J``.

    Shapes: x (N, 3, T, V, M). Momentum is reset per batch. Several surrogates are fused by mean
    logits. Paper: Dong et al., "Boosting adversarial attacks with momentum", CVPR 2018 (μ = 1,
    α = ε/T, T = 10; robench's default T is the TASAR benchmark's 200).
    """

    knowledge = Knowledge.TRANSFER
    norms = ("linf", "l2")
    randomized = False
    supports_targeted = True
    Config = MIFGSMConfig

    def run(
        self,
        access: Transfer,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        generator: torch.Generator,
        target: Tensor | None,
    ) -> Tensor:
        return _surrogate_iterate(self.config, access, x, y, threat, target, self.config.decay)


# ============================================================================ SMI transfer
@dataclass(frozen=True)
class SMIConfig(MIFGSMConfig):
    """The SMI transfer attacks: MI-FGSM's fields (``decay`` is used by ``transfer-smi-mifgsm``
    only) and ``bandwidth_frac`` of the motion model's fit (0.1, :func:`robench.ops.motion.fit_tvar`)."""

    bandwidth_frac: float = 0.1

    def __post_init__(self) -> None:
        _check_common(self, "transfer-smi")
        ops.require_float(self.bandwidth_frac, "bandwidth_frac", "attack 'transfer-smi' config",
                          low_open=True)  # fmt: skip


class _SMITransfer(Attack):
    """The skeleton-motion-informed gradient inside a surrogate-gradient transfer attack (Lu et al.,
    ICCV 2023, "SMI gradient improves transferability"): the surrogate's input gradient g, masked,
    becomes ``g̃ = ĝ_t + J1_t ⊙ ĝ_{t+1} + J2_t ⊙ ĝ_{t+2}`` (``ĝ = g/mean|g|``; Jacobians of a
    time-varying AR(2) fitted on the clean clip, :mod:`robench.ops.motion`, the module TASAR and the
    no-box attacks share); ``transfer-smi-ifgsm`` steps ``sign(g̃)``, ``transfer-smi-mifgsm``
    accumulates ``m ← μ·m + g̃`` and steps ``sign(m)``."""

    knowledge = Knowledge.TRANSFER
    norms = ("linf", "l2")
    randomized = False
    supports_targeted = True
    Config = SMIConfig
    momentum = False

    def run(
        self,
        access: Transfer,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        generator: torch.Generator,
        target: Tensor | None,
    ) -> Tensor:
        decay = self.config.decay if self.momentum else 0.0
        return _surrogate_iterate(self.config, access, x, y, threat, target, decay, smi=True)


@register_attack("transfer-smi-ifgsm")
class TransferSMIIFGSM(_SMITransfer):
    """I-FGSM on the SMI gradient of the surrogate (α = ε/steps; see :class:`_SMITransfer`)."""


@register_attack("transfer-smi-mifgsm")
class TransferSMIMIFGSM(_SMITransfer):
    """MI-FGSM (μ = 1) on the SMI gradient of the surrogate (see :class:`_SMITransfer`)."""

    momentum = True


# ============================================================================ ensemble
@dataclass(frozen=True)
class EnsembleConfig(AttackConfig):
    """Ensemble MI-FGSM (Dong et al., CVPR 2018 §3.2; Liu et al., ICLR 2017).

    fusion: ``logits`` (default, the paper's choice), ``probs`` or ``loss``. weights: one per
    surrogate (normalised to sum 1), ``None`` = equal. steps/alpha_factor/decay as MI-FGSM.
    """

    steps: int = 200
    alpha_factor: float = 1.0
    decay: float = 1.0
    fusion: str = "logits"
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _check_common(self, "ensemble")
        src = "attack 'ensemble' config"
        if self.fusion not in ops.FUSIONS:
            raise ConfigError(
                f"expected fusion in {ops.FUSIONS}, got {self.fusion!r} in {src} field 'fusion'"
            )
        if self.weights is not None:
            ws = tuple(self.weights)
            for w in ws:
                ops.require_float(w, "weights", src)
            if not ws or sum(ws) <= 0:
                raise ConfigError(
                    f"expected weights with a positive sum, got {ws!r} in {src} field 'weights'"
                )
            object.__setattr__(self, "weights", tuple(float(w) for w in ws))


@register_attack("ensemble")
class Ensemble(Attack):
    """MI-FGSM on a fused ensemble of all surrogates: ``J(Σ_k w_k f_k(x))`` (logit fusion).

    Same update as MI-FGSM with ``g = ∇ₓ J`` of the fused ensemble. Papers: Liu, Chen, Liu, Song,
    "Delving into transferable adversarial examples and black-box attacks", ICLR 2017 (ensembles);
    Dong et al., CVPR 2018 (logit fusion, with momentum). With one surrogate it equals MI-FGSM. A
    weights tuple whose length differs from the number of surrogates raises ConfigError at run time.
    ``ensemble = True``: in a benchmark it receives every declared surrogate in one generation.
    """

    knowledge = Knowledge.TRANSFER
    norms = ("linf", "l2")
    randomized = False
    supports_targeted = True
    ensemble = True
    Config = EnsembleConfig

    def run(
        self,
        access: Transfer,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        generator: torch.Generator,
        target: Tensor | None,
    ) -> Tensor:
        models = _surrogates(access)
        cfg = self.config
        tgt = target if cfg.targeted else None
        ops.ensemble_weights(models, cfg.weights)  # a length mismatch raises before any work
        return ops.momentum_iterate(
            x,
            threat,
            lambda z, _t: ops.objective_gradient(models, z, y, tgt, cfg.fusion, cfg.weights),
            cfg.steps,
            _step(cfg, threat),
            cfg.decay,
        )


# ============================================================================ MIG
@dataclass(frozen=True)
class MIGConfig(AttackConfig):
    """MIG (Ma et al., ICCV 2023).

    steps: iterations (200, TASAR benchmark; paper 10–25). alpha_factor: ``α = alpha_factor·ε/steps``
    (1.0, paper ``α = ε/T``). decay: μ (1.0). ig_steps: path points s of the Riemann sum (20, the
    official code and the TASAR benchmark). baseline: ``min`` (default) or ``zeros``, see :class:`MIG`.
    """

    steps: int = 200
    alpha_factor: float = 1.0
    decay: float = 1.0
    ig_steps: int = 20
    baseline: str = "min"

    def __post_init__(self) -> None:
        _check_common(self, "mig")
        src = "attack 'mig' config"
        ops.require_int(self.ig_steps, "ig_steps", src)
        if self.baseline not in ops.IG_BASELINES:
            raise ConfigError(
                f"expected baseline in {ops.IG_BASELINES}, got {self.baseline!r} in {src} field 'baseline'"
            )


@register_attack("mig")
class MIG(Attack):
    """Momentum integrated gradients: MI-FGSM whose gradient is the integrated gradient of the
    surrogate's softmax output.

    ``f(z) = −softmax(F(z))_y`` (untargeted; ``+softmax(F(z))_t`` targeted), F the fused surrogate
    logits; ``IG(x') = (x' − b) ⊙ (1/s) Σ_{i=1..s} ∇f(b + (i/s)(x' − b))``;
    ``m ← μ·m + IG/‖IG‖₁``; ``x' ← Π(x' + α·sign(m))``. Cost: s forward/backward passes per step.
    Paper: Ma, Xu, Zhang, Tan, "Transferable adversarial attack for both vision transformers and
    convolutional networks via momentum integrated gradients", ICCV 2023.

    Baseline (departure): the paper's baseline is the black image, i.e. the *minimum* of the input
    range, so ``x − b ≥ 0`` and ``sign(IG) = sign(path-averaged gradient)``. Skeletons are centred
    coordinates of both signs: with ``b = 0`` the factor ``x − b`` flips the step on every negative
    coordinate and the attack climbs the wrong way on half of them. robench's default ``min`` takes
    ``b`` per sample and channel as the minimum coordinate of the current iterate over present
    (frame, body) slots (padding stays 0 along the path), the skeleton analogue of black; ``zeros``
    is the literal zero baseline (path = the skeleton scaled towards the origin). Also, ∇f is taken
    at each path point (the TransferAttack/TASAR copies differentiate w.r.t. x', adding a factor
    i/s; the TASAR copy also drops the ``(x' − b)`` factor).
    """

    knowledge = Knowledge.TRANSFER
    norms = ("linf", "l2")
    randomized = False
    supports_targeted = True
    Config = MIGConfig

    def run(
        self,
        access: Transfer,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        generator: torch.Generator,
        target: Tensor | None,
    ) -> Tensor:
        models = _surrogates(access)
        cfg = self.config
        labels = target if cfg.targeted else y
        sign = 1.0 if cfg.targeted else -1.0
        present = ops.presence_float(x)

        def prob(z: Tensor) -> Tensor:
            rep = z.shape[0] // labels.shape[0]
            p = ops.fused_logits(models, z).softmax(1)
            return sign * p.gather(1, labels.repeat(rep).view(-1, 1)).squeeze(1)

        def grad(z: Tensor, _t: int) -> Tensor:
            return ops.integrated_gradient(
                prob, z, ops.ig_baseline(z, present, cfg.baseline), cfg.ig_steps
            )

        return ops.momentum_iterate(x, threat, grad, cfg.steps, _step(cfg, threat), cfg.decay)


# ============================================================================ DIM
@dataclass(frozen=True)
class DIMConfig(AttackConfig):
    """DIM (Xie et al., CVPR 2019) with the TASAR benchmark's skeleton transforms.

    steps/alpha_factor/decay as MI-FGSM (M-DI²-FGSM, μ = 1). prob: probability p of transforming a
    sample in an iteration (0.5, paper). crop_min: shortest temporal crop as a fraction of the valid
    frames (0.95: 57–60 of 60 in the benchmark). shear: off-diagonal shear amplitude (1.0, the
    benchmark's ``U[−1, 1]``). corrupt_frac: per-joint probability of corruption (0.45 ≈ the
    benchmark's 15 draws with replacement out of 25 joints, 11.4 distinct on average).
    """

    steps: int = 200
    alpha_factor: float = 1.0
    decay: float = 1.0
    prob: float = 0.5
    crop_min: float = 0.95
    shear: float = 1.0
    corrupt_frac: float = 0.45

    def __post_init__(self) -> None:
        _check_common(self, "dim")
        src = "attack 'dim' config"
        ops.require_float(self.prob, "prob", src, high=1.0)
        ops.require_float(self.crop_min, "crop_min", src, high=1.0, low_open=True)
        ops.require_float(self.shear, "shear", src)
        ops.require_float(self.corrupt_frac, "corrupt_frac", src, high=1.0)


def diverse_inputs(
    x: Tensor, present: Tensor, valid: Tensor, generator: torch.Generator, cfg: DIMConfig
) -> Tensor:
    """DIM's random input-diversity transform T(x), differentiable in ``x``.

    Per sample, with probability ``cfg.prob``: a temporal crop of the valid frames resized back
    (:func:`robench.ops.transfer.temporal_crop_resize`), then with probability 1/2 a random shear of
    the coordinates, else a random joint corruption; otherwise the identity. ``present``/``valid``
    come from the clean batch. All draws are taken from ``generator`` (a fixed number per call);
    with ``prob = 0`` the input is returned unchanged and nothing is drawn.
    """
    n, _, _, v, _ = x.shape
    if cfg.prob <= 0:
        return x
    apply = ops.uniform((n,), generator, x.device) < cfg.prob
    start, length = ops.random_crop_window(valid, cfg.crop_min, generator)
    use_shear = ops.uniform((n,), generator, x.device) < 0.5
    shear_m = ops.random_shear_matrices(n, cfg.shear, generator, x)
    joints, zero, mats = ops.random_joint_corruption(n, v, cfg.corrupt_frac, generator, x)
    xt = ops.temporal_crop_resize(x, start, length, valid, present)
    xt = torch.where(
        use_shear.view(n, 1, 1, 1, 1),
        ops.shear(xt, shear_m),
        ops.joint_corruption(xt, joints, zero, mats),
    )
    return torch.where(apply.view(n, 1, 1, 1, 1), xt, x)


@register_attack("dim")
class DIM(Attack):
    """Diverse-inputs MI-FGSM: ``g = ∇ₓ J(f(T(x')))`` back-propagated through the random transform T
    (:func:`diverse_inputs`), ``m ← μ·m + g/‖g‖₁``, ``x' ← Π(x' + α·sign(m))``.

    Paper: Xie et al., "Improving transferability of adversarial examples with input diversity",
    CVPR 2019 (random resize-and-pad with p = 0.5; M-DI²-FGSM with μ = 1). Skeleton adaptation of
    the TASAR benchmark (Diao et al., ICLR 2025): temporal crop-and-resize plus shear or joint
    corruption. Departures from that benchmark: the transform is applied with probability p per
    sample (the benchmark always crops, per batch), gradients flow through it (the benchmark takes
    them w.r.t. the transformed copy), crops are of each clip's valid frames rather than a fixed 60,
    and padding/absent bodies are never interpolated into. ``prob = 0`` is exactly MI-FGSM.
    """

    knowledge = Knowledge.TRANSFER
    norms = ("linf", "l2")
    randomized = True
    supports_targeted = True
    Config = DIMConfig

    def run(
        self,
        access: Transfer,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        generator: torch.Generator,
        target: Tensor | None,
    ) -> Tensor:
        models = _surrogates(access)
        cfg = self.config
        tgt = target if cfg.targeted else None
        present = ops.presence_float(x)
        valid = ops.valid_lengths(x)

        def grad(z: Tensor, _t: int) -> Tensor:
            def objective(zr: Tensor) -> Tensor:
                zt = diverse_inputs(zr, present, valid, generator, cfg)
                return ops.ensemble_objective(models, zt, y, tgt)

            return ops.input_gradient(objective, z)

        return ops.momentum_iterate(x, threat, grad, cfg.steps, _step(cfg, threat), cfg.decay)


# ============================================================================ SVRE
@dataclass(frozen=True)
class SVREConfig(AttackConfig):
    """SVRE (Xiong et al., CVPR 2022).

    steps: outer iterations T (200, TASAR benchmark; paper 10). alpha_factor: outer
    ``α = alpha_factor·ε/steps`` (1.0). inner_steps: M (None = 4·K, K surrogates, the paper's
    choice). inner_alpha_factor: inner ``β = inner_alpha_factor·ε/steps`` (1.0: β = α, paper).
    decay / inner_decay: μ₁ / μ₂ (1.0 / 1.0, paper).
    """

    steps: int = 200
    alpha_factor: float = 1.0
    decay: float = 1.0
    inner_steps: int | None = None
    inner_alpha_factor: float = 1.0
    inner_decay: float = 1.0

    def __post_init__(self) -> None:
        _check_common(self, "svre")
        src = "attack 'svre' config"
        if self.inner_steps is not None:
            ops.require_int(self.inner_steps, "inner_steps", src)
        ops.require_float(self.inner_alpha_factor, "inner_alpha_factor", src, low_open=True)
        ops.require_float(self.inner_decay, "inner_decay", src)


@register_attack("svre")
class SVRE(Attack):
    """Stochastic variance-reduced ensemble attack (SVRE), with the real inner loop.

    Outer iteration t: ``∇J_k(x_t)`` for every surrogate k and ``G_ens = (1/K) Σ_k ∇J_k(x_t)``
    (loss-ensemble gradient, so that the estimator below is unbiased). Inner loop, ``x̃_0 = x_t``,
    ``G̃_0 = 0``, m = 0..M−1: draw k uniformly (one per batch and step, from the generator),
    ``g_m = ∇J_k(x̃_m) − (∇J_k(x_t) − G_ens)`` (:func:`robench.ops.transfer.svre_inner_gradient`),
    ``G̃ ← μ₂·G̃ + g_m/‖g_m‖₁``, ``x̃ ← Π(x̃ + β·sign(G̃))``. Outer update:
    ``G ← μ₁·G + G̃_M/‖G̃_M‖₁``, ``x_{t+1} = Π(x_t + α·sign(G))``. Cost per outer step: K + M
    gradient evaluations. Paper: Xiong, Lin, Zhang, Wang, "Stochastic variance reduced ensemble
    adversarial attack for boosting the adversarial transferability", CVPR 2022.

    With a single surrogate the correction vanishes (``g_m = ∇J(x̃_m)``): each outer step runs M
    MI-FGSM steps of size β from x_t and moves x_t along their accumulated momentum (a look-ahead
    MI-FGSM); the draws of k are still taken so results stay comparable across ensembles.
    """

    knowledge = Knowledge.TRANSFER
    norms = ("linf", "l2")
    randomized = True
    supports_targeted = True
    ensemble = True
    Config = SVREConfig

    def run(
        self,
        access: Transfer,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        generator: torch.Generator,
        target: Tensor | None,
    ) -> Tensor:
        models = _surrogates(access)
        cfg = self.config
        tgt = target if cfg.targeted else None
        k_models = len(models)
        inner = cfg.inner_steps if cfg.inner_steps is not None else 4 * k_models
        alpha = _step(cfg, threat)
        beta = cfg.inner_alpha_factor * threat.eps / cfg.steps
        allowed = threat.allowed_mask(x)
        x_adv = x.detach().clone()
        outer_m = torch.zeros_like(x)
        for _ in range(cfg.steps):
            anchors = [
                ops.input_gradient(lambda z, m=m: ops.attack_objective(m(z), y, tgt), x_adv)
                * allowed
                for m in models
            ]
            g_ens = torch.stack(anchors).mean(0)
            ks = torch.randint(
                k_models, (inner,), generator=generator, device=generator.device
            ).tolist()
            x_in = x_adv.clone()
            inner_m = torch.zeros_like(x)
            for k in ks:
                g = ops.svre_inner_gradient(models[k], x_in, y, tgt, anchors[k], g_ens) * allowed
                inner_m = cfg.inner_decay * inner_m + ops.l1_normalize(g)
                x_in = threat.project(x, ops.ascent_step(x_in, inner_m, beta, threat.norm)).detach()
            outer_m = cfg.decay * outer_m + ops.l1_normalize(inner_m)
            x_adv = threat.project(x, ops.ascent_step(x_adv, outer_m, alpha, threat.norm)).detach()
        return x_adv
