"""Contract tests for every registered victim (parametrised over the registry), plus per-architecture
checks of ST-GCN's partition, 2s-AGCN's bone stream and CTR-GCN's temporal resize."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robench.data.skeleton import get_topology
from robench.errors import ConfigError, DataError, UnknownNameError
from robench.victim import VICTIMS, build_victim

TINY = {"width": 8, "depth": 3, "num_classes": 5}
NAMES = VICTIMS.names()


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


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_finite_and_deterministic(name: str) -> None:
    model = tiny(name)
    x = clip()
    out = model(x)
    assert out.shape == (3, 5) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.abs().max() > 1e-3  # not a degenerate (all-zero) output
    assert torch.equal(out, model(x))


@pytest.mark.parametrize("name", NAMES)
def test_input_gradient_nonzero(name: str) -> None:
    model = tiny(name)
    x = clip().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, 0].sum(), x)
    present = (x != 0).detach()
    assert torch.isfinite(grad).all()
    assert grad[present].abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_batch_independence(name: str) -> None:
    model = tiny(name)
    x = clip(n=3)
    together = model(x)
    for i in range(3):
        torch.testing.assert_close(model(x[i : i + 1]), together[i : i + 1], atol=1e-5, rtol=1e-5)
    # changing another sample leaves sample 0 unchanged
    x2 = x.clone()
    x2[1:] = clip(n=2, seed=7)
    torch.testing.assert_close(model(x2)[0], together[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_absent_second_body_and_single_body(name: str) -> None:
    model = tiny(name)
    x = clip()
    x[..., 1] = 0  # every second body absent
    out2 = model(x)
    out1 = model(x[..., :1].contiguous())  # M = 1: padded with an absent body
    assert out1.shape == (3, 5) and torch.isfinite(out1).all()
    torch.testing.assert_close(out1, out2, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_variable_length(name: str) -> None:
    model = tiny(name)
    for t in (16, 20, 9):
        out = model(clip(t=t))
        assert out.shape == (3, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "shape", [(2, 3, 16, 24, 2), (2, 2, 16, 25, 2), (2, 3, 16, 25, 3), (2, 3, 16, 25)]
)
def test_wrong_shape_raises(name: str, shape: tuple[int, ...]) -> None:
    model = build_victim(name, **TINY)
    with pytest.raises(DataError, match="expected input"):
        model(torch.zeros(shape))


@pytest.mark.parametrize("name", NAMES)
def test_config_errors_and_seeded_init(name: str) -> None:
    with pytest.raises(ConfigError, match="width"):
        build_victim(name, width=0, depth=2)
    with pytest.raises(ConfigError, match="depth"):
        build_victim(name, width=8, depth=0)
    with pytest.raises(ConfigError, match="unknown field"):
        build_victim(name, widht=8)
    a, b = build_victim(name, **TINY), build_victim(name, **TINY)
    c = build_victim(name, **TINY, init_seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("name", NAMES)
def test_small_config_fits_the_synthetic_zoo(name: str) -> None:
    model = build_victim(name, width=16, depth=6, num_classes=12)
    assert model.num_parameters <= 500_000  # <= 2 MB of float32 weights


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
