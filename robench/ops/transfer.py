"""Shared building blocks of the transfer attacks (``robench.attacks.transfer``).

Everything here is batched tensor code over skeletons ``x`` of shape (N, 3, T, V, M) and works on the
surrogate modules a :class:`~robench.access.Transfer` access grants; nothing here ever sees a victim.

- Normalisations: ``N(v) = v / mean|v|`` (:func:`mean_abs_normalize`) and ``v / ‖v‖₁``
  (:func:`l1_normalize`, MI-FGSM's momentum normalisation), both per sample.
- Objectives over a surrogate ensemble: the ascent objective ``J`` is ``CE(f(x), y)`` (untargeted) or
  ``-CE(f(x), t)`` (targeted); :func:`objective_gradient` fuses the surrogates by logits, softmax
  probabilities or losses (Dong et al., CVPR 2018, §3.2) and returns ``∇ₓ J`` via
  ``torch.autograd.grad`` (no parameter ``.grad`` is ever touched).
- The momentum iteration (:func:`momentum_iterate`) shared by I-FGSM, MI-FGSM, the ensemble attack,
  MIG and DIM: ``m ← μ·m + g/‖g‖₁``, ``x' ← Π(x' + α·sign(m))`` (L∞) or ``Π(x' + α·m/‖m‖₂)`` (L2).
- Integrated gradients along a straight path (:func:`integrated_gradient`, MIG) from a skeleton
  baseline (:func:`ig_baseline`: per-channel minimum over present slots, or zeros).
- SVRE's variance-reduced inner gradient (:func:`svre_inner_gradient`).
- Differentiable skeleton input-diversity transforms (DIM): temporal crop of the valid frames resized
  back by linear interpolation (:func:`temporal_crop_resize`), coordinate shear (:func:`shear`) and
  joint corruption (:func:`joint_corruption`), with their random draws (``random_*``) taken from an
  explicit ``torch.Generator`` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robench.data.skeleton import presence_mask
from robench.errors import ConfigError

FUSIONS = ("logits", "probs", "loss")
IG_BASELINES = ("min", "zeros")
IG_MAX_BATCH = (
    32  # samples per forward pass over path points (>= the batch itself: one point per pass)
)
_TINY = 1e-12


def _per_sample(v: Tensor) -> tuple[int, ...]:
    return (-1,) + (1,) * (v.dim() - 1)


# ---------------------------------------------------------------------------- config validation
def require_int(value: object, field: str, source: str, minimum: int = 1) -> None:
    """Raise ConfigError unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"expected an integer >= {minimum}, got {value!r} in {source} field {field!r}"
        )


