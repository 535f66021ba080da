"""Hard no-box attacks: I-FGSM / MI-FGSM on an adversarial InfoNCE loss in the feature space of the
attacker's own motion manifold, plain or with the skeleton-motion-informed (SMI) gradient.

Lu, Wang, Diao and others, "Hard No-Box Adversarial Attack on Skeleton-Based Human Action
Recognition with Skeleton-Motion-Informed Gradient", ICCV 2023. The attacker holds no victim, no
victim data and no label (:class:`~robench.access.NoBox`): only a self-supervised encoder E
(``access.manifold``, pretrained on its own clips: :mod:`robench.manifold`) and the unlabelled clips
under attack (``access.attack_set``).

Loss (ascended): with ``z = E(x')/‖E(x')‖`` the adversarial feature, ``z⁰`` the clean features of
the batch and ``c`` the k-means centroids (k = ``clusters`` = 120) of the attack set's clean
features, normalised,

    L_i = -log( exp(z_i·z⁰_i) / (exp(z_i·z⁰_i) + Σ_{j≠i} exp(z_i·z⁰_j) + Σ_{c ∈ far(i)} exp(z_i·c)) )

an InfoNCE with cosine similarities and no temperature: the positive is the clip's own clean
embedding, the negatives the other clean clips of the batch and the centroids farthest from
``z⁰_i`` (all but the ``drop_nearest`` = 10 nearest, which likely share its action; at most
k - 1 are dropped). Ascending L
pushes the clip off its own embedding towards other actions. k-means: k-means++ seeding and 50
Lloyd iterations on the clean features, seeded with 0 (every batch of a cell sees the same
centroids); k is capped at the attack set's size.

The four attacks (``α = alpha_rel·ε``; defaults: 400 iterations, α = 1e-4 at ε = 1 cm, the paper's):

- ``nobox-ifgsm``: ``x' ← Π(x' + α·sign(∇L))``;
- ``nobox-mifgsm``: ``m ← μ·m + ∇L/‖∇L‖₁`` (μ = ``decay`` = 1), ``x' ← Π(x' + α·sign(m))``;
- ``s2i-fgsm`` (S²I-FGSM): sign steps on the SMI gradient ``g̃ = ĝ_t + J1_t ⊙ ĝ_{t+1} + J2_t ⊙
  ĝ_{t+2}``, ``ĝ = ∇L/mean|∇L|`` (:mod:`robench.ops.motion`: a time-varying AR(2) fitted on the
  clean clip);
- ``s2mi-fgsm`` (S²MI-FGSM): ``m ← m + g̃``, ``x' ← Π(x' + α·sign(m))``.

Gradients are masked by the threat model's allowed mask before any normalisation; Π keeps the
ε-ball, padding and absent bodies. Departure: the released code pretrains the manifold on the very
clips it attacks; here the harness refuses a manifold whose data overlaps the benchmark's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robench.access import Knowledge, NoBox
from robench.attack import Attack, AttackConfig, register_attack
from robench.errors import AccessError, ConfigError
from robench.ops import transfer as ops
from robench.ops.motion import fit_tvar
from robench.threat import ThreatModel


@dataclass(frozen=True)
class NoBoxConfig(AttackConfig):
    """``steps`` (400), ``alpha_rel`` (α = alpha_rel·ε; 0.01: 1e-4 at 1 cm), ``decay`` μ of the
    momentum variants (1.0), ``clusters`` k (120), ``drop_nearest`` (10), ``manifold`` (zoo name
    or .pt path; empty: the benchmark data set's shipped manifold), ``bandwidth_frac`` of the SMI
    motion fit (0.1)."""

    steps: int = 400
    alpha_rel: float = 0.01
    decay: float = 1.0
    clusters: int = 120
    drop_nearest: int = 10
    manifold: str = ""
    bandwidth_frac: float = 0.1

    def __post_init__(self) -> None:
        src = "no-box attack config"
        ops.require_int(self.steps, "steps", src)
        ops.require_float(self.alpha_rel, "alpha_rel", src, low_open=True)
        ops.require_float(self.decay, "decay", src)
        ops.require_int(self.clusters, "clusters", src)
        ops.require_int(self.drop_nearest, "drop_nearest", src, minimum=0)
        ops.require_float(self.bandwidth_frac, "bandwidth_frac", src, low_open=True)
        if not isinstance(self.manifold, str):
            raise ConfigError(
                f"expected a manifold name or path (a string), got {self.manifold!r} in {src} field 'manifold'"
            )


def kmeans(f: Tensor, k: int, generator: torch.Generator, iters: int = 50) -> Tensor:
    """(k, D) centroids of the rows of ``f`` (N, D): k-means++ seeding, ``iters`` Lloyd steps; an
    emptied cluster keeps its centroid. ``k`` is capped at N."""
    n = f.shape[0]
    k = min(k, n)
    first = int(torch.randint(n, (1,), generator=generator))
    cent = [f[first]]
    d2 = (f - f[first]).pow(2).sum(1)
    for _ in range(1, k):
        p = d2.clamp_min(0)
        idx = int(torch.multinomial(p / p.sum(), 1, generator=generator)) if p.sum() > 0 else 0
        cent.append(f[idx])
        d2 = torch.minimum(d2, (f - f[idx]).pow(2).sum(1))
    c = torch.stack(cent)
    for _ in range(iters):
        assign = torch.cdist(f, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, f)
        counts = torch.bincount(assign, minlength=k).to(f.dtype).unsqueeze(1)
        c = torch.where(counts > 0, sums / counts.clamp_min(1), c)
    return c


def far_centroid_mask(z0: Tensor, centroids: Tensor, drop_nearest: int) -> Tensor:
    """(B, K) bool: the centroids kept as negatives of each clean feature (all but its
    ``drop_nearest`` most similar; at most K - 1 are dropped, so a small attack set still has a
    negative when its batch has a single clip)."""
    keep = torch.ones(z0.shape[0], centroids.shape[0], dtype=torch.bool, device=z0.device)
    d = min(drop_nearest, centroids.shape[0] - 1)  # at least one centroid stays a negative
    if d:
        near = (z0 @ centroids.t()).topk(d, dim=1).indices
        keep.scatter_(1, near, False)
    return keep


def nobox_infonce(z: Tensor, z0: Tensor, centroids: Tensor, keep: Tensor) -> Tensor:
    """Per-sample adversarial InfoNCE (module docstring): z, z0 (B, D) and centroids (K, D)
    L2-normalised, ``keep`` (B, K) the centroid negatives; returns (B,)."""
    pos = (z * z0).sum(1, keepdim=True)
    batch = z @ z0.t()
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    batch = batch.masked_fill(eye, float("-inf"))
    cent = (z @ centroids.t()).masked_fill(~keep, float("-inf"))
    logits = torch.cat([pos, batch, cent], 1)
    return -logits.log_softmax(1)[:, 0]


def _encoder(access: Any) -> nn.Module:
    enc = getattr(access, "manifold", None)
    if not isinstance(enc, nn.Module):
        raise AccessError(
            "expected a motion manifold in the no-box access ('manifold'), got none "
            "(the harness passes the attack's or the data set's shipped manifold)"
        )
    return enc


class _NoBoxAttack(Attack):
    knowledge = Knowledge.NO_BOX
    norms = ("linf", "l2")
    randomized = False
    supports_targeted = False
    Config = NoBoxConfig
    smi: bool = False
    momentum: bool = False

    def run(
        self,
        access: NoBox,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        generator: torch.Generator,
        target: Tensor | None,
    ) -> Tensor:
        cfg = self.config
        enc = _encoder(access)
        pool = access.attack_set if access.attack_set is not None else x
        with torch.no_grad():
            z0 = F.normalize(enc(x), dim=1)
            pool_f = torch.cat([F.normalize(enc(b), dim=1) for b in pool.split(128)])
            cents = kmeans(pool_f.cpu(), cfg.clusters, torch.Generator().manual_seed(0))
            cents = F.normalize(cents.to(x.device), dim=1)  # k-means on the CPU generator
            keep = far_centroid_mask(z0, cents, cfg.drop_nearest)
        allowed = threat.allowed_mask(x)
        fit = fit_tvar(x, bandwidth_frac=cfg.bandwidth_frac) if self.smi else None

        def grad(z: Tensor, _t: int) -> Tensor:
            g = ops.input_gradient(
                lambda v: nobox_infonce(F.normalize(enc(v), dim=1), z0, cents, keep), z
            )
            return fit.motion_gradient(g * allowed) if fit is not None else g

        decay = cfg.decay if self.momentum else 0.0
        alpha = cfg.alpha_rel * threat.eps
        # SMI: g̃ is already normalised (ĝ = g/mean|g|) and accumulated as is, m ← μ·m + g̃
        return ops.momentum_iterate(
            x, threat, grad, cfg.steps, alpha, decay, normalize=not self.smi
        )


@register_attack("nobox-ifgsm")
class NoBoxIFGSM(_NoBoxAttack):
    """No-box I-FGSM on the manifold's adversarial InfoNCE (Lu et al., ICCV 2023; module doc)."""


@register_attack("nobox-mifgsm")
class NoBoxMIFGSM(_NoBoxAttack):
    """No-box MI-FGSM (μ = 1) on the manifold's adversarial InfoNCE (module docstring)."""

    momentum = True


@register_attack("s2i-fgsm")
class S2IFGSM(_NoBoxAttack):
    """S²I-FGSM: sign steps on the SMI gradient of the adversarial InfoNCE (module docstring)."""

    smi = True


@register_attack("s2mi-fgsm")
class S2MIFGSM(_NoBoxAttack):
    """S²MI-FGSM: momentum ``m ← m + g̃`` on the SMI gradient (module docstring)."""

    smi = True
    momentum = True
