"""Transfer baselines (robench.attacks.transfer) and their building blocks (robench.ops.transfer)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench import testing
from robench.access import Transfer
from robench.attack import create_attack
from robench.data.skeleton import presence_mask
from robench.errors import AccessError, ConfigError
from robench.ops import transfer as ops
from robench.threat import ThreatModel

T, V, M, K = 8, 25, 2, 3
FAST = {
    "transfer-ifgsm": {"steps": 4},
    "transfer-mifgsm": {"steps": 4},
    "ensemble": {"steps": 4},
    "mig": {"steps": 3, "ig_steps": 3},
    "dim": {"steps": 4},
    "svre": {"steps": 2, "inner_steps": 3},
}
NAMES = tuple(FAST)


def tiny_batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """ntu25 clips with zero-padded tails and, in even samples, an absent second body."""
    return testing.tiny_batch(n, seed, classes=K)


def linear_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * T * V * M, K)).eval()


def mlp_model(seed: int, hidden: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * T * V * M, hidden), nn.Tanh(), nn.Linear(hidden, K)
    ).eval()


class Counting(nn.Module):
    """Wraps a surrogate and counts forward calls."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


class SpyTransfer(Transfer):
    """A Transfer access that records every public attribute read."""

    def __init__(self, *args, **kwargs) -> None:
        self.__dict__["_seen"] = []
        super().__init__(*args, **kwargs)

    def __getattribute__(self, name: str):
        if not name.startswith("_"):
            object.__getattribute__(self, "_seen").append(name)
        return object.__getattribute__(self, name)


# ---------------------------------------------------------------------------- contract
@pytest.mark.parametrize("norm,eps", [("linf", 0.02), ("l2", 0.3)])
@pytest.mark.parametrize("name", NAMES)
def test_attack_valid_and_moves(name: str, norm: str, eps: float) -> None:
    x, y = tiny_batch()
    threat = ThreatModel(norm=norm, eps=eps)
    access = Transfer((mlp_model(1), linear_model(2)))
    x_adv = create_attack(name, **FAST[name])(
        access, x, y, threat, torch.Generator().manual_seed(0)
    )
    assert threat.check(x, x_adv) == []
    pad = ~presence_mask(x).expand_as(x)
    assert torch.equal(x_adv[pad], torch.zeros_like(x_adv[pad]))
    assert (
        (x_adv - x).abs().amax() > 0.3 * eps
        if norm == "linf"
        else (x_adv - x).flatten(1).norm(dim=1).min() > 0.3 * eps
    )


@pytest.mark.parametrize("name", NAMES)
def test_attack_respects_masks_and_bones(name: str) -> None:
    x, y = tiny_batch()
    access = Transfer((mlp_model(3),))
    for threat in (
        ThreatModel(eps=0.02, joints=(0, 1, 2, 3, 20), frames=(1, 6)),
        ThreatModel(eps=0.02, joints=(8, 9, 10, 11, 23, 24), frames=(1, 6), preserve_bones=True),
    ):
        x_adv = create_attack(name, **FAST[name])(
            access, x, y, threat, torch.Generator().manual_seed(1)
        )
        assert threat.check(x, x_adv) == []
        assert not torch.equal(x_adv, x)


@pytest.mark.parametrize("name", NAMES)
def test_only_surrogates_are_read(name: str) -> None:
    x, y = tiny_batch()
    surrogates = (Counting(mlp_model(1)), Counting(linear_model(2)))
    access = SpyTransfer(surrogates, train_x=x, train_y=y)
    create_attack(name, **FAST[name])(
        access, x, y, ThreatModel(eps=0.02), torch.Generator().manual_seed(0)
    )
    assert set(access._seen) <= {"level", "surrogates"}
    assert "surrogates" in access._seen
    assert all(s.calls > 0 for s in surrogates)
    assert all(p.grad is None for s in surrogates for p in s.parameters())
    with pytest.raises(AccessError):
        access.victim  # noqa: B018 - the victim is never granted


