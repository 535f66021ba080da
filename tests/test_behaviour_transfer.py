"""Behaviour tests of the transfer attacks: each pins one documented property to an exact,
independently computed value, so that removing the property makes a test fail.

Covered: TASAR's ``0.8·N(G_B) + 0.2·N(m)`` update (the motion term), the flatness gradient of
``robench.ops.samplers.flat_gradient`` and its use in stage 2 of the head post-training, the
weighted logit fusion of ``ensemble``, SVRE's variance-reduced inner gradient and its use of every
surrogate, MI-FGSM's momentum and DIM's input diversity (``prob = 0``; temporal crop, shear and joint
corruption at ``prob = 1``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from robench.attacks.transfer import DIMConfig, diverse_inputs
from test_tasar import Net, reference_head
from test_tasar import batch as tasar_batch
from test_transfer import K, linear_model, mlp_model, tiny_batch
from torch import nn

from robench.access import Transfer
from robench.attack import create_attack
from robench.ops import posterior
from robench.ops import transfer as ops
from robench.ops.motion import fit_tvar
from robench.ops.posterior import HeadPosttrainConfig, head_grad, head_posterior, init_heads
from robench.ops.samplers import DiagonalSWAG, SGAdaHMC, flat_gradient, swag_sample, swag_std
from robench.threat import ThreatModel

VIEW = (-1, 1, 1, 1, 1)


# ---------------------------------------------------------------------------- hand-written helpers
def mean_abs(v: torch.Tensor) -> torch.Tensor:
    """``N(v) = v / mean|v|`` per sample, written out."""
    return v / v.abs().flatten(1).mean(1).clamp_min(1e-12).view(VIEW)


def l1(v: torch.Tensor) -> torch.Tensor:
    """``v / ‖v‖₁`` per sample, written out."""
    return v / v.abs().flatten(1).sum(1).clamp_min(1e-12).view(VIEW)


def l2_dir(v: torch.Tensor) -> torch.Tensor:
    """``v / ‖v‖₂`` per sample, written out."""
    return v / v.flatten(1).norm(dim=1).clamp_min(1e-12).view(VIEW)


def ce_grad(model: nn.Module, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``∇_z Σ_n CE(model(z_n), y_n)`` by a direct autograd call."""
    zr = z.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(zr), y, reduction="sum"), zr)
    return g


def linear_ce_grad(
    weights: list[float], models: list[nn.Module], z: torch.Tensor, label: torch.Tensor, sign=1.0
) -> torch.Tensor:
    """Closed form ``sign·∇_z CE(Σ_k w_k (W_k z + c_k), label)`` for ``linear_model`` surrogates:
    ``sign·(softmax(fused) - onehot(label)) @ Σ_k w_k W_k``."""
    lins = [m[1] for m in models]
    fused = sum(
        w * (z.flatten(1) @ lin.weight.T + lin.bias) for w, lin in zip(weights, lins, strict=True)
    )
    wsum = sum(w * lin.weight for w, lin in zip(weights, lins, strict=True))
    p = fused.softmax(1) - F.one_hot(label, K).float()
    return (sign * p @ wsum).view_as(z).detach()


# ============================================================================ 1. TASAR motion term
def smi_by_hand(g: torch.Tensor, fit) -> torch.Tensor:
    """``g̃_t = ĝ_t + J1_t ⊙ ĝ_{t+1} + J2_t ⊙ ĝ_{t+2}``, ``ĝ = N(g ⊙ present)``, times present."""
    gh = mean_abs(g * fit.present)
    out = gh.clone()
    out[:, :, :-1] += fit.j1[:, :, :-1] * gh[:, :, 1:]
    out[:, :, :-2] += fit.j2[:, :, :-2] * gh[:, :, 2:]
    return out * fit.present


TASAR_SMALL = dict(samples=3, heads=2, post_steps=3, snapshots=4, inner_steps=2, use_cache=False)


