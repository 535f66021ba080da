"""Per-sample metrics against numbers computed by hand on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from robench.data.skeleton import Topology
from robench.errors import DataError
from robench.run.metrics import perturbation_stats, sample_metrics, wilson_interval

# a chain a -> b -> c
CHAIN = Topology("chain3", ("a", "b", "c"), (-1, 0, 1), center=0)


def tiny() -> torch.Tensor:
    """(1, 3, T=4, V=3, M=2): a static body in frames 0-2, frame 3 padding, body 2 absent.

    a = (0.1, 0, 1), b = a + (0, 0.3, 0) (bone 0.3), c = b + (0.4, 0, 0) (bone 0.4), in metres.
    """
    x = torch.zeros(1, 3, 4, 3, 2)
    pose = torch.tensor([[0.1, 0.0, 1.0], [0.1, 0.3, 1.0], [0.5, 0.3, 1.0]]).T  # (3, V)
    x[0, :, :3, :, 0] = pose[:, None, :]
    return x


def test_one_joint_moved_3cm():
    x = tiny()
    xa = x.clone()
    xa[0, 0, 1, 2, 0] += 0.03  # joint c, frame 1, +3 cm along x: its bone grows 0.4 -> 0.43
    s = perturbation_stats(x, xa, CHAIN, "m")
    assert set(s) == {"linf", "l2", "joint_disp_cm", "bone_dev_pct", "accel_dev"}
    assert all(v.shape == (1,) for v in s.values())
    assert s["linf"].item() == pytest.approx(0.03, rel=1e-5)
    assert s["l2"].item() == pytest.approx(0.03, rel=1e-5)
    # 3 present frames x 3 joints = 9 present joints
    assert s["joint_disp_cm"].item() == pytest.approx(3 / 9, rel=1e-5)
    # 2 bones x 3 present frames = 6 present bones, one off by 0.03 / 0.4 = 7.5 %
    assert s["bone_dev_pct"].item() == pytest.approx(7.5 / 6, rel=1e-4)
    # only t = 1 has frames 0, 1, 2 all present; joint c's second difference changes by -2 * 0.03
    assert s["accel_dev"].item() == pytest.approx(0.06 / 3, rel=1e-5)


def test_units_scale_joint_displacement_only():
    x = tiny()
    xa = x.clone()
    xa[0, 1, 0, 0, 0] += 0.03
    for unit, expected in (
        ("m", 3 / 9),
        ("cm", 0.03 / 9),
        ("mm", 0.003 / 9),
        ("normalized", 0.03 / 9),
    ):
        s = perturbation_stats(x, xa, CHAIN, unit)
        assert s["joint_disp_cm"].item() == pytest.approx(expected, rel=1e-5)
        assert s["linf"].item() == pytest.approx(0.03, rel=1e-5)


def test_zero_length_bone_is_left_out_and_no_present_joint_gives_zero():
    x = tiny()
    x[0, :, :3, 2, 0] = x[0, :, :3, 1, 0]  # c on b: zero-length clean bone
    xa = x.clone()
    xa[0, 1, 0, 2, 0] += 0.01
    s = perturbation_stats(x, xa, CHAIN, "m")
    assert torch.isfinite(torch.stack(list(s.values()))).all()
    assert s["bone_dev_pct"].item() == 0.0  # only bone a-b counts, and it is unchanged
    empty = torch.zeros(2, 3, 2, 3, 1)
    s = perturbation_stats(empty, empty, CHAIN, "m")
    assert all(torch.equal(v, torch.zeros(2, dtype=v.dtype)) for v in s.values())


def test_sample_metrics_predictions_margins_success():
    x = torch.cat([tiny(), tiny()])
    xa = x.clone()
    xa[1, 2, 0, 0, 0] -= 0.02
    lc = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    la = torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 4.0]])
    y = torch.tensor([0, 2])
    m = sample_metrics(lc, la, y, x, xa, CHAIN, "m")
    assert m["clean_pred"].tolist() == [0, 1] and m["clean_pred"].dtype == torch.int64
    assert m["adv_pred"].tolist() == [1, 2]
    assert m["clean_correct"].tolist() == [True, False]
    # sample 1 ends correct but was wrong before: not a success; sample 0 flipped: success
    assert m["success"].tolist() == [True, False] and m["success"].dtype == torch.bool
    assert m["margin_clean"].tolist() == [1.0, -2.0]
    assert m["margin_adv"].tolist() == [-1.0, 4.0]
    assert m["queries"].tolist() == [-1, -1] and m["queries"].dtype == torch.int64
    assert m["linf"].tolist() == pytest.approx([0.0, 0.02], rel=1e-5)
    m = sample_metrics(lc, la, y, x, xa, CHAIN, "m", queries=torch.tensor([7, 120]))
    assert m["queries"].tolist() == [7, 120]


def test_sample_metrics_refuses_bad_shapes():
    x = tiny()
    with pytest.raises(DataError, match="logits"):
        sample_metrics(torch.zeros(1, 1), torch.zeros(1, 1), torch.tensor([0]), x, x, CHAIN, "m")
    with pytest.raises(DataError, match="labels"):
        sample_metrics(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([3]), x, x, CHAIN, "m")
    with pytest.raises(DataError, match="x_adv"):
        perturbation_stats(x, x[:, :, :2], CHAIN, "m")


def test_wilson_interval():
    # by hand: p = 0.8, z^2 = 3.8416, denom = 1.38416, centre = 0.99208 / 1.38416 = 0.716738,
    # half = 1.96 * sqrt(0.016 + 0.009604) / 1.38416 = 0.313625 / 1.38416 = 0.226581
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490157, abs=1e-5) and hi == pytest.approx(0.943319, abs=1e-5)
    lo, hi = wilson_interval(0, 10)  # centre = half = 0.192080 / 1.38416 = 0.138771
    assert lo == 0.0 and hi == pytest.approx(0.277541, abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(DataError):
        wilson_interval(11, 10)
