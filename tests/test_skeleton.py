import json

import numpy as np
import pytest
import torch

from robench.data.skeleton import (
    BUILTIN_TOPOLOGIES,
    NTU25_EDGES,
    Topology,
    get_topology,
    motion_stats,
    presence_mask,
)
from robench.errors import ConfigError, UnknownNameError


def test_ntu25_bones_are_the_pinned_edge_list():
    t = BUILTIN_TOPOLOGIES["ntu25"]
    got = {frozenset((c + 1, p + 1)) for c, p in t.bones}
    assert got == {frozenset(e) for e in NTU25_EDGES}
    assert t.root == 20 and t.center == 20 and len(t.bones) == 24


@pytest.mark.parametrize("name", sorted(BUILTIN_TOPOLOGIES))
def test_builtin_topologies_are_trees(name):
    t = BUILTIN_TOPOLOGIES[name]
    assert len(t.order) == t.num_joints and t.order[0] == t.root
    seen = set()
    for j in t.order:  # parents come before children
        assert t.parents[j] == -1 or t.parents[j] in seen
        seen.add(j)
    part = t.spatial_partition()
    assert part.shape == (3, t.num_joints, t.num_joints)
    # every column sums to 1 over the three subsets (A D^-1 normalisation)
    np.testing.assert_allclose(part.sum(axis=(0, 1)), 1.0, atol=1e-6)


def test_hdm05_parents_match_beat():
    t = get_topology("hdm05-25")
    assert t.parents[:10] == (10, 0, 1, 2, 3, 10, 5, 6, 7, 8) and t.root == 10


def test_bone_vectors_and_lengths_by_hand():
    t = Topology("chain", ("a", "b", "c"), (-1, 0, 1), center=0)
    x = torch.zeros(1, 3, 1, 3, 1)
    x[0, :, 0, 1, 0] = torch.tensor([3.0, 4.0, 0.0])
    x[0, :, 0, 2, 0] = torch.tensor([3.0, 4.0, 2.0])
    assert torch.allclose(t.bone_lengths(x).flatten(), torch.tensor([5.0, 2.0]))
    assert torch.allclose(t.bone_vectors(x)[0, :, 0, 2, 0], torch.tensor([0.0, 0.0, 2.0]))
    assert torch.equal(t.bone_vectors(x)[0, :, 0, 0, 0], torch.zeros(3))


def test_user_topology_json(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(
        json.dumps({"name": "mine", "joint_names": ["a", "b"], "parents": [-1, 0], "center": 0})
    )
    assert get_topology(str(p)).num_joints == 2
    p.write_text(
        json.dumps({"name": "bad", "joint_names": ["a", "b"], "parents": [1, 0], "center": 0})
    )
    with pytest.raises(ConfigError, match="root"):
        get_topology(str(p))
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="line 1"):
        get_topology(str(p))


def test_unknown_topology_suggests():
    with pytest.raises(UnknownNameError, match="ntu25"):
        get_topology("ntu52")


def test_presence_mask():
    x = torch.zeros(2, 3, 4, 25, 2)
    x[0, 0, 1, 3, 0] = 1.0
    m = presence_mask(x)
    assert m.shape == (2, 1, 4, 1, 2)
    assert int(m.sum()) == 1 and bool(m[0, 0, 1, 0, 0])


def _chain_clips(score: bool = False) -> tuple[Topology, torch.Tensor]:
    """One clip: a 4-joint chain with bones 0.3, 0.4, 0.5 (data units) translating by 0.01 per
    frame along x; frame 5 and frames 10.. are padding, the second body is absent. With ``score``
    channel 2 is a wildly varying confidence, the chain lying in the x-y plane."""
    topo = Topology(
        "chain4", ("a", "b", "c", "d"), (-1, 0, 1, 2), 0, score_channels=(2,) if score else ()
    )
    rest = torch.tensor([[1.0, 0, 0], [1.0, 0.3, 0], [1.0, 0.7, 0], [1.5, 0.7, 0]])
    if not score:
        rest = torch.tensor([[1.0, 0, 0], [1.0, 0.3, 0], [1.0, 0.3, 0.4], [1.0, 0.8, 0.4]])
    x = torch.zeros(1, 3, 16, 4, 2)
    for t in range(10):
        if t == 5:
            continue
        pos = rest + torch.tensor([0.01 * t, 0, 0])
        if score:
            pos[:, 2] = torch.rand(4) * 5
        x[0, :, t, :, 0] = pos.T
    return topo, x


@pytest.mark.parametrize("score", [False, True])
def test_motion_stats_pool_present_slots_in_data_units(score):
    topo, x = _chain_clips(score)
    ms = motion_stats(topo, x)
    assert ms["slots"] == 9  # absent second body and padding frames are not slots
    assert ms["bone_median"] == pytest.approx(0.4, abs=1e-6)
    assert ms["bone_p05"] == pytest.approx(0.3, abs=1e-6)  # absent bodies would give 0
    assert ms["bone_p95"] == pytest.approx(0.5, abs=1e-6)
    # only steps between two present frames: across the gap at frame 5 a step is ~1 unit
    assert ms["speed_median"] == pytest.approx(0.01, abs=1e-6)
    assert ms["speed_p90"] == pytest.approx(0.01, abs=1e-6)  # scores never count as motion
    scaled = motion_stats(topo, x * 100)
    assert scaled["bone_median"] == pytest.approx(40, rel=1e-5)
    assert scaled["speed_median"] == pytest.approx(1.0, rel=1e-4)


def test_motion_stats_of_nothing_are_nan():
    topo, x = _chain_clips()
    ms = motion_stats(topo, torch.zeros_like(x))
    assert ms["slots"] == 0 and np.isnan(ms["bone_median"]) and np.isnan(ms["speed_p90"])


def test_motion_stats_of_a_real_size_set_pool_more_than_torch_quantile_takes():
    """NTU-60 pools ~10**8 bone lengths; torch.quantile refuses more than 2**24 values."""
    topo = BUILTIN_TOPOLOGIES["ntu25"]
    x = torch.ones(700, 3, 1000, 25, 1)  # 700,000 frames x 24 bones > 2**24
    x[:, 0] += (torch.arange(25.0) * 0.1)[:, None]  # joints spread along x: non-zero bones
    ms = motion_stats(topo, x)
    assert ms["slots"] == 700_000 and ms["speed_median"] == 0 and ms["bone_median"] > 0