@pytest.mark.parametrize("accumulate", [False, True])
def test_tasar_update_is_0p8_bayesian_plus_0p2_motion_with_momentum(accumulate: bool) -> None:
    """Two iterations of ``x' ← Π(x' + α·(0.8·N(G_B) + 0.2·N(m)))``, ``m ← m + SMI(G_M)`` (μ = 1),
    rebuilt from per-head autograd on the released head structure and a hand SMI transform; with
    ``bayes_accumulate`` the Bayesian term is ``N(A)``, ``A ← A + G_B`` (the release's ce_grad_sum)."""
    model = Net()
    x, y = tasar_batch()
    tx, ty = tasar_batch(16, seed=7)
    threat = ThreatModel(eps=0.05)
    step = 0.25  # α = 0.0125: small enough that the linf box clips (almost) nothing
    attack = create_attack(
        "tasar", iterations=2, step=step, bayes_accumulate=accumulate, **TASAR_SMALL
    )
    assert attack.config.motion_weight == 0.2 and attack.config.motion_momentum == 1.0
    got = attack(Transfer([model], tx, ty), x, y, threat, torch.Generator().manual_seed(11))

    art = head_posterior(model, tx, ty, attack.config.posttrain(), use_cache=False)
    mean = art["mean"].float()
    std = swag_std(art["mean"], art["sq_mean"]).float()
    fit = fit_tvar(x, bandwidth_frac=0.1)
    allowed = threat.allowed_mask(x)
    alpha = step * threat.eps
    gen = torch.Generator().manual_seed(11)
    x_ref, mom, acc = x.clone(), torch.zeros_like(x), torch.zeros_like(x)
    motion_part = []
    for _ in range(2):
        theta = swag_sample(mean, std, 3, 1.5, gen)  # (K·S, P)
        xr = x_ref.clone().requires_grad_(True)
        r = F.relu(model(xr))
        loss_b = sum(
            F.cross_entropy(r + reference_head(th)(r), y, reduction="sum") for th in theta
        ) / len(theta)
        (g_b,) = torch.autograd.grad(loss_b, xr, retain_graph=True)
        ens = sum(r + reference_head(th)(r) for th in mean)
        (g_m,) = torch.autograd.grad(F.cross_entropy(ens, y, reduction="sum"), xr)
        mom = mom + smi_by_hand(g_m * allowed, fit)
        motion_part.append(alpha * 0.2 * mean_abs(mom) * allowed)
        acc = acc + g_b
        d = 0.8 * mean_abs((acc if accumulate else g_b) * allowed) + 0.2 * mean_abs(mom)
        x_ref = threat.project(x, x_ref + alpha * d * allowed)
    torch.testing.assert_close(got, x_ref, rtol=1e-5, atol=2e-6)
    # the motion term is far above the tolerance: dropping it cannot go unnoticed
    assert all(p.abs().mean() > 1e-3 for p in motion_part)


