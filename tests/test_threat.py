"""ThreatModel: projection ends inside every constraint; check() names each violation with its size."""

from __future__ import annotations

import math

import pytest
import torch

from robench.data.skeleton import get_topology, presence_mask
from robench.errors import ConfigError, DataError
from robench.threat import ThreatModel, Violation

TOPO = get_topology("ntu25")


def skeletons(n: int = 4, t: int = 12, seed: int = 0) -> torch.Tensor:
    """ntu25-shaped clips (N, 3, T, 25, 2) built along the kinematic tree.

    Bone lengths 5-30 cm, a root near 1-3 m, small motion over time; the second body is absent
    (all zero), the last 3 frames of sample 1 and the last 5 of sample 2 are zero padding.
    """
    g = torch.Generator().manual_seed(seed)
    v = TOPO.num_joints
    length = 0.05 + 0.25 * torch.rand(n, 1, v, generator=g)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, v, generator=g), dim=1)
    root = torch.rand(n, 3, generator=g) * 2 + 1
    pose = torch.zeros(n, 3, v)
    for j in TOPO.order:
        p = TOPO.parents[j]
        pose[:, :, j] = root if p == -1 else pose[:, :, p] + length[:, :, j] * direction[:, :, j]
    motion = 0.02 * torch.randn(n, 3, t, 1, generator=g).cumsum(2)
    x = torch.zeros(n, 3, t, v, 2)
    x[..., 0] = pose[:, :, None, :] + motion
    x[1:2, :, t - 3 :] = 0
    x[2:3, :, t - 5 :] = 0
    return x


def candidate(x: torch.Tensor, scale: float, seed: int = 1) -> torch.Tensor:
    """A perturbation that touches everything, padding and absent bodies included."""
    g = torch.Generator().manual_seed(seed)
    return x + scale * torch.randn(x.shape, generator=g)


def bone_excess(x: torch.Tensor, xa: torch.Tensor, tol: float) -> torch.Tensor:
    """Largest |l' - l| - tol*l over present bones (metres); float32 rounding allows ~1e-6."""
    lc, la = TOPO.bone_lengths(x.double()), TOPO.bone_lengths(xa.double())
    present = presence_mask(x)[:, 0].expand_as(lc)
    return ((la - lc).abs() - tol * lc)[present].max()


# ---------------------------------------------------------------------------------------- project
@pytest.mark.parametrize("norm,eps", [("linf", 0.01), ("l2", 0.1)])
def test_project_lands_on_the_ball(norm, eps):
    x = skeletons()
    xa = candidate(x, 0.05)
    x0, xa0 = x.clone(), xa.clone()
    tm = ThreatModel(norm=norm, eps=eps)
    p = tm.project(x, xa)
    assert torch.equal(x, x0) and torch.equal(xa, xa0)  # arguments untouched
    assert tm.check(x, p) == []
    d = (p.double() - x.double()).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps).all()
    # the candidate is far outside, so the projection sits on the boundary (not collapsed to x)
    assert torch.allclose(size, torch.full_like(size, eps), rtol=1e-4)
    assert torch.equal(
        p[~presence_mask(x).expand_as(x)], torch.zeros_like(p[~presence_mask(x).expand_as(x)])
    )


def test_project_linf_is_the_clamp_and_l2_the_radial_scaling():
    x = skeletons(n=2)
    allowed = presence_mask(x).expand_as(x)
    delta = torch.where(allowed, torch.full_like(x, 0.03), torch.zeros_like(x))
    delta[:, 0] = -0.004  # inside the ball: kept
    delta = torch.where(allowed, delta, torch.zeros_like(x))
    p = ThreatModel(eps=0.01).project(x, x + delta)
    d = p - x
    assert torch.allclose(d[:, 1:][allowed[:, 1:]], torch.tensor(0.01), atol=2e-7)
    assert torch.allclose(d[:, 0][allowed[:, 0]], torch.tensor(-0.004), atol=2e-7)
    p2 = ThreatModel("l2", eps=0.1).project(x, x + delta)
    d2 = (p2 - x).double().flatten(1)
    dd = delta.double().flatten(1)
    expected = dd * (0.1 / dd.norm(dim=1, keepdim=True))
    assert torch.allclose(d2, expected, atol=1e-6)


