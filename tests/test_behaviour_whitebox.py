"""Behaviour tests of documented white-box attack properties, each against an independent reference.

Every test pins one property of an attack's docstring with exact values (float64, tight tolerances)
computed here by hand-written references: NI-FGSM's Nesterov look-ahead, MI-FGSM's per-sample
L1-normalised momentum, SMART's perceptual loss and its separately normalised gradient mix, CIASA's
skeleton realignment and the sign of its GAN term, and APGD-DLR's loss. Most use a 3-joint chain
(``spine -> elbow -> hand``) so that the references stay small and the models strongly non-linear.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from robench.attacks.ciasa import BoneAngleDiscriminator, spatial_skeleton_realignment
from robench.attacks.smart import joint_weights, perceptual_loss
from test_attacks_whitebox import NTU, batch, gen, mlp
from torch import nn

from robench.access import WhiteBox
from robench.attack import create_attack
from robench.data.skeleton import Topology, presence_mask
from robench.threat import ThreatModel

CHAIN = Topology(
    name="chain3", joint_names=("spine", "elbow", "hand"), parents=(-1, 0, 1), center=0
)
DT = torch.float64


class SinNet(nn.Module):
    """``logits = sin(w·x + φ) @ W``: strongly non-linear, so gradients change over short distances."""

    def __init__(self, d: int, k: int = 3, w: float = 20.0, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = w
        self.register_buffer("weight", torch.randn(d, k, generator=g, dtype=DT))
        self.register_buffer("phase", torch.rand(d, generator=g, dtype=DT) * 2 * math.pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w * x.flatten(1) + self.phase) @ self.weight


class ConstantLogits(nn.Module):
    """Logits that do not depend on the input: the CE gradient is exactly zero."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.register_buffer("bias", torch.arange(k, dtype=DT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1) + 0.0 * x.flatten(1).sum(1, keepdim=True)


def chain_clip(n: int, t: int, seed: int, m: int = 1) -> torch.Tensor:
    """(n, 3, t, 3, m) float64 clips on the chain with no padding (no slot is all zero)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, t, 3, m, generator=g, dtype=DT) * 0.5 + 1.0


def ce_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇_x Σ_n CE(f(x_n), y_n), masked to the present slots."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return g * presence_mask(x)


def l1_per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.abs().flatten(1).sum(1).view(-1, 1, 1, 1, 1)


def clip_linf(x: torch.Tensor, z: torch.Tensor, eps: float) -> torch.Tensor:
    return x + (z - x).clamp(-eps, eps)


def momentum_reference(model, x, y, eps, alpha, steps, mu, nesterov):
    """MI-FGSM (Dong et al.) / NI-FGSM (Lin et al.) written out step by step, untargeted, linf."""
    x_adv, m = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        probe = x_adv + alpha * mu * m if nesterov else x_adv  # the Nesterov look-ahead point
        g = ce_grad(model, probe, y)
        m = mu * m + g / l1_per_sample(g)
        x_adv = clip_linf(x, x_adv + alpha * m.sign(), eps)
    return x_adv


# ------------------------------------------------------------------------------------ NI-FGSM
def test_nifgsm_takes_its_gradient_at_the_nesterov_look_ahead():
    """x^nes = x'_k + α·μ·m_k; g_k = ∇J(x^nes): equals the hand reference, differs from MI-FGSM."""
    x = chain_clip(6, 3, seed=1)
    model = SinNet(27).eval()
    y = torch.arange(6) % 3
    eps, alpha_rel, steps = 0.5, 0.3, 3
    threat = ThreatModel(eps=eps, topology=CHAIN)
    ni = create_attack("nifgsm", steps=steps, alpha_rel=alpha_rel)(WhiteBox(model), x, y, threat)
    mi = create_attack("mifgsm", steps=steps, alpha_rel=alpha_rel)(WhiteBox(model), x, y, threat)
    ref = momentum_reference(model, x, y, eps, alpha_rel * eps, steps, mu=1.0, nesterov=True)
    assert torch.allclose(ni, ref, rtol=0, atol=1e-12)
    ref_mi = momentum_reference(model, x, y, eps, alpha_rel * eps, steps, mu=1.0, nesterov=False)
    assert torch.allclose(mi, ref_mi, rtol=0, atol=1e-12)
    # the look-ahead matters: the references themselves differ on many coordinates
    assert int(((ref - ref_mi).abs() > 1e-6).sum()) >= 5
    # after two steps already (the first step is the same: m_0 = 0)
    ni2 = create_attack("nifgsm", steps=2, alpha_rel=alpha_rel)(WhiteBox(model), x, y, threat)
    mi2 = create_attack("mifgsm", steps=2, alpha_rel=alpha_rel)(WhiteBox(model), x, y, threat)
    ref2 = momentum_reference(model, x, y, eps, alpha_rel * eps, 2, mu=1.0, nesterov=True)
    assert torch.allclose(ni2, ref2, rtol=0, atol=1e-12)
    assert not torch.allclose(ni2, mi2, rtol=0, atol=1e-6)
    ni1 = create_attack("nifgsm", steps=1, alpha_rel=alpha_rel)(WhiteBox(model), x, y, threat)
    mi1 = create_attack("mifgsm", steps=1, alpha_rel=alpha_rel)(WhiteBox(model), x, y, threat)
    assert torch.equal(ni1, mi1)


