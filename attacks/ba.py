"""BA: the Bayesian-attack baseline (Li, Guo & Chen, "Making substitute models more Bayesian can
enhance transferability of adversarial examples", ICLR 2023), as run in the TASAR benchmark
(Diao et al., ICLR 2025).

Finetuning (cached per surrogate weights × attacker data × config; built on first use with a
progress bar, or ahead of time by ``robench prepare ba``): all surrogate parameters θ are finetuned on
the attacker's labelled data (``access.train_x``/``train_y``) with the flatness gradient
``ĝ = g + (λ/ρ)(∇L(θ + ρ·g/‖g‖) − g)`` (ρ = 0.1, λ = 1e-3, ‖g‖ over all parameters) and SG-AdaHMC
(the TASAR benchmark's optimiser for BA), then diagonal SWAG moments θ̄, θ²̄ are collected over the
``snapshots`` last steps (:mod:`robench.ops.posterior`). It runs on a *functional copy*:
``torch.func.functional_call`` with a dict of cloned parameters; the given module is never modified,
never switched to training mode (batch-norm statistics stay as given) and never deep-copied.

Budget (CPU-feasible; the paper finetunes for epochs): ``post_steps`` = 100 burn-in + ``snapshots``
= 100 collected steps on minibatches of 32, each with 2 forward/backward passes of the surrogate
(flatness gradient): 400 passes in total.

Attack, per iteration (untargeted: ascend J = CE(·, y); targeted: J = −CE(·, y_t))::

    θ_s = θ̄ + scale·σ ⊙ ε_s,  σ² = max(θ²̄ − θ̄², 0) + 1e-30,   s = 1..S (S = 3, scale = 1.5)
    G = (1/S) Σ_s ∇ₓ J(f_{θ_s}(x'))
    x' ← Π(x' + α·N(G))        N(v) = v / mean|v| per sample, α = step·ε = ε

as the TASAR benchmark's ``BA.py`` does (mean-normalised step of 0.01 at ε = 0.01, 200 iterations,
clipping every iteration); ``direction = "sign"`` takes ``α·sign(G)`` instead (Li et al.'s I-FGSM
form, with α = step·ε). Under L2 the step is ``α·d/‖d‖₂``. Several surrogates: each has its own
posterior; G averages over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from robench.access import Knowledge
from robench.attack import Attack, AttackConfig, register_attack
from robench.errors import ConfigError
from robench.ops import transfer as ops
from robench.ops.posterior import (
    FinetuneConfig,
    ascend,
    attacker_data,
    ba_posterior,
    named_moments,
    sampler_kwargs,
    validate_sampler_fields,
)

DIRECTIONS = ("mean", "sign")


@dataclass(frozen=True)
class BAConfig(AttackConfig):
    """BA hyper-parameters (see the module docstring).

    Attack: ``iterations`` (200), ``step`` (α = step·ε; 1.0), ``samples`` S (3), ``scale`` (1.5),
    ``direction`` ("mean": N(G), the TASAR benchmark; "sign").
    Finetuning (part of the cache key): ``post_steps`` (100), ``snapshots`` (100), ``inner_steps``
    (1), ``batch_size`` (32), ``lr`` (5e-3), ``friction`` (0.05), ``tau`` (2), ``temperature`` (1e-5),
    ``rho`` (0.1), ``lam`` (1e-3), ``smoothing`` (True; False = plain gradient), ``posttrain_seed`` (0).
    ``cache_dir`` ("" = ``$ROBENCH_CACHE`` or ``~/.cache/robench``), ``use_cache`` (True).
    """

    iterations: int = 200
    step: float = 1.0
    samples: int = 3
    scale: float = 1.5
    direction: str = "mean"
    post_steps: int = 100
    snapshots: int = 100
    inner_steps: int = 1
    batch_size: int = 32
    lr: float = 5e-3
    friction: float = 0.05
    tau: float = 2.0
    temperature: float = 1e-5
    rho: float = 0.1
    lam: float = 1e-3
    smoothing: bool = True
    posttrain_seed: int = 0
    cache_dir: str = ""
    use_cache: bool = True

    def __post_init__(self) -> None:
        src = "attack 'ba' config"
        validate_sampler_fields(self, src)
        ops.require_int(self.iterations, "iterations", src, minimum=0)
        ops.require_int(self.samples, "samples", src)
        ops.require_float(self.step, "step", src, low_open=True)
        ops.require_float(self.scale, "scale", src)
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                f"expected direction in {DIRECTIONS}, got {self.direction!r} in {src} field 'direction'"
            )

    def finetune(self) -> FinetuneConfig:
        """The finetuning part of this config (the cache key's config)."""
        return FinetuneConfig(**sampler_kwargs(self))


@register_attack("ba")
class BA(Attack):
    """Bayesian attack (Li et al., ICLR 2023) as in the TASAR benchmark; see the module docstring.

    Shapes: x (N, 3, T, V, M) -> x_adv of the same shape. Randomised: the S surrogates sampled per
    iteration come from the harness's generator (finetuning uses its own fixed seed).
    """

    knowledge = Knowledge.TRANSFER
    norms = ("linf", "l2")
    randomized = True
    supports_targeted = True
    Config = BAConfig

    def run(self, access, x, y, threat, generator, target):  # noqa: D102
        cfg: BAConfig = self.config
        models = tuple(access.surrogates)
        tx, ty = attacker_data(access, self.name)
        posts = []
        for model in models:
            dev = next(model.parameters(), x).device
            art = ba_posterior(
                model,
                tx.to(dev),
                ty.to(dev),
                cfg.finetune(),
                cfg.cache_dir or None,
                cfg.use_cache,
                progress=True,
            )
            names = [k for k, _ in model.named_parameters()]
            means, stds = named_moments(art, names)
            posts.append(
                (
                    {k: v.to(dev) for k, v in means.items()},
                    {k: v.to(dev) for k, v in stds.items()},
                    dict(model.named_buffers()),
                )
            )
        tgt = target if cfg.targeted else None
        allowed = threat.allowed_mask(x)
        alpha = cfg.step * threat.eps
        x_adv = x.detach().clone()
        for _ in range(cfg.iterations):
            g = torch.zeros_like(x)
            for model, (means, stds, buffers) in zip(models, posts, strict=True):
                for _s in range(cfg.samples):
                    params = {
                        k: means[k] + cfg.scale * stds[k] * _randn(means[k], generator)
                        for k in means
                    }
                    g += _input_gradient(model, {**params, **buffers}, x_adv, y, tgt)
            g = g * allowed / (cfg.samples * len(models))
            d = ops.mean_abs_normalize(g) if cfg.direction == "mean" else g.sign()
            x_adv = threat.project(x, ascend(x_adv, d, alpha, threat.norm)).detach()
        return x_adv


def _randn(like: Tensor, generator: torch.Generator) -> Tensor:
    noise = torch.randn(like.shape, generator=generator, device=generator.device)
    return noise.to(like.device, like.dtype)


def _input_gradient(
    model, state: dict[str, Tensor], x_adv: Tensor, y: Tensor, target: Tensor | None
) -> Tensor:
    """``∇ₓ Σ_n J(f_state(x'))`` through ``torch.func.functional_call`` (no parameter gradients)."""
    xr = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        out = torch.func.functional_call(model, (state,), (xr,))
        (g,) = torch.autograd.grad(ops.attack_objective(out, y, target).sum(), xr)
    return g
