"""BEAT: Bayesian energy-based adversarial training of post-trained heads (Wang, Diao, Tan and Guo,
"Defending Black-box Skeleton-based Human Activity Classifiers", AAAI 2023).

The victim f is frozen. K = ``heads`` (5) small heads are appended in logit space, each
``h_k(r) = r + ReLU(W2_k (W1_k r + b1_k) + b2_k)`` on ``r = ReLU(f(x))`` (the released
``AppendedModel``; the same head as TASAR's, :func:`robench.ops.posterior.head_logits`). The defended
prediction is the mean of the K heads' logits (the release sums them: same argmax; the mean keeps
one head's logit scale for margin losses). Deterministic and differentiable: white-box attacks see
the whole pipeline.

Each head is one chain of SG-AdaHMC (:class:`robench.ops.samplers.SGAdaHMC`) on the potential
``U = n · L``, n the number of training clips, with the energy-based loss per minibatch (x, y)::

    L = w_x · [-(mean LSE h(x) - mean LSE h(x⁻))]            # log p(x), contrastive divergence
      + w_x̃ · [CE(h(x̃), y) + β · D(x, x̃)]                   # log p(x̃ | x, y)
      + w_c · CE(h(x), y)                                     # log p(y | x)

with w_x = 0.3, w_x̃ = 0.1, w_c = 1, β = 1 (the release's ``xWeight``, ``xTildeWeight``,
``clfWeight``, ``drvWeight``) and ``D(x, x̃) = Σ_{k=1..3} MSE(Δᵏx, Δᵏx̃) + MSE(|bones(x̃)|, |bones(x)|)``
(Δᵏ: k-th temporal difference). D does not depend on the heads: it is reported, its gradient is zero.

- x⁻ (samples of the model's p(x) ∝ exp LSE h(x)): ``sgld_steps`` = 10 SGLD steps
  ``x ← x + sgld_lr·∇ₓ LSE h(x) + sqrt(2·sgld_lr)·sgld_std·ξ`` (0.01, 5e-3) from a replay buffer of
  ``buffer_size`` = 100 chains, each restarted with probability ``reinit`` = 0.05 from uniform noise
  in [-s, s] (s: the batch's largest |coordinate|, for metric data; the release draws U(-1, 1) on
  normalised data).
- x̃ (samples of p(x̃ | x, y) ∝ exp(-CE(h(x̃), y) - β·D(x, x̃)): perturbed clips that keep their
  label and their motion): the same SGLD rule from ``x + U(-perturb, perturb)`` (0.05 data units).

Both use the ensemble of the current heads (the release's ``modelEval`` with every head) and move
only present joints of present bodies (padding and absent bodies stay zero). After every minibatch's
samples are drawn, each head takes ``inner_steps`` = 15 SG-AdaHMC steps on that minibatch (the
release's L = 15; here each step recomputes the gradient at the current point, which costs no
victim pass: the victim's features of x, x⁻ and x̃ are computed once per minibatch).

Departures from the released code, each a defect there: its SGLD for x⁻ takes LogSumExp over the
batch axis (here over classes, as in JEM, Grathwohl et al., ICLR 2020, which BEAT follows); its
log p(x) term uses the mean logit instead of LogSumExp; its replay buffer starts empty and is never
filled, so every x⁻ chain restarts from noise (here a real buffer); its SG-AdaHMC resets momentum and
the preconditioner at every step (robench's sampler keeps them). For a 2-core CPU one x⁻ chain set is
shared by the K heads per minibatch (the release runs one per head), and benchmarks cut ``epochs``
(20 in the release) and ``sgld_steps``; the checkpoint's cache entry records the config used.

The heads are cached like TASAR's posterior (key: the victim's sha256, the training data's
fingerprint, the full config, the code version): ``robench defend VICTIM beat`` builds them ahead
of a benchmark, which then loads them.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from robench.data.skeleton import Topology, presence_mask
from robench.defense import Defense, DefenseConfig, DefenseKind, register_defense
from robench.errors import ConfigError, DataError
from robench.ops.artifacts import cached_artifacts, code_version, module_sha256, tensor_fingerprint
from robench.ops.posterior import head_logits, init_heads
from robench.ops.samplers import SGAdaHMC
from robench.ops.transfer import require_float, require_int


@dataclass(frozen=True)
class BeatConfig(DefenseConfig):
    """BEAT's hyper-parameters (release defaults; module docstring)."""

    heads: int = 5
    epochs: int = 20
    batch_size: int = 32
    inner_steps: int = 15
    lr: float = 2e-3
    friction: float = 0.05
    tau: float = 2.0
    temperature: float = 1e-5
    sgld_steps: int = 10
    sgld_lr: float = 0.01
    sgld_std: float = 5e-3
    buffer_size: int = 100
    reinit: float = 0.05
    perturb: float = 0.05
    beta: float = 1.0
    w_x: float = 0.3
    w_xtilde: float = 0.1
    w_clf: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        src = "defense 'beat'"
        for f in ("heads", "epochs", "batch_size", "inner_steps", "buffer_size"):
            require_int(getattr(self, f), f, src)
        require_int(self.sgld_steps, "sgld_steps", src, minimum=0)
        for f in ("lr", "tau", "sgld_lr"):
            require_float(getattr(self, f), f, src, low_open=True)
        for f in ("friction", "temperature", "sgld_std", "perturb", "beta"):
            require_float(getattr(self, f), f, src)
        for f in ("w_x", "w_xtilde", "w_clf"):
            require_float(getattr(self, f), f, src)
        require_float(self.reinit, "reinit", src, high=1.0)