def test_nifgsm_look_ahead_scales_with_decay():
    """μ enters the look-ahead too: with μ = 0.5 the probe is x'_k + 0.5·α·m_k."""
    x = chain_clip(6, 3, seed=2)
    model = SinNet(27, seed=3).eval()
    y = torch.arange(6) % 3
    eps, alpha_rel = 0.5, 0.4
    threat = ThreatModel(eps=eps, topology=CHAIN)
    got = create_attack("nifgsm", steps=3, alpha_rel=alpha_rel, decay=0.5)(
        WhiteBox(model), x, y, threat
    )
    ref = momentum_reference(model, x, y, eps, alpha_rel * eps, 3, mu=0.5, nesterov=True)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------ MI-FGSM
def test_mifgsm_defaults_match_three_step_reference_with_per_sample_l1_momentum():
    """Defaults μ = 1.0, α = ε/T; m ← μ·m + g/‖g‖₁ with the L1 norm taken per sample."""
    x = chain_clip(6, 3, seed=4)
    x[::2] *= 3.0  # samples far apart: very different gradient norms per sample
    model = SinNet(27, w=5.0, seed=5).eval()
    y = torch.arange(6) % 3
    eps, steps = 0.6, 3
    threat = ThreatModel(eps=eps, topology=CHAIN)
    got = create_attack("mifgsm", steps=steps)(WhiteBox(model), x, y, threat)
    ref = momentum_reference(model, x, y, eps, eps / steps, steps, mu=1.0, nesterov=False)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12)
    # the per-sample normalisation matters here: raw (or batch-normalised) gradients land elsewhere
    x_raw, m = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        g = ce_grad(model, x_raw, y)
        m = m + g / g.abs().sum()  # one L1 norm for the whole batch
        x_raw = clip_linf(x, x_raw + eps / steps * m.sign(), eps)
    assert not torch.allclose(got, x_raw, rtol=0, atol=1e-6)


def test_mifgsm_decay_half_matches_reference_and_zero_decay_is_bim():
    x = chain_clip(6, 3, seed=6)
    x[1::3] *= 2.5
    model = SinNet(27, w=8.0, seed=7).eval()
    y = torch.arange(6) % 3
    eps, alpha_rel, steps = 0.5, 0.4, 3
    threat = ThreatModel(eps=eps, topology=CHAIN)

    def mi(decay):
        atk = create_attack("mifgsm", steps=steps, alpha_rel=alpha_rel, decay=decay)
        return atk(WhiteBox(model), x, y, threat)

    half, one, zero = mi(0.5), mi(1.0), mi(0.0)
    for decay, got in ((0.5, half), (1.0, one), (0.0, zero)):
        ref = momentum_reference(model, x, y, eps, alpha_rel * eps, steps, decay, nesterov=False)
        assert torch.allclose(got, ref, rtol=0, atol=1e-12), decay
    # μ = 0: sign(g/‖g‖₁) = sign(g), i.e. BIM with the same α; μ changes the result
    bim = create_attack("bim", steps=steps, alpha_rel=alpha_rel)(WhiteBox(model), x, y, threat)
    assert torch.allclose(zero, bim, rtol=0, atol=1e-12)
    assert not torch.allclose(zero, one, rtol=0, atol=1e-6)
    assert not torch.allclose(half, one, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------ SMART
HAND_CLEAN = torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [2.0, 3.0, 1.0]], dtype=DT)
W_CHAIN = torch.tensor([0.04, 0.02, 0.02], dtype=DT)  # spine is a torso joint