# ============================================================================ 2. flatness gradient
def test_flat_gradient_is_the_gradient_norm_penalty_on_a_quadratic() -> None:
    """``U = ½θᵀAθ + bᵀθ`` (first tensor) + ``½Σ a⊙φ² + cᵀφ`` (second): the rule is exact for a
    quadratic, ``ĝ = g + λ·H g/‖g‖`` with the norm over both tensors (``group_dims = 0``)."""
    g0 = torch.Generator().manual_seed(0)
    q = torch.randn(4, 4, generator=g0, dtype=torch.float64)
    a_mat = q @ q.T + torch.eye(4, dtype=torch.float64)
    b = torch.randn(4, generator=g0, dtype=torch.float64)
    a_diag = torch.rand(2, 3, generator=g0, dtype=torch.float64) * 3 + 0.5
    c = torch.randn(2, 3, generator=g0, dtype=torch.float64)
    theta = torch.randn(4, generator=g0, dtype=torch.float64)
    phi = torch.randn(2, 3, generator=g0, dtype=torch.float64)

    def grad_fn(ps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [a_mat @ ps[0] + b, a_diag * ps[1] + c]

    rho, lam = 0.1, 0.3
    g_t, g_p = a_mat @ theta + b, a_diag * phi + c
    norm = math.sqrt(float((g_t**2).sum() + (g_p**2).sum()))
    expected = [g_t + lam * (a_mat @ g_t) / norm, g_p + lam * a_diag * g_p / norm]
    got = flat_gradient(grad_fn, [theta, phi], rho, lam)
    for e, o in zip(expected, got, strict=True):
        torch.testing.assert_close(o, e, rtol=1e-6, atol=1e-9)
    assert (expected[0] - g_t).abs().max() > 0.05  # the correction is large, not a rounding
    # the result does not depend on ρ for a quadratic (ρ only sets the probe's distance)
    for o, e in zip(flat_gradient(grad_fn, [theta, phi], 0.01, lam), expected, strict=True):
        torch.testing.assert_close(o, e, rtol=1e-6, atol=1e-9)


def test_flat_gradient_normalises_per_head_with_group_dims_1() -> None:
    """Heads ``U_k = ½ c_k ‖θ_k − μ_k‖²`` of very different gradient norms: ``ĝ_k = g_k + λ c_k
    g_k/‖g_k‖`` with each head's own norm."""
    g0 = torch.Generator().manual_seed(1)
    theta = torch.randn(3, 5, generator=g0, dtype=torch.float64)
    mu = torch.randn(3, 5, generator=g0, dtype=torch.float64) * torch.tensor([[0.1], [1.0], [10.0]])
    curv = torch.tensor([[0.5], [2.0], [4.0]], dtype=torch.float64)

    def grad_fn(ps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [curv * (ps[0] - mu)]

    g = curv * (theta - mu)
    lam = 0.2
    expected = g + lam * curv * g / g.norm(dim=1, keepdim=True)
    (got,) = flat_gradient(grad_fn, [theta], 0.1, lam, group_dims=1)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


def reference_posttrain(r: torch.Tensor, y: torch.Tensor, cfg: HeadPosttrainConfig):
    """Stage 1 plain SG-AdaHMC, stage 2 with the hand-written per-head flatness gradient."""
    n, c = r.shape
    gen = torch.Generator().manual_seed(cfg.seed)
    theta = init_heads(cfg.heads, c, gen)
    sampler = SGAdaHMC([theta], gen, cfg.lr, cfg.friction, cfg.tau, cfg.temperature, group_dims=1)
    swag = DiagonalSWAG(cfg.heads, theta.shape[1])
    b = min(cfg.batch_size, n)
    for step in range(cfg.post_steps + cfg.snapshots):
        idx = torch.randint(n, (cfg.heads, b), generator=gen)
        rb, yb = r[idx], y[idx]
        for _ in range(cfg.inner_steps):
            g = head_grad(theta, rb, yb, float(n))
            if step >= cfg.post_steps:
                nrm = g.double().pow(2).sum(1).sqrt().float().view(-1, 1)
                g_up = head_grad(theta + cfg.rho * g / nrm, rb, yb, float(n))
                g = g + (cfg.lam / cfg.rho) * (g_up - g)
            sampler.step([g])
        if step >= cfg.post_steps:
            swag.update(theta)
    return swag.mean, swag.sq_mean, theta


def test_posttraining_stage2_follows_the_flatness_gradient() -> None:
    g0 = torch.Generator().manual_seed(6)
    c = 5
    y = torch.randint(c, (40,), generator=g0)
    r = F.relu(torch.randn(40, c, generator=g0) + 2 * F.one_hot(y, c))
    cfg = HeadPosttrainConfig(
        heads=2, post_steps=2, snapshots=3, inner_steps=3, batch_size=16, lr=0.02, lam=0.05
    )
    art = posterior.posttrain_heads(r, y, cfg)
    mean, sq, final = reference_posttrain(r, y, cfg)
    torch.testing.assert_close(art["final"], final, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(art["mean"], mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(art["sq_mean"], sq, rtol=1e-6, atol=1e-7)
    # λ = 0 (and smoothing off) is a genuinely different chain, far beyond the tolerance above
    plain = posterior.posttrain_heads(r, y, HeadPosttrainConfig(**{**vars(cfg), "lam": 0.0}))
    off = posterior.posttrain_heads(r, y, HeadPosttrainConfig(**{**vars(cfg), "smoothing": False}))
    assert torch.equal(plain["final"], off["final"])
    assert (plain["final"] - art["final"]).abs().max() > 5e-3
    mean0, _, final0 = reference_posttrain(r, y, HeadPosttrainConfig(**{**vars(cfg), "lam": 0.0}))
    torch.testing.assert_close(plain["final"], final0, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(plain["mean"], mean0, rtol=1e-6, atol=1e-7)


# ============================================================================ 3. ensemble / SVRE
def test_ensemble_fuses_the_weighted_logits_of_both_surrogates() -> None:
    """One L2 step: ``x + α·g/‖g‖₂`` with ``g = ∇ CE(0.25·f₁ + 0.75·f₂)`` for weights (1, 3)."""
    x, y = tiny_batch()
    models = [linear_model(1), linear_model(2)]
    threat = ThreatModel(norm="l2", eps=0.5)
    mask = threat.allowed_mask(x)
    got = create_attack("ensemble", steps=1, alpha_factor=0.5, weights=(1.0, 3.0))(
        Transfer(models), x, y, threat
    )
    g = linear_ce_grad([0.25, 0.75], models, x, y) * mask
    expected = threat.project(x, x + 0.25 * l2_dir(g))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for other in ([0.5, 0.5], [1.0, 0.0], [0.0, 1.0]):  # equal weights, or one surrogate only
        wrong = threat.project(x, x + 0.25 * l2_dir(linear_ce_grad(other, models, x, y) * mask))
        assert (wrong - expected).abs().max() > 1e-3, other


def test_svre_inner_gradient_on_two_linear_surrogates() -> None:
    """``g = ∇J_k(x̃) − (∇J_k(x_t) − G_ens)`` = ``∇J_k(x̃) + (∇J_j(x_t) − ∇J_k(x_t))/2`` (j ≠ k),
    in closed form, untargeted and targeted (``J = −CE(·, t)``)."""
    x, y = tiny_batch()
    models = [linear_model(1), linear_model(2)]
    x_in = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    for target, label, sign in ((None, y, 1.0), ((y + 1) % K, (y + 1) % K, -1.0)):
        anchors = [linear_ce_grad([1.0], [m], x, label, sign) for m in models]
        g_ens = (anchors[0] + anchors[1]) / 2
        for k in (0, 1):
            got = ops.svre_inner_gradient(models[k], x_in, y, target, anchors[k], g_ens)
            expected = (
                linear_ce_grad([1.0], [models[k]], x_in, label, sign)
                + (anchors[1 - k] - anchors[k]) / 2
            )
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
            assert (
                expected - linear_ce_grad([1.0], [models[k]], x_in, label, sign)
            ).abs().max() > 1e-3


def svre_by_hand(models, x, y, threat, seed, steps, inner, decay, inner_decay, inner_alpha):
    mask = threat.allowed_mask(x)
    alpha, beta = threat.eps / steps, inner_alpha * threat.eps / steps
    gen = torch.Generator().manual_seed(seed)
    x_adv, outer = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        anchors = [linear_ce_grad([1.0], [m], x_adv, y) * mask for m in models]
        g_ens = sum(anchors) / len(models)
        ks = torch.randint(len(models), (inner,), generator=gen).tolist()
        x_in, inner_m = x_adv.clone(), torch.zeros_like(x)
        for k in ks:
            g = (linear_ce_grad([1.0], [models[k]], x_in, y) - anchors[k] + g_ens) * mask
            inner_m = inner_decay * inner_m + l1(g)
            x_in = threat.project(x, x_in + beta * l2_dir(inner_m))
        outer = decay * outer + l1(inner_m)
        x_adv = threat.project(x, x_adv + alpha * l2_dir(outer))
    return x_adv


def test_svre_runs_its_inner_loop_over_both_surrogates() -> None:
    x, y = tiny_batch()
    models = [linear_model(1), linear_model(2)]
    threat = ThreatModel(norm="l2", eps=0.6)
    kw = dict(steps=2, inner_steps=4, decay=0.5, inner_decay=0.8, inner_alpha_factor=0.5)
    attack = create_attack("svre", **kw)
    got = attack(Transfer(models), x, y, threat, torch.Generator().manual_seed(3))
    draws = torch.randint(2, (2, 4), generator=torch.Generator().manual_seed(3))
    assert set(draws[0].tolist()) == {0, 1}  # both surrogates drawn in the first outer step
    expected = svre_by_hand(models, x, y, threat, 3, 2, 4, 0.5, 0.8, 0.5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for k in (0, 1):  # a harness passing only one surrogate gives a visibly different result
        single = attack(Transfer([models[k]]), x, y, threat, torch.Generator().manual_seed(3))
        assert (single - got).abs().max() > 1e-3
        torch.testing.assert_close(
            single, svre_by_hand([models[k]], x, y, threat, 3, 2, 4, 0.5, 0.8, 0.5),
            rtol=1e-5, atol=1e-6,
        )  # fmt: skip


# ============================================================================ 4. MI-FGSM and DIM
def mifgsm_by_hand(model, x, y, threat, steps, alpha, decay):
    mask = threat.allowed_mask(x)
    x_adv, m = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        m = decay * m + l1(ce_grad(model, x_adv, y) * mask)
        x_adv = threat.project(x, x_adv + alpha * l2_dir(m))
    return x_adv


def test_mifgsm_accumulates_l1_normalised_gradients_in_its_momentum() -> None:
    """L2 steps ``α·m/‖m‖₂`` (continuous in m, unlike sign steps): ``m ← μ·m + g/‖g‖₁``, μ = 0.6."""
    x, y = tiny_batch()
    model = mlp_model(1)
    threat = ThreatModel(norm="l2", eps=6.0)  # large steps: the gradient direction turns
    got = create_attack("transfer-mifgsm", steps=3, alpha_factor=0.9, decay=0.6)(
        Transfer((model,)), x, y, threat
    )
    expected = mifgsm_by_hand(model, x, y, threat, 3, 1.8, 0.6)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for decay in (0.0, 1.0):  # no momentum (I-FGSM direction), or the default μ instead of 0.6
        assert (mifgsm_by_hand(model, x, y, threat, 3, 1.8, decay) - expected).abs().max() > 5e-3


def test_dim_with_prob_0_is_mifgsm_and_draws_nothing() -> None:
    x, y = tiny_batch()
    access = Transfer((mlp_model(1), linear_model(2)))
    threat = ThreatModel(eps=0.02)
    gen = torch.Generator().manual_seed(0)
    fresh = torch.Generator().manual_seed(0).get_state()
    a = create_attack("dim", steps=4, prob=0.0, decay=0.6)(access, x, y, threat, gen)
    b = create_attack("transfer-mifgsm", steps=4, decay=0.6)(access, x, y, threat)
    assert torch.equal(a, b)
    assert torch.equal(gen.get_state(), fresh)  # "with prob = 0 ... nothing is drawn"


def crop_by_hand(clip: torch.Tensor, start: int, length: int, valid: int) -> torch.Tensor:
    """Frames ``[start, start+length)`` of one (3, T, V, M) clip resampled to ``valid`` frames."""
    out = torch.zeros_like(clip)
    for i in range(valid):
        p = start + i * (length - 1) / max(valid - 1, 1)
        i0 = min(int(math.floor(p)), valid - 1)
        i1 = min(i0 + 1, valid - 1)
        f = p - i0
        out[:, i] = (1 - f) * clip[:, i0] + f * clip[:, i1]
    return out


def test_dim_temporal_crop_resamples_a_documented_window_to_the_valid_frames() -> None:
    """prob = 1, no shear, no corruption: every sample is a crop of ``length ∈ [⌈r·L⌉, L]`` valid
    frames linearly resampled back to its L valid frames (frames ≥ L stay 0)."""
    x, _ = tiny_batch(12)
    x = x.double()
    present, valid = ops.presence_float(x), ops.valid_lengths(x)
    cfg = DIMConfig(prob=1.0, crop_min=0.5, shear=0.0, corrupt_frac=0.0)
    out = diverse_inputs(x, present, valid, torch.Generator().manual_seed(1), cfg)
    assert torch.equal(ops.valid_lengths(out), valid)  # the documented frame count
    cropped = 0
    for n in range(x.shape[0]):
        L = int(valid[n])
        windows = [
            (s, ln)
            for ln in range(math.ceil(0.5 * L), L + 1)
            for s in range(L - ln + 1)
            if torch.allclose(out[n], crop_by_hand(x[n], s, ln, L), rtol=0, atol=1e-12)
        ]
        assert len(windows) >= 1, n
        cropped += (0, L) not in windows
    assert cropped >= x.shape[0] // 2  # a real diversity, not the identity


def test_dim_shears_or_corrupts_every_sample_at_prob_1() -> None:
    """prob = 1 with the identity crop (``crop_min = 1``): each sample becomes ``A_n x_n`` for a 3×3
    ``A_n`` that is a shear (unit diagonal, ``|off-diagonal| ≤ 0.3``), zero, or a corruption matrix
    (entries in [−1, 1]) since every joint is corrupted (``corrupt_frac = 1``); never the identity."""
    x, _ = tiny_batch(12)
    x = x.double()
    present, valid = ops.presence_float(x), ops.valid_lengths(x)
    cfg = DIMConfig(prob=1.0, crop_min=1.0, shear=0.3, corrupt_frac=1.0)
    out = diverse_inputs(x, present, valid, torch.Generator().manual_seed(2), cfg)
    kinds = []
    eye = torch.eye(3, dtype=torch.float64)
    for n in range(x.shape[0]):
        src, dst = x[n].flatten(1), out[n].flatten(1)  # (3, T·V·M)
        if torch.equal(dst, torch.zeros_like(dst)):
            kinds.append("zero")
            continue
        a = dst @ src.T @ torch.linalg.inv(src @ src.T)
        torch.testing.assert_close(a @ src, dst, rtol=0, atol=1e-10)
        off = a * (1 - eye)
        if torch.allclose(a, eye, atol=1e-12):
            kinds.append("identity")
        elif torch.allclose(a.diagonal(), torch.ones(3, dtype=a.dtype), atol=1e-10):
            assert off.abs().max() <= 0.3 + 1e-10
            kinds.append("shear")
        else:
            assert a.abs().max() <= 1 + 1e-10
            kinds.append("matrix")
    assert "identity" not in kinds
    assert "shear" in kinds and ("zero" in kinds or "matrix" in kinds), kinds
