"""White-box attacks: hand-computed FGSM / MI-FGSM steps, the torchattacks adapter against native PGD,
PGD against the noise baseline, SMART's bone term, CIASA's SSR and GAN gradient."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch
import torch.nn.functional as F
from robench.attacks.ciasa import (
    BoneAngleDiscriminator,
    bone_cosine_features,
    gan_loss,
    spatial_skeleton_realignment,
)
from robench.attacks.smart import joint_weights
from robench.attacks.torchattacks_adapter import TorchAttacksAttack, _AffineVictim
from torch import nn

from robench.access import WhiteBox
from robench.attack import create_attack
from robench.data.skeleton import BUILTIN_TOPOLOGIES, presence_mask
from robench.errors import ConfigError, RobenchError, UnknownNameError
from robench.run.metrics import perturbation_stats
from robench.threat import ThreatModel

T, V, M, K = 8, 25, 2, 3
NTU = BUILTIN_TOPOLOGIES["ntu25"]


def batch(
    n: int, seed: int, sep: float = 0.01, noise: float = 0.03
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class prototypes + noise on a fixed pose; padding and absent bodies independent of the class."""
    y = torch.arange(n) % K
    proto = torch.randn(K, 3, T, V, 1, generator=torch.Generator().manual_seed(123)) * sep
    base = torch.randn(1, 3, 1, V, 1, generator=torch.Generator().manual_seed(7)) * 0.3
    g = torch.Generator().manual_seed(seed)
    x = (base + proto[y] + noise * torch.randn(n, 3, T, V, 1, generator=g)).repeat(1, 1, 1, 1, M)
    lengths = T - (torch.arange(n) // K % 3)
    x = x * (torch.arange(T)[None, :] < lengths[:, None]).view(n, 1, T, 1, 1)
    x[(torch.arange(n) // K) % 2 == 0, :, :, :, 1] = 0
    return x.float(), y


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * T * V * M, K)).eval()


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * T * V * M, 16), nn.Tanh(), nn.Linear(16, K)
    ).eval()


@pytest.fixture(scope="module")
def trained():
    """A tiny ReLU MLP trained to 100% train accuracy on separable prototypes (≈1 s)."""
    xtr, ytr = batch(60, 0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * T * V * M, 16), nn.ReLU(), nn.Linear(16, K))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(xtr), ytr).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    x, y = batch(30, 1)
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    assert keep.sum() >= 25
    return model, x[keep], y[keep]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# ------------------------------------------------------------------------------------ hand-computed
def test_fgsm_on_linear_model_matches_hand_computation():
    model = linear()
    x, y = batch(6, 0)
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    flat = x.double().flatten(1)
    p = torch.softmax(flat @ w.T + b, 1)
    grad = (p - F.one_hot(y, K).double()) @ w  # ∇_x CE = Wᵀ(softmax − onehot(y))
    eps = 0.01
    expected = (flat + eps * grad.sign()).view_as(x).float()
    expected = torch.where(presence_mask(x), expected, torch.zeros_like(expected))
    got = create_attack("fgsm")(WhiteBox(model), x, y, ThreatModel(eps=eps), gen())
    assert torch.allclose(got, expected, atol=1e-6)
    # targeted: descend CE towards the target
    target = (y + 1) % K
    grad_t = (p - F.one_hot(target, K).double()) @ w
    expected_t = (flat - eps * grad_t.sign()).view_as(x).float() * presence_mask(x)
    got_t = create_attack("fgsm", targeted=True)(
        WhiteBox(model), x, y, ThreatModel(eps=eps), gen(), target
    )
    assert torch.allclose(got_t, expected_t, atol=1e-6)


