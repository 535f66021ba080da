"""Contract tests for every registered attack (parametrised over the registry, so a new attack is
covered the moment it registers): threat model respected for each declared norm, input unchanged,
padding and absent bodies exactly zero, deterministic per seed, randomness declared honestly, every
config field has a default."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from robench.access import Knowledge, NoBox, Query, QueryOracle, Transfer, WhiteBox
from robench.attack import ATTACKS
from robench.data.skeleton import presence_mask
from robench.threat import ThreatModel

T, V, M, K = 8, 25, 2, 4
EPS = {"linf": 0.01, "l2": 0.1}
# Small values for iteration-count fields, applied only when the attack's Config has the field and
# only when they lower an integer default (so any attack registered by anyone runs fast here).
SMALL = {
    "steps": 3, "iterations": 3, "restarts": 1, "n_restarts": 1, "epochs": 1, "ig_steps": 3,
    "inner_steps": 2, "d_steps": 1, "samples": 2, "num_samples": 2, "n_samples": 2, "heads": 2,
    "snapshots": 3, "post_steps": 2, "pretrain_epochs": 1, "queries": 60, "max_queries": 60,
    "budget": 60, "max_iter": 3, "spherical_trials": 2, "eot_iter": 1, "clusters": 4,
    "n_clusters": 4, "kmeans_iters": 3, "projection_every": 2,
}  # fmt: skip
NAMES = ATTACKS.names()


class TinyNet(nn.Module):
    """Victim-like: (N, 3, T, V, M) -> (N, K) logits through flatten, linear, tanh, linear.

    The tanh makes gradients depend on the point, so random starts matter (on a linear model an
    attack's first sign step lands on the same corner from any start).
    """

    def __init__(self, seed: int, hidden: int = 16) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc1 = nn.Linear(3 * T * V * M, hidden)
        self.fc2 = nn.Linear(hidden, K)
        with torch.no_grad():
            for fc, scale in ((self.fc1, 0.1), (self.fc2, 1.0)):
                fc.weight.copy_(torch.randn(fc.weight.shape, generator=g) * scale)
                fc.bias.zero_()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


def tiny_batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips with zero-padded tails and, in even samples, an absent second body."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, T, V, M, generator=g) * 0.3
    lengths = torch.tensor([T, T - 2, T - 3, T, T - 1, T - 4] * (n // 6 + 1))[:n]
    x = x * (torch.arange(T)[None, :] < lengths[:, None]).view(n, 1, T, 1, 1)
    x[0::2, :, :, :, 1] = 0
    return x, torch.arange(n) % K


def small_config(cls: type) -> dict:
    out = {}
    for f in dataclasses.fields(cls.Config):
        if f.name in SMALL and type(f.default) is int and SMALL[f.name] < f.default:
            out[f.name] = SMALL[f.name]
    return out


def make_access(cls: type, model: nn.Module, x: torch.Tensor):
    level = cls.knowledge
    if level is Knowledge.WHITE_BOX:
        return WhiteBox(model)
    if level is Knowledge.TRANSFER:
        tx, ty = tiny_batch(12, seed=5)
        return Transfer([TinyNet(seed=1), TinyNet(seed=2)], tx, ty)
    if level is Knowledge.QUERY:
        mode = getattr(cls, "oracle_mode", "decision")
        return Query(QueryOracle(model, x.shape[0], budget=10_000, mode=mode))
    if level is Knowledge.NO_BOX:
        return NoBox(tiny_batch(12, seed=7)[0])
    raise AssertionError(f"unknown knowledge level {level}")


def attack_once(name: str, norm: str, seed: int):
    cls = ATTACKS.get(name)
    attack = cls(**small_config(cls))
    model = TinyNet(seed=0)
    x, y = tiny_batch()
    reference = x.clone()
    threat = ThreatModel(norm=norm, eps=EPS[norm])
    x_adv = attack(make_access(cls, model, x), x, y, threat, torch.Generator().manual_seed(seed))
    return attack, model, threat, reference, x, x_adv


@pytest.mark.parametrize("name", NAMES)
def test_config_has_defaults(name):
    cls = ATTACKS.get(name)
    assert dataclasses.is_dataclass(cls.Config)
    assert cls.Config.__dataclass_params__.frozen, f"{name}: Config must be a frozen dataclass"
    for f in dataclasses.fields(cls.Config):
        has = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        assert has, f"{name}: Config field {f.name!r} has no default"
    cls()  # buildable with defaults only
    assert isinstance(cls.knowledge, Knowledge)
    assert isinstance(cls.randomized, bool)


@pytest.mark.parametrize("name", NAMES)
def test_threat_model_respected_for_every_norm(name):
    cls = ATTACKS.get(name)
    for norm in cls.norms:
        attack, model, threat, reference, x, x_adv = attack_once(name, norm, seed=0)
        assert torch.equal(x, reference), f"{name}: input modified"
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
        assert torch.isfinite(x_adv).all()
        assert threat.check(x, x_adv) == [], f"{name} ({norm}) violates the threat model"
        pad = (~presence_mask(x)).expand_as(x)
        assert (x_adv[pad] == 0).all(), f"{name}: padding / absent body not exactly zero"
        assert not model.training, f"{name}: the victim was switched to training mode"
        assert all(p.grad is None for p in model.parameters()), (
            f"{name}: gradients accumulated in the victim"
        )


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_result_and_declared_randomness(name):
    norm = ATTACKS.get(name).norms[0]
    attack, _, _, _, x, a = attack_once(name, norm, seed=0)
    _, _, _, _, _, b = attack_once(name, norm, seed=0)
    others = [attack_once(name, norm, seed=s)[-1] for s in (1, 2)]
    assert torch.equal(a, b), f"{name}: two runs with the same seed differ"
    if attack.randomized:
        changed = any(not torch.equal(a, c) for c in others)
        assert changed, f"{name}: declared randomized but the seed changes nothing"
    else:
        for c in others:
            assert torch.equal(a, c), f"{name}: declared deterministic but depends on the seed"
