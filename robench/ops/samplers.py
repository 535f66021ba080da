"""Samplers and gradient rules of the Bayesian post-training (TASAR, BA).

SG-AdaHMC (:class:`SGAdaHMC`)
    Scale-adapted stochastic-gradient HMC of Springenberg, Klein, Falkner & Hutter, "Bayesian
    optimization with robust Bayesian neural networks", NeurIPS 2016 (the sampler TASAR's
    ``optimisers.SGAdaHMC`` is named after), in the friction parametrisation of their ``pybnn`` code
    (``C = μ·sqrt(V̂)/ε``). Per coordinate, with the stochastic gradient ``g`` of the potential U::

        V̂ ← (1 - 1/τ)·V̂ + (1/τ)·g²            (V̂ starts at the first g²)
        m ← (1 - μ)·m - ε²·V̂^{-1/2}·g + sqrt(T·max(2ε²·μ·V̂^{-1/2} - ε⁴, 0))·ξ,   ξ ~ N(0, 1)
        θ ← θ + m

    Defaults: ε = ``lr`` = 2e-3, μ = ``friction`` = 0.05 (pybnn), τ = 2 and temperature T = 1e-5
    (TASAR's config). V̂ is floored at 1e-4 × its mean over each head (:class:`SGAdaHMC`). The potential is ``U(θ) = n·mean-CE`` over a minibatch (flat prior, n = size of
    the attacker's data). Departures from TASAR's released optimiser, which reuses one gradient for its
    L = 30 inner steps, resets the momentum and V̂ at every call and scales the noise by T·variance
    instead of its square root: here each of the ``inner_steps`` recomputes the gradient at the current
    point on the same minibatch (a real discretised trajectory), momentum and V̂ persist, and the noise
    has the variance of the paper's update.

Flatness ("dual Bayesian") gradient (:func:`flat_gradient`)
    ``ĝ = g + (λ/ρ)·(∇U(θ + ρ·g/‖g‖) - g)``, ρ = 0.1, λ = 1e-3: a first-order gradient-norm penalty
    (TASAR §4.2; the same rule finetunes BA's surrogate, Li et al., ICLR 2023). ``‖g‖`` is per head for
    the heads, global over all parameters for BA.

Diagonal SWAG (:class:`DiagonalSWAG`; Maddox et al., NeurIPS 2019)
    Running first and second moments θ̄, θ²̄ per group (per head) with a per-group counter; the released
    TASAR code shares one counter across its heads (so every head after the first averages with wrong
    weights) — fixed here. Samples ``θ = θ̄ + scale·σ ⊙ ε``, ``σ² = max(θ²̄ - θ̄², 0) + 1e-30``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from robench.errors import ConfigError

_VAR_FLOOR = 1e-30


class SGAdaHMC:
    """Scale-adapted SGHMC over a list of tensors it owns (updated in place); see the module docstring.

    ``step(grads)`` applies one update given the gradients of the potential at the current point.
    Noise comes from ``generator`` (drawn on its device, then moved to the parameters' device).
    ``V̂`` is floored at ``v_floor`` times its mean over each tensor (per group of the first
    ``group_dims`` dims), bounding the preconditioner's range to ``v_floor^{-1/2}`` : 1 (100:1), as
    Adam's ε does; without a floor a coordinate whose gradient vanishes (a dead ReLU unit) gets an
    unbounded preconditioned noise and random-walks away.
    """

    def __init__(
        self,
        params: list[Tensor],
        generator: torch.Generator,
        lr: float = 2e-3,
        friction: float = 0.05,
        tau: float = 2.0,
        temperature: float = 1e-5,
        v_floor: float = 1e-4,
        group_dims: int = 0,
    ) -> None:
        if not lr > 0 or not 0 < friction <= 1 or not tau >= 1 or temperature < 0:
            raise ConfigError(
                f"expected lr > 0, 0 < friction <= 1, tau >= 1, temperature >= 0, got lr={lr}, "
                f"friction={friction}, tau={tau}, temperature={temperature} in SGAdaHMC"
            )
        self.params = params
        self.generator = generator
        self.lr, self.friction, self.tau, self.temperature = lr, friction, tau, temperature
        self.v_floor, self.group_dims = v_floor, group_dims
        self.momentum = [torch.zeros_like(p) for p in params]
        self.v_hat: list[Tensor] | None = None

    @torch.no_grad()
    def step(self, grads: list[Tensor]) -> None:
        eps, mu, tau, temp = self.lr, self.friction, self.tau, self.temperature
        if self.v_hat is None:
            self.v_hat = [g * g for g in grads]
        for p, m, v, g in zip(self.params, self.momentum, self.v_hat, grads, strict=True):
            v.mul_(1 - 1 / tau).addcmul_(g, g, value=1 / tau)
            floor = (self.v_floor * v.flatten(self.group_dims).mean(-1)).clamp_min(1e-16)
            floor = floor.view(*floor.shape, *([1] * (v.dim() - self.group_dims)))
            minv = torch.maximum(v, floor).rsqrt()
            m.mul_(1 - mu).add_(minv * g, alpha=-(eps**2))
            if temp > 0:
                std = (temp * (2 * eps**2 * mu * minv - eps**4)).clamp_min(0).sqrt()
                noise = torch.randn(p.shape, generator=self.generator, device=self.generator.device)
                m.add_(std * noise.to(p.device, p.dtype))
            p.add_(m)


def flat_gradient(
    grad_fn: Callable[[list[Tensor]], list[Tensor]],
    params: list[Tensor],
    rho: float,
    lam: float,
    group_dims: int = 0,
) -> list[Tensor]:
    """``ĝ = g + (λ/ρ)(∇U(θ + ρ·g/‖g‖) - g)`` with ``g = grad_fn(params)``.

    ``‖g‖`` is taken over all entries of all tensors (``group_dims = 0``) or per group over everything
    after the first ``group_dims`` dims (``group_dims = 1``: per head for (K, P) head parameters).
    """
    g = grad_fn(params)
    if lam == 0:
        return g
    if group_dims == 0:
        norm = torch.sqrt(sum((t.double() ** 2).sum() for t in g)).float().clamp_min(1e-20)
        shifted = [p + rho * t / norm for p, t in zip(params, g, strict=True)]
    else:
        sq = sum((t.double() ** 2).flatten(group_dims).sum(-1) for t in g)
        norm = sq.sqrt().float().clamp_min(1e-20)
        shifted = [
            p + rho * t / norm.view(*norm.shape, *([1] * (t.dim() - group_dims)))
            for p, t in zip(params, g, strict=True)
        ]
    g_up = grad_fn(shifted)
    return [a + (lam / rho) * (b - a) for a, b in zip(g, g_up, strict=True)]


class DiagonalSWAG:
    """Running diagonal SWAG moments of ``groups`` parameter vectors of ``dim`` entries (float64).

    ``update(theta, which)`` adds a snapshot ``theta`` (groups, dim) to the groups selected by the
    bool mask ``which`` (all by default); each group has its own counter ``count``.
    """

    def __init__(self, groups: int, dim: int, device: torch.device | str = "cpu") -> None:
        self.mean = torch.zeros(groups, dim, dtype=torch.float64, device=device)
        self.sq_mean = torch.zeros(groups, dim, dtype=torch.float64, device=device)
        self.count = torch.zeros(groups, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, theta: Tensor, which: Tensor | None = None) -> None:
        th = theta.detach().to(torch.float64)
        if which is None:
            which = torch.ones(self.count.shape, dtype=torch.bool, device=self.count.device)
        n = self.count.to(torch.float64).unsqueeze(1)
        w = which.unsqueeze(1)
        self.mean = torch.where(w, (n * self.mean + th) / (n + 1), self.mean)
        self.sq_mean = torch.where(w, (n * self.sq_mean + th * th) / (n + 1), self.sq_mean)
        self.count = self.count + which.to(torch.int64)


def swag_std(mean: Tensor, sq_mean: Tensor) -> Tensor:
    """``σ = sqrt(max(θ²̄ - θ̄², 0) + 1e-30)``."""
    return ((sq_mean - mean * mean).clamp_min(0) + _VAR_FLOOR).sqrt()


def swag_sample(
    mean: Tensor, std: Tensor, samples: int, scale: float, generator: torch.Generator
) -> Tensor:
    """``samples`` draws ``θ̄ + scale·σ ⊙ ε`` per group: (G, P) -> (G·samples, P), group-major."""
    noise = torch.randn(
        (mean.shape[0], samples, mean.shape[1]), generator=generator, device=generator.device
    )
    noise = noise.to(mean.device, mean.dtype)
    return (mean.unsqueeze(1) + scale * std.unsqueeze(1) * noise).reshape(-1, mean.shape[1])