def test_project_keeps_valid_input_and_clean_input():
    x = skeletons()
    tm = ThreatModel(eps=0.01)
    inside = tm.project(x, candidate(x, 0.003))
    assert torch.equal(tm.project(x, inside), inside)
    assert torch.equal(tm.project(x, x), x)
    assert torch.equal(ThreatModel(eps=0.01, preserve_bones=True).project(x, x), x)


@pytest.mark.parametrize(
    "norm,eps,tol", [("linf", 0.01, 0.01), ("l2", 0.2, 0.01), ("linf", 0.01, 0.0)]
)
def test_project_with_bones_keeps_lengths_and_ball(norm, eps, tol):
    x = skeletons()
    tm = ThreatModel(norm=norm, eps=eps, preserve_bones=True, bone_tolerance=tol)
    p = tm.project(x, candidate(x, 0.05))
    assert torch.isfinite(p).all()
    assert tm.check(x, p) == []
    assert bone_excess(x, p, tol) <= 1e-5  # 10 µm of float32 rounding at coordinates ~3 m
    assert bone_excess(x, candidate(x, 0.05), tol) > 0.01  # the candidate itself broke them
    d = (p.double() - x.double()).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps).all()
    assert (size > 0.3 * eps).all()  # a real perturbation survives, not a fall back to x
    pad = ~presence_mask(x).expand_as(x)
    assert (p[pad] == 0).all()


def test_project_with_bones_and_masks_uses_fallback_and_stays_valid():
    x = skeletons()
    tm = ThreatModel(eps=0.02, preserve_bones=True, joints=(0, 1, 20, 2, 3), frames=(2, 7))
    p = tm.project(x, candidate(x, 0.05))
    assert tm.check(x, p) == []
    allowed = tm.allowed_mask(x).expand_as(x)
    assert torch.equal(p[~allowed], x[~allowed])
    assert (p != x).any()


def test_whole_sample_fallback_stays_on_the_segment_and_passes():
    x = skeletons()
    tm = ThreatModel(eps=0.01, preserve_bones=True)
    z = tm._ball(x, candidate(x, 0.05) - x, tm.allowed_mask(x))  # in the ball, bones broken
    assert tm.check(x, z) != []
    p = tm._shrink(x, z, tm.allowed_mask(x), slots=False)
    assert tm.check(x, p) == []
    d, dz = (p - x).flatten(1).double(), (z - x).flatten(1).double()
    s = (d * dz).sum(1) / (dz * dz).sum(1)
    assert ((s >= 0) & (s < 1)).all() and (s > 0).any()
    assert torch.allclose(d, s[:, None] * dz, atol=1e-6)


def test_project_degenerate_bones_give_no_nan():
    x = skeletons(n=2)
    x[0, :, :, 3] = x[0, :, :, 2]  # head on the neck: zero clean bone length
    xa = candidate(x, 0.02)
    xa[1, :, :, 7] = xa[1, :, :, 6]  # zero-length direction in the candidate
    tm = ThreatModel(eps=0.01, preserve_bones=True)
    p = tm.project(x, xa)
    assert torch.isfinite(p).all()
    assert tm.check(x, p) == []
    xa_nan = xa.clone()
    xa_nan[0, 0, 0, 0, 0] = float("nan")
    assert tm.check(x, tm.project(x, xa_nan)) == []


def test_project_joint_and_frame_masks():
    x = skeletons()
    tm = ThreatModel(eps=0.01, joints=(4, 5, 6), frames=(1, 5))
    p = tm.project(x, candidate(x, 0.05))
    assert tm.check(x, p) == []
    moved = (p != x).any(1).any(-1)  # (N, T, V)
    assert moved[:, 1:5][:, :, [4, 5, 6]].any()
    moved[:, 1:5, 4:7] = False
    assert not moved.any()