class BeatDefended(nn.Module):
    """The frozen victim followed by K heads; logits are the heads' mean."""

    def __init__(self, victim: nn.Module, theta: Tensor) -> None:
        super().__init__()
        self.victim = victim
        self.register_buffer("theta", theta.detach().float().clone())
        self.topology = getattr(victim, "topology", None)

    def forward(self, x: Tensor) -> Tensor:
        return head_logits(self.theta, F.relu(self.victim(x))).mean(0)


def motion_distance(x: Tensor, x_tilde: Tensor, topology: Topology | None) -> Tensor:
    """``D(x, x̃)``: Σ_{k=1..3} MSE of the k-th temporal differences plus the MSE of the bone lengths
    (bones from ``topology``; without one the bone term is left out). Per sample, (N,)."""
    d = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    a, b = x, x_tilde
    for _ in range(3):
        a, b = a[:, :, 1:] - a[:, :, :-1], b[:, :, 1:] - b[:, :, :-1]
        d = d + (a - b).pow(2).flatten(1).mean(1)
    if topology is not None and topology.num_joints == x.shape[3]:
        la, lb = topology.bone_lengths(x), topology.bone_lengths(x_tilde)
        d = d + (la - lb).pow(2).flatten(1).mean(1)
    return d


def _sgld(
    energy: Any, x0: Tensor, mask: Tensor, steps: int, lr: float, std: float, gen: torch.Generator
) -> Tensor:
    """``steps`` SGLD ascent steps on ``energy(x)`` (summed over the batch) from ``x0``: the step is
    ``lr·∇ + sqrt(2·lr)·std·ξ`` on present joints only."""
    x = x0.detach()
    for _ in range(steps):
        x = x.requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(energy(x).sum(), x)
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        x = (x.detach() + (lr * g + (2 * lr) ** 0.5 * std * noise) * mask).detach()
    return x


def uniform_noise(shape: tuple[int, ...], like: Tensor, gen: torch.Generator) -> Tensor:
    """U(-s, s) of ``shape``, s = the largest |coordinate| of ``like`` (the scale of the data)."""
    s = float(like.abs().max())
    return (torch.rand(shape, generator=gen, dtype=like.dtype) * 2 - 1).to(like.device) * s