def hand_clip(move_joint: int, move_frame: int | None, offset) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 3, 3, 1) clean clip (the same pose in 3 frames: bones 2 and 3) and a moved copy."""
    x = HAND_CLEAN.T[None, :, None, :, None].repeat(1, 1, 3, 1, 1)  # (1, 3, T=3, V=3, 1)
    xa = x.clone()
    frames = range(3) if move_frame is None else [move_frame]
    for t in frames:
        xa[0, :, t, move_joint, 0] += torch.tensor(offset, dtype=DT)
    return xa, x


def test_smart_perceptual_loss_terms_match_hand_computation():
    """L_p = r·Σw_j‖d‖² + (1−r)·[λ·Σ(ℓ'−ℓ)² + (1−λ)·Σ‖(d_{t+1} − 2d_t + d_{t−1})/Δt²‖²]."""
    assert torch.allclose(joint_weights(CHAIN).to(DT), W_CHAIN)
    # hand (bone elbow->hand: (0, 3, 0), length 3) lifted by 4 in frame 1: the bone becomes 5 long
    xa, x = hand_clip(2, 1, [0.0, 0.0, 4.0])
    recon, bone, accel = 0.02 * 16.0, (5.0 - 3.0) ** 2, (2 * 4.0) ** 2 * 30.0**4
    parts = {
        (1.0, 0.5): recon,  # r = 1: joint term only
        (0.0, 1.0): bone,  # r = 0, λ = 1: bone-length term only
        (0.0, 0.0): accel,  # r = 0, λ = 0: acceleration term only (Δt = 1/30)
    }
    for (r, lam), expected in parts.items():
        got = perceptual_loss(xa, x, CHAIN, W_CHAIN, r=r, lam=lam)
        assert got.shape == (1,)
        assert math.isclose(float(got[0]), expected, rel_tol=1e-9), (r, lam)
    # defaults r = 0.4, λ = 0.7, Δt = 1/30
    expected = 0.4 * recon + 0.6 * (0.7 * bone + 0.3 * accel)
    assert math.isclose(float(perceptual_loss(xa, x, CHAIN, W_CHAIN)[0]), expected, rel_tol=1e-12)
    # the torso weight: the spine moved by (0.5, 0, 0) in every frame (no acceleration) stretches
    # the bone spine->elbow from 2 to 1.5 (|-1.5|) in three frames
    xa, x = hand_clip(0, None, [0.5, 0.0, 0.0])
    expected = 0.4 * (3 * 0.04 * 0.25) + 0.6 * 0.7 * (3 * 0.5**2)
    assert math.isclose(float(perceptual_loss(xa, x, CHAIN, W_CHAIN)[0]), expected, rel_tol=1e-9)
    # an explicit Δt
    xa, x = hand_clip(1, 2, [0.0, 0.0, 1.0])
    got = perceptual_loss(xa, x, CHAIN, W_CHAIN, r=0.0, lam=0.0, dt=0.5)
    assert math.isclose(float(got[0]), 1.0 / 0.5**4, rel_tol=1e-12)


def perceptual_reference(xa, x, w, parents, r=0.4, lam=0.7, dt=1 / 30):
    """L_p per sample with explicit loops over bodies, frames, joints and bones."""
    n, _, t_len, v_len, m_len = x.shape
    out = []
    for i in range(n):
        recon = bone = accel = 0.0
        d = xa[i] - x[i]
        for m in range(m_len):
            for t in range(t_len):
                for j in range(v_len):
                    recon += float(w[j]) * float(d[:, t, j, m].pow(2).sum())
                    p = parents[j]
                    if p >= 0:
                        la = float((xa[i, :, t, j, m] - xa[i, :, t, p, m]).norm())
                        lc = float((x[i, :, t, j, m] - x[i, :, t, p, m]).norm())
                        bone += (la - lc) ** 2
                    if 1 <= t <= t_len - 2:
                        a = (d[:, t + 1, j, m] - 2 * d[:, t, j, m] + d[:, t - 1, j, m]) / dt**2
                        accel += float(a.pow(2).sum())
        out.append(r * recon + (1 - r) * (lam * bone + (1 - lam) * accel))
    return torch.tensor(out, dtype=DT)


def test_smart_perceptual_loss_matches_loop_reference_with_padding_and_two_bodies():
    x = chain_clip(3, 5, seed=8, m=2)
    x[0, :, :, :, 1] = 0  # absent second body
    x[1, :, 3:] = 0  # two padding frames
    xa = (x + 0.05 * torch.randn(x.shape, generator=gen(9), dtype=DT)) * presence_mask(x)
    got = perceptual_loss(xa, x, CHAIN, W_CHAIN)
    ref = perceptual_reference(xa, x, W_CHAIN, CHAIN.parents)
    assert torch.allclose(got, ref, rtol=1e-10, atol=0)


def perceptual_gradient(xa, x, w, parents, r=0.4, lam=0.7, dt=1 / 30):
    """Analytic ∇_x' L_p: 2r·w_j·d, ±2(1−r)λ(ℓ'−ℓ)·u_b on child/parent, 2(1−r)(1−λ)·DᵀD d/Δt⁴."""
    d = xa - x
    g = 2 * r * d * w.view(1, 1, 1, -1, 1)
    for j, p in enumerate(parents):
        if p < 0:
            continue
        va, vc = xa[:, :, :, j] - xa[:, :, :, p], x[:, :, :, j] - x[:, :, :, p]
        la, lc = va.norm(dim=1, keepdim=True), vc.norm(dim=1, keepdim=True)
        term = 2 * (1 - r) * lam * (la - lc) * va / la.clamp_min(1e-300)
        g[:, :, :, j] += term
        g[:, :, :, p] -= term
    t_len = x.shape[2]
    for t in range(1, t_len - 1):
        a = (d[:, :, t + 1] - 2 * d[:, :, t] + d[:, :, t - 1]) / dt**2
        c = 2 * (1 - r) * (1 - lam) * a / dt**2
        g[:, :, t + 1] += c
        g[:, :, t] -= 2 * c
        g[:, :, t - 1] += c
    return g


def frame_unit(g: torch.Tensor) -> torch.Tensor:
    """g / ‖g‖₂ per sample and frame (over channels, joints and bodies)."""
    return g / (g.pow(2).sum(dim=(1, 3, 4), keepdim=True).sqrt() + 1e-18)


def smart_reference(model, x, y, eps, iterations, wc=0.6):
    """SMART (untargeted): x' ← Π(x' − lr·(w_c·ĝ_c + (1 − w_c)·ĝ_p)) on still-correct samples."""
    mask = presence_mask(x).to(DT)
    w = torch.tensor([0.04 if "spine" in n else 0.02 for n in CHAIN.joint_names], dtype=DT)
    x_adv = x.clone()
    for _ in range(iterations):
        with torch.no_grad():
            active = model(x_adv).argmax(1) == y
        g_c = -ce_grad(model, x_adv, y)  # L_c = −CE
        g_p = perceptual_gradient(x_adv, x, w, CHAIN.parents)
        update = wc * frame_unit(g_c * mask) + (1 - wc) * frame_unit(g_p * mask)
        stepped = clip_linf(x, x_adv - eps * update, eps) * mask
        x_adv = torch.where(active.view(-1, 1, 1, 1, 1), stepped, x_adv)
    return x_adv


def smart_case():
    x = chain_clip(4, 4, seed=10, m=2)
    x[0, :, :, :, 1] = 0
    x[2, :, 3:] = 0
    model = SinNet(3 * 4 * 3 * 2, w=3.0, seed=11).eval()
    with torch.no_grad():
        y = model(x).argmax(1)
    y[3] = (y[3] + 1) % 3  # already misclassified: SMART leaves it alone
    return model, x, y


def test_smart_first_step_is_the_weighted_normalised_ce_step():
    """At x' = x the perceptual gradient is zero: step one is −lr·w_c·∇L_c/‖∇L_c‖₂ per frame."""
    model, x, y = smart_case()
    eps = 0.05
    threat = ThreatModel(eps=eps, topology=CHAIN)
    got = create_attack("smart", iterations=1)(WhiteBox(model), x, y, threat)
    g_c = -ce_grad(model, x, y)
    expected = x - eps * 0.6 * frame_unit(g_c)
    expected[3] = x[3]
    assert torch.allclose(got, expected, rtol=0, atol=1e-13)
    assert torch.allclose(got, smart_reference(model, x, y, eps, 1), rtol=0, atol=1e-13)


def test_smart_steps_mix_separately_normalised_ce_and_perceptual_gradients():
    """From step two on, ĝ_p ≠ 0: x' ← Π(x' − lr·(0.6·ĝ_c + 0.4·ĝ_p)), ĝ normalised separately."""
    model, x, y = smart_case()
    eps = 0.05
    threat = ThreatModel(eps=eps, topology=CHAIN)
    got = create_attack("smart", iterations=3)(WhiteBox(model), x, y, threat)
    ref = smart_reference(model, x, y, eps, 3)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12)
    assert torch.equal(got[3], x[3])
    # the perceptual term moves the iterate: a CE-only SMART (w_c = 1) lands elsewhere
    ce_only = smart_reference(model, x, y, eps, 3, wc=1.0)
    assert (got - ce_only).abs().max() > 1e-3


# ------------------------------------------------------------------------------------ CIASA
def test_ssr_on_a_three_joint_chain_matches_hand_computation():
    """x'_j ← x'_p + ℓ_j·(x'_j − x'_p)/‖x'_j − x'_p‖ from the root, with the realigned parent."""
    clean = torch.tensor([[1.0, 0.0, 0.0], [1.0, 2.0, 0.0], [1.0, 2.0, 3.0]], dtype=DT)  # ℓ = 2, 3
    adv0 = torch.tensor([[1.5, 0.0, 0.0], [1.5, 4.0, 0.0], [5.5, 5.0, 0.0]], dtype=DT)
    adv1 = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, -4.0, 0.0]], dtype=DT)
    x = torch.stack([clean, clean]).permute(2, 0, 1)[None, :, :, :, None]  # (1, 3, 2, 3, 1)
    xa = torch.stack([adv0, adv1]).permute(2, 0, 1)[None, :, :, :, None]
    out = spatial_skeleton_realignment(xa, x, CHAIN)
    # frame 0: root kept; elbow 2 along (0, 1, 0); hand 3 along (4, 3, 0)/5 from the new elbow
    # frame 1: elbow on the root -> the clean direction (0, 1, 0); hand 3 along (0, -1, 0)
    expected = torch.tensor(
        [
            [[1.5, 0.0, 0.0], [1.5, 2.0, 0.0], [3.9, 3.8, 0.0]],
            [[1.0, 0.0, 0.0], [1.0, 2.0, 0.0], [1.0, -1.0, 0.0]],
        ],
        dtype=DT,
    ).permute(2, 0, 1)[None, :, :, :, None]
    assert torch.allclose(out, expected, rtol=0, atol=1e-12)
    lengths = CHAIN.bone_lengths(out)
    assert torch.allclose(lengths, torch.tensor([2.0, 3.0], dtype=DT).view(1, 1, 2, 1), atol=1e-12)
    # a frozen hand stays at its clean position; the elbow is still realigned
    movable = torch.tensor([True, True, False]).view(1, 1, 1, 3, 1)
    out2 = spatial_skeleton_realignment(xa, x, CHAIN, movable)
    assert torch.allclose(out2[:, :, :, :2], expected[:, :, :, :2], rtol=0, atol=1e-12)
    assert torch.equal(out2[:, :, :, 2], x[:, :, :, 2])