@pytest.mark.parametrize("name", ["dim", "svre"])
def test_randomised_attacks_are_deterministic(name: str) -> None:
    x, y = tiny_batch()
    access = Transfer((mlp_model(1), mlp_model(4)))
    attack = create_attack(name, **FAST[name])
    threat = ThreatModel(eps=0.02)
    a = attack(access, x, y, threat, torch.Generator().manual_seed(5))
    b = attack(access, x, y, threat, torch.Generator().manual_seed(5))
    c = attack(access, x, y, threat, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_targeted_raises_target_probability() -> None:
    x, y = tiny_batch()
    target = (y + 1) % K
    model = mlp_model(1)
    access = Transfer((model,))
    threat = ThreatModel(eps=0.05)
    for name in NAMES:
        x_adv = create_attack(name, targeted=True, **FAST[name])(
            access, x, y, threat, torch.Generator().manual_seed(0), target
        )
        with torch.no_grad():
            before = model(x).softmax(1).gather(1, target[:, None])
            after = model(x_adv).softmax(1).gather(1, target[:, None])
        assert (after > before).all(), name


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="steps"):
        create_attack("transfer-mifgsm", steps=0)
    with pytest.raises(ConfigError, match="prob"):
        create_attack("dim", prob=1.5)
    with pytest.raises(ConfigError, match="fusion"):
        create_attack("ensemble", fusion="votes")
    x, y = tiny_batch()
    with pytest.raises(ConfigError, match="weights"):
        create_attack("ensemble", steps=1, weights=(1.0, 2.0, 3.0))(
            Transfer((mlp_model(1),)), x, y, ThreatModel()
        )


# ---------------------------------------------------------------------------- I-FGSM / MI-FGSM by hand
def test_ifgsm_one_step_is_sign_of_gradient() -> None:
    x, y = tiny_batch()
    model = mlp_model(1)
    threat = ThreatModel(eps=0.01)
    x_adv = create_attack("transfer-ifgsm", steps=1, alpha_factor=1.0)(
        Transfer((model,)), x, y, threat
    )
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    expected = threat.project(x, x + 0.01 * g.sign())
    assert torch.equal(x_adv, expected)


def test_ensemble_with_one_surrogate_equals_mifgsm() -> None:
    x, y = tiny_batch()
    access = Transfer((mlp_model(1),))
    threat = ThreatModel(eps=0.02)
    a = create_attack("ensemble", steps=5)(access, x, y, threat)
    b = create_attack("transfer-mifgsm", steps=5)(access, x, y, threat)
    assert torch.equal(a, b)


def test_ensemble_fusions_differ() -> None:
    x, y = tiny_batch()
    models = (mlp_model(1), mlp_model(7))
    g_logits = ops.objective_gradient(models, x, y, None, "logits")
    g_loss = ops.objective_gradient(models, x, y, None, "loss")
    manual = sum(ops.objective_gradient((m,), x, y, None) for m in models) / 2
    assert torch.allclose(g_loss, manual, atol=1e-6)
    assert not torch.allclose(g_logits, g_loss, atol=1e-6)


# ---------------------------------------------------------------------------- MIG
def test_integrated_gradient_linear_is_exact() -> None:
    x, _ = tiny_batch()
    w = torch.randn(1, 3, T, V, M, generator=torch.Generator().manual_seed(3))
    baseline = 0.25 * x
    ig = ops.integrated_gradient(
        lambda z: (z * w).flatten(1).sum(1), x, baseline, steps=7, max_batch=4
    )
    assert torch.allclose(ig, (x - baseline) * w, atol=1e-6)


def test_integrated_gradient_evaluates_gradient_at_path_points() -> None:
    # f(z) = Σ z²: IG_j = (x_j - b_j)·2·(b_j + (s+1)/(2s)·(x_j - b_j)) for the right Riemann sum
    x, _ = tiny_batch()
    b = torch.full_like(x, 0.1)
    s = 5
    ig = ops.integrated_gradient(lambda z: z.pow(2).flatten(1).sum(1), x, b, steps=s)
    d = x - b
    assert torch.allclose(ig, d * 2 * (b + (s + 1) / (2 * s) * d), atol=1e-6)
    # completeness: Σ IG -> f(x) - f(b) as s grows
    ig_fine = ops.integrated_gradient(lambda z: torch.sin(z).flatten(1).sum(1), x, b, steps=400)
    gap = torch.sin(x).flatten(1).sum(1) - torch.sin(b).flatten(1).sum(1)
    assert torch.allclose(ig_fine.flatten(1).sum(1), gap, atol=2e-2)


