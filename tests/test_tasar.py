"""TASAR (attacks/tasar.py) and the shared Bayesian machinery (robench/posterior.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from robench.attacks.tasar import posterior_gradients
from torch import nn

from robench.access import Transfer
from robench.attack import create_attack
from robench.errors import ConfigError
from robench.ops import artifacts, posterior
from robench.ops.posterior import (
    HeadPosttrainConfig,
    head_grad,
    head_logits,
    head_posterior,
    init_heads,
)
from robench.ops.samplers import DiagonalSWAG, SGAdaHMC, swag_sample, swag_std
from robench.threat import ThreatModel

T, V, M, C = 8, 25, 2, 5


class Net(nn.Module):
    """(N, 3, T, V, M) -> (N, C): per-frame linear + tanh, mean over time, linear."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = nn.Linear(3 * V * M, 16)
        self.b = nn.Linear(16, C)
        with torch.no_grad():
            for lin in (self.a, self.b):
                lin.weight.copy_(
                    torch.randn(lin.weight.shape, generator=g) / math.sqrt(lin.in_features)
                )
                lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.1)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x.permute(0, 2, 1, 3, 4).flatten(2)))  # (N, T, 16)
        return 3 * self.b(h.mean(1))


def batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, T, V, M, generator=g) * 0.3
    x[:, :, T - 2 :] = 0
    x[0::2, :, :, :, 1] = 0
    return x, torch.arange(n) % C


def reference_head(theta: torch.Tensor) -> nn.Module:
    """The released code's head: nn.Sequential(Linear(C, C), Linear(C, C), ReLU()) with θ's weights."""
    seq = nn.Sequential(nn.Linear(C, C), nn.Linear(C, C), nn.ReLU())
    w1, b1, w2, b2 = posterior._unpack(theta, C)
    with torch.no_grad():
        (
            seq[0].weight.copy_(w1),
            seq[0].bias.copy_(b1),
            seq[1].weight.copy_(w2),
            seq[1].bias.copy_(b2),
        )
    return seq


def test_head_logits_match_the_released_module_structure():
    g = torch.Generator().manual_seed(0)
    theta = init_heads(3, C, g) * 3
    r = F.relu(torch.randn(7, C, generator=g) * 2)
    out = head_logits(theta, r)
    for k in range(3):
        torch.testing.assert_close(out[k], r + reference_head(theta[k])(r))


def test_analytic_head_gradient_matches_autograd():
    g = torch.Generator().manual_seed(1)
    theta = init_heads(3, C, g) * 2
    r = F.relu(torch.randn(3, 9, C, generator=g) * 2)
    y = torch.randint(C, (3, 9), generator=g)
    th = theta.clone().requires_grad_(True)
    out = head_logits(th, r)
    loss = sum(F.cross_entropy(out[k], y[k]) for k in range(3)) * 17.0
    (ref,) = torch.autograd.grad(loss, th)
    torch.testing.assert_close(head_grad(theta, r, y, 17.0), ref, rtol=1e-5, atol=1e-5)


def test_posterior_gradient_equals_naive_per_sample_gradients():
    model = Net()
    x, y = batch()
    g = torch.Generator().manual_seed(2)
    mean = init_heads(3, C, g)
    std = torch.rand(mean.shape, generator=g) * 0.2
    theta = swag_sample(mean, std, 4, 1.5, g)  # (12, P)
    g_b, g_m = posterior_gradients(model, x, y, None, theta, mean)
    naive_b = torch.zeros_like(x)
    for b in range(
        theta.shape[0]
    ):  # each sampled head applied separately, own forward and backward
        xr = x.clone().requires_grad_(True)
        r = F.relu(model(xr))
        out = r + reference_head(theta[b])(r)
        (gb,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), xr)
        naive_b += gb / theta.shape[0]
    torch.testing.assert_close(g_b, naive_b, rtol=1e-5, atol=1e-5)
    xr = x.clone().requires_grad_(True)
    r = F.relu(model(xr))
    ens = sum(r + reference_head(mean[k])(r) for k in range(3))
    (naive_m,) = torch.autograd.grad(F.cross_entropy(ens, y, reduction="sum"), xr)
    torch.testing.assert_close(g_m, naive_m, rtol=1e-5, atol=1e-5)
    # targeted: the gradient of -CE towards the target
    tgt = (y + 1) % C
    g_t, none = posterior_gradients(model, x, y, tgt, theta[:1])
    xr = x.clone().requires_grad_(True)
    out = head_logits(theta[:1], F.relu(model(xr)))[0]
    (ref_t,) = torch.autograd.grad(-F.cross_entropy(out, tgt, reduction="sum"), xr)
    assert none is None
    torch.testing.assert_close(g_t, ref_t, rtol=1e-5, atol=1e-5)


