"""TASAR: transfer-based attack on skeletal action recognition (Diao et al., ICLR 2025).

Surrogate: the frozen pretrained f plus K post-trained Bayesian heads
``h_k(r) = r + ReLU(W2_k (W1_k r + b1_k) + b2_k)``, ``r = ReLU(f(x))`` (:mod:`robench.ops.posterior`).
Post-training (cached per surrogate weights × attacker data × config, built on first use with a
progress bar, or ahead of time by ``robench prepare tasar``): stage 1 samples the heads with SG-AdaHMC
on CE, stage 2 continues with the flatness ("dual Bayesian") gradient
``ĝ = g + (λ/ρ)(∇L(θ + ρ·g/‖g‖) − g)`` while per-head diagonal SWAG moments θ̄, θ²̄ are collected.
f is frozen, so its features on the attacker's data are computed once and post-training only updates
heads. The data are ``access.train_x``/``access.train_y`` (the attacker's own labelled clips).

Attack, per iteration t (untargeted: ascend J = CE(·, y); targeted: J = −CE(·, y_t))::

    θ_ks = θ̄_k + scale·σ_k ⊙ ε_ks,  σ_k² = max(θ²̄_k − θ̄_k², 0) + 1e-30,  s = 1..S, k = 1..K
    G_B = (1/KS) Σ_ks ∇ₓ J(h_{θ_ks}(ReLU(f(x'))))          one forward and ONE backward through f
    G_M: ∇ₓ J(Σ_k h_{θ̄_k}(ReLU(f(x'))))  → SMI transform g̃ (robench.ops.motion) → m ← μ·m + g̃
    x' ← Π(x' + α·((1 − w)·N(G_B) + w·N(m)))

with N(v) = v/mean|v| per sample, w = ``motion_weight`` = 0.2, μ = ``motion_momentum`` = 1,
α = ``step``·ε = ε (the paper's α = 0.01 at ε = 0.01), S = ``samples`` = 20, K = ``heads`` = 3,
scale = 1.5, 200 iterations; Π = ``threat.project`` every iteration. Under L2 the direction is scaled
to ``α·d/‖d‖₂`` per sample (the paper is L∞ only). The motion model (time-varying AR fitted on the
clean clip, :func:`robench.ops.motion.fit_tvar`) gives the Jacobians of the SMI transform.

Where this departs from the released code (deliberately):

- G_B needs one forward/backward of f per iteration: all K·S sampled heads act on the same ``r``
  (batched matrix products over the samples); the release deep-copies a model per sample (≈120
  forward/backward passes of f per iteration).
- The motion gradient's base ensemble uses the posterior-mean heads θ̄_k; the release uses the
  heads' stage-1 weights (the same heads before smoothing). The release also adds the raw,
  un-normalised gradient to its momentum; here the SMI transform normalises first (``N(g)``, as in
  the SMI gradient of Lu et al., ICCV 2023).
- ``smoothing=False`` (ablation): stage 2 runs plain SG-AdaHMC on CE while collecting SWAG.
- The released code sums the Bayesian gradient over iterations (its ``ce_grad_sum`` is never reset
  inside the attack loop), an implicit momentum of decay 1 on G_B that the paper does not state.
  ``bayes_accumulate=True`` does the same (``A ← A + G_B``, the step uses ``N(A)``); the default,
  False, follows the paper's update (``N(G_B)`` of the current iterate only).
- Stage 2 starts from stage 1's last sample; the release restarts it from the stage-1 head of best
  validation accuracy (the attacker's data has no separate validation split here).
- Per-head SWAG counters (the release shares one across heads); SG-AdaHMC as documented in
  :mod:`robench.ops.posterior`.
- Success counts only samples correct on surrogate and victim (the harness; the release counts
  victim clean errors as successes).

Several surrogates (``access.surrogates``): each gets its own heads; G_B and the motion base gradient
are averaged over the surrogates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robench.access import Knowledge
from robench.attack import Attack, AttackConfig, register_attack
from robench.ops import transfer as ops
from robench.ops.motion import fit_tvar
from robench.ops.posterior import (
    HeadPosttrainConfig,
    ascend,
    attacker_data,
    head_logits,
    head_posterior,
    sampler_kwargs,
    validate_sampler_fields,
)
from robench.ops.samplers import swag_sample, swag_std


@dataclass(frozen=True)
class TASARConfig(AttackConfig):
    """TASAR hyper-parameters (paper defaults; see the module docstring).

    Attack: ``iterations`` (200), ``step`` (α = step·ε; 1.0), ``samples`` S per head (20), ``scale``
    (1.5), ``motion_weight`` w (0.2; 0 disables the motion term and its backward pass),
    ``motion_momentum`` μ (1.0), ``bandwidth_frac`` of the AR fit (0.1), ``bayes_accumulate`` (False:
    the paper's N(G_B); True: the released code's N(Σ_t G_B), see the module docstring).
    Post-training (part of the cache key): ``heads`` K (3), ``post_steps`` stage-1 outer steps (300),
    ``snapshots`` stage-2 outer steps = SWAG snapshots per head (300), ``inner_steps`` SG-AdaHMC steps
    per minibatch (30), ``batch_size`` (64), ``lr`` (2e-3), ``friction`` (0.05), ``tau`` (2),
    ``temperature`` (1e-5), ``rho`` (0.1), ``lam`` (1e-3), ``smoothing`` (True), ``posttrain_seed`` (0).
    ``cache_dir`` ("" = ``$ROBENCH_CACHE`` or ``~/.cache/robench``), ``use_cache`` (True).
    """

    iterations: int = 200
    step: float = 1.0
    samples: int = 20
    scale: float = 1.5
    motion_weight: float = 0.2
    motion_momentum: float = 1.0
    bandwidth_frac: float = 0.1
    heads: int = 3
    post_steps: int = 300
    snapshots: int = 300
    inner_steps: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    friction: float = 0.05
    tau: float = 2.0
    temperature: float = 1e-5
    rho: float = 0.1
    lam: float = 1e-3
    smoothing: bool = True
    bayes_accumulate: bool = False
    posttrain_seed: int = 0
    cache_dir: str = ""
    use_cache: bool = True

    def __post_init__(self) -> None:
        src = "attack 'tasar' config"
        validate_sampler_fields(self, src)
        ops.require_int(self.iterations, "iterations", src, minimum=0)
        for name in ("samples", "heads"):
            ops.require_int(getattr(self, name), name, src)
        ops.require_float(self.step, "step", src, low_open=True)
        ops.require_float(self.scale, "scale", src)
        ops.require_float(self.motion_weight, "motion_weight", src, high=1.0)
        ops.require_float(self.motion_momentum, "motion_momentum", src)
        ops.require_float(self.bandwidth_frac, "bandwidth_frac", src, low_open=True)

    def posttrain(self) -> HeadPosttrainConfig:
        """The post-training part of this config (the cache key's config)."""
        return HeadPosttrainConfig(heads=self.heads, **sampler_kwargs(self))


def posterior_gradients(
    model: nn.Module,
    x_adv: Tensor,
    y: Tensor,
    target: Tensor | None,
    theta: Tensor,
    base: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``(G_B, G_M)`` of one surrogate at ``x_adv`` (N, 3, T, V, M).

    ``G_B = (1/B) Σ_b ∇ₓ Σ_n J(h_{θ_b}(r_n))`` for the B sampled heads ``theta`` (B, P), with
    ``r = ReLU(f(x'))`` computed once and one backward pass through f. ``G_M = ∇ₓ Σ_n J(Σ_k h_{base_k}(r_n))``
    for the posterior-mean heads ``base`` (K, P) (a second backward through the retained graph), or
    None when ``base`` is None.
    """
    xr = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        r = F.relu(model(xr))
        out = head_logits(theta, r)  # (B, N, C)
        b, n, c = out.shape
        tgt = None if target is None else target.repeat(b)
        loss_b = ops.attack_objective(out.reshape(b * n, c), y.repeat(b), tgt).sum() / b
        if base is None:
            (g_b,) = torch.autograd.grad(loss_b, xr)
            return g_b, None
        loss_m = ops.attack_objective(head_logits(base, r).sum(0), y, target).sum()
        (g_b,) = torch.autograd.grad(loss_b, xr, retain_graph=True)
        (g_m,) = torch.autograd.grad(loss_m, xr)
    return g_b, g_m


@register_attack("tasar")
class TASAR(Attack):
    """TASAR (Diao et al., ICLR 2025): Bayesian post-trained surrogate + motion gradient; module doc.

    Shapes: x (N, 3, T, V, M) -> x_adv of the same shape; y (N,). Randomised: the posterior samples
    come from the generator passed by the harness (post-training uses its own fixed seed).
    """

    knowledge = Knowledge.TRANSFER
    norms = ("linf", "l2")
    randomized = True
    supports_targeted = True
    Config = TASARConfig

    def run(self, access, x, y, threat, generator, target):  # noqa: D102
        cfg: TASARConfig = self.config
        models = tuple(access.surrogates)
        tx, ty = attacker_data(access, self.name)
        posts = []
        for model in models:
            art = head_posterior(
                model, tx, ty, cfg.posttrain(), cfg.cache_dir or None, cfg.use_cache, progress=True
            )
            mean = art["mean"].to(x.device, torch.float32)
            posts.append((mean, swag_std(art["mean"], art["sq_mean"]).to(x.device, torch.float32)))
        tgt = target if cfg.targeted else None
        allowed = threat.allowed_mask(x)
        use_motion = cfg.motion_weight > 0
        fit = fit_tvar(x, bandwidth_frac=cfg.bandwidth_frac) if use_motion else None
        alpha = cfg.step * threat.eps
        x_adv = x.detach().clone()
        mom = torch.zeros_like(x)
        acc = torch.zeros_like(x)  # the release's ce_grad_sum (bayes_accumulate only)
        for _ in range(cfg.iterations):
            g_b = torch.zeros_like(x)
            g_m = torch.zeros_like(x)
            for model, (mean, std) in zip(models, posts, strict=True):
                theta = swag_sample(mean, std, cfg.samples, cfg.scale, generator)
                gb, gm = posterior_gradients(
                    model, x_adv, y, tgt, theta, mean if use_motion else None
                )
                g_b += gb / len(models)
                if gm is not None:
                    g_m += gm / len(models)
            if cfg.bayes_accumulate:
                acc = acc + g_b
                g_b = acc
            d = ops.mean_abs_normalize(g_b * allowed)
            if fit is not None:
                mom = cfg.motion_momentum * mom + fit.motion_gradient(g_m * allowed)
                d = (1 - cfg.motion_weight) * d + cfg.motion_weight * ops.mean_abs_normalize(mom)
            x_adv = threat.project(x, ascend(x_adv, d * allowed, alpha, threat.norm)).detach()
        return x_adv
