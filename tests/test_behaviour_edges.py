"""Behaviour tests written for the survivors of `.ci/mutation.py`: each pins a documented rule
that an earlier mutation run could remove with the whole suite still green."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_attacks_whitebox import batch, gen, linear, mlp

from robench.access import Transfer, WhiteBox
from robench.attack import create_attack
from robench.data.skeleton import presence_mask
from robench.errors import ConfigError
from robench.ops import transfer as ops
from robench.ops.samplers import SGAdaHMC
from robench.threat import ThreatModel


def test_mean_abs_normalisation_has_unit_mean_over_movable_coordinates():
    from robench.attacks.gradient import _mean_abs_normalise

    x, _ = batch(4, 2)
    g = torch.randn(x.shape, generator=gen(1))
    mask = presence_mask(x).to(x.dtype).expand_as(x)
    n = _mean_abs_normalise(g * mask, mask)
    per = (n.abs() * mask).flatten(1).sum(1) / mask.flatten(1).sum(1)
    assert torch.allclose(per, torch.ones(4), atol=1e-6)
    assert torch.allclose(n * 3.0, _mean_abs_normalise(3.0 * g * mask, mask) * 3.0, atol=1e-6)
    # one movable coordinate: its own magnitude is the mean, so N(g) = sign(g) there (and 0 for a
    # sample with none: no division by an empty count)
    one = torch.zeros(x.shape, dtype=x.dtype)
    one[0].view(-1)[7] = 1.0
    single = _mean_abs_normalise(g * one, one)
    assert single[0].view(-1)[7] == g[0].view(-1)[7].sign() and single[1:].abs().sum() == 0


def test_pgd_l2_random_start_is_inside_the_ball_and_seeded():
    from robench.attacks.gradient import _random_start

    x, _ = batch(5, 2)
    mask = presence_mask(x).to(x.dtype)
    a = _random_start(x, mask, 0.3, "l2", gen(3))
    b = _random_start(x, mask, 0.3, "l2", gen(3))
    c = _random_start(x, mask, 0.3, "l2", gen(4))
    d = (a - x).flatten(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (d.norm(dim=1) <= 0.3 + 1e-6).all() and (d.norm(dim=1) > 0).all()
    assert torch.equal((a - x) * (1 - mask), torch.zeros_like(x))  # padding never moves
    # uniform in the ball in d dimensions: the radius is eps * u^(1/d), close to eps for large d
    assert (d.norm(dim=1) > 0.29).all()


def test_pgd_restarts_keep_the_first_fooling_restart_else_the_largest_loss():
    """Restart s draws its random start from the (s+1)-th randint of the generator, so a
    one-restart PGD on a generator advanced by s draws reproduces it; per sample the first fooling
    restart is kept, else the one with the largest final loss."""
    model, (x, y) = mlp(0), batch(16, 2)
    threat = ThreatModel(eps=0.01)
    got = create_attack("pgd", steps=2, restarts=4)(WhiteBox(model), x, y, threat, gen(0))
    runs = []
    for s in range(4):
        g = gen(0)
        for _ in range(s):
            torch.randint(0, 2**62, (1,), generator=g)
        runs.append(create_attack("pgd", steps=2, restarts=1)(WhiteBox(model), x, y, threat, g))
    with torch.no_grad():
        fooled = torch.stack([model(r).argmax(1) != y for r in runs])
        loss = torch.stack([F.cross_entropy(model(r), y, reduction="none") for r in runs])
    chosen = []
    for i in range(16):
        hits = fooled[:, i].nonzero()
        k = int(hits[0]) if hits.numel() else int(loss[:, i].argmax())
        assert torch.equal(got[i], runs[k][i]), i
        chosen.append(k)
    # both rules are exercised, and later restarts are chosen for some samples
    assert fooled.any(0).any() and (~fooled.any(0)).any() and max(chosen) > 0


def test_tasar_mifgsm_accumulates_momentum_mu_times_m_plus_g():
    model, (x, y) = mlp(), batch(4, 2)
    threat = ThreatModel(eps=0.05)
    mask = threat.allowed_mask(x).to(x.dtype)
    alpha, mu = 0.05, 0.1

    def grad(z):
        z = z.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(z), y, reduction="sum"), z)
        return g * mask

    def norm(v):
        full = mask.expand_as(v)
        m = (v.abs() * full).flatten(1).sum(1) / full.flatten(1).sum(1)
        return v / m.clamp_min(1e-30).view(-1, 1, 1, 1, 1)

    xa, m = x.clone(), torch.zeros_like(x)
    for _ in range(3):
        m = mu * m + grad(xa)
        xa = threat.project(x, xa + alpha * norm(m))
    got = create_attack("tasar-mifgsm", iterations=3)(WhiteBox(model), x, y, threat, gen())
    assert torch.allclose(got, xa, atol=1e-6)
    plain = create_attack("tasar-fgsm", iterations=3)(WhiteBox(model), x, y, threat, gen())
    assert not torch.allclose(plain, got, atol=1e-6)


def test_sgadahmc_floors_the_variance_estimate_at_v_floor_times_its_mean():
    """With tau = 1 the estimate is g^2; the coordinate with g = 0.1 is floored at
    v_floor*mean(g^2), so its step uses exactly that variance (no noise: temperature 0)."""
    p = torch.zeros(4)
    g = torch.tensor([2.0, 1.0, 1.0, 0.1])
    opt = SGAdaHMC([p], torch.Generator().manual_seed(0), lr=0.1, friction=1.0, tau=1.0,
                   temperature=0.0, v_floor=0.5)  # fmt: skip
    opt.step([g])
    v = g * g
    floor = 0.5 * v.mean()
    assert v[3] < floor < v[:3].min()  # the floor binds on the last coordinate only
    expect = -(0.1**2) * g / torch.maximum(v, floor).sqrt()
    assert torch.allclose(p, expect, atol=1e-9)


def test_ensemble_weights_of_the_wrong_length_are_refused_before_any_work():
    models = [linear(0), linear(1)]
    x, y = batch(2, 2)
    attack = create_attack("ensemble", steps=1, weights=(1.0, 2.0, 3.0))
    with pytest.raises(ConfigError, match="weights"):
        attack(Transfer(models), x, y, ThreatModel(eps=0.01), gen())


def test_ensemble_probs_fusion_is_the_nll_of_the_weighted_mean_probability():
    models = [mlp(0), mlp(1)]
    x, y = batch(3, 2)
    got = ops.ensemble_objective(models, x, y, None, fusion="probs", weights=(1.0, 3.0))
    p = 0.25 * models[0](x).softmax(1) + 0.75 * models[1](x).softmax(1)
    expect = F.nll_loss(p.log(), y, reduction="none")
    assert torch.allclose(got, expect, atol=1e-6)
    logits = ops.ensemble_objective(models, x, y, None, fusion="logits", weights=(1.0, 3.0))
    assert not torch.allclose(got, logits, atol=1e-4)


def test_ciasa_l2_step_is_the_l2_normalised_gradient_then_realignment():
    """Under an L2 threat (no GAN term: gan_weight 0, d_steps 0) one CIASA step is
    ``SSR(Π(x + α·g/‖g‖₂))`` with α = alpha_rel·ε (untargeted)."""
    from robench.attacks.ciasa import spatial_skeleton_realignment
    from test_behaviour_whitebox import CHAIN, SinNet, ce_grad, chain_clip

    x = chain_clip(2, 3, seed=21)
    y = torch.tensor([0, 2])
    model = SinNet(x[0].numel(), w=3.0, seed=2)
    threat = ThreatModel(norm="l2", eps=0.2, topology=CHAIN)
    atk = create_attack("ciasa", steps=1, alpha_rel=0.5, gan_weight=0.0, d_steps=0, d_hidden=4)
    got = atk(WhiteBox(model), x, y, threat, gen(0))
    g = ce_grad(model, x, y)
    step = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1, 1)
    ref = spatial_skeleton_realignment(
        threat.project(x, x + 0.1 * step), x, CHAIN, threat.allowed_mask(x)
    )
    assert torch.allclose(got, ref, rtol=0, atol=1e-12)
    assert (got - x).abs().max() > 1e-3