def test_allowed_mask():
    x = skeletons(n=3, t=12)
    m = ThreatModel(joints=(0, 2), frames=(1, 11)).allowed_mask(x)
    assert m.shape == (3, 1, 12, 25, 2) and m.dtype == torch.bool
    assert not m[..., 1].any()  # absent body
    assert not m[:, :, 0].any() and not m[:, :, 11].any()
    assert m[0, 0, 1:11][:, [0, 2], 0].all() and not m[0, 0, 5, 1, 0]
    assert not m[2, 0, 7:].any() and m[2, 0, 6, 0, 0]  # padding of sample 2


# ---------------------------------------------------------------------------------------- check
def kinds(violations: list[Violation]) -> dict[str, Violation]:
    return {v.kind: v for v in violations}


def test_check_shape_dtype_nonfinite():
    x = skeletons()
    tm = ThreatModel()
    (v,) = tm.check(x, x[:, :, :-1])
    assert v.kind == "shape" and "expected" in str(v)
    assert kinds(tm.check(x, x.double())).keys() == {"dtype"}
    xa = x.clone()
    xa[0, 0, 0, 0, 0] = float("nan")
    xa[0, 1, 0, 0, 0] = float("nan")
    xa[3, 2, 1, 5, 0] = float("inf")
    v = kinds(tm.check(x, xa))["non_finite"]
    assert (v.size, v.count) == (3.0, 2)
    assert "non-finite" in str(v)


def test_check_norms_with_size_and_count():
    x = skeletons()
    xa = x.clone()
    xa[1, 0, 0, 4, 0] += 0.03
    v = kinds(ThreatModel(eps=0.01).check(x, xa))["linf"]
    assert v.size == pytest.approx(0.03, rel=1e-5) and v.limit == 0.01 and v.count == 1
    assert "exceeds eps" in str(v)
    xa = x.clone()
    xa[0, :, 0, 0, 0] += torch.tensor([0.3, 0.4, 0.0])  # norm 0.5
    xa[2, 0, 0, 1, 0] += 0.2
    v = kinds(ThreatModel("l2", eps=0.1).check(x, xa))["l2"]
    assert v.size == pytest.approx(0.5, rel=1e-5) and v.count == 2


def test_check_tolerance_is_1e6_relative():
    x = skeletons(n=1)
    x[0, 0, 0, 0, 0] = 0.0  # a present coordinate at zero: x_adv - x is then exact in float32
    tm = ThreatModel(eps=0.01)
    for factor, ok in ((1 + 5e-7, True), (1 + 1e-5, False)):
        xa = x.clone()
        xa[0, 0, 0, 0, 0] = 0.01 * factor
        assert (tm.check(x, xa) == []) is ok


def test_check_padding_and_absent_body_must_stay_exactly_zero():
    x = skeletons()
    tm = ThreatModel(eps=0.01)
    xa = x.clone()
    xa[1, 0, -1, 3, 0] = 0.005  # padded frame, within eps
    v = kinds(tm.check(x, xa))
    assert (
        set(v) == {"padding"}
        and v["padding"].size == pytest.approx(0.005)
        and v["padding"].count == 1
    )
    xa = x.clone()
    xa[0, 2, 4, 7, 1] = 1e-30  # absent second body, even a denormal-sized change
    xa[3, 2, 4, 7, 1] = -2e-3
    v = kinds(tm.check(x, xa))["padding"]
    assert v.count == 2 and v.size == pytest.approx(2e-3)


def test_check_joint_and_frame_masks():
    x = skeletons()
    tm = ThreatModel(eps=0.01, joints=(0, 1), frames=(0, 4))
    xa = x.clone()
    xa[0, 1, 2, 5, 0] += 0.004  # disallowed joint in an allowed frame
    xa[2, 0, 6, 0, 0] += 0.003  # allowed joint in a disallowed frame
    xa[3, 0, 1, 1, 0] += 0.009  # allowed: no violation
    v = kinds(tm.check(x, xa))
    assert set(v) == {"joint_mask", "frame_mask"}
    assert v["joint_mask"].size == pytest.approx(0.004, rel=1e-4) and v["joint_mask"].count == 1
    assert v["frame_mask"].size == pytest.approx(0.003, rel=1e-4) and v["frame_mask"].count == 1