def test_min_baseline_is_below_every_present_coordinate() -> None:
    x, _ = tiny_batch()
    present = ops.presence_float(x)
    b = ops.ig_baseline(x, present, "min")
    pres = present.expand_as(x) > 0
    assert (x - b)[pres].min() >= 0
    assert torch.equal(b[~pres], torch.zeros_like(b[~pres]))
    assert torch.equal(b.amin(dim=(2, 3, 4)), torch.where(pres, x, torch.inf).amin(dim=(2, 3, 4)))
    assert torch.equal(ops.ig_baseline(x, present, "zeros"), torch.zeros_like(x))


# ---------------------------------------------------------------------------- SVRE
def test_svre_inner_gradient_hand_checked() -> None:
    x, y = tiny_batch()
    models = [linear_model(s) for s in (1, 2, 3)]

    def grad(model: nn.Module, z: torch.Tensor) -> torch.Tensor:  # CE gradient of W z + c by hand
        lin = model[1]
        p = lin(z.flatten(1)).softmax(1) - F.one_hot(y, K).float()
        return (p @ lin.weight).view_as(z)

    x_inner = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    anchors = [grad(m, x).detach() for m in models]
    g_ens = torch.stack(anchors).mean(0)
    for k, m in enumerate(models):
        got = ops.svre_inner_gradient(m, x_inner, y, None, anchors[k], g_ens)
        expected = grad(m, x_inner) - anchors[k] + g_ens
        assert torch.allclose(got, expected.detach(), atol=1e-6)
    # a single surrogate: no correction at all
    got = ops.svre_inner_gradient(models[0], x_inner, y, None, anchors[0], anchors[0])
    assert torch.allclose(got, grad(models[0], x_inner).detach(), atol=1e-7)


def test_svre_loop_matches_algorithm_by_hand() -> None:
    x, y = tiny_batch()
    models = (mlp_model(1), mlp_model(5))
    threat = ThreatModel(eps=0.02)
    got = create_attack("svre", steps=1, inner_steps=5)(
        Transfer(models), x, y, threat, torch.Generator().manual_seed(3)
    )
    mask = threat.allowed_mask(x)
    anchors = [ops.objective_gradient((m,), x, y, None) * mask for m in models]
    g_ens = (anchors[0] + anchors[1]) / 2
    ks = torch.randint(2, (5,), generator=torch.Generator().manual_seed(3)).tolist()
    assert len(set(ks)) == 2  # both models drawn: the correction term matters
    x_in, m = x.clone(), torch.zeros_like(x)
    for k in ks:
        g = (ops.objective_gradient((models[k],), x_in, y, None) - anchors[k] + g_ens) * mask
        m = m + ops.l1_normalize(g)
        x_in = threat.project(x, x_in + 0.02 * m.sign())
    expected = threat.project(x, x + 0.02 * ops.l1_normalize(m).sign())
    assert torch.equal(got, expected)


