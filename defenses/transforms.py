"""Inference-time input transforms: the defended victim is ``victim(transform(x))``.

Four transforms, each a :class:`~robench.defense.Defense` of kind ``transform``:

- ``temporal-smoothing``: a Gaussian low-pass filter along time (σ = 1 frame), normalised over the
  frames where the body is present, so padding and absent bodies stay zero and clip ends are not
  pulled towards zero. Deterministic, differentiable.
- ``noise-smoothing``: randomized smoothing (Cohen, Rosenfeld and Kolter, ICML 2019): the prediction
  is the majority vote of the victim over ``samples`` copies of the input with isotropic Gaussian
  noise (σ = 2 cm per coordinate: twice the benchmark's L∞ radius; the L2 size of an L∞
  perturbation is far larger, so nothing is certified here). Logits are the log vote frequencies (add-½ smoothed), so the
  vote is the argmax. Randomized and **not differentiable** (a vote has zero gradient): attacked
  naively it hides its gradient; BPDA (Athalye, Carlini and Wagner, ICML 2018) replaces the vote by
  the mean softmax on the backward pass only.
- ``temporal-resampling``: random temporal resampling in the spirit of the random input transforms
  of Xie et al. (ICLR 2018), in time: each forward draws a speed factor in [0.8, 1.2] and a start
  offset and linearly interpolates the present frames at ``offset + speed · t`` (held at the last
  frame). Randomized, differentiable: attack it with EOT.
- ``bone-realignment``: a purifier: every bone of every body is rescaled to that body's mean length
  over the clip's present frames, joint positions rebuilt from the root along the kinematic tree.
  An L∞ perturbation that stretches bones frame by frame loses that component. Deterministic,
  differentiable.

Every transform keeps padding and absent bodies exactly zero. A randomized one draws from the
module's own ``generator``; the harness reseeds it per cell (:meth:`TransformDefended.reseed`), so a
cell's rows do not depend on which cells ran before. Setting ``bpda = True`` on a defended module
(the harness does it on the attacker's copy for BPDA cells) makes each transform's non-differentiable
step straight-through: forward unchanged, backward through its differentiable approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robench.data.skeleton import Topology, presence_mask
from robench.defense import Defense, DefenseConfig, DefenseKind, register_defense
from robench.errors import ConfigError
from robench.ops.transfer import require_float, require_int


class TransformDefended(nn.Module):
    """``victim(transform(x))`` for one of this module's transforms; ``bpda`` and ``reseed`` as in
    the module docstring. The victim is a frozen copy held as a submodule."""

    def __init__(self, victim: nn.Module, transform: Any, seed: int = 0) -> None:
        super().__init__()
        self.victim = victim
        self.transform = transform
        self.bpda = False
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the transform's random stream at ``seed``."""
        self.generator.manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(self.victim, x, self.generator, self.bpda)


def _frozen_copy(victim: nn.Module) -> nn.Module:
    import copy

    v = copy.deepcopy(victim).eval()
    for p in v.parameters():
        p.requires_grad_(False)
    return v


class _Transform(Defense):
    kind = DefenseKind.TRANSFORM

    def defend(self, victim: nn.Module, train: Any, generator: torch.Generator) -> nn.Module:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        return TransformDefended(_frozen_copy(victim), self._apply, seed)

    def _apply(
        self, victim: nn.Module, x: torch.Tensor, gen: torch.Generator, bpda: bool
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------------------- temporal smoothing
@dataclass(frozen=True)
class SmoothingConfig(DefenseConfig):
    """``sigma``: standard deviation of the Gaussian kernel in frames (1.0); the kernel spans ±3σ."""

    sigma: float = 1.0

    def __post_init__(self) -> None:
        require_float(self.sigma, "sigma", "defense 'temporal-smoothing'", low_open=True)


def temporal_lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, 3, T, V, M) -> same: Gaussian filter along T, normalised over the present frames of each
    body (a normalised convolution), zero where the body is absent."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, -1)
    mask = presence_mask(x).to(x.dtype)  # (N, 1, T, 1, M)
    n, c, tt, v, m = x.shape
    flat = (x * mask).permute(0, 1, 3, 4, 2).reshape(-1, 1, tt)
    num = F.conv1d(flat, k, padding=r).reshape(n, c, v, m, tt).permute(0, 1, 4, 2, 3)
    mflat = mask.permute(0, 1, 3, 4, 2).reshape(-1, 1, tt)
    den = F.conv1d(mflat, k, padding=r).reshape(n, 1, 1, m, tt).permute(0, 1, 4, 2, 3)
    return num / den.clamp_min(1e-12) * mask


@register_defense("temporal-smoothing")
class TemporalSmoothing(_Transform):
    """Temporal low-pass smoothing (module docstring); deterministic and differentiable."""

    randomized = False
    differentiable = True
    Config = SmoothingConfig

    def _apply(self, victim, x, gen, bpda):
        return victim(temporal_lowpass(x, self.config.sigma))


# ---------------------------------------------------------------------------- noise smoothing
@dataclass(frozen=True)
class NoiseSmoothingConfig(DefenseConfig):
    """``sigma``: Gaussian noise standard deviation in data units (0.02: 2 cm for metric data);
    ``samples``: noisy copies voted over per forward (32)."""

    sigma: float = 0.02
    samples: int = 32

    def __post_init__(self) -> None:
        require_float(self.sigma, "sigma", "defense 'noise-smoothing'", low_open=True)
        require_int(self.samples, "samples", "defense 'noise-smoothing'")


