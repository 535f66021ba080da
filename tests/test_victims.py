"""Victims: the contract checks of :mod:`robench.testing` on every registered victim (one test per
victim and check), the checks catching what they promise on deliberately broken victims, plus
per-architecture checks of ST-GCN's partition, 2s-AGCN's bone stream and CTR-GCN's temporal resize."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench.data.skeleton import get_topology
from robench.errors import ConfigError, UnknownNameError
from robench.testing import VICTIM_CHECKS, ContractError, check_victim, run_victim_check
from robench.victim import VICTIMS, Victim, VictimConfig, build_victim

TINY = {"width": 8, "depth": 3, "num_classes": 5}
INVALID = {"width": 0, "depth": 0}  # every built-in victim refuses these, naming the field
NAMES = VICTIMS.names()
CHECKS = [name for name, _ in VICTIM_CHECKS]


def clip(n: int = 3, t: int = 16, m: int = 2, seed: int = 0) -> torch.Tensor:
    """Random ntu25 clips: sample 0 has a zero-padded tail, sample 1 an absent second body."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, t, 25, m, generator=g) * 0.3
    x[0, :, t - 4 :] = 0
    if m > 1 and n > 1:
        x[1, ..., 1] = 0
    return x


def tiny(name: str, **over: object) -> torch.nn.Module:
    """A tiny victim whose BatchNorm running statistics were fitted to random clips, in eval mode."""
    model = build_victim(name, **{**TINY, **over})
    model.train()
    with torch.no_grad():
        for s in range(3):
            model(clip(n=6, seed=100 + s))
    return model.eval()


# ------------------------------------------------------------------ the contract, per registered victim
@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("name", NAMES)
def test_victim_contract(name: str, check: str) -> None:
    run_victim_check(name, check, invalid=INVALID, **TINY)


@pytest.mark.parametrize("name", NAMES)
def test_small_config_fits_the_synthetic_zoo(name: str) -> None:
    model = build_victim(name, width=16, depth=6, num_classes=12)
    assert model.num_parameters <= 500_000  # <= 2 MB of float32 weights


# ------------------------------------------------------------------ the checks catch broken victims
@dataclass(frozen=True)
class PlainConfig(VictimConfig):
    width: int = 8
    init_seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or self.width < 1:
            raise ConfigError(
                f"expected a positive integer, got {self.width!r} in PlainConfig.width"
            )


class Plain(Victim):
    """Unregistered and meeting the contract: per-body temporal conv, mean over time and bodies."""

    Config = PlainConfig

    def __init__(self, config: PlainConfig) -> None:
        super().__init__(config)
        self.conv = nn.Conv1d(3 * 25, config.width, 3, padding=1)
        self.fc = nn.Linear(config.width, config.num_classes)
        self.init_weights(getattr(config, "init_seed", 0))

    def init_weights(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        for m in (self.conv, self.fc):
            nn.init.normal_(m.weight, 0.0, 0.1, generator=g)
            nn.init.zeros_(m.bias)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        p = self.config.num_persons - x.shape[4]
        return torch.cat([x, x.new_zeros(*x.shape[:4], p)], dim=4)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v, p = x.shape
        h = x.permute(0, 4, 1, 3, 2).reshape(n * p, c * v, t)
        return torch.relu(self.conv(h)).mean(2).view(n, p, -1).mean(1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(self.pad(x)))


@dataclass(frozen=True)
class UnseededConfig(VictimConfig):
    width: int = 8


class NoInitSeed(Plain):
    Config = UnseededConfig


class GlobalRNG(Plain):
    def init_weights(self, seed: int) -> None:
        nn.init.normal_(self.conv.weight, 0.0, 0.1)


class Softmax(Plain):
    def logits(self, x):
        return super().logits(x).softmax(1)


class Detached(Plain):
    def logits(self, x):
        return super().logits(x.detach())


class BatchMixing(Plain):
    def logits(self, x):
        return super().logits(x - x.mean(0, keepdim=True))


class NoPadding(Plain):
    def logits(self, x):
        return self.fc(self.features(x))  # averages over the M bodies given


class FixedLength(Plain):
    def __init__(self, config):
        super().__init__(config)
        self.fc = nn.Linear(config.width * 16, config.num_classes)
        self.init_weights(config.init_seed)

    def logits(self, x):
        n, c, t, v, p = self.pad(x).shape
        h = self.pad(x).permute(0, 4, 1, 3, 2).reshape(n * p, c * v, t)
        return self.fc(torch.relu(self.conv(h)).view(n, p, -1).mean(1))


class OwnForward(Plain):
    def forward(self, x):
        return self.logits(x)


class Unpersisted(Plain):
    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("shift", torch.randn(config.num_classes), persistent=False)

    def logits(self, x):
        return super().logits(x) + self.shift


BROKEN = [
    (NoInitSeed, "config"),
    (Plain, "config"),  # with invalid={"num_classes": 1}: Plain does not refuse it
    (GlobalRNG, "seeded_init"),
    (Softmax, "output"),
    (Detached, "input_gradient"),
    (BatchMixing, "batch_independence"),
    (NoPadding, "absent_body"),
    (FixedLength, "variable_length"),
    (OwnForward, "input_validation"),
    (Unpersisted, "serialization"),
]


def test_a_plain_unregistered_victim_passes_every_check() -> None:
    assert check_victim(Plain, invalid={"width": 0}) == CHECKS
    assert "plain" not in VICTIMS.names()


@pytest.mark.parametrize("cls, check", BROKEN, ids=[f"{c.__name__}-{k}" for c, k in BROKEN])
def test_each_check_catches_its_broken_victim(cls: type, check: str) -> None:
    invalid = {"num_classes": 1} if cls is Plain else {"width": 0}
    with pytest.raises(ContractError, match=f"failed contract check '{check}'") as info:
        run_victim_check(cls, check, invalid=invalid)
    assert "to fix:" in str(info.value)
    with pytest.raises(ContractError, match=f"'{check}'"):
        check_victim(cls, invalid=invalid)  # check_victim stops at the same check


def test_check_victim_refuses_non_victims_and_unknown_checks() -> None:
    with pytest.raises(ContractError, match="Victim subclass"):
        check_victim(nn.Linear)
    with pytest.raises(ConfigError, match="victim check"):
        run_victim_check(Plain, "no_such_check")
    with pytest.raises(UnknownNameError, match="stgcn"):
        check_victim("stgnc")
    assert check_victim("stgcn", checks=["config", "output"], **TINY) == ["config", "output"]


# ------------------------------------------------------------------ registry and architectures
def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match="stgcn"):
        build_victim("stgnc")
    with pytest.raises(UnknownNameError, match="ctrgcn"):
        build_victim("ctr-gcn")


