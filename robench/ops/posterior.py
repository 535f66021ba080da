"""Shared Bayesian machinery of the TASAR and BA transfer attacks.

Post-trained heads (TASAR; Diao et al., "TASAR: Transfer-based Attack on Skeletal Action
Recognition", ICLR 2025)
    ``h_k(r) = r + ReLU(W2_k (W1_k r + b1_k) + b2_k)``, ``r = ReLU(f(x))`` in logit space, ``W ∈ R^{C×C}``.
    The released code builds each head as ``nn.Sequential(Linear(C, C), Linear(C, C), ReLU())``, so the
    biases (absent from the paper's formula) are kept. The K heads' parameters are one (K, P) tensor,
    ``P = 2C² + 2C`` laid out ``[W1, b1, W2, b2]`` (rows = outputs); :func:`head_logits` evaluates any
    number of parameter vectors on shared features with batched matrix products.

The samplers (SG-AdaHMC, the flatness gradient, diagonal SWAG) live in :mod:`robench.ops.samplers`,
the artefact cache in :mod:`robench.ops.artifacts`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from robench.errors import ConfigError, DataError
from robench.ops.artifacts import (
    cached_artifacts,
    code_version,
    module_sha256,
    tensor_fingerprint,
)
from robench.ops.samplers import DiagonalSWAG, SGAdaHMC, flat_gradient, swag_std


def posterior_parts(model: nn.Module, train_x: Tensor, train_y: Tensor, cfg: Any) -> dict[str, Any]:
    """The cache-key inputs of a post-training artefact: surrogate sha256, data fingerprint, the full
    config and the code version of the machinery that builds it (:func:`~robench.ops.artifacts.code_version`
    of this module, the samplers and the cache)."""
    return {
        "surrogate": module_sha256(model),
        "data": tensor_fingerprint(train_x, train_y),
        "config": asdict(cfg),
        "code": code_version(posterior_parts),
    }


# ------------------------------------------------------------------------------------ heads
def head_dim(num_classes: int) -> int:
    """Parameters per head, ``2C² + 2C``."""
    return 2 * num_classes * num_classes + 2 * num_classes


def _unpack(theta: Tensor, c: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    cc = c * c
    w1 = theta[..., :cc].unflatten(-1, (c, c))
    b1 = theta[..., cc : cc + c]
    w2 = theta[..., cc + c : 2 * cc + c].unflatten(-1, (c, c))
    b2 = theta[..., 2 * cc + c :]
    return w1, b1, w2, b2


def init_heads(heads: int, num_classes: int, generator: torch.Generator) -> Tensor:
    """(K, P) head parameters drawn like ``nn.Linear``'s default: U(-1/√C, 1/√C) for W and b."""
    bound = 1.0 / math.sqrt(num_classes)
    u = torch.rand((heads, head_dim(num_classes)), generator=generator, device=generator.device)
    return (2 * u - 1) * bound


def head_logits(theta: Tensor, r: Tensor) -> Tensor:
    """``h_θ(r) = r + ReLU(W2 (W1 r + b1) + b2)`` for B parameter vectors.

    ``theta`` (B, P); ``r`` (N, C) shared by all B heads or (B, N, C) per head. Returns (B, N, C).
    """
    c = r.shape[-1]
    w1, b1, w2, b2 = _unpack(theta, c)
    hid = torch.matmul(r, w1.transpose(-1, -2)) + b1.unsqueeze(-2)
    z = torch.matmul(hid, w2.transpose(-1, -2)) + b2.unsqueeze(-2)
    return r + F.relu(z)


def head_grad(theta: Tensor, r: Tensor, y: Tensor, scale: float) -> Tensor:
    """Analytic ``∇_θ scale·mean-CE(h_θ(r_k), y_k)`` per head: theta (K, P), r (K, b, C), y (K, b).

    Backpropagation written out (no autograd bookkeeping, ~10 small batched ops):
    ``δ = scale/b·(softmax(out) - onehot)``, ``δz = δ ⊙ [z > 0]``, ``∇W2 = δzᵀ hid``, ``∇b2 = Σ δz``,
    ``δh = δz W2``, ``∇W1 = δhᵀ r``, ``∇b1 = Σ δh``.
    """
    k, b, c = r.shape
    w1, b1, w2, b2 = _unpack(theta, c)
    hid = torch.baddbmm(b1.unsqueeze(1), r, w1.transpose(1, 2))
    z = torch.baddbmm(b2.unsqueeze(1), hid, w2.transpose(1, 2))
    out = r + F.relu(z)
    delta = out.softmax(-1)
    delta.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(delta[..., :1], -1.0))
    dz = delta * (z > 0) * (scale / b)
    gw2 = torch.bmm(dz.transpose(1, 2), hid)
    gb2 = dz.sum(1)
    dh = torch.bmm(dz, w2)
    gw1 = torch.bmm(dh.transpose(1, 2), r)
    gb1 = dh.sum(1)
    return torch.cat([gw1.flatten(1), gb1, gw2.flatten(1), gb2], dim=1)


