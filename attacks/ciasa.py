"""CIASA: Constrained Iterative Attack for Skeleton Actions (Liu, Akhtar, Mian, IEEE TNNLS 2022,
"Adversarial Attack on Skeleton-based Human Action Recognition").

Update (targeted, the paper's main mode)::

    x' ← SSR(Π(x' − α·sign ∇_x' [CE(f(x'), y_t) + λ·L_GAN(x')]))

and untargeted ``x' ← SSR(Π(x' + α·sign ∇_x' [CE(f(x'), y) − λ·L_GAN(x')]))`` (l2 threat models use
``∇/‖∇‖₂`` instead of ``sign``). The three constraints of the paper:

- **SSR** (spatial skeleton realignment, :func:`spatial_skeleton_realignment`): walk the kinematic tree
  from the root and reset every joint to ``x'_p(j) + ℓ_j·(x'_j − x'_p(j))/‖x'_j − x'_p(j)‖`` with ℓ_j
  the clean bone length of that frame, so bone lengths hold exactly after every iteration.
- **Anthropomorphic plausibility** through a GAN: a discriminator ``D`` on per-frame bone-angle
  features (the cosines between all pairs of bone directions, :func:`bone_cosine_features`) is trained
  *inside* the attack, a few Adam steps per iteration, on the clean batch (real) against the current
  adversarial batch (fake); the attack adds ``L_GAN(x') = mean_frames −log D(φ(x'))`` (non-saturating
  generator loss), whose gradient flows back through φ to the input — the TASAR benchmark's copy
  detaches the features, so its GAN term has no gradient at all.
- **Localisation**: the perturbation is confined to the threat model's ``joints`` (and ``frames``);
  SSR never moves a joint outside that mask.

The returned batch is ``Π(x')``; with a ``preserve_bones`` threat model Π itself keeps bone lengths
within tolerance, without it the final ε-ball clip can shorten bones that SSR had restored.

Defaults (robench's choice, not values taken from the paper): 100 steps,
α = ε/20, λ = 0.1, 2 discriminator steps per iteration (Adam, lr 1e-3 as in the benchmark code),
discriminator an MLP (hidden 64, LeakyReLU 0.2) on the upper triangle of the B×B cosine matrix.
Departures: the paper's discriminator is convolutional on the cosine matrix and pre-trained on
real data; here it is an MLP trained from scratch on the batch (no extra data are available to a
white-box attack in robench), initialised from the call's generator (so the attack is randomised).
The paper's temporal-dynamics smoothing of the perturbation is not implemented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robench.access import Knowledge, WhiteBox
from robench.attack import Attack, AttackConfig, register_attack
from robench.data.skeleton import Topology, presence_mask
from robench.errors import ConfigError

_DIR_EPS = 1e-12


def spatial_skeleton_realignment(
    x_adv: Tensor, x: Tensor, topology: Topology, movable: Tensor | None = None
) -> Tensor:
    """SSR: restore the clean bone lengths of ``x_adv`` exactly by walking the tree from the root.

    For each joint j in breadth-first order with parent p (``x_adv``'s root is kept):
    ``x'_j ← x'_p + ℓ_j·(x'_j − x'_p)/‖x'_j − x'_p‖``, ℓ_j = ‖x_j − x_p‖ of the clean frame; the parent
    is the already realigned one, so every bone ends with its clean length. A vanishing direction
    falls back to the clean direction. ``movable`` (broadcastable to (N, 1, T, V, M), bool) keeps the
    other joints at their clean position. Shapes (N, 3, T, V, M); returns a new tensor.
    """
    out = x_adv.clone()
    if movable is not None:
        movable = movable.expand(x.shape[0], 1, x.shape[2], x.shape[3], x.shape[4])
    for j in topology.order:
        p = topology.parents[j]
        if p == -1:
            continue
        vec = out[:, :, :, j] - out[:, :, :, p]  # (N, 3, T, M)
        nrm = vec.norm(dim=1, keepdim=True)
        cvec = x[:, :, :, j] - x[:, :, :, p]
        length = cvec.norm(dim=1, keepdim=True)
        cunit = cvec / length.clamp_min(_DIR_EPS)
        unit = torch.where(nrm > _DIR_EPS, vec / nrm.clamp_min(_DIR_EPS), cunit)
        new = out[:, :, :, p] + length * unit
        if movable is not None:
            new = torch.where(movable[:, :, :, j], new, x[:, :, :, j])
        out[:, :, :, j] = new
    return out


def bone_cosine_features(x: Tensor, topology: Topology) -> Tensor:
    """(N, 3, T, V, M) -> (N, T, M, B(B−1)/2): cosines between all pairs of bone directions per frame.

    Bone b = (child, parent) has direction ``v_b/sqrt(‖v_b‖² + 1e-12)``; the features are the upper
    triangle (b < c) of the B×B cosine matrix. Differentiable w.r.t. ``x`` (zero-length bones give
    zero features with finite gradients).
    """
    child = torch.tensor([c for c, _ in topology.bones], device=x.device)
    parent = torch.tensor([p for _, p in topology.bones], device=x.device)
    v = x.index_select(3, child) - x.index_select(3, parent)  # (N, 3, T, B, M)
    u = v / (v.pow(2).sum(1, keepdim=True) + _DIR_EPS).sqrt()
    u = u.permute(0, 2, 4, 3, 1)  # (N, T, M, B, 3)
    cos = u @ u.transpose(-1, -2)  # (N, T, M, B, B)
    b = cos.shape[-1]
    iu = torch.triu_indices(b, b, offset=1, device=x.device)
    return cos[..., iu[0], iu[1]]


class BoneAngleDiscriminator(nn.Module):
    """MLP real/fake logit per (frame, body) from :func:`bone_cosine_features`."""

    def __init__(self, features: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )  # fmt: skip
        with torch.no_grad():  # PyTorch's default Linear init, drawn from the explicit generator
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    bound = 1.0 / math.sqrt(layer.in_features)
                    for prm in (layer.weight, layer.bias):
                        prm.copy_(
                            torch.rand(prm.shape, generator=generator, device=generator.device)
                            * 2
                            * bound
                            - bound
                        )

    def forward(self, feats: Tensor) -> Tensor:
        return self.net(feats).squeeze(-1)


def gan_loss(
    disc: BoneAngleDiscriminator, x_adv: Tensor, topology: Topology, present: Tensor
) -> Tensor:
    """(N,) generator loss ``mean over present (frame, body) of −log D(φ(x_adv))`` (softplus form).

    ``present``: (N, T, M) bool. Differentiable w.r.t. ``x_adv``.
    """
    logits = disc(bone_cosine_features(x_adv, topology))  # (N, T, M)
    per = F.softplus(-logits) * present
    return per.flatten(1).sum(1) / present.flatten(1).sum(1).clamp_min(1)


def _disc_loss(disc: BoneAngleDiscriminator, real: Tensor, fake: Tensor, present: Tensor) -> Tensor:
    """Standard GAN discriminator loss on present slots: −log D(real) − log(1 − D(fake))."""
    w = present.to(real.dtype)
    lr, lf = disc(real), disc(fake)
    loss = F.softplus(-lr) + F.softplus(lf)
    return (loss * w).sum() / w.sum().clamp_min(1)


class _Adam:
    """Adam (Kingma, Ba, ICLR 2015; β = (0.9, 0.999), 1e-8) on the discriminator's parameters.

    Gradients come from ``torch.autograd.grad`` (nothing is accumulated in ``.grad``); written out
    because ``torch.optim``'s first step imports the compiler stack (≈1 s per process).
    """

    def __init__(self, params: list[Tensor], lr: float, b1: float = 0.9, b2: float = 0.999) -> None:
        self.params, self.lr, self.b1, self.b2, self.t = params, lr, b1, b2, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def step(self, loss: Tensor) -> None:
        grads = torch.autograd.grad(loss, self.params)
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        with torch.no_grad():
            for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
                m.mul_(self.b1).add_(g, alpha=1 - self.b1)
                v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
                p.sub_(self.lr * (m / c1) / ((v / c2).sqrt() + 1e-8))


@dataclass(frozen=True)
class CIASAConfig(AttackConfig):
    """``steps`` 100, ``alpha_rel`` α/ε = 0.05, ``gan_weight`` λ = 0.1, ``d_steps`` 2, ``d_lr`` 1e-3,
    ``d_hidden`` 64."""

    steps: int = 100
    alpha_rel: float = 0.05
    gan_weight: float = 0.1
    d_steps: int = 2
    d_lr: float = 1e-3
    d_hidden: int = 64

    def __post_init__(self) -> None:
        for name in ("steps", "d_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(
                    f"expected an integer >= 1, got {v!r} in ciasa config field {name!r}"
                )
        if isinstance(self.d_steps, bool) or not isinstance(self.d_steps, int) or self.d_steps < 0:
            raise ConfigError(
                f"expected an integer >= 0, got {self.d_steps!r} in ciasa config field 'd_steps'"
            )
        for name in ("alpha_rel", "d_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(
                    f"expected a number > 0, got {v!r} in ciasa config field {name!r}"
                )
        v = self.gan_weight
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ConfigError(
                f"expected a number >= 0, got {v!r} in ciasa config field 'gan_weight'"
            )


@register_attack("ciasa")
class CIASA(Attack):
    """CIASA (Liu, Akhtar, Mian, TNNLS 2022); update rule, defaults and departures in the module docstring."""

    knowledge = Knowledge.WHITE_BOX
    norms = ("linf", "l2")
    randomized = True
    supports_targeted = True
    Config = CIASAConfig

    def run(self, access: WhiteBox, x, y, threat, generator, target):
        c = self.config
        model = access.victim
        topo = threat.topology_obj
        allowed = threat.allowed_mask(x)
        mask = allowed.to(x.dtype)
        present = presence_mask(x)[:, 0].permute(0, 1, 3, 2).squeeze(-1)  # (N, T, M)
        label = target if c.targeted else y
        alpha = c.alpha_rel * threat.eps
        real = bone_cosine_features(x, topo).detach()
        disc = BoneAngleDiscriminator(real.shape[-1], c.d_hidden, generator).to(x.device, x.dtype)
        adam = _Adam(list(disc.parameters()), lr=c.d_lr)
        x_adv = x.clone()
        for _ in range(c.steps):
            with torch.enable_grad():
                fake = bone_cosine_features(x_adv, topo).detach()
                for _ in range(c.d_steps):
                    adam.step(_disc_loss(disc, real, fake, present))
                xa = x_adv.detach().requires_grad_(True)
                ce = F.cross_entropy(model(xa), label, reduction="none")
                objective = (-ce if c.targeted else ce) - c.gan_weight * gan_loss(
                    disc, xa, topo, present
                )
                (g,) = torch.autograd.grad(objective.sum(), xa)
            g = g * mask
            if threat.norm == "linf":
                step = g.sign()
            else:
                step = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1, 1)
            x_adv = threat.project(x, x_adv + alpha * step)
            x_adv = spatial_skeleton_realignment(x_adv, x, topo, allowed)
        return threat.project(x, x_adv)