def negative_starts(
    buffer: Tensor, xb: Tensor, reinit: float, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The x⁻ chains of one minibatch: buffer indices drawn uniformly, each chain restarted from
    :func:`uniform_noise` with probability ``reinit``; padding of ``xb`` is zeroed in the starts."""
    b = len(xb)
    pick = torch.randint(len(buffer), (b,), generator=gen)
    fresh = (torch.rand(b, generator=gen) < reinit).view(-1, 1, 1, 1, 1).to(xb.device)
    start = torch.where(fresh, uniform_noise(tuple(xb.shape), xb, gen), buffer[pick])
    return pick, start * presence_mask(xb).to(xb.dtype)


def tilde_log_density(
    logits: Tensor, y: Tensor, x: Tensor, x_tilde: Tensor, beta: float, topology: Topology | None
) -> Tensor:
    """``log p(x̃ | x, y) = -CE(h(x̃), y) - β·D(x, x̃)`` up to a constant, per sample (N,)."""
    ce = F.cross_entropy(logits, y, reduction="none")
    return -ce - beta * motion_distance(x, x_tilde, topology)


def beat_loss(
    theta: Tensor, r_x: Tensor, r_neg: Tensor, r_tilde: Tensor, y: Tensor, cfg: BeatConfig
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """Per head (K,): ``w_x·L_x + w_x̃·L_x̃ + w_c·L_c`` on the victim's features of x, x⁻ and x̃
    (module docstring; D is constant in θ and left out), and the three terms."""
    k = theta.shape[0]
    yk = y.expand(k, -1).flatten()
    hx = head_logits(theta, r_x)  # (K, b, C)
    l_x = -(hx.logsumexp(-1).mean(1) - head_logits(theta, r_neg).logsumexp(-1).mean(1))
    ht = head_logits(theta, r_tilde)
    l_t = F.cross_entropy(ht.flatten(0, 1), yk, reduction="none").view(k, -1).mean(1)
    l_c = F.cross_entropy(hx.flatten(0, 1), yk, reduction="none").view(k, -1).mean(1)
    return cfg.w_x * l_x + cfg.w_xtilde * l_t + cfg.w_clf * l_c, (l_x, l_t, l_c)


def train_heads(
    victim: nn.Module, x: Tensor, y: Tensor, cfg: BeatConfig, progress: bool = False
) -> dict[str, Tensor]:
    """Train the K BEAT heads on the frozen ``victim`` over clips ``x`` (n, 3, T, V, M) and labels
    ``y`` (module docstring). Returns ``theta`` (K, P), the per-epoch mean of each loss term
    (``loss_*``, (epochs,)) and ``train_acc``."""
    n = len(x)
    if n == 0 or y.shape != (n,):
        raise DataError(
            f"expected training clips (n > 0) and labels (n,), got {tuple(x.shape)}, {tuple(y.shape)} for defense 'beat'"
        )
    gen = torch.Generator().manual_seed(cfg.seed)
    topology = getattr(victim, "topology", None)
    topology = topology if isinstance(topology, Topology) else None
    with torch.inference_mode():
        c = victim(x[:1]).shape[1]
    theta = init_heads(cfg.heads, c, gen)
    sampler = SGAdaHMC([theta], gen, cfg.lr, cfg.friction, cfg.tau, cfg.temperature, group_dims=1)

    def ens(z: Tensor) -> Tensor:
        return head_logits(theta, F.relu(victim(z))).mean(0)

    def feats(z: Tensor) -> Tensor:
        with torch.no_grad():
            return F.relu(victim(z))

    buffer: Tensor | None = None
    b = min(cfg.batch_size, n)
    steps = cfg.epochs * -(-n // b)
    terms = {k: torch.zeros(cfg.epochs) for k in ("loss_x", "loss_xtilde", "loss_clf", "distance")}
    bar = tqdm(total=steps, desc="BEAT heads", disable=None if progress else True, leave=False)
    for epoch in range(cfg.epochs):
        batches = torch.randperm(n, generator=gen).split(b)
        for idx in batches:
            xb, yb = x[idx], y[idx]
            mask = presence_mask(xb).to(xb.dtype)
            if buffer is None:  # the replay buffer of x⁻ chains, filled from noise on first use
                buffer = uniform_noise((cfg.buffer_size, *xb.shape[1:]), xb, gen)
            pick, start = negative_starts(buffer, xb, cfg.reinit, gen)
            x_neg = _sgld(
                lambda z: ens(z).logsumexp(1),
                start, mask, cfg.sgld_steps, cfg.sgld_lr, cfg.sgld_std, gen,
            )  # fmt: skip
            buffer[pick] = x_neg
            u = (torch.rand(xb.shape, generator=gen, dtype=xb.dtype) * 2 - 1) * cfg.perturb
            x_tilde = _sgld(
                lambda z, xb=xb, yb=yb: tilde_log_density(ens(z), yb, xb, z, cfg.beta, topology),
                xb + u * mask, mask, cfg.sgld_steps, cfg.sgld_lr, cfg.sgld_std, gen,
            )  # fmt: skip
            r = (feats(xb), feats(x_neg), feats(x_tilde))
            for _ in range(cfg.inner_steps):
                t = theta.detach().requires_grad_(True)
                with torch.enable_grad():
                    total, parts = beat_loss(t, *r, yb, cfg)
                    (g,) = torch.autograd.grad(total.sum() * n, t)
                sampler.step([g])
            for k, v in zip(("loss_x", "loss_xtilde", "loss_clf"), parts, strict=True):
                terms[k][epoch] += float(v.detach().mean()) / len(batches)
            dist = motion_distance(xb, x_tilde, topology).mean()
            terms["distance"][epoch] += float(dist) / len(batches)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, clf=f"{float(parts[2].detach().mean()):.3f}")
    bar.close()
    if not torch.isfinite(theta).all():
        raise DataError(
            "expected finite head parameters, got NaN/inf after BEAT training (lower 'lr' or 'sgld_lr')"
        )
    with torch.no_grad():
        acc = torch.cat(
            [
                head_logits(theta, feats(xb)).mean(0).argmax(1) == yb
                for xb, yb in zip(x.split(64), y.split(64), strict=True)
            ]
        )
    return {"theta": theta.clone(), "train_acc": acc.float().mean(), **terms}


@register_defense("beat")
class Beat(Defense):
    """BEAT (Wang et al., AAAI 2023): K Bayesian energy-based heads on the frozen victim, logits
    averaged (module docstring)."""

    kind = DefenseKind.HEADS
    randomized = False
    differentiable = True
    Config = BeatConfig
    progress = False
    seconds = 0.0

    def defend(self, victim: nn.Module, train: Any, generator: torch.Generator) -> nn.Module:
        import time

        if train is None or not hasattr(train, "x"):
            raise ConfigError(
                f"expected the defender's training data (a SkeletonSet), got {type(train).__name__} for defense 'beat'"
            )
        device = next(victim.parameters(), train.x).device
        frozen = copy.deepcopy(victim).cpu().eval()  # post-trained on the CPU (CPU generators)
        for p in frozen.parameters():
            p.requires_grad_(False)
        x, y = train.x.cpu(), train.y.cpu()
        parts = {
            "victim": module_sha256(frozen),
            "data": tensor_fingerprint(x, y),
            "config": asdict(self.config),
            "code": code_version(BeatDefended),
        }
        t0 = time.perf_counter()
        art = cached_artifacts(
            "beat",
            parts,
            lambda: train_heads(frozen, x, y, self.config, self.progress),
            required=("theta",),
        )
        self.seconds = time.perf_counter() - t0
        self.artifact = art
        return BeatDefended(frozen, art["theta"]).to(device)