def _grad(model, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return g * presence_mask(x)


@pytest.mark.parametrize("decay", [1.0, 0.5, 0.0])
def test_mifgsm_two_steps_match_hand_rolled_momentum(decay):
    model = mlp()
    x, y = batch(6, 2)
    eps, alpha = 0.01, 0.006  # α·2 > ε, so the clip matters too
    g1 = _grad(model, x, y)
    m1 = g1 / g1.abs().flatten(1).sum(1).view(-1, 1, 1, 1, 1)
    x1 = x + (x + alpha * m1.sign() - x).clamp(-eps, eps)
    g2 = _grad(model, x1, y)
    m2 = decay * m1 + g2 / g2.abs().flatten(1).sum(1).view(-1, 1, 1, 1, 1)
    x2 = (x + (x1 + alpha * m2.sign() - x).clamp(-eps, eps)) * presence_mask(x)
    got = create_attack("mifgsm", steps=2, alpha_rel=alpha / eps, decay=decay)(
        WhiteBox(model), x, y, ThreatModel(eps=eps), gen()
    )
    assert torch.allclose(got, x2, atol=1e-7)
    # momentum matters: a plain two-step BIM with the same α lands elsewhere, unless decay = 0
    x1b = (x + (x1 + alpha * g2.sign() - x).clamp(-eps, eps)) * presence_mask(x)
    assert torch.allclose(got, x1b, atol=1e-7) == (decay == 0)


def test_bim_default_step_is_five_quarters_eps_over_steps():
    model = linear()
    x, y = batch(3, 0)
    got = create_attack("bim", steps=1)(WhiteBox(model), x, y, ThreatModel(eps=0.01), gen())
    # one step of 1.25ε, clipped to ε: equals FGSM
    fgsm = create_attack("fgsm")(WhiteBox(model), x, y, ThreatModel(eps=0.01), gen())
    assert torch.equal(got, fgsm)


# ------------------------------------------------------------------------------------ torchattacks
@pytest.mark.parametrize("random_start", [False, True])
def test_torchattacks_pgd_equals_native_pgd(random_start):
    """Same iterates up to float rounding. With a random start both draw the same uniform numbers:
    native PGD seeds a sub-generator with one randint from the call's generator, the adapter seeds
    torch's global RNG with the same randint, and both draw one uniform per coordinate of (N, 3, T, V, M)
    (torchattacks in units scaled by 1/s)."""
    model = mlp(3)
    x, y = batch(6, 4)
    threat = ThreatModel(eps=0.01)
    ours = create_attack("pgd", steps=7, alpha_rel=0.25, random_start=random_start)
    theirs = create_attack(
        "torchattacks:PGD", steps=7, alpha=0.25 * 0.01, random_start=random_start
    )
    a = ours(WhiteBox(model), x, y, threat, gen(11))
    b = theirs(WhiteBox(model), x, y, threat, gen(11))
    assert (a - b).abs().max() < 1e-5
    assert (a - x).abs().max() > 0.009  # and they did move
    if random_start:
        c = theirs(WhiteBox(model), x, y, threat, gen(12))
        assert (b - c).abs().max() > 1e-3  # the seed reaches torchattacks' global-RNG draw


def test_torchattacks_adapter_config_errors_and_rng_hygiene(monkeypatch):
    atk = create_attack("torchattacks:PGD", steps=10)
    assert isinstance(atk, TorchAttacksAttack) and atk.name == "torchattacks:PGD"
    assert atk.config.attack == "PGD" and dict(atk.config.kwargs) == {"steps": 10}
    with pytest.raises(dataclasses.FrozenInstanceError):
        atk.config.attack = "BIM"  # frozen
    assert create_attack("torchattacks:pgdl2").norms == ("l2",)
    with pytest.raises(UnknownNameError, match="PGD"):
        create_attack("torchattacks:PDG")
    with pytest.raises(ConfigError, match="threat model"):
        create_attack("torchattacks:PGD", eps=0.1)
    with pytest.raises(ConfigError, match="unknown field"):
        create_attack("torchattacks:PGD", stepz=3)
    model = mlp()
    x, y = batch(3, 0)
    state = torch.get_rng_state()
    atk(WhiteBox(model), x, y, ThreatModel(eps=0.01), gen())
    assert torch.equal(torch.get_rng_state(), state)  # global RNG restored
    assert not model.training
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # simulates a missing package
    with pytest.raises(RobenchError, match="pip install --no-deps torchattacks"):
        create_attack("torchattacks:PGD")


def test_affine_victim_identifies_subset_rows():
    x, _ = batch(6, 0)
    s, eps = 2.0, 0.01
    u = (x / s + 0.5).reshape(6, 3, T, -1)
    mask = presence_mask(x)
    wrapped = _AffineVictim(linear(), x, u, mask, s, bound=eps / s * 1.001)
    d = torch.empty_like(u).uniform_(-eps / s, eps / s, generator=gen())
    perm = torch.tensor([4, 1, 3])
    assert torch.equal(wrapped.rows(u[perm] + d[perm]), perm)
    back = wrapped.to_data(u[perm] + d[perm])
    assert torch.allclose(
        back, x[perm] + (s * d[perm]).reshape(3, 3, T, V, M) * mask[perm], atol=1e-6
    )
    assert (back[(~mask[perm]).expand_as(back)] == 0).all()


def test_apgd_first_class_runs_and_respects_steps():
    model = mlp()
    x, y = batch(6, 0)
    atk = create_attack("apgd-ce", steps=5)
    assert atk.config.steps == 5 and atk.name == "apgd-ce"
    out = atk(WhiteBox(model), x, y, ThreatModel(eps=0.01), gen())
    assert ThreatModel(eps=0.01).check(x, out) == []


# ------------------------------------------------------------------------------------ effectiveness
def test_pgd_clearly_beats_noise_on_a_trained_model(trained):
    model, x, y = trained
    threat = ThreatModel(eps=0.01)
    pgd = create_attack("pgd")(WhiteBox(model), x, y, threat, gen())
    noise = create_attack("noise")(WhiteBox(model), x, y, threat, gen())
    acc_pgd, acc_noise = accuracy(model, pgd, y), accuracy(model, noise, y)
    assert acc_noise >= 0.8 and acc_pgd <= 0.3, (acc_pgd, acc_noise)


def test_sign_noise_is_a_random_vertex_of_the_linf_ball_and_a_point_of_the_l2_sphere():
    x, y = batch(6, 0)
    present = presence_mask(x).expand_as(x)

    class Unqueried(nn.Module):
        def forward(self, z):
            raise AssertionError("the noise baseline queried the model")

    out = create_attack("noise-sign")(WhiteBox(Unqueried()), x, y, ThreatModel(eps=0.01), gen())
    d = (out - x).double()
    assert ThreatModel(eps=0.01).check(x, out) == []
    assert torch.allclose(d[present].abs(), torch.full_like(d[present], 0.01), atol=1e-8)
    assert (d[~present] == 0).all()
    assert 0.45 < float((d[present] > 0).double().mean()) < 0.55  # both signs, equal odds
    again = create_attack("noise-sign")(WhiteBox(Unqueried()), x, y, ThreatModel(eps=0.01), gen())
    other = create_attack("noise-sign")(WhiteBox(Unqueried()), x, y, ThreatModel(eps=0.01), gen(1))
    assert torch.equal(out, again) and not torch.equal(out, other)
    l2 = ThreatModel(norm="l2", eps=0.5)
    out2 = create_attack("noise-sign")(WhiteBox(Unqueried()), x, y, l2, gen())
    norms = (out2 - x).double().flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 0.5), atol=1e-5)
    assert ((out2 - x)[~present] == 0).all()