def test_ciasa_output_keeps_the_clean_bone_lengths_of_present_bodies():
    model = mlp().double()
    x, y = batch(6, 3)
    x = x.double()
    threat = ThreatModel(eps=0.05)  # no preserve_bones: the lengths come from SSR alone
    out = create_attack("ciasa", steps=3, alpha_rel=0.02, d_hidden=8)(
        WhiteBox(model), x, y, threat, gen(1)
    )
    assert (out - x).abs().max() > 1e-3  # it moved
    present = presence_mask(x)[:, 0]  # (N, T, 1, M)
    lc, lo = NTU.bone_lengths(x), NTU.bone_lengths(out)
    assert bool(present.any())
    assert torch.allclose(lo * present, lc * present, rtol=0, atol=1e-12)
    assert torch.equal(out * ~presence_mask(x), torch.zeros_like(out))


def chain_cosine(z: torch.Tensor) -> torch.Tensor:
    """(N, T, M, 1): the chain's only bone-angle feature, cos(∠ spine->elbow, elbow->hand)."""
    u1 = z[:, :, :, 1] - z[:, :, :, 0]
    u2 = z[:, :, :, 2] - z[:, :, :, 1]
    u1 = u1 / (u1.pow(2).sum(1, keepdim=True) + 1e-12).sqrt()
    u2 = u2 / (u2.pow(2).sum(1, keepdim=True) + 1e-12).sqrt()
    return (u1 * u2).sum(1)[..., None]


