"""White-box gradient attacks: FGSM, I-FGSM/BIM, PGD, MI-FGSM, NI-FGSM, the TASAR benchmark's
mean-normalised iterative variants, and a uniform-noise baseline.

Notation: ``x`` is the clean batch (N, 3, T, V, M), ``x'`` the adversarial iterate, ``Π`` the threat
model's projection (:meth:`robench.threat.ThreatModel.project`: ε-ball, padding and absent bodies kept
at zero, joint/frame masks, bone lengths when asked), ``g = ∇_x' J(x')`` with the ascent objective
``J = CE(f(x'), y)`` (untargeted) or ``J = -CE(f(x'), y_t)`` (targeted: the loss sign flips).

Shared conventions (all attacks here):

- ``g`` is masked by the threat model's :meth:`allowed_mask` before any normalisation, so padding and
  frozen joints/frames neither receive steps nor dilute an L1/L2 normalisation;
- the step direction is ``sign(·)`` for ``linf`` and ``·/‖·‖₂`` (per sample) for ``l2``;
- step sizes are relative to ε (``alpha_rel``: α = alpha_rel·ε) because ε comes from the threat model;
- momentum buffers live inside one call (reset per batch), gradients come from
  ``torch.autograd.grad`` w.r.t. the input only, the model is used as given (already in eval mode);
- success is whatever the *final* iterate achieves; there is no "best over iterations" bookkeeping
  (PGD restarts keep, per sample, the final iterate of the best restart — see :class:`PGD`), except
  with the ``early_stop`` option of BIM, PGD, ``tasar-fgsm`` and ``tasar-mifgsm``: then a sample leaves the batch at the first iterate that fools
  the model and that iterate is returned (no more gradients are spent on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robench.access import Knowledge, WhiteBox
from robench.attack import Attack, AttackConfig, register_attack
from robench.errors import ConfigError

_TINY = 1e-12


# ---------------------------------------------------------------------------------------- helpers
def _objective(logits: Tensor, label: Tensor, targeted: bool) -> Tensor:
    """(N,) per-sample ascent objective: CE(logits, y) untargeted, -CE(logits, y_t) targeted."""
    ce = F.cross_entropy(logits, label, reduction="none")
    return -ce if targeted else ce


def _gradient(
    model: nn.Module, x_adv: Tensor, label: Tensor, targeted: bool, mask: Tensor, eot: int = 1
) -> tuple[Tensor, Tensor]:
    """(masked ∇_x' J(x'), logits); the gradient is taken w.r.t. the input only. ``eot`` > 1:
    expectation over transformation (Athalye, Engstrom, Ilyas, Kwok, ICML 2018): the gradient and
    the logits are averaged over ``eot`` forward-backward passes of a randomized model."""
    x_adv = x_adv.detach().requires_grad_(True)
    g_sum = logit_sum = None
    for _ in range(eot):
        with torch.enable_grad():
            logits = model(x_adv)
            obj = _objective(logits, label, targeted).sum()
            (g,) = torch.autograd.grad(obj, x_adv)
        g_sum = g if g_sum is None else g_sum + g
        logit_sum = logits.detach() if logit_sum is None else logit_sum + logits.detach()
    return g_sum / eot * mask, logit_sum / eot


def _per_sample(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1)


def _view(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1, 1)


def _direction(g: Tensor, norm: str) -> Tensor:
    """Steepest-ascent unit direction: sign(g) (linf) or g/‖g‖₂ per sample (l2)."""
    if norm == "linf":
        return g.sign()
    return g / _view(_per_sample(g).norm(dim=1).clamp_min(_TINY))


def _l1_normalise(g: Tensor) -> Tensor:
    """g / ‖g‖₁ per sample (Dong et al.'s momentum normalisation)."""
    return g / _view(_per_sample(g).abs().sum(1).clamp_min(_TINY))


def _mean_abs_normalise(g: Tensor, mask: Tensor) -> Tensor:
    """N(g) = g / mean|g| per sample, the mean taken over the coordinates that may move."""
    count = _per_sample(mask.expand_as(g)).sum(1).clamp_min(1)
    mean = _per_sample(g).abs().sum(1) / count
    return g / _view(mean.clamp_min(_TINY))


def _mask(threat, x: Tensor) -> Tensor:
    return threat.allowed_mask(x).to(x.dtype)


def _label(y: Tensor, target: Tensor | None, targeted: bool) -> Tensor:
    return target if targeted else y


def _fooled(logits: Tensor, label: Tensor, targeted: bool) -> Tensor:
    pred = logits.argmax(1)
    return pred == label if targeted else pred != label


def _sub_generator(generator: torch.Generator, x: Tensor) -> torch.Generator:
    """A generator on ``x``'s device seeded by one ``randint(0, 2**62)`` drawn from ``generator``."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=x.device).manual_seed(seed)


def _random_start(
    x: Tensor, mask: Tensor, eps: float, norm: str, generator: torch.Generator
) -> Tensor:
    """A point drawn uniformly from the (masked) ε-ball around x, before projection.

    linf: ``δ ~ U[-ε, ε]`` per coordinate. The draw uses a sub-generator seeded by one ``randint``
    from ``generator``: ``sub = Generator().manual_seed(randint(0, 2**62))``,
    ``δ = empty_like(x).uniform_(-ε, ε, generator=sub)`` over the whole tensor (padding included, then
    masked). torchattacks' PGD draws ``uniform_(-ε/s, ε/s)`` on the same number of coordinates from
    the global RNG, which the robench adapter seeds with the same ``randint``; the two random starts
    are therefore the same numbers up to float rounding (the adapter's affine scale ``s``).
    l2: direction ``z/‖z‖₂`` with ``z ~ N(0, I)`` on the allowed coordinates, radius ``ε·u^(1/d)``
    (``u ~ U[0, 1]``, ``d`` allowed coordinates): uniform in the ball.
    """
    sub = _sub_generator(generator, x)
    if norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps, generator=sub)
        return x + delta * mask
    z = torch.randn(x.shape, generator=sub, device=x.device, dtype=x.dtype) * mask
    d = _per_sample(mask.expand_as(x)).sum(1).clamp_min(1)
    u = torch.rand(x.shape[0], generator=sub, device=x.device, dtype=x.dtype)
    radius = eps * u ** (1.0 / d)
    return x + z / _view(_per_sample(z).norm(dim=1).clamp_min(_TINY)) * _view(radius)


def _positive(value: float | int, name: str, owner: str, integer: bool = False) -> None:
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if integer:
        bad = bad or not isinstance(value, int)
    if bad or not value > 0:
        kind = "an integer >= 1" if integer else "a number > 0"
        raise ConfigError(f"expected {kind}, got {value!r} in {owner} config field {name!r}")


def _nonneg(value: float, name: str, owner: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"expected a number >= 0, got {value!r} in {owner} config field {name!r}")


def _alpha_rel(value: float | None, default: float, owner: str) -> float:
    if value is None:
        return default
    _positive(value, "alpha_rel", owner)
    return float(value)


# ---------------------------------------------------------------------------------------- FGSM
@dataclass(frozen=True)
class FGSMConfig(AttackConfig):
    """FGSM has no hyper-parameter besides ``targeted``: the step is ε."""


@register_attack("fgsm")
class FGSM(Attack):
    """Fast Gradient Sign Method (Goodfellow, Shlens, Szegedy, ICLR 2015).

    ``x' = Π(x + ε·sign(g))`` (linf) or ``Π(x + ε·g/‖g‖₂)`` (l2, the "fast gradient method").
    One gradient, deterministic. Targeted mode descends CE towards ``target``.
    """

    knowledge = Knowledge.WHITE_BOX
    norms = ("linf", "l2")
    randomized = False
    supports_targeted = True
    Config = FGSMConfig

    def run(self, access: WhiteBox, x, y, threat, generator, target):
        t = self.config.targeted
        mask = _mask(threat, x)
        g, _ = _gradient(access.victim, x, _label(y, target, t), t, mask)
        return threat.project(x, x + threat.eps * _direction(g, threat.norm))


# ---------------------------------------------------------------------------------------- BIM
@dataclass(frozen=True)
class BIMConfig(AttackConfig):
    """``steps``: iterations (10); ``alpha_rel``: α/ε, None = 1.25/steps (Kurakin et al.);
    ``early_stop``: keep each sample's first fooling iterate and stop spending gradients on it."""

    steps: int = 10
    alpha_rel: float | None = None
    early_stop: bool = False

    def __post_init__(self) -> None:
        _positive(self.steps, "steps", "bim", integer=True)
        _alpha_rel(self.alpha_rel, 1.0, "bim")


def _iterate(
    model, x, x_adv, label, targeted, threat, mask, steps: int, alpha: float, early_stop=False,
    eot: int = 1,
) -> Tensor:  # fmt: skip
    """``steps`` projected steepest-ascent steps ``x' ← Π(x' + α·dir(g))`` from ``x_adv``.

    ``early_stop``: before each step the samples whose iterate already fools the model are frozen
    (their iterate is final) and only the others are stepped. The logits of each gradient pass are
    the check, so freezing costs no extra forward pass (with ``eot`` > 1: the mean logits).
    """
    if not early_stop:
        for _ in range(steps):
            g, _ = _gradient(model, x_adv, label, targeted, mask, eot)
            x_adv = threat.project(x, x_adv + alpha * _direction(g, threat.norm))
        return x_adv
    x_adv = x_adv.clone()
    active = torch.arange(x.shape[0], device=x.device)
    for _ in range(steps):
        g, logits = _gradient(model, x_adv[active], label[active], targeted, mask[active], eot)
        keep = ~_fooled(logits, label[active], targeted)
        active, g = active[keep], g[keep]
        if active.numel() == 0:
            return x_adv
        xa = x_adv[active] + alpha * _direction(g, threat.norm)
        x_adv[active] = threat.project(x[active], xa)
    return x_adv


@register_attack("bim")
class BIM(Attack):
    """Basic Iterative Method / I-FGSM (Kurakin, Goodfellow, Bengio, ICLR 2017 workshop).

    ``x'_0 = x``, ``x'_{k+1} = Π(x'_k + α·sign(g_k))`` (l2: ``α·g/‖g‖₂``), ``steps = 10``.
    Kurakin et al. use α = 1 (pixel) for ``min(ε + 4, 1.25ε)`` steps, i.e. a total path of 1.25ε;
    robench keeps that ratio for any step count: α = 1.25·ε/steps (``alpha_rel=None``).
    Departure: the paper clips to the valid pixel range as well; skeletons have no such range.
    ``early_stop=True`` returns, per sample, the first iterate that fools the model (success "at some
    iterate ≤ steps", never below the final-iterate rate; the convention of the TASAR benchmark code,
    which stops a batch once all of it is fooled) and spends no more gradients on it.
    """

    knowledge = Knowledge.WHITE_BOX
    norms = ("linf", "l2")
    randomized = False
    supports_targeted = True
    Config = BIMConfig

    def run(self, access: WhiteBox, x, y, threat, generator, target):
        c = self.config
        alpha = _alpha_rel(c.alpha_rel, 1.25 / c.steps, "bim") * threat.eps
        mask = _mask(threat, x)
        label = _label(y, target, c.targeted)
        return _iterate(
            access.victim, x, x.clone(), label, c.targeted, threat, mask, c.steps, alpha,
            c.early_stop,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------- PGD
@dataclass(frozen=True)
class PGDConfig(AttackConfig):
    """``steps`` 10; ``alpha_rel`` None = 2.5/steps; ``restarts`` 1; ``random_start`` True;
    ``early_stop`` False (as BIM's); ``eot`` 1 (gradients averaged over that many passes: the
    adaptive attack on a randomized defense)."""

    steps: int = 10
    alpha_rel: float | None = None
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = False
    eot: int = 1

    def __post_init__(self) -> None:
        _positive(self.steps, "steps", "pgd", integer=True)
        _positive(self.restarts, "restarts", "pgd", integer=True)
        _positive(self.eot, "eot", "pgd", integer=True)
        _alpha_rel(self.alpha_rel, 1.0, "pgd")


@register_attack("pgd")
class PGD(Attack):
    """Projected Gradient Descent (Madry, Makelov, Schmidt, Tsipras, Vladu, ICLR 2018).

    BIM from a uniform random start in the ε-ball: ``x'_0 = Π(x + δ)``, δ drawn by
    :func:`_random_start`, then ``x'_{k+1} = Π(x'_k + α·sign(g_k))`` (l2: ``α·g/‖g‖₂``).
    Defaults: 10 steps, α = 2.5·ε/steps (the step rule of Madry et al.'s robustness library, so the
    iterate can cross the ball from one face to the other), 1 restart.

    Restarts: each restart runs all steps from its own random start; per sample the *final* iterate
    of the first restart that fools the model is kept, or, if none does, the one with the largest
    final loss (the AutoAttack/Madry convention; no best-over-iterations). With ``restarts > 1`` the
    random starts use successive sub-seeds of the generator. ``random_start=False`` starts at x
    (then PGD equals BIM with PGD's step size). ``early_stop=True`` keeps each sample's first
    fooling iterate within a restart (see :class:`BIM`). ``eot`` > 1 averages each step's gradient
    over that many forward-backward passes (expectation over transformation, Athalye et al., ICML
    2018): the adaptive attack on a randomized defense; a deterministic model gains nothing from it.
    """

    knowledge = Knowledge.WHITE_BOX
    norms = ("linf", "l2")
    randomized = True
    supports_targeted = True
    Config = PGDConfig

    def run(self, access: WhiteBox, x, y, threat, generator, target):
        c = self.config
        model = access.victim
        alpha = _alpha_rel(c.alpha_rel, 2.5 / c.steps, "pgd") * threat.eps
        mask = _mask(threat, x)
        label = _label(y, target, c.targeted)
        best = best_score = None
        for _ in range(c.restarts):
            start = x.clone()
            if c.random_start:
                start = threat.project(
                    x, _random_start(x, mask, threat.eps, threat.norm, generator)
                )
            x_adv = _iterate(
                model, x, start, label, c.targeted, threat, mask, c.steps, alpha, c.early_stop,
                c.eot,
            )  # fmt: skip
            if c.restarts == 1:
                return x_adv
            with torch.no_grad():
                logits = model(x_adv)
            # fooled samples rank above every unfooled one; ties broken by the final objective
            score = _objective(logits, label, c.targeted) + 1e6 * _fooled(logits, label, c.targeted)
            if best is None:
                best, best_score = x_adv, score
            else:  # a sample already fooled keeps its first fooling restart
                better = (score > best_score) & (best_score < 1e6)
                best = torch.where(_view(better), x_adv, best)
                best_score = torch.where(better, score, best_score)
        return best


# ---------------------------------------------------------------------------------------- MI / NI
@dataclass(frozen=True)
class MomentumConfig(AttackConfig):
    """``steps`` 10; ``alpha_rel`` None = 1/steps (α = ε/T); ``decay`` μ = 1.0."""

    steps: int = 10
    alpha_rel: float | None = None
    decay: float = 1.0

    def __post_init__(self) -> None:
        _positive(self.steps, "steps", "momentum attack", integer=True)
        _nonneg(self.decay, "decay", "momentum attack")
        _alpha_rel(self.alpha_rel, 1.0, "momentum attack")


def _momentum_attack(model, x, label, targeted, threat, mask, c: MomentumConfig, nesterov: bool):
    alpha = _alpha_rel(c.alpha_rel, 1.0 / c.steps, "momentum attack") * threat.eps
    x_adv = x.clone()
    m = torch.zeros_like(x)  # reset for every call (every batch)
    for _ in range(c.steps):
        probe = x_adv + alpha * c.decay * m if nesterov else x_adv
        g, _ = _gradient(model, probe, label, targeted, mask)
        m = c.decay * m + _l1_normalise(g)
        x_adv = threat.project(x, x_adv + alpha * _direction(m, threat.norm))
    return x_adv


@register_attack("mifgsm")
class MIFGSM(Attack):
    """Momentum Iterative FGSM (Dong, Liao, Pang, Su, Zhu, Hu, Li, CVPR 2018).

    ``m_0 = 0``, ``m_{k+1} = μ·m_k + g_k/‖g_k‖₁``, ``x'_{k+1} = Π(x'_k + α·sign(m_{k+1}))``
    (l2: ``α·m/‖m‖₂``, the paper's L2 variant). Defaults as in the paper: μ = 1.0, T = 10 steps,
    α = ε/T. The momentum is reset for every call.
    """

    knowledge = Knowledge.WHITE_BOX
    norms = ("linf", "l2")
    randomized = False
    supports_targeted = True
    Config = MomentumConfig

    def run(self, access: WhiteBox, x, y, threat, generator, target):
        c = self.config
        label = _label(y, target, c.targeted)
        return _momentum_attack(
            access.victim, x, label, c.targeted, threat, _mask(threat, x), c, False
        )


@register_attack("nifgsm")
class NIFGSM(Attack):
    """Nesterov Iterative FGSM (Lin, Song, He, Wang, Hopcroft, ICLR 2020).

    MI-FGSM with a Nesterov look-ahead: ``x^nes = x'_k + α·μ·m_k``, ``g_k = ∇J(x^nes)``,
    ``m_{k+1} = μ·m_k + g_k/‖g_k‖₁``, ``x'_{k+1} = Π(x'_k + α·sign(m_{k+1}))``.
    Defaults as in the paper: μ = 1.0, T = 10, α = ε/T. The look-ahead point is not projected
    (as in the paper); only iterates are.
    """

    knowledge = Knowledge.WHITE_BOX
    norms = ("linf", "l2")
    randomized = False
    supports_targeted = True
    Config = MomentumConfig

    def run(self, access: WhiteBox, x, y, threat, generator, target):
        c = self.config
        label = _label(y, target, c.targeted)
        return _momentum_attack(
            access.victim, x, label, c.targeted, threat, _mask(threat, x), c, True
        )


# ---------------------------------------------------------------------------------------- TASAR
@dataclass(frozen=True)
class TasarIterConfig(AttackConfig):
    """``iterations`` 200; ``alpha_rel`` 1.0 (step = ε); ``momentum`` μ (0 plain, 0.1 MI);
    ``early_stop`` False (True: each sample keeps its first fooling iterate, as BIM's)."""

    iterations: int = 200
    alpha_rel: float = 1.0
    momentum: float = 0.0
    early_stop: bool = False

    def __post_init__(self) -> None:
        _positive(self.iterations, "iterations", "tasar", integer=True)
        _positive(self.alpha_rel, "alpha_rel", "tasar")
        _nonneg(self.momentum, "momentum", "tasar")


@dataclass(frozen=True)
class TasarMIConfig(TasarIterConfig):
    momentum: float = 0.1


class _TasarIterative(Attack):
    knowledge = Knowledge.WHITE_BOX
    norms = ("linf", "l2")
    randomized = False
    supports_targeted = True

    def run(self, access: WhiteBox, x, y, threat, generator, target):
        c = self.config
        model = access.victim
        mask = _mask(threat, x)
        label = _label(y, target, c.targeted)
        alpha = c.alpha_rel * threat.eps
        x_adv = x.clone()
        m = torch.zeros_like(x)  # reset per call (the benchmark's code keeps it across batches)
        if not c.early_stop:
            for _ in range(c.iterations):
                g, _ = _gradient(model, x_adv, label, c.targeted, mask)
                m = c.momentum * m + g
                x_adv = threat.project(x, x_adv + alpha * _mean_abs_normalise(m, mask))
            return x_adv
        active = torch.arange(x.shape[0], device=x.device)
        for _ in range(c.iterations):
            g, logits = _gradient(model, x_adv[active], label[active], c.targeted, mask[active])
            keep = ~_fooled(logits, label[active], c.targeted)  # freeze the fooled samples
            active, g = active[keep], g[keep]
            if active.numel() == 0:
                break
            m[active] = c.momentum * m[active] + g
            step = alpha * _mean_abs_normalise(m[active], mask[active])
            x_adv[active] = threat.project(x[active], x_adv[active] + step)
        return x_adv


@register_attack("tasar-fgsm")
class TasarFGSM(_TasarIterative):
    """The TASAR benchmark's "FGSM" (Diao et al., ICLR 2025, RobustBenchHAR code): iterative, no sign.

    ``x'_{k+1} = Π(x'_k + α·N(g_k))`` with ``N(v) = v / mean|v|`` per sample, α = ε (0.01 in the
    benchmark, where ε = 0.01), 200 iterations. Not Goodfellow's FGSM (see ``fgsm``).
    Departures from the benchmark code: the mean of N runs over the coordinates allowed to move
    (padding excluded); every iteration runs on every sample (the code stops a batch once all of it
    is fooled and reports the best fool rate over iterations; robench judges the final iterate).
    ``early_stop=True`` freezes each sample at its first fooling iterate instead (per sample, where
    the code stops per batch); its success bounds the code's "best fool rate over iterations" from
    above, equal when fooled samples stay fooled.
    """

    Config = TasarIterConfig


@register_attack("tasar-mifgsm")
class TasarMIFGSM(_TasarIterative):
    """The TASAR benchmark's "MI-FGSM" (Diao et al., ICLR 2025, RobustBenchHAR code).

    ``m_{k+1} = μ·m_k + g_k`` (raw gradients, μ = 0.1), ``x'_{k+1} = Π(x'_k + α·N(m_{k+1}))``,
    ``N(v) = v / mean|v|`` per sample, α = ε, 200 iterations. Not Dong et al.'s MI-FGSM (``mifgsm``).
    Departures from the benchmark code: momentum is reset per call (the code never resets it between
    batches), the mean of N runs over the coordinates allowed to move, and the final iterate is judged
    (``early_stop=True``: each sample's first fooling iterate, as in :class:`TasarFGSM`).
    """

    Config = TasarMIConfig


# ---------------------------------------------------------------------------------------- noise
@dataclass(frozen=True)
class NoiseConfig(AttackConfig):
    """No hyper-parameters: one uniform draw from the ε-ball."""


@register_attack("noise")
class UniformNoise(Attack):
    """Baseline: one uniform random point of the ε-ball, ``x' = Π(x + δ)``.

    linf: ``δ ~ U[-ε, ε]`` per allowed coordinate; l2: uniform in the l2 ball over the allowed
    coordinates (Gaussian direction, radius ``ε·u^(1/d)``). The model is never queried; any attack
    that does not clearly beat this baseline is broken (or the model is robust by accident).
    """

    knowledge = Knowledge.WHITE_BOX
    norms = ("linf", "l2")
    randomized = True
    supports_targeted = False
    Config = NoiseConfig

    def run(self, access: WhiteBox, x, y, threat, generator, target):
        mask = _mask(threat, x)
        return threat.project(x, _random_start(x, mask, threat.eps, threat.norm, generator))


@register_attack("noise-sign")
class SignNoise(UniformNoise):
    """Baseline: a random point on the boundary of the ε-ball, the size every sign attack's iterate
    reaches. linf: a random vertex, ``δ = ε·s`` with ``s = ±1`` drawn with equal odds per allowed
    coordinate; l2: a uniform point of the ε-sphere over the allowed coordinates (Gaussian
    direction, radius ε). The model is never queried. A transfer attack that does not beat it has
    found no direction of the victim, only its sensitivity to jitter of that size.
    """

    def run(self, access: WhiteBox, x, y, threat, generator, target):
        mask = _mask(threat, x)
        sub = _sub_generator(generator, x)
        if threat.norm == "linf":
            coin = torch.rand(x.shape, generator=sub, device=x.device, dtype=x.dtype) < 0.5
            delta = torch.where(coin, threat.eps, -threat.eps).to(x.dtype)
        else:
            z = torch.randn(x.shape, generator=sub, device=x.device, dtype=x.dtype) * mask
            delta = z * (threat.eps / _view(_per_sample(z).norm(dim=1).clamp_min(_TINY)))
        return threat.project(x, x + delta * mask)  # masked: padding and frozen joints stay put