def test_targeted_pgd_reaches_targets(trained):
    model, x, y = trained
    target = (y + 1) % K
    out = create_attack("pgd", targeted=True, steps=20)(
        WhiteBox(model), x, y, ThreatModel(eps=0.03), gen(), target
    )
    with torch.no_grad():
        hit = (model(out).argmax(1) == target).float().mean()
    assert hit >= 0.8


def test_smart_deviates_bones_less_than_pgd(trained):
    model, x, y = trained
    threat = ThreatModel(eps=0.01)
    smart = create_attack("smart", iterations=60)(WhiteBox(model), x, y, threat, gen())
    pgd = create_attack("pgd")(WhiteBox(model), x, y, threat, gen())
    bone_smart = perturbation_stats(x, smart, "ntu25", "m")["bone_dev_pct"].mean()
    bone_pgd = perturbation_stats(x, pgd, "ntu25", "m")["bone_dev_pct"].mean()
    assert bone_smart < 0.8 * bone_pgd, (bone_smart, bone_pgd)
    assert accuracy(model, smart, y) <= 0.5  # and it still attacks


def test_smart_torso_weights_by_name():
    w = joint_weights(NTU)
    torso = {NTU.joint_names[j] for j in range(V) if w[j] == 0.04}
    assert torso == {
        "spine_base", "spine_mid", "neck", "head", "spine_shoulder",
        "hip_left", "hip_right", "shoulder_left", "shoulder_right",
    }  # fmt: skip
    assert (w[w != 0.04] == 0.02).all()