def test_swag_moments_are_collected_per_head():
    g = torch.Generator().manual_seed(3)
    swag = DiagonalSWAG(2, 4)
    traj0 = torch.randn(5, 4, generator=g)
    traj1 = torch.randn(3, 4, generator=g) + 10
    for i in range(5):  # head 1 only takes its 3 snapshots at steps 1, 2, 4
        th = torch.stack([traj0[i], traj1[min(i, 2)]])
        swag.update(th, torch.tensor([True, i in (1, 2, 4)]))
    t1 = traj1[[1, 2, 2]]
    assert swag.count.tolist() == [5, 3]
    torch.testing.assert_close(swag.mean[0], traj0.double().mean(0))
    torch.testing.assert_close(swag.mean[1], t1.double().mean(0))
    torch.testing.assert_close(swag.sq_mean[1], (t1.double() ** 2).mean(0))
    var = swag_std(swag.mean, swag.sq_mean) ** 2
    torch.testing.assert_close(
        var[0], traj0.double().var(0, unbiased=False) + 1e-30, rtol=1e-6, atol=1e-9
    )


def test_sgadahmc_samples_a_gaussian_posterior():
    # U(θ) = θ²/(2s²): the chains' stationary spread must be s·sqrt(T) at temperature T; a plain
    # optimiser would collapse to 0 and an unscaled random walk would drift away.
    s = 0.5
    for temperature in (1.0, 0.25):
        g = torch.Generator().manual_seed(4)
        theta = torch.randn(4000, generator=g) * 2
        sampler = SGAdaHMC([theta], g, lr=0.05, friction=0.1, tau=50.0, temperature=temperature)
        for _ in range(1500):
            sampler.step([theta / s**2])
        assert theta.mean().abs() < 0.05
        assert theta.std() == pytest.approx(s * math.sqrt(temperature), rel=0.15)