@dataclass(frozen=True)
class HeadPosttrainConfig:
    """TASAR post-training (defaults from the paper/code; see the module docstring).

    Stage 1: ``post_steps`` SG-AdaHMC outer steps (a fresh minibatch of ``batch_size`` per head each,
    ``inner_steps`` sampler steps on it). Stage 2: ``snapshots`` further outer steps with the flatness
    gradient (plain gradient when ``smoothing`` is False), one diagonal-SWAG snapshot per head after
    each (≈300 snapshots).
    """

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
    seed: int = 0


def surrogate_features(
    model: nn.Module, x: Tensor, batch_size: int = 64, progress: bool = False
) -> Tensor:
    """``r = ReLU(f(x))`` (N, C) under inference mode, ``batch_size`` clips at a time (f is frozen).

    ``progress`` shows tqdm bars on a terminal (everywhere here: ``disable=None`` hides them when
    stderr is not a TTY).
    """
    outs = []
    with torch.inference_mode():
        for xb in tqdm(
            x.split(batch_size),
            desc="surrogate features",
            disable=None if progress else True,
            leave=False,
        ):
            outs.append(F.relu(model(xb)).float())
    return torch.cat(outs).clone()


def posttrain_heads(
    r: Tensor, y: Tensor, cfg: HeadPosttrainConfig, progress: bool = False
) -> dict[str, Tensor]:
    """Post-train K heads on frozen features ``r`` (n, C) and labels ``y`` (n,); returns SWAG moments.

    All heads run in lockstep but independently (own init, minibatches and noise), batched over K.
    Returns ``mean``, ``sq_mean`` (K, P) float64, ``count`` (K,), ``final`` (K, P) (the last sample)
    and ``train_acc`` (scalar: accuracy of the posterior-mean ensemble Σ_k h_k on the data).
    """
    n, c = r.shape
    if n == 0 or y.shape != (n,):
        raise DataError(
            f"expected features (n, C) with n > 0 and labels (n,), got {tuple(r.shape)}, {tuple(y.shape)} in posttrain_heads"
        )
    gen = torch.Generator().manual_seed(cfg.seed)
    r, y = r.detach().float().cpu(), y.detach().cpu()
    theta = init_heads(cfg.heads, c, gen)
    sampler = SGAdaHMC([theta], gen, cfg.lr, cfg.friction, cfg.tau, cfg.temperature, group_dims=1)
    swag = DiagonalSWAG(cfg.heads, theta.shape[1])
    b = min(cfg.batch_size, n)

    total = cfg.post_steps + cfg.snapshots
    bar = tqdm(
        total=total, desc="TASAR post-training", disable=None if progress else True, leave=False
    )
    for step in range(total):
        idx = torch.randint(n, (cfg.heads, b), generator=gen)
        rb, yb = r[idx], y[idx]

        def grad_fn(ps: list[Tensor], rb: Tensor = rb, yb: Tensor = yb) -> list[Tensor]:
            return [head_grad(ps[0], rb, yb, float(n))]

        stage2 = step >= cfg.post_steps
        for _ in range(cfg.inner_steps):
            if stage2 and cfg.smoothing:
                grads = flat_gradient(grad_fn, [theta], cfg.rho, cfg.lam, group_dims=1)
            else:
                grads = grad_fn([theta])
            sampler.step(grads)
        if stage2:
            swag.update(theta)
        bar.update(1)
    bar.close()
    if not torch.isfinite(theta).all():
        raise DataError(
            "expected finite head parameters, got NaN/inf after TASAR post-training (lower 'lr')"
        )
    mean = swag.mean if cfg.snapshots > 0 else theta.double()
    sq = swag.sq_mean if cfg.snapshots > 0 else theta.double() ** 2
    with torch.no_grad():
        ens = head_logits(mean.float(), r).sum(0)
        acc = (ens.argmax(1) == y).float().mean()
    return {
        "mean": mean,
        "sq_mean": sq,
        "count": swag.count,
        "final": theta.clone(),
        "train_acc": acc,
    }