@register_defense("noise-smoothing")
class NoiseSmoothing(_Transform):
    """Randomized smoothing by a majority vote over Gaussian-noised copies (module docstring)."""

    randomized = True
    differentiable = False
    Config = NoiseSmoothingConfig

    def _apply(self, victim, x, gen, bpda):
        cfg = self.config
        mask = presence_mask(x).to(x.dtype)
        votes = soft = None
        for _ in range(cfg.samples):
            noise = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
            logits = victim(x + cfg.sigma * noise * mask)
            hard = F.one_hot(logits.detach().argmax(1), logits.shape[1]).to(x.dtype)
            votes = hard if votes is None else votes + hard
            if bpda:
                p = logits.softmax(1)
                soft = p if soft is None else soft + p
        out = torch.log((votes + 0.5) / (cfg.samples + 0.5 * votes.shape[1]))
        if bpda:  # straight-through: the vote forward, the mean softmax backward
            approx = torch.log(soft / cfg.samples)
            return approx + (out - approx).detach()
        return out + 0.0 * logits  # the vote's true gradient: exactly zero, still in the graph


# ---------------------------------------------------------------------------- temporal resampling
@dataclass(frozen=True)
class ResamplingConfig(DefenseConfig):
    """``min_speed``/``max_speed``: the range of the random speed factor (0.8-1.2); the start offset
    is uniform in [0, ``max_offset``·L] frames of a clip of L present frames (0.1, at most 0.5)."""

    min_speed: float = 0.8
    max_speed: float = 1.2
    max_offset: float = 0.1

    def __post_init__(self) -> None:
        src = "defense 'temporal-resampling'"
        require_float(self.min_speed, "min_speed", src, low_open=True)
        require_float(self.max_speed, "max_speed", src, low=self.min_speed)
        require_float(self.max_offset, "max_offset", src, high=0.5)


def resample(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """(N, 3, T, V, M) sampled at fractional frame positions ``pos`` (N, T): linear interpolation
    between the two neighbouring frames, each weighted only where its body is present; a slot whose
    nearest frame is absent stays zero. ``pos`` < 0 marks frames left empty (padding)."""
    n, c, t, v, m = x.shape
    mask = presence_mask(x).to(x.dtype)
    valid = (pos >= 0).to(x.dtype)
    p = pos.clamp(0, t - 1)
    lo = p.floor().long()
    hi = (lo + 1).clamp(max=t - 1)
    w = (p - lo.to(p.dtype)).view(n, 1, t, 1, 1)

    def take(a: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return a.gather(2, idx.view(n, 1, t, 1, 1).expand(-1, a.shape[1], -1, a.shape[3], m))

    m_lo, m_hi = take(mask, lo), take(mask, hi)
    num = (1 - w) * m_lo * take(x, lo) + w * m_hi * take(x, hi)
    den = (1 - w) * m_lo + w * m_hi
    near = take(mask, p.round().long())
    return num / den.clamp_min(1e-12) * near * valid.view(n, 1, t, 1, 1)


@register_defense("temporal-resampling")
class TemporalResampling(_Transform):
    """Random temporal resampling (module docstring); randomized, differentiable."""

    randomized = True
    differentiable = True
    Config = ResamplingConfig

    def _apply(self, victim, x, gen, bpda):
        cfg = self.config
        n, t = x.shape[0], x.shape[2]
        present = presence_mask(x).any(-1).flatten(1)  # (N, T)
        ar = torch.arange(t, device=x.device)
        length = (present * (ar + 1)).amax(1).clamp_min(1).to(x.dtype)  # last present frame + 1
        u = torch.rand(n, 2, generator=gen, dtype=x.dtype).to(x.device)
        speed = cfg.min_speed + (cfg.max_speed - cfg.min_speed) * u[:, 0]
        offset = cfg.max_offset * length * u[:, 1]
        pos = torch.minimum(offset[:, None] + speed[:, None] * ar, length[:, None] - 1)
        pos = torch.where(ar[None] < length[:, None], pos, torch.full_like(pos, -1.0))
        return victim(resample(x, pos))


# ---------------------------------------------------------------------------- bone realignment
@dataclass(frozen=True)
class RealignConfig(DefenseConfig):
    """No hyper-parameters: each bone goes back to its body's mean length over the clip."""


def realign_bones(x: torch.Tensor, topology: Topology) -> torch.Tensor:
    """(N, 3, T, V, M) -> same: each bone rescaled to its mean length over the present frames of
    its body (per clip), joints rebuilt from the root in breadth-first order; absent slots stay
    zero and the root joint does not move."""
    mask = presence_mask(x).to(x.dtype)
    vec = topology.bone_vectors(x)  # (N, 3, T, V, M), zero at the root
    length = vec.norm(dim=1, keepdim=True)
    frames = mask.sum(2, keepdim=True).clamp_min(1)
    mean = (length * mask).sum(2, keepdim=True) / frames  # (N, 1, 1, V, M)
    unit = vec / length.clamp_min(1e-9)
    joints = [None] * topology.num_joints
    for j in topology.order:
        p = topology.parents[j]
        if p == -1:
            joints[j] = x[:, :, :, j]
        else:
            joints[j] = joints[p] + mean[:, :, :, j] * unit[:, :, :, j]
    return torch.stack(joints, dim=3) * mask


@register_defense("bone-realignment")
class BoneRealignment(_Transform):
    """Bone-length realignment purifier (module docstring); deterministic, differentiable."""

    randomized = False
    differentiable = True
    Config = RealignConfig

    def defend(self, victim: nn.Module, train: Any, generator: torch.Generator) -> nn.Module:
        topology = getattr(victim, "topology", None)
        if not isinstance(topology, Topology):
            raise ConfigError(
                f"expected a victim with a 'topology' attribute (a Topology), got "
                f"{type(topology).__name__} for defense {self.name!r}"
            )
        return super().defend(victim, train, generator)

    def _apply(self, victim, x, gen, bpda):
        return victim(realign_bones(x, victim.topology))