# ------------------------------------------------------------------------------------ CIASA
def test_ssr_restores_clean_bone_lengths_exactly():
    x, _ = batch(4, 0)
    noisy = x + 0.02 * torch.randn(x.shape, generator=gen()) * presence_mask(x)
    out = spatial_skeleton_realignment(noisy, x, NTU)
    lc, lo = NTU.bone_lengths(x), NTU.bone_lengths(out)
    assert (lo - lc).abs().max() < 1e-5
    assert (NTU.bone_lengths(noisy) - lc).abs().max() > 1e-3
    root = NTU.root
    assert torch.equal(out[:, :, :, root], noisy[:, :, :, root])
    # frozen joints stay at their clean position
    movable = torch.ones(1, 1, 1, V, 1, dtype=torch.bool)
    movable[..., 3, :] = False
    out2 = spatial_skeleton_realignment(noisy, x, NTU, movable)
    assert torch.equal(out2[:, :, :, 3], x[:, :, :, 3])


def test_ciasa_gan_term_has_a_nonzero_input_gradient():
    x, _ = batch(3, 0)
    feats = bone_cosine_features(x, NTU)
    disc = BoneAngleDiscriminator(feats.shape[-1], 16, gen())
    present = presence_mask(x)[:, 0].permute(0, 1, 3, 2).squeeze(-1)
    xa = (x + 0.01 * torch.randn(x.shape, generator=gen()) * presence_mask(x)).requires_grad_(True)
    (g,) = torch.autograd.grad(gan_loss(disc, xa, NTU, present).sum(), xa)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert (g[(~presence_mask(x)).expand_as(g)] == 0).all()  # padding frames carry no GAN gradient


def test_ciasa_with_preserve_bones_meets_the_tolerance(trained):
    model, x, y = trained
    threat = ThreatModel(eps=0.01, preserve_bones=True, bone_tolerance=0.01)
    out = create_attack("ciasa", steps=20)(WhiteBox(model), x, y, threat, gen())
    assert threat.check(x, out) == []
    stats = perturbation_stats(x, out, "ntu25", "m")
    assert stats["bone_dev_pct"].max() <= 1.0 + 1e-4
    assert stats["linf"].max() > 0.005  # it moved
    assert accuracy(model, out, y) < 1.0


def test_ciasa_targeted_and_joint_mask(trained):
    model, x, y = trained
    arms = (4, 5, 6, 7, 8, 9, 10, 11, 21, 22, 23, 24)
    threat = ThreatModel(eps=0.05, joints=arms)
    target = (y + 1) % K
    out = create_attack("ciasa", steps=20, targeted=True)(
        WhiteBox(model), x, y, threat, gen(), target
    )
    assert threat.check(x, out) == []
    frozen = [j for j in range(V) if j not in arms]
    assert torch.equal(out[:, :, :, frozen], x[:, :, :, frozen])


def test_torchattacks_default_alpha_keeps_its_ratio_to_eps():
    model = mlp(3)
    x, y = batch(6, 4)
    threat = ThreatModel(eps=0.01)
    default = create_attack(
        "torchattacks:PGD", steps=3, random_start=False
    )  # α = (2/255)/(8/255)·ε
    explicit = create_attack("torchattacks:PGD", steps=3, random_start=False, alpha=0.0025)
    a = default(WhiteBox(model), x, y, threat, gen())
    b = explicit(WhiteBox(model), x, y, threat, gen())
    assert (a - b).abs().max() < 1e-6
