"""Shared Bayesian machinery of the TASAR and BA transfer attacks.

Post-trained heads (TASAR; Diao et al., "TASAR: Transfer-based Attack on Skeletal Action
Recognition", ICLR 2025)
    ``h_k(r) = r + ReLU(W2_k (W1_k r + b1_k) + b2_k)``, ``r = ReLU(f(x))`` in logit space, ``W ∈ R^{C×C}``.
    The released code builds each head as ``nn.Sequential(Linear(C, C), Linear(C, C), ReLU())``, so the
    biases (absent from the paper's formula) are kept. The K heads' parameters are one (K, P) tensor,
    ``P = 2C² + 2C`` laid out ``[W1, b1, W2, b2]`` (rows = outputs); :func:`head_logits` evaluates any
    number of parameter vectors on shared features with batched matrix products.

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

Cache (:func:`cached_artifacts`)
    Post-training artefacts are stored under ``cache_dir()`` (``$ROBENCH_CACHE`` or
    ``~/.cache/robench``, overridable per call) in ``posterior/<kind>-<key>.pt`` (tensors only, loaded
    with ``weights_only=True``) plus a ``.json`` with the key's inputs; the key is the sha256 of the
    surrogate's weights (:func:`module_sha256`), the data fingerprint (:func:`tensor_fingerprint`),
    the build config and a format version. Post-training seeds its own generator from the config, so
    an artefact does not depend on the cell seed and is shared by every cell and batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from robench.errors import ConfigError, DataError
from robench.io import atomic_write, atomic_write_text

FORMAT = 1
MEMO_SIZE = 4
_VAR_FLOOR = 1e-30
_MEMO: dict[str, dict[str, Tensor]] = {}


# ------------------------------------------------------------------------------------ hashing, cache
def module_sha256(module: nn.Module) -> str:
    """sha256 over the class name and every state-dict entry (name, dtype, shape, bytes), sorted."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tensor_fingerprint(*tensors: Tensor) -> str:
    """sha256 over the dtype, shape and bytes of each tensor (the attacker's data x, y)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The artefact cache folder: ``override``, else ``$ROBENCH_CACHE``, else ``~/.cache/robench``."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("ROBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "robench"


def artifact_key(kind: str, parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``{kind, format, **parts}``."""
    blob = json.dumps(
        {"kind": kind, "format": FORMAT, **parts}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def artifact_path(
    kind: str, parts: dict[str, Any], directory: str | os.PathLike | None = None
) -> Path:
    return cache_dir(directory) / "posterior" / f"{kind}-{artifact_key(kind, parts)[:32]}.pt"


def posterior_parts(model: nn.Module, train_x: Tensor, train_y: Tensor, cfg: Any) -> dict[str, Any]:
    """The cache-key inputs of a post-training artefact: surrogate sha256, data fingerprint, config."""
    return {
        "surrogate": module_sha256(model),
        "data": tensor_fingerprint(train_x, train_y),
        "config": asdict(cfg),
    }


def clear_memory_cache() -> None:
    """Forget the artefacts kept in memory (the files on disk stay)."""
    _MEMO.clear()


def cached_artifacts(
    kind: str,
    parts: dict[str, Any],
    build: Callable[[], dict[str, Tensor]],
    directory: str | os.PathLike | None = None,
    use_cache: bool = True,
    required: Iterable[str] = (),
) -> dict[str, Tensor]:
    """The artefacts of ``(kind, parts)``: from memory, else from the cache file, else ``build()``.

    A built artefact is written atomically (``.pt`` of tensors + ``.json`` metadata). An unreadable
    cache file, or one without every ``required`` key, is rebuilt and overwritten. ``use_cache=False``
    always builds and writes nothing. The last ``MEMO_SIZE`` artefacts are also kept in memory.
    """
    required = tuple(required)
    if not use_cache:
        return build()
    path = artifact_path(kind, parts, directory)
    key = str(path)
    if key in _MEMO:
        return _MEMO[key]
    out: dict[str, Tensor] | None = None
    if path.exists():
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            ok = isinstance(loaded, dict) and all(isinstance(v, Tensor) for v in loaded.values())
            if ok and all(k in loaded for k in required):
                out = loaded
        except (OSError, RuntimeError, EOFError, ValueError):
            out = None
    if out is None:
        t0 = time.perf_counter()
        out = {k: v.detach().cpu() for k, v in build().items()}
        atomic_write(path, lambda p: torch.save(out, p))
        meta = {
            "kind": kind,
            "format": FORMAT,
            "seconds": round(time.perf_counter() - t0, 3),
            **parts,
        }
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1, sort_keys=True))
    _MEMO[key] = out
    while len(_MEMO) > MEMO_SIZE:
        _MEMO.pop(next(iter(_MEMO)))
    return out


# ------------------------------------------------------------------------------------ sampler
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
    from robench import transfer_ops as ops

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
