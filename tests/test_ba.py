"""BA (attacks/ba.py): Bayesian finetuning on a functional copy, SWAG sampling, cached artefacts."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench.access import Transfer
from robench.attack import create_attack
from robench.errors import ConfigError
from robench.ops import artifacts, posterior
from robench.ops.posterior import FinetuneConfig, ba_posterior, finetune_posterior, named_moments
from robench.threat import ThreatModel

T, V, M, C = 8, 25, 2, 5


class BNNet(nn.Module):
    """A surrogate with a batch-norm buffer, so eval-mode finetuning must leave the statistics alone."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, kernel_size=(3, 1), padding=(1, 0))
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, C)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.1, 0.1)
            self.bn.running_var.uniform_(0.5, 1.5)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v, m = x.shape
        h = x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)
        h = torch.relu(self.bn(self.conv(h))).mean((2, 3)).view(n, m, -1).mean(1)
        return 3 * self.fc(h)


def batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, T, V, M, generator=g) * 0.3
    x[:, :, T - 2 :] = 0
    x[0::2, :, :, :, 1] = 0
    return x, torch.arange(n) % C


SMALL = dict(iterations=3, samples=2, post_steps=3, snapshots=4, batch_size=8)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_ba_never_modifies_the_surrogate(monkeypatch):
    model = BNNet()
    before = snapshot(model)
    x, y = batch()
    tx, ty = batch(16, seed=3)

    real_deepcopy = copy.deepcopy

    def no_module_deepcopy(obj, *a, **k):
        if isinstance(obj, (nn.Module, torch.Tensor)):
            raise AssertionError(f"deepcopy of a {type(obj).__name__}")
        return real_deepcopy(obj, *a, **k)

    monkeypatch.setattr(copy, "deepcopy", no_module_deepcopy)
    x_adv = create_attack("ba", **SMALL)(
        Transfer([model], tx, ty), x, y, ThreatModel(eps=0.05), torch.Generator().manual_seed(0)
    )
    assert x_adv.shape == x.shape
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_finetuning_moves_a_functional_copy_and_collects_swag():
    model = BNNet()
    tx, ty = batch(16, seed=3)
    art = finetune_posterior(
        model, tx, ty, FinetuneConfig(post_steps=2, snapshots=6, batch_size=8, lr=2e-2)
    )
    names = [k for k, _ in model.named_parameters()]
    means, stds = named_moments(art, names)
    for name, p in model.named_parameters():
        assert means[name].shape == p.shape
        assert not torch.equal(means[name], p.detach())  # the copy moved
        assert (means[name] - p.detach()).abs().max() < 0.5  # ... but stayed a finetune
        assert (stds[name] > 1e-6).any()  # a spread over the 6 snapshots
    assert set(art) == {f"{s}.{n}" for s in ("mean", "sq_mean") for n in names}
    with pytest.raises(Exception, match="stale cache"):
        named_moments(art, names + ["extra.weight"])


def test_ba_with_zero_scale_steps_along_the_posterior_mean_gradient():
    model = BNNet()
    x, y = batch()
    tx, ty = batch(16, seed=3)
    cfg = dict(SMALL, iterations=1, scale=0.0)
    threat = ThreatModel(eps=0.05)
    x_adv = create_attack("ba", **cfg)(
        Transfer([model], tx, ty), x, y, threat, torch.Generator().manual_seed(0)
    )
    art = ba_posterior(model, tx, ty, create_attack("ba", **cfg).config.finetune())
    means, _ = named_moments(art, [k for k, _ in model.named_parameters()])
    xr = x.clone().requires_grad_(True)
    out = torch.func.functional_call(model, ({**means, **dict(model.named_buffers())},), (xr,))
    (g,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), xr)
    g = g * threat.allowed_mask(x)
    step = g / g.abs().flatten(1).mean(1).view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(x_adv, threat.project(x, x + 0.05 * step))


def test_ba_raises_the_surrogate_loss_for_both_directions_and_norms():
    model = BNNet()
    x, y = batch()
    tx, ty = batch(16, seed=3)
    ce = F.cross_entropy(model(x), y)
    for kw, threat in (({}, ThreatModel(eps=0.05)), ({"direction": "sign"}, ThreatModel(eps=0.05)),
                       ({}, ThreatModel(norm="l2", eps=0.5))):  # fmt: skip
        x_adv = create_attack("ba", **{**SMALL, **kw})(
            Transfer([model], tx, ty), x, y, threat, torch.Generator().manual_seed(1)
        )
        assert threat.check(x, x_adv) == []
        assert F.cross_entropy(model(x_adv), y) > ce, kw


def test_ba_cache_is_reused(tmp_path, monkeypatch):
    model = BNNet()
    tx, ty = batch(16, seed=3)
    cfg = FinetuneConfig(post_steps=1, snapshots=2, batch_size=4)
    calls = []
    real = posterior.finetune_posterior
    monkeypatch.setattr(
        posterior, "finetune_posterior", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    a = ba_posterior(model, tx, ty, cfg, tmp_path)
    artifacts.clear_memory_cache()
    b = ba_posterior(model, tx, ty, cfg, tmp_path)
    assert len(calls) == 1
    assert all(torch.equal(a[k], b[k]) for k in a)
    ba_posterior(
        model, tx, ty, FinetuneConfig(post_steps=1, snapshots=2, batch_size=4, lam=0.0), tmp_path
    )
    assert len(calls) == 2


def test_ba_config_errors():
    with pytest.raises(ConfigError):
        create_attack("ba", direction="median")
    with pytest.raises(ConfigError):
        create_attack("ba", samples=0)