def test_mig_step_is_sign_of_integrated_gradient() -> None:
    x, y = tiny_batch()
    model = mlp_model(1)
    threat = ThreatModel(eps=0.01)
    got = create_attack("mig", steps=1, ig_steps=4)(Transfer((model,)), x, y, threat)
    present = ops.presence_float(x)

    def f(z: torch.Tensor) -> torch.Tensor:
        return -model(z).softmax(1).gather(1, y.repeat(z.shape[0] // 6)[:, None]).squeeze(1)

    ig = ops.integrated_gradient(f, x, ops.ig_baseline(x, present, "min"), 4)
    assert torch.equal(got, threat.project(x, x + 0.01 * (ig * threat.allowed_mask(x)).sign()))


def test_svre_single_surrogate_is_lookahead_mifgsm() -> None:
    x, y = tiny_batch()
    model = mlp_model(1)
    threat = ThreatModel(eps=0.02)
    got = create_attack("svre", steps=1, inner_steps=3)(Transfer((model,)), x, y, threat)
    beta = 0.02
    x_in, m = x.clone(), torch.zeros_like(x)
    for _ in range(3):
        g = ops.objective_gradient((model,), x_in, y, None) * threat.allowed_mask(x)
        m = m + ops.l1_normalize(g)
        x_in = threat.project(x, x_in + beta * m.sign())
    expected = threat.project(x, x + 0.02 * ops.l1_normalize(m).sign())
    assert torch.equal(got, expected)


# ---------------------------------------------------------------------------- DIM
def test_dim_with_p0_is_mifgsm() -> None:
    x, y = tiny_batch()
    access = Transfer((mlp_model(1), linear_model(2)))
    threat = ThreatModel(eps=0.02)
    a = create_attack("dim", steps=5, prob=0.0)(
        access, x, y, threat, torch.Generator().manual_seed(0)
    )
    b = create_attack("transfer-mifgsm", steps=5)(access, x, y, threat)
    assert torch.equal(a, b)
    c = create_attack("dim", steps=5, prob=1.0)(
        access, x, y, threat, torch.Generator().manual_seed(0)
    )
    assert not torch.equal(a, c)


def test_temporal_crop_resize_identity_and_gradcheck() -> None:
    x, _ = tiny_batch()
    present, valid = ops.presence_float(x), ops.valid_lengths(x)
    assert valid.tolist() == [8, 6, 5, 8, 7, 4]
    same = ops.temporal_crop_resize(x, torch.zeros_like(valid), valid, valid, present)
    assert torch.equal(same, x)
    xd = x[:, :, :, :2].double()
    start, length = torch.tensor([1, 0, 1, 0, 2, 0]), torch.tensor([6, 5, 3, 7, 5, 3])
    out = ops.temporal_crop_resize(xd, start, length, valid, present.double())
    # frame 0 reads the crop start, the last valid frame reads the crop end, padding stays 0
    assert torch.equal(out[0, :, 0], xd[0, :, 1]) and torch.allclose(out[0, :, 7], xd[0, :, 6])
    assert torch.equal(out[5, :, 4:], torch.zeros_like(out[5, :, 4:]))
    assert torch.equal(out[0::2, :, :, :, 1], torch.zeros_like(out[0::2, :, :, :, 1]))
    xr = xd[:3].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: ops.temporal_crop_resize(
            z, start[:3], length[:3], valid[:3], present[:3].double()
        ),
        (xr,),
    )


def test_temporal_crop_never_interpolates_into_an_absent_body() -> None:
    x, _ = tiny_batch()
    x[1, :, 3, :, 1] = 0  # the second person is missing in frame 3 only (inside the valid frames)
    present, valid = ops.presence_float(x), ops.valid_lengths(x)
    # sample 1: 6 valid frames, crop [0, 4) -> output frame 4 reads position 4·3/5 = 2.4
    out = ops.temporal_crop_resize(
        x, torch.zeros(6, dtype=torch.long), torch.tensor([8, 4, 5, 8, 7, 4]), valid, present
    )
    assert torch.allclose(out[1, :, 4, :, 0], 0.6 * x[1, :, 2, :, 0] + 0.4 * x[1, :, 3, :, 0])
    assert torch.allclose(
        out[1, :, 4, :, 1], x[1, :, 2, :, 1], atol=1e-7
    )  # absent neighbour: no weight


def test_l2_steps_normalise_only_the_allowed_coordinates() -> None:
    x, y = tiny_batch()
    threat = ThreatModel(norm="l2", eps=0.2, joints=(3, 7, 11))
    x_adv = create_attack("transfer-ifgsm", steps=1, alpha_factor=0.5)(
        Transfer((mlp_model(1),)), x, y, threat
    )
    assert torch.allclose((x_adv - x).flatten(1).norm(dim=1), torch.full((6,), 0.1), atol=1e-6)


def test_diverse_inputs_differentiable_and_keep_padding() -> None:
    from robench.attacks.transfer import DIMConfig, diverse_inputs

    x, _ = tiny_batch()
    x = x[:3, :, :, :2].double()  # few samples and joints keep gradcheck fast
    present, valid = ops.presence_float(x), ops.valid_lengths(x)
    cfg = DIMConfig(prob=1.0, crop_min=0.6)

    def fixed(z: torch.Tensor) -> torch.Tensor:
        return diverse_inputs(z, present.double(), valid, torch.Generator().manual_seed(4), cfg)

    out = fixed(x)
    pad = (present == 0).expand_as(x)
    assert torch.equal(out[pad], torch.zeros_like(out[pad]))
    assert not torch.allclose(out, x)
    assert torch.autograd.gradcheck(fixed, (x.clone().requires_grad_(True),))


def test_dim_gradient_flows_through_transform() -> None:
    # the attack's gradient must be J^T ∇L (through T), not ∇L at T(x) copied back
    x, y = tiny_batch()
    model = mlp_model(1)
    present, valid = ops.presence_float(x), ops.valid_lengths(x)
    from robench.attacks.transfer import DIMConfig, diverse_inputs

    cfg = DIMConfig(prob=1.0)
    xt = diverse_inputs(x, present, valid, torch.Generator().manual_seed(2), cfg)
    through = ops.input_gradient(
        lambda z: ops.attack_objective(
            model(diverse_inputs(z, present, valid, torch.Generator().manual_seed(2), cfg)), y, None
        ),
        x,
    )
    at_copy = ops.objective_gradient((model,), xt, y, None)
    assert not torch.allclose(through, at_copy, atol=1e-6)
    # finite-difference check of one directional derivative
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)) * (x != 0)
    h = 1e-3

    def loss(z: torch.Tensor) -> float:
        zt = diverse_inputs(z, present, valid, torch.Generator().manual_seed(2), cfg)
        with torch.no_grad():
            return float(ops.attack_objective(model(zt), y, None).sum().double())

    fd = (loss(x + h * d) - loss(x - h * d)) / (2 * h)
    assert math.isclose(fd, float((through * d).sum()), rel_tol=2e-2)
    # and the attack steps along exactly that gradient (one step, same generator draws)
    threat = ThreatModel(eps=0.01)
    got = create_attack("dim", steps=1, prob=1.0)(
        Transfer((model,)), x, y, threat, torch.Generator().manual_seed(2)
    )
    assert torch.equal(got, threat.project(x, x + 0.01 * (through * threat.allowed_mask(x)).sign()))