def test_posttraining_cache_is_keyed_and_reused(tmp_path, monkeypatch):
    model = Net()
    tx, ty = batch(12, seed=5)
    cfg = HeadPosttrainConfig(heads=2, post_steps=3, snapshots=4, inner_steps=2)
    calls = []
    real = posterior.posttrain_heads
    monkeypatch.setattr(
        posterior, "posttrain_heads", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    a = head_posterior(model, tx, ty, cfg, tmp_path)
    assert len(calls) == 1 and len(list((tmp_path / "posterior").glob("tasar-*.pt"))) == 1
    artifacts.clear_memory_cache()  # force the disk path
    b = head_posterior(model, tx, ty, cfg, tmp_path)
    assert len(calls) == 1  # loaded, not retrained
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert a["count"].tolist() == [4, 4]
    head_posterior(
        model,
        tx,
        ty,
        HeadPosttrainConfig(heads=2, post_steps=3, snapshots=4, inner_steps=2, seed=1),
        tmp_path,
    )
    head_posterior(Net(seed=1), tx, ty, cfg, tmp_path)  # other weights
    head_posterior(model, tx, (ty + 1) % C, cfg, tmp_path)  # other data
    assert len(calls) == 4 and len(list((tmp_path / "posterior").glob("tasar-*.pt"))) == 4


def test_posttraining_keeps_the_ensemble_accurate_and_the_heads_distinct():
    g = torch.Generator().manual_seed(6)
    y = torch.randint(C, (400,), generator=g)
    r = F.relu(torch.randn(400, C, generator=g) + 3 * F.one_hot(y, C))
    base = (r.argmax(1) == y).float().mean()
    art = posterior.posttrain_heads(
        r, y, HeadPosttrainConfig(post_steps=40, snapshots=40, inner_steps=5)
    )
    assert art["train_acc"] >= base - 0.05
    assert art["count"].tolist() == [40, 40, 40]
    std = swag_std(art["mean"], art["sq_mean"])
    assert (std > 1e-6).float().mean() > 0.5  # a real spread, not a point estimate
    assert (art["mean"][0] - art["mean"][1]).abs().mean() > 0.05  # independent heads


def _attack(**kw):
    base = dict(iterations=4, samples=3, heads=2, post_steps=3, snapshots=4, inner_steps=2)
    return create_attack("tasar", **{**base, **kw})


def test_tasar_raises_the_surrogate_loss_and_respects_the_threat_model():
    model = Net()
    x, y = batch()
    tx, ty = batch(16, seed=7)
    threat = ThreatModel(eps=0.05)
    access = Transfer([model], tx, ty)
    ce = F.cross_entropy(model(x), y)
    for kw in ({}, {"motion_weight": 0.0}, {"smoothing": False}, {"motion_weight": 1.0}):
        x_adv = _attack(**kw)(access, x, y, threat, torch.Generator().manual_seed(0))
        assert threat.check(x, x_adv) == []
        assert F.cross_entropy(model(x_adv), y) > ce + 0.1, kw
    two = Transfer([model, Net(seed=3)], tx, ty)
    x_adv = _attack()(two, x, y, ThreatModel(norm="l2", eps=0.3), torch.Generator().manual_seed(0))
    assert ThreatModel(norm="l2", eps=0.3).check(x, x_adv) == []
    tgt = (y + 2) % C
    x_t = _attack(targeted=True)(access, x, y, threat, torch.Generator().manual_seed(0), tgt)
    assert F.cross_entropy(model(x_t), tgt) < F.cross_entropy(model(x), tgt)


def test_tasar_needs_attacker_data_and_valid_config():
    with pytest.raises(ConfigError):
        create_attack("tasar", samples=0)
    with pytest.raises(ConfigError):
        create_attack("tasar", motion_weight=1.5)
    x, y = batch()
    with pytest.raises(ConfigError, match="train_x"):
        _attack()(Transfer([Net()]), x, y, ThreatModel(), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ["tasar", "ba"])
def test_prepare_command_builds_what_the_attack_then_loads(kind, tmp_path, monkeypatch):
    from conftest import make_tiny_set

    from robench.cli import main
    from robench.victim import build_victim
    from robench.zoo.checkpoint import load_victim, save_victim

    data = make_tiny_set(n=12, t=16, classes=3)
    data.save(tmp_path / "d.npz")
    save_victim(build_victim("stgcn", num_classes=3, width=4, depth=1), tmp_path / "s.pt")
    sets = {"post_steps": 2, "snapshots": 3, "batch_size": 4}
    if kind == "tasar":
        sets.update(inner_steps=2, heads=2, samples=2)
    argv = ["prepare", kind, "--surrogate", str(tmp_path / "s.pt"), "--dataset", str(tmp_path / "d.npz"),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]  # fmt: skip
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    assert main(argv) == 0
    assert len(list((tmp_path / "cache" / "posterior").glob(f"{kind}-*.pt"))) == 1
    artifacts.clear_memory_cache()
    builder = "posttrain_heads" if kind == "tasar" else "finetune_posterior"
    monkeypatch.setattr(
        posterior, builder, lambda *a, **k: pytest.fail("rebuilt instead of loaded")
    )
    train, test = data.get_split("train"), data.get_split("test")
    attack = create_attack(kind, iterations=2, cache_dir=str(tmp_path / "cache"), **sets)
    access = Transfer([load_victim(tmp_path / "s.pt").eval()], train.x, train.y)
    x_adv = attack(access, test.x, test.y, ThreatModel(eps=0.01), torch.Generator().manual_seed(0))
    assert ThreatModel(eps=0.01).check(test.x, x_adv) == []
    assert main(["prepare", kind, "--surrogate", str(tmp_path / "s.pt"), "--set", "nonsense"]) == 2


def test_prepare_defaults_to_the_data_the_surrogate_was_trained_on(tmp_path, capsys):
    from robench.cli import main

    for name, world, n in (("stgcn.synth_ntu60", "synth-ntu60", 60),
                           ("stgcn.synth_ntu25", "synth-ntu25", 16)):  # fmt: skip
        argv = ["prepare", "ba", "--surrogate", name, "--n-train", str(n), "--n-test", "60",
                "--cache-dir", str(tmp_path), "--quiet", "--set", "post_steps=1", "--set",
                "snapshots=1", "--set", "batch_size=8"]  # fmt: skip
        assert main(argv) == 0
        assert f"on {world} train ({n} clips)" in capsys.readouterr().out