def gan_generator_loss(disc, z: torch.Tensor) -> torch.Tensor:
    """L_GAN = mean over (frame, body) of −log D(φ(z)) (every slot present here)."""
    return -F.logsigmoid(disc(chain_cosine(z))).flatten(1).mean(1)


def ciasa_reference(x, eps, alpha, lam, steps, d_steps, d_hidden, seed, d_lr=1e-3):
    """CIASA with a model whose CE gradient is zero: x' ← SSR(Π(x' − α·sign ∇λ·L_GAN(x'))).

    The discriminator starts from the attack's initialisation (drawn from ``gen(seed)``) and takes
    ``d_steps`` Adam steps on the clean (real) against the current (fake) features per iteration.
    """
    disc = BoneAngleDiscriminator(1, d_hidden, gen(seed)).to(DT)
    params = list(disc.parameters())
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    k = 0
    real = chain_cosine(x)
    x_adv = x.clone()
    for _ in range(steps):
        fake = chain_cosine(x_adv)
        for _ in range(d_steps):  # Adam (0.9, 0.999, 1e-8) on −log D(real) − log(1 − D(fake))
            loss = (F.softplus(-disc(real)) + F.softplus(disc(fake))).mean()
            grads = torch.autograd.grad(loss, params)
            k += 1
            with torch.no_grad():
                for p, g, a, b in zip(params, grads, m1, m2, strict=True):
                    a.mul_(0.9).add_(0.1 * g)
                    b.mul_(0.999).add_(0.001 * g * g)
                    p -= d_lr * (a / (1 - 0.9**k)) / ((b / (1 - 0.999**k)).sqrt() + 1e-8)
        z = x_adv.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(lam * gan_generator_loss(disc, z).sum(), z)
        x_adv = clip_linf(x, x_adv - alpha * g.sign(), eps)  # descend the GAN loss
        x_adv = spatial_skeleton_realignment(x_adv, x, CHAIN)
    return clip_linf(x, x_adv, eps)