# ---------------------------------------------------------------------------- transferability
def test_transfer_beats_noise_between_independently_trained_models() -> None:
    g = torch.Generator().manual_seed(0)
    means = torch.randn(K, 3, T, V, M, generator=g) * 0.05

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % K
        x = means[y] + 0.15 * torch.randn(n, 3, T, V, M, generator=g)
        x[:, :, T - 2 :] = 0
        x[:, :, :, :, 1] = 0
        return x, y

    def train(seed: int, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
        model = mlp_model(seed, hidden=32).train()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(40):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return model.eval()

    xtr, ytr = sample(120)
    source, victim = train(1, xtr, ytr), train(2, xtr, ytr)
    x, y = sample(60)
    with torch.no_grad():
        eligible = (source(x).argmax(1) == y) & (victim(x).argmax(1) == y)
    assert eligible.sum() >= 30
    threat = ThreatModel(eps=0.03)
    noise = threat.project(x, x + 0.03 * torch.randn(x.shape, generator=g).sign())

    def fooled(xa: torch.Tensor) -> float:
        with torch.no_grad():
            return float(((victim(xa).argmax(1) != y) & eligible).sum() / eligible.sum())

    base = fooled(noise)
    for name in NAMES:
        x_adv = create_attack(name, **FAST[name])(
            Transfer((source,)), x, y, threat, torch.Generator().manual_seed(0)
        )
        rate = fooled(x_adv)
        assert rate > base + 0.2, (name, rate, base)