def head_posterior(
    model: nn.Module,
    train_x: Tensor,
    train_y: Tensor,
    cfg: HeadPosttrainConfig,
    directory: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> dict[str, Tensor]:
    """The TASAR head posterior of surrogate ``model`` on the attacker's data, cached (module doc)."""
    parts = posterior_parts(model, train_x, train_y, cfg)

    def build() -> dict[str, Tensor]:
        r = surrogate_features(model, train_x, progress=progress)
        return posttrain_heads(r, train_y.to(r.device), cfg, progress=progress)

    return cached_artifacts("tasar", parts, build, directory, use_cache, ("mean", "sq_mean"))


# ------------------------------------------------------------------------------------ BA
@dataclass(frozen=True)
class FinetuneConfig:
    """BA finetuning of all surrogate parameters (Li et al., ICLR 2023, as in the TASAR benchmark).

    ``post_steps`` burn-in steps, then ``snapshots`` steps each followed by one diagonal-SWAG
    snapshot; every step draws a minibatch of ``batch_size`` and applies ``inner_steps`` SG-AdaHMC
    updates with the flatness gradient (2 surrogate forward/backward passes each). Default budget:
    100 + 100 steps of batch 32, i.e. 400 forward/backward passes, a few minutes on a CPU for a
    full-width ST-GCN; cached, so paid once per (surrogate, data, config).
    """

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
    seed: int = 0


def finetune_posterior(
    model: nn.Module,
    train_x: Tensor,
    train_y: Tensor,
    cfg: FinetuneConfig,
    progress: bool = False,
) -> dict[str, Tensor]:
    """Finetune a functional copy of ``model``'s parameters; returns ``mean.NAME``/``sq_mean.NAME``.

    Runs on the parameters' device through ``torch.func.functional_call`` with a dict of cloned
    parameters: ``model`` itself (and its ``.grad``) is never modified, it stays in the mode it was
    given (eval: batch-norm statistics frozen). Noise and minibatches come from a CPU generator seeded
    by ``cfg.seed``.
    """
    n = train_x.shape[0]
    if n == 0 or train_y.shape != (n,):
        raise DataError(
            f"expected attacker data with n > 0 clips and (n,) labels, got {tuple(train_x.shape)}, {tuple(train_y.shape)} in BA finetuning"
        )
    names = [k for k, _ in model.named_parameters()]
    params = [p.detach().clone() for _, p in model.named_parameters()]
    buffers = dict(model.named_buffers())
    device = params[0].device if params else train_x.device
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler = SGAdaHMC(params, gen, cfg.lr, cfg.friction, cfg.tau, cfg.temperature)
    swag = DiagonalSWAG(1, sum(p.numel() for p in params), device=device)
    b = min(cfg.batch_size, n)
    total = cfg.post_steps + cfg.snapshots
    bar = tqdm(total=total, desc="BA finetuning", disable=None if progress else True, leave=False)
    for step in range(total):
        idx = torch.randint(n, (b,), generator=gen)
        xb, yb = train_x[idx].to(device), train_y[idx].to(device)

        def grad_fn(ps: list[Tensor], xb: Tensor = xb, yb: Tensor = yb) -> list[Tensor]:
            with torch.enable_grad():
                live = [p.detach().requires_grad_(True) for p in ps]
                out = torch.func.functional_call(
                    model, ({**dict(zip(names, live, strict=True)), **buffers},), (xb,)
                )
                loss = F.cross_entropy(out, yb) * n
                grads = torch.autograd.grad(loss, live, allow_unused=True)
                return [
                    torch.zeros_like(p) if g is None else g
                    for p, g in zip(live, grads, strict=True)
                ]

        for _ in range(cfg.inner_steps):
            grads = (
                flat_gradient(grad_fn, params, cfg.rho, cfg.lam)
                if cfg.smoothing
                else grad_fn(params)
            )
            sampler.step(grads)
        if step >= cfg.post_steps:
            swag.update(torch.cat([p.flatten() for p in params]).unsqueeze(0))
        bar.update(1)
    bar.close()
    flat_mean = (
        swag.mean[0] if cfg.snapshots > 0 else torch.cat([p.flatten() for p in params]).double()
    )
    flat_sq = swag.sq_mean[0] if cfg.snapshots > 0 else flat_mean**2
    if not torch.isfinite(flat_mean).all():
        raise DataError("expected finite parameters, got NaN/inf after BA finetuning (lower 'lr')")
    out: dict[str, Tensor] = {}
    offset = 0
    for name, p in zip(names, params, strict=True):
        k = p.numel()
        out[f"mean.{name}"] = flat_mean[offset : offset + k].view(p.shape).to(p.dtype)
        out[f"sq_mean.{name}"] = flat_sq[offset : offset + k].view(p.shape)
        offset += k
    return out


def ba_posterior(
    model: nn.Module,
    train_x: Tensor,
    train_y: Tensor,
    cfg: FinetuneConfig,
    directory: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> dict[str, Tensor]:
    """BA's diagonal-SWAG posterior of ``model`` on the attacker's data, cached (module doc)."""
    parts = posterior_parts(model, train_x, train_y, cfg)
    names = [k for k, _ in model.named_parameters()]
    required = [f"{s}.{n}" for n in names for s in ("mean", "sq_mean")]
    return cached_artifacts(
        "ba",
        parts,
        lambda: finetune_posterior(model, train_x, train_y, cfg, progress),
        directory,
        use_cache,
        required,
    )


def named_moments(
    art: dict[str, Tensor], names: Iterable[str]
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(mean, std) dicts by parameter name from a BA artefact; a missing name raises DataError."""
    means, stds = {}, {}
    for name in names:
        if f"mean.{name}" not in art or f"sq_mean.{name}" not in art:
            raise DataError(
                f"expected parameter {name!r} in the BA posterior artefact, got none (stale cache?)"
            )
        m = art[f"mean.{name}"]
        means[name] = m
        stds[name] = swag_std(m.double(), art[f"sq_mean.{name}"].double()).to(m.dtype)
    return means, stds


# ------------------------------------------------------------------------------------ attack helpers
def attacker_data(access: Any, name: str) -> tuple[Tensor, Tensor]:
    """``(access.train_x, access.train_y)``; a ConfigError when the harness passed none."""
    tx, ty = access.train_x, access.train_y
    if tx is None or ty is None or tx.shape[0] == 0:
        raise ConfigError(
            f"expected the attacker's labelled data (Transfer access train_x/train_y), got none for "
            f"attack {name!r}, which post-trains its surrogate on it"
        )
    return tx, ty


def ascend(x_adv: Tensor, direction: Tensor, alpha: float, norm: str) -> Tensor:
    """``x' + α·d`` (L∞: the mean-normalised direction as is, as TASAR/BA step) or ``x' + α·d/‖d‖₂``."""
    if norm == "l2":
        nrm = direction.flatten(1).norm(dim=1).clamp_min(1e-12)
        direction = direction / nrm.view(-1, 1, 1, 1, 1)
    return x_adv + alpha * direction


# ------------------------------------------------------------------ shared attack-config fields
SAMPLER_FIELDS = (
    "post_steps", "snapshots", "inner_steps", "batch_size", "lr", "friction", "tau",
    "temperature", "rho", "lam", "smoothing",
)  # fmt: skip


def validate_sampler_fields(cfg: Any, src: str) -> None:
    """Check the post-training / sampler fields that TASAR's and BA's configs share.

    One-line ConfigErrors name the field (``src`` names the config, e.g. "attack 'ba' config").
    """
    from robench.ops import transfer as ops

    for name in ("post_steps", "snapshots", "inner_steps", "posttrain_seed"):
        ops.require_int(getattr(cfg, name), name, src, minimum=0)
    ops.require_int(cfg.batch_size, "batch_size", src)
    ops.require_float(cfg.lr, "lr", src, low_open=True)
    ops.require_float(cfg.friction, "friction", src, high=1.0, low_open=True)
    ops.require_float(cfg.tau, "tau", src, low=1.0)
    ops.require_float(cfg.temperature, "temperature", src)
    ops.require_float(cfg.rho, "rho", src, low_open=True)
    ops.require_float(cfg.lam, "lam", src)
    for name in ("smoothing", "use_cache"):
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(
                f"expected true/false, got {getattr(cfg, name)!r} in {src} field {name!r}"
            )
    if not isinstance(cfg.cache_dir, str):
        raise ConfigError(
            f"expected a folder path string, got {cfg.cache_dir!r} in {src} field 'cache_dir'"
        )


def sampler_kwargs(cfg: Any) -> dict[str, Any]:
    """The shared sampler fields of an attack config, as keyword arguments of the post-training
    configs (``posttrain_seed`` becomes ``seed``)."""
    return {**{name: getattr(cfg, name) for name in SAMPLER_FIELDS}, "seed": cfg.posttrain_seed}