@pytest.mark.parametrize("targeted", [False, True])
def test_ciasa_gan_term_descends_the_generator_loss_through_the_features(targeted):
    """With ∇CE = 0 only λ·L_GAN moves x: both modes step along −sign ∇L_GAN, features not detached."""
    x = chain_clip(2, 3, seed=12)
    y = torch.tensor([0, 1])
    target = (y + 1) % 3
    eps, alpha_rel, lam = 0.5, 0.05, 0.1
    threat = ThreatModel(eps=eps, topology=CHAIN)
    atk = create_attack("ciasa", steps=2, d_hidden=6, targeted=targeted)  # d_steps = 2 default
    got = atk(WhiteBox(ConstantLogits()), x, y, threat, gen(5), target if targeted else None)
    ref = ciasa_reference(x, eps, alpha_rel * eps, lam, 2, 2, 6, seed=5)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12)
    assert (got - x).abs().max() > 0.5 * alpha_rel * eps  # the GAN term alone moved the input
    # the opposite sign (ascending L_GAN) lands elsewhere
    wrong = ciasa_reference(x, eps, -alpha_rel * eps, lam, 2, 2, 6, seed=5)
    assert (got - wrong).abs().max() > 1e-3


# ------------------------------------------------------------------------------------ APGD-DLR
def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DLR (Croce, Hein 2020): −(z_y − max_{i≠y} z_i)/(z_π1 − z_π3 + 1e-12), π sorts z descending."""
    zs = logits.sort(1, descending=True).values
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -math.inf).amax(1)
    z_y = logits.gather(1, y[:, None])[:, 0]
    return -(z_y - other) / (zs[:, 0] - zs[:, 2] + 1e-12)


def apgd_one_step_reference(model, x, y, eps, seed_gen, loss):
    """APGD with steps = 1 (all samples initially correct): random start on the linf sphere, one
    step of 2ε·sign ∇loss clipped to the ball; per sample the last fooling iterate, else x."""
    seed = int(torch.randint(0, 2**62, (1,), generator=seed_gen))
    mask = presence_mask(x).to(DT)
    t = 2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) - 1
    t = t.to(DT)
    start = x + eps * t / t.flatten(1).abs().amax(1).view(-1, 1, 1, 1, 1) * mask
    z = start.clone().requires_grad_(True)
    logits = model(z)
    obj = dlr(logits, y) if loss == "dlr" else F.cross_entropy(logits, y, reduction="none")
    (g,) = torch.autograd.grad(obj.sum(), z)
    x1 = clip_linf(x, start + 2 * eps * (g * mask).sign(), eps)
    with torch.no_grad():
        fooled0 = model(start).argmax(1) != y
        fooled1 = model(x1).argmax(1) != y
    v = (-1, 1, 1, 1, 1)
    return torch.where(fooled1.view(v), x1, torch.where(fooled0.view(v), start, x)), fooled1


def test_dlr_reference_matches_the_formula_by_hand():
    z = torch.tensor([[3.0, 1.0, 2.0], [0.5, 4.0, -1.0]], dtype=DT)
    y = torch.tensor([0, 0])
    # sample 0: correct, z_y − z_2nd = 1, z_π1 − z_π3 = 2 -> −0.5; sample 1: (0.5 − 4)/5 -> 0.7
    assert torch.allclose(dlr(z, y), torch.tensor([-0.5, 0.7], dtype=DT), atol=1e-12)


def test_apgd_dlr_optimises_dlr_not_ce(monkeypatch):
    import torchattacks

    model = mlp(2).double()
    x, _ = batch(6, 5)
    x = x.double()
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample initially correct
    eps = 0.03
    threat = ThreatModel(eps=eps)
    seen = []
    init = torchattacks.APGD.__init__

    @functools.wraps(init)  # keeps the signature the adapter inspects
    def spy(self, *args, **kwargs):
        seen.append(kwargs)
        init(self, *args, **kwargs)

    monkeypatch.setattr(torchattacks.APGD, "__init__", spy)
    got_dlr = create_attack("apgd-dlr", steps=1)(WhiteBox(model), x, y, threat, gen(3))
    got_ce = create_attack("apgd-ce", steps=1)(WhiteBox(model), x, y, threat, gen(3))
    ref_dlr, fooled_dlr = apgd_one_step_reference(model, x, y, eps, gen(3), "dlr")
    ref_ce, fooled_ce = apgd_one_step_reference(model, x, y, eps, gen(3), "ce")
    # torchattacks draws its random start in float32: agreement to float32 rounding of ε·t
    assert torch.allclose(got_dlr, ref_dlr, rtol=0, atol=1e-8)
    assert torch.allclose(got_ce, ref_ce, rtol=0, atol=1e-8)
    both = fooled_dlr & fooled_ce
    assert bool(both.any())  # the two losses step in different directions where both fool
    assert (ref_dlr[both] - ref_ce[both]).abs().max() > 1e-3
    assert (got_dlr - got_ce).abs().max() > 1e-3
    # the wiring: the adapter hands torchattacks loss='dlr' (and 'ce' for apgd-ce)
    assert [k["loss"] for k in seen] == ["dlr", "ce"]