def require_float(
    value: object,
    field: str,
    source: str,
    low: float = 0.0,
    high: float = math.inf,
    low_open: bool = False,
) -> None:
    """Raise ConfigError unless ``value`` is a finite number in [low, high] (``(low, high]`` if low_open)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(
            f"expected a number in {bracket}{low:g}, {high:g}], got {value!r} in {source} field {field!r}"
        )


# ---------------------------------------------------------------------------- normalisations
def mean_abs_normalize(v: Tensor) -> Tensor:
    """``N(v) = v / mean|v|`` per sample (mean over all non-batch entries); an all-zero sample stays 0."""
    scale = v.abs().flatten(1).mean(1).clamp_min(_TINY)
    return v / scale.view(_per_sample(v))


def l1_normalize(v: Tensor) -> Tensor:
    """``v / ‖v‖₁`` per sample (MI-FGSM's momentum normalisation); an all-zero sample stays 0."""
    scale = v.abs().flatten(1).sum(1).clamp_min(_TINY)
    return v / scale.view(_per_sample(v))


# ---------------------------------------------------------------------------- objectives
def attack_objective(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Per-sample ascent objective ``J``: ``CE(logits, y)`` untargeted, ``-CE(logits, target)`` targeted."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def ensemble_weights(models: Sequence[nn.Module], weights: Sequence[float] | None) -> list[float]:
    """Normalised fusion weights (1/K each by default); a length mismatch raises ConfigError."""
    if weights is None:
        return [1.0 / len(models)] * len(models)
    if len(weights) != len(models):
        raise ConfigError(
            f"expected {len(models)} ensemble weights (one per surrogate), got {len(weights)} in "
            "attack config field 'weights'"
        )
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def fused_logits(
    models: Sequence[nn.Module], x: Tensor, weights: Sequence[float] | None = None
) -> Tensor:
    """``Σ_k w_k f_k(x)`` (weights default to 1/K, normalised to sum 1): Dong et al.'s logit fusion."""
    ws = ensemble_weights(models, weights)
    out = ws[0] * models[0](x)
    for w, model in zip(ws[1:], models[1:], strict=True):
        out = out + w * model(x)
    return out


def ensemble_objective(
    models: Sequence[nn.Module],
    x: Tensor,
    y: Tensor,
    target: Tensor | None,
    fusion: str = "logits",
    weights: Sequence[float] | None = None,
) -> Tensor:
    """Per-sample ascent objective of a surrogate ensemble (Dong et al., CVPR 2018, §3.2).

    ``logits``: ``J(Σ w_k f_k(x))``; ``probs``: cross-entropy of ``Σ w_k softmax(f_k(x))``;
    ``loss``: ``Σ w_k J(f_k(x))``. With one surrogate all three equal ``J(f(x))``.
    """
    if fusion == "logits":
        return attack_objective(fused_logits(models, x, weights), y, target)
    ws = ensemble_weights(models, weights)
    if fusion == "probs":
        probs = sum(w * m(x).softmax(1) for w, m in zip(ws, models, strict=True))
        logp = torch.log(probs.clamp_min(1e-30))
        return attack_objective(logp, y, target)  # CE of log-probabilities = NLL
    if fusion == "loss":
        return sum(w * attack_objective(m(x), y, target) for w, m in zip(ws, models, strict=True))
    raise ConfigError(
        f"expected fusion in {FUSIONS}, got {fusion!r} in attack config field 'fusion'"
    )


def input_gradient(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``∇ₓ Σ_n fn(x)_n`` by ``torch.autograd.grad`` (per-sample gradients of a per-sample objective)."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(xr).sum(), xr)
    return g.detach()


def objective_gradient(
    models: Sequence[nn.Module],
    x: Tensor,
    y: Tensor,
    target: Tensor | None,
    fusion: str = "logits",
    weights: Sequence[float] | None = None,
) -> Tensor:
    """``∇ₓ J`` of the fused surrogate ensemble at ``x`` (see :func:`ensemble_objective`)."""
    return input_gradient(lambda z: ensemble_objective(models, z, y, target, fusion, weights), x)


# ---------------------------------------------------------------------------- iteration
def ascent_step(x_adv: Tensor, direction: Tensor, alpha: float, norm: str) -> Tensor:
    """Steepest-ascent step of size ``alpha``: ``sign(d)`` for L∞, ``d/‖d‖₂`` (per sample) for L2."""
    if norm == "linf":
        return x_adv + alpha * direction.sign()
    nrm = direction.flatten(1).norm(dim=1).clamp_min(_TINY)
    return x_adv + alpha * direction / nrm.view(_per_sample(direction))


def momentum_iterate(
    x: Tensor,
    threat: object,
    grad_fn: Callable[[Tensor, int], Tensor],
    steps: int,
    alpha: float,
    decay: float,
    start: Tensor | None = None,
    normalize: bool = True,
) -> Tensor:
    """MI-FGSM iteration (Dong et al., CVPR 2018) around a gradient oracle.

    For t = 0..steps-1: ``g = grad_fn(x_t, t) ⊙ A`` (A = ``threat.allowed_mask(x)``, so padding and
    frozen joints/frames neither move nor enter the normalisation), ``m ← decay·m + g/‖g‖₁``
    (``normalize=False``: ``m ← decay·m + g``, for an oracle that normalises itself),
    ``x_{t+1} = threat.project(x, x_t + α·sign(m))`` (L2: ``α·m/‖m‖₂``). ``decay = 0`` is I-FGSM.
    Momentum starts at 0 for every call (i.e. per batch). Returns a new tensor; ``x`` is not modified.
    """
    allowed = threat.allowed_mask(x)
    x_adv = (x if start is None else start).detach().clone()
    m = torch.zeros_like(x)
    for t in range(steps):
        g = grad_fn(x_adv, t) * allowed
        m = decay * m + (l1_normalize(g) if normalize else g)
        x_adv = threat.project(x, ascent_step(x_adv, m, alpha, threat.norm)).detach()
    return x_adv


# ---------------------------------------------------------------------------- MIG
def integrated_gradient(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    baseline: Tensor,
    steps: int,
    max_batch: int = IG_MAX_BATCH,
) -> Tensor:
    """Right Riemann sum of the integrated gradient (Sundararajan et al., ICML 2017), as in MIG.

    ``IG(x) = (x − b) ⊙ (1/s) Σ_{i=1..s} ∇f(b + (i/s)(x − b))`` with ``∇f`` evaluated *at* each path
    point (no chain factor i/s), ``fn`` mapping a batch (R·N, 3, T, V, M) of path points to per-sample
    scalars (R·N,) (the path points of step i occupy rows i·N..i·N+N-1). Path points are evaluated
    ``max_batch`` samples at a time. For a linear ``f`` this is exact: ``IG = (x − b) ⊙ w``.
    """
    x = x.detach()
    baseline = baseline.detach()
    n = x.shape[0]
    diff = x - baseline
    total = torch.zeros_like(x)
    per_chunk = max(1, max_batch // max(n, 1))
    fracs = [i / steps for i in range(1, steps + 1)]
    for lo in range(0, steps, per_chunk):
        chunk = torch.tensor(fracs[lo : lo + per_chunk], dtype=x.dtype, device=x.device)
        pts = baseline.unsqueeze(0) + chunk.view(-1, 1, 1, 1, 1, 1) * diff.unsqueeze(0)
        g = input_gradient(fn, pts.flatten(0, 1))
        total = total + g.view(len(chunk), *x.shape).sum(0)
    return diff * total / steps


def ig_baseline(x: Tensor, present: Tensor, kind: str = "min") -> Tensor:
    """Integrated-gradient baseline for skeletons, zero in absent (frame, body) slots.

    ``min``: per sample and channel, the smallest coordinate of ``x`` over present slots (the
    analogue of a black image: ``x − b ≥ 0`` wherever present); ``zeros``: the all-zero skeleton.
    ``present`` is the clean batch's (N, 1, T, 1, M) 0/1 presence.
    """
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind != "min":
        raise ConfigError(
            f"expected baseline in {IG_BASELINES}, got {kind!r} in attack config field 'baseline'"
        )
    big = torch.finfo(x.dtype).max
    masked = torch.where(present.expand_as(x) > 0, x.detach(), torch.full_like(x, big))
    low = masked.flatten(2).amin(2)  # (N, 3)
    low = torch.where(low == big, torch.zeros_like(low), low)
    return (low.view(x.shape[0], 3, 1, 1, 1) * present).expand_as(x)


# ---------------------------------------------------------------------------- SVRE
def svre_inner_gradient(
    model: nn.Module,
    x_inner: Tensor,
    y: Tensor,
    target: Tensor | None,
    anchor_grad: Tensor,
    ensemble_grad: Tensor,
) -> Tensor:
    """SVRE's variance-reduced gradient (Xiong et al., CVPR 2022, Alg. 1):
    ``g = ∇J_k(x̃_m) − (∇J_k(x_t) − G_ens)`` with ``anchor_grad = ∇J_k(x_t)`` of the sampled model k
    at the outer iterate and ``ensemble_grad = G_ens = (1/K) Σ_k ∇J_k(x_t)``.
    """
    g_inner = input_gradient(lambda z: attack_objective(model(z), y, target), x_inner)
    return g_inner - (anchor_grad - ensemble_grad)


# ---------------------------------------------------------------------------- DIM transforms
def presence_float(x: Tensor) -> Tensor:
    """(N, 1, T, 1, M) float 0/1 presence of each (frame, body) slot of the clean batch."""
    return presence_mask(x.detach()).to(x.dtype)


def valid_lengths(x: Tensor) -> Tensor:
    """(N,) int64: 1 + index of the last frame in which any body is present (0 for an empty clip)."""
    present = presence_mask(x.detach()).any(dim=4).flatten(1)  # (N, T)
    t = present.shape[1]
    idx = torch.arange(1, t + 1, device=x.device).expand_as(present)
    return torch.where(present, idx, torch.zeros_like(idx)).amax(1)


def uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """U[0, 1) draws from ``generator`` (on its own device), moved to ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def random_crop_window(
    valid: Tensor, min_ratio: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Per sample a crop ``[start, start + length)`` of the valid frames.

    ``length`` is uniform over the integers ``ceil(min_ratio·L)..L`` (L = valid length; the TASAR
    benchmark's 57–60 of 60 frames for ``min_ratio = 0.95``), ``start`` uniform over ``0..L−length``.
    Two uniform draws per sample from ``generator``. Returns int64 (N,) tensors.
    """
    n = valid.shape[0]
    u = uniform((2, n), generator, valid.device)
    lo = torch.ceil(valid.double() * min_ratio).long().clamp(min=1)
    lo = torch.minimum(lo, valid.clamp(min=1))
    span = valid.clamp(min=1) - lo + 1
    length = lo + (u[0].double() * span).floor().long().clamp(max=span - 1)
    room = valid.clamp(min=1) - length + 1
    start = (u[1].double() * room).floor().long().clamp(max=room - 1)
    return start, length


def temporal_crop_resize(
    x: Tensor, start: Tensor, length: Tensor, valid: Tensor, present: Tensor
) -> Tensor:
    """Crop frames ``[start, start+length)`` of each clip and resample them to its ``valid`` frames.

    Output frame i < L (L = ``valid``) reads source position ``p = start + i·(length−1)/(L−1)`` by
    linear interpolation between frames ⌊p⌋ and ⌊p⌋+1 (endpoints map to endpoints, i.e.
    ``align_corners=True``; the TASAR benchmark uses ``F.interpolate(..., align_corners=False)`` on
    fixed 60-frame clips). Each neighbour is weighted by its body's ``present`` flag (clean presence,
    (N, 1, T, 1, M)) and the weights renormalised, so an absent body or padding frame never leaks in
    and a slot whose two neighbours are absent stays exactly 0; frames ≥ L stay 0. Differentiable in
    ``x`` (gather + fixed weights). ``start = 0, length = L`` is the identity.
    """
    n, _, t, _, _ = x.shape
    lv = valid.clamp(min=1).double().view(n, 1)
    i = torch.arange(t, device=x.device, dtype=torch.float64).view(1, t)
    ratio = (length.double().view(n, 1) - 1) / (lv - 1).clamp(min=1)
    pos = start.double().view(n, 1) + i * ratio
    last = (valid.clamp(min=1) - 1).view(n, 1)
    idx0 = pos.floor().long().clamp(min=0)
    idx0 = torch.minimum(idx0, last)
    idx1 = torch.minimum(idx0 + 1, last)
    frac = (pos - idx0.double()).clamp(0, 1).to(x.dtype)
    inside = (i < valid.double().view(n, 1)).to(x.dtype)

    def take(src: Tensor, idx: Tensor) -> Tensor:
        index = idx.view(n, 1, t, 1, 1).expand(n, src.shape[1], t, src.shape[3], src.shape[4])
        return src.gather(2, index)

    f = frac.view(n, 1, t, 1, 1)
    w0 = (1 - f) * take(present, idx0)
    w1 = f * take(present, idx1)
    den = w0 + w1
    out = (w0 * take(x, idx0) + w1 * take(x, idx1)) / den.clamp_min(_TINY)
    out = torch.where(den > 0, out, torch.zeros_like(out))
    return out * inside.view(n, 1, t, 1, 1)


def random_shear_matrices(
    n: int, amplitude: float, generator: torch.Generator, like: Tensor
) -> Tensor:
    """(N, 3, 3) shear matrices: identity diagonal, off-diagonal entries uniform in [−a, a]."""
    u = (uniform((n, 3, 3), generator, like.device).to(like.dtype) * 2 - 1) * amplitude
    eye = torch.eye(3, dtype=like.dtype, device=like.device)
    return eye + u * (1 - eye)


def shear(x: Tensor, matrices: Tensor) -> Tensor:
    """Apply a per-sample linear map of the coordinates: ``x'[n, :, t, v, m] = S_n · x[n, :, t, v, m]``."""
    return torch.einsum("nij,njtvm->nitvm", matrices, x)


def joint_corruption(x: Tensor, joints: Tensor, zero: Tensor, matrices: Tensor) -> Tensor:
    """Corrupt the selected joints of each sample: zero them (``zero[n]``) or map them by ``matrices[n]``.

    ``joints`` is (N, V) bool, ``zero`` (N,) bool, ``matrices`` (N, 3, 3). Unselected joints are
    unchanged; zero slots stay zero (both corruptions are linear).
    """
    n, _, _, v, _ = x.shape
    mixed = shear(x, matrices)
    corrupted = torch.where(zero.view(n, 1, 1, 1, 1), torch.zeros_like(x), mixed)
    return torch.where(joints.view(n, 1, 1, v, 1), corrupted, x)


def random_joint_corruption(
    n: int, v: int, fraction: float, generator: torch.Generator, like: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Draws for :func:`joint_corruption`: each joint selected independently with ``fraction``,
    zeroing vs. a random 3×3 matrix (entries uniform in [−1, 1]) with probability 1/2 each."""
    joints = uniform((n, v), generator, like.device) < fraction
    zero = uniform((n,), generator, like.device) < 0.5
    mats = uniform((n, 3, 3), generator, like.device).to(like.dtype) * 2 - 1
    return joints, zero, mats