def test_check_bone_length():
    x = skeletons()
    tm = ThreatModel(eps=1.0, preserve_bones=True, bone_tolerance=0.01)
    xa = x.clone()
    # head (joint 3) is a leaf of the neck (joint 2): stretch that bone by 10% in sample 1, frame 0
    bone = x[1, :, 0, 3, 0] - x[1, :, 0, 2, 0]
    xa[1, :, 0, 3, 0] += 0.1 * bone
    xa[2, :, 1, 3, 0] += 0.005 * (x[2, :, 1, 3, 0] - x[2, :, 1, 2, 0])  # 0.5%: allowed
    v = kinds(tm.check(x, xa))
    assert set(v) == {"bone_length"}
    assert v["bone_length"].size == pytest.approx(0.1, rel=1e-4) and v["bone_length"].count == 1
    assert ThreatModel(eps=1.0).check(x, xa) == []  # bones only checked when preserved
    x[0, :, :, 3] = x[0, :, :, 2]  # zero-length clean bone
    xa = x.clone()
    xa[0, 0, 0, 3, 0] += 0.002
    v = kinds(tm.check(x, xa))
    assert v["degenerate_bone"].size == pytest.approx(0.002, rel=1e-4)


def test_check_reports_every_violation_at_once():
    x = skeletons()
    tm = ThreatModel(eps=0.01, joints=(0,), preserve_bones=True)
    xa = candidate(x, 0.05)
    found = kinds(tm.check(x, xa))
    assert set(found) == {"padding", "joint_mask", "linf", "bone_length"}
    assert all(len(str(v).splitlines()) == 1 for v in found.values())


def test_check_refuses_bad_reference():
    with pytest.raises(DataError, match="shape"):
        ThreatModel().check(torch.zeros(2, 3, 4, 18, 1), torch.zeros(2, 3, 4, 18, 1))


# ---------------------------------------------------------------------------------------- config
def test_name_dict_roundtrip_and_eps_cm():
    tm = ThreatModel("l2", 0.5, preserve_bones=True, joints=[3, 1], frames=[0, 32])
    assert tm.joints == (1, 3) and tm.frames == (0, 32)
    assert tm.name == "l2-eps0.5m-bones1%-j1,3-f0:32"
    assert ThreatModel().name == "linf-eps0.01m"
    assert ThreatModel.from_dict(tm.to_dict()) == tm
    assert ThreatModel().eps_cm == pytest.approx(1.0)
    assert ThreatModel(eps=10, unit="mm").eps_cm == pytest.approx(1.0)
    assert ThreatModel(eps=0.1, unit="normalized").eps_cm is None
    assert ThreatModel.from_dict({"eps": 1}).eps == 1.0


@pytest.mark.parametrize(
    "d,field",
    [
        ({"norm": "l3"}, "norm"),
        ({"eps": -0.1}, "eps"),
        ({"eps": "0.01"}, "eps"),
        ({"eps": math.inf}, "eps"),
        ({"unit": "inch"}, "unit"),
        ({"joints": [0, 25]}, "joints"),
        ({"joints": [1, 1]}, "joints"),
        ({"joints": []}, "joints"),
        ({"joints": 3}, "joints"),
        ({"frames": [5, 2]}, "frames"),
        ({"frames": [0]}, "frames"),
        ({"bone_tolerance": -1}, "bone_tolerance"),
        ({"preserve_bones": "yes"}, "preserve_bones"),
        ({"topology": "ntu26"}, "topology"),
        ({"epsilon": 0.1}, "epsilon"),
    ],
)
def test_from_dict_errors_name_the_field(d, field):
    with pytest.raises(ConfigError) as e:
        ThreatModel.from_dict(d, source="bench.yaml")
    msg = str(e.value)
    assert field in msg and "bench.yaml" in msg and "\n" not in msg