def test_paper_sizes() -> None:
    """Paper configurations (60 NTU classes) have the published parameter counts."""
    expected = {"stgcn": 3.10e6, "agcn": 6.94e6, "ctrgcn": 1.46e6}  # 2s-AGCN: two 3.47M streams
    for name, n in expected.items():
        model = build_victim(name, num_classes=60)
        assert abs(model.num_parameters - n) / n < 0.02, (name, model.num_parameters)


def test_channel_plan_matches_the_papers() -> None:
    from robench.victims._layers import channel_plan

    plan = channel_plan(3, 64, 10)
    assert [c for _, c, _ in plan] == [64] * 4 + [128] * 3 + [256] * 3
    assert [s for _, _, s in plan] == [1] * 4 + [2, 1, 1, 2, 1, 1]
    assert channel_plan(3, 16, 6) == [
        (3, 16, 1),
        (16, 16, 1),
        (16, 32, 2),
        (32, 32, 1),
        (32, 64, 2),
        (64, 64, 1),
    ]


def test_stgcn_uses_the_spatial_partition() -> None:
    model = tiny("stgcn")
    topo = get_topology("ntu25")
    a = torch.from_numpy(topo.spatial_partition())
    assert torch.equal(model.A, a) and model.A.shape == (3, 25, 25)
    # the graph conv aggregates each partition's conv chunk over A_k (source -> target)
    block = model.st_gcn_networks[1]
    h = torch.randn(2, 8, 5, 25, generator=torch.Generator().manual_seed(3))
    y = block.gcn.conv(h).view(2, 3, 16, 5, 25)  # block 1: 8 -> 16 channels
    manual = sum(y[:, k] @ a[k] for k in range(3))
    torch.testing.assert_close(block.gcn(h, a), manual)
    # the adjacency matters: without edges (identity only) the logits change
    with torch.no_grad():
        out = model(clip())
        model.A[1:] = 0
        assert not torch.allclose(model(clip()), out)


def test_agcn_bone_stream_reads_bone_vectors() -> None:
    model = tiny("agcn")
    topo = model.topology
    x = clip()
    seen = {}
    hook = model.bone.register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    out = model(x)
    hook.remove()
    manual = torch.stack(
        [
            x[:, :, :, v] - x[:, :, :, p] if p >= 0 else torch.zeros_like(x[:, :, :, v])
            for v, p in enumerate(topo.parents)
        ],
        dim=3,
    )
    torch.testing.assert_close(seen["x"], manual)
    torch.testing.assert_close(out, model.joint(x) + model.bone(manual))
    assert not torch.allclose(out, model.joint(x) + model.bone(x))


def test_ctrgcn_resize_is_linear_interpolation_of_valid_frames() -> None:
    from robench.victims.ctrgcn import resize_valid_frames

    x = clip(n=3, t=20)
    x[1, :, 13:] = 0  # valid length 13
    out = resize_valid_frames(x, 32)
    for i, length in enumerate((16, 13, 20)):
        flat = x[i, :, :length].permute(0, 2, 3, 1).reshape(1, -1, length)
        ref = F.interpolate(flat, size=32, mode="linear", align_corners=False)
        torch.testing.assert_close(out[i], ref.view(3, 25, 2, 32).permute(0, 3, 1, 2))
    assert torch.equal(resize_valid_frames(x[2:], 20), x[2:])  # full length -> identity


def test_ctrgcn_ignores_trailing_padding() -> None:
    model = tiny("ctrgcn")
    x = clip(t=16)
    padded = torch.cat([x, torch.zeros(3, 3, 8, 25, 2)], dim=2)
    torch.testing.assert_close(model(padded), model(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="width"):
        build_victim("ctrgcn", width=6, depth=2)  # not a multiple of the 4 TCN branches
