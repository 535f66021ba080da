"""Kinetics-skeleton JSON (robench/data/formats/kinetics.py) and score channels: the feeder's
conventions value by value, and a confidence channel no attack may change."""

from __future__ import annotations

import json

import pytest
import torch

from robench.attack import create_attack
from robench.cli import main
from robench.data.dataset import SkeletonSet
from robench.data.formats.kinetics import import_kinetics
from robench.data.skeleton import BUILTIN_TOPOLOGIES
from robench.errors import ConfigError, DataError
from robench.threat import ThreatModel
from robench.victim import build_victim

TOPO = BUILTIN_TOPOLOGIES["openpose18-score"]


def person(x0: float, s: float, zero_joint: int | None = None) -> dict:
    pose = []
    for j in range(18):
        pose += [x0 + 0.01 * j, 0.5 + 0.02 * j]
    score = [s] * 18
    if zero_joint is not None:
        score[zero_joint] = 0.0
    return {"pose": pose, "score": score}


def video(path, label=3, name="dance", frames=None):
    frames = frames if frames is not None else [
        {"frame_index": 1, "skeleton": [person(0.2, 0.3), person(0.6, 0.9, zero_joint=4),
                                        person(0.4, 0.5)]},
        {"frame_index": 2, "skeleton": [person(0.25, 0.8)]},
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": frames, "label": name, "label_index": label}))


def test_kinetics_json_follows_the_st_gcn_feeder(tmp_path):
    video(tmp_path / "kinetics_train" / "v1.json")
    video(tmp_path / "kinetics_val" / "v2.json", label=1, name="run")
    video(tmp_path / "kinetics_val" / "empty.json", frames=[{"frame_index": 1, "skeleton": []}])
    ds = import_kinetics([tmp_path / "kinetics_train", tmp_path / "kinetics_val"], num_frames=8)
    assert ds.ids == ("v1", "v2") and ds.split == ("train", "test") and "1 without" in ds.source
    assert ds.x.shape == (2, 3, 8, 18, 2) and ds.unit == "normalized"
    assert ds.topology.name == "openpose18-score" and ds.topology.score_channels == (2,)
    assert ds.y.tolist() == [3, 1] and ds.class_names[3] == "dance" and ds.class_names[1] == "run"
    assert ds.class_names[0] == "class_000"
    x = ds.x.numpy()[0]
    # frame_index 1 is frame 0; per frame the two highest-scoring people, most confident first
    assert x[2, 0, 0, 0] == pytest.approx(0.9) and x[2, 0, 0, 1] == pytest.approx(0.5)
    assert x[0, 0, 1, 0] == pytest.approx(0.6 + 0.01 - 0.5)  # centred: x - 0.5
    assert x[1, 0, 3, 1] == pytest.approx(0.5 + 0.06 - 0.5)
    assert x[0, 0, 4, 0] == 0 and x[1, 0, 4, 0] == 0 and x[2, 0, 4, 0] == 0  # score 0: zeroed
    assert x[2, 1, 0, 0] == pytest.approx(0.8) and (x[:, 1, :, 1] == 0).all()  # one person
    assert (x[:, 2:] == 0).all()  # zero padding


@pytest.mark.parametrize(
    "frames, msg",
    [
        ([{"frame_index": "a", "skeleton": []}], "frame_index"),
        (
            [{"frame_index": 1, "skeleton": [{"pose": [0.1] * 10, "score": [1] * 18}]}],
            "'pose' of 36",
        ),
        (
            [{"frame_index": i, "skeleton": [person(0.1, 1.0)]} for i in range(1, 12)],
            "at most 8 frames",
        ),
    ],
)
def test_kinetics_bad_files_are_named(tmp_path, frames, msg):
    video(tmp_path / "a" / "bad.json", frames=frames)
    with pytest.raises(DataError, match=msg) as e:
        import_kinetics([tmp_path / "a"], num_frames=8)
    assert "bad.json" in str(e.value)


def test_score_channels_never_move_and_a_change_is_a_violation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 6, 18, 2, generator=g) - 0.5
    x[:, 2] = x[:, 2].abs() + 0.1  # scores
    x[1, :, :, :, 1] = 0  # an absent second body
    threat = ThreatModel(eps=0.01, unit="normalized", topology="openpose18-score")
    allowed = threat.allowed_mask(x)
    assert allowed.shape == (2, 3, 6, 18, 2) and not allowed[:, 2].any() and allowed[0, 0].all()
    moved = threat.project(x, x + 0.005)
    assert torch.equal(moved[:, 2], x[:, 2]) and not torch.equal(moved[:, :2], x[:, :2])
    bad = x.clone()
    bad[0, 2, 0, 0, 0] += 0.001
    kinds = [v.kind for v in threat.check(x, bad)]
    assert "score_channel" in kinds
    assert threat.check(x, moved) == []
    m = build_victim("stgcn", num_classes=4, width=4, depth=1, topology="openpose18-score").eval()
    out = create_attack("pgd", steps=3)(
        __import__("robench").WhiteBox(m), x, torch.tensor([0, 1]), threat, torch.Generator()
    )
    assert torch.equal(out[:, 2], x[:, 2])
    with pytest.raises(ConfigError, match="preserve_bones"):
        ThreatModel(topology="openpose18-score", preserve_bones=True, unit="normalized")
    # bones are measured on the coordinates only
    lengths = TOPO.bone_lengths(x)
    child, parent = TOPO.bones[0]
    want = (x[:, :2, :, child] - x[:, :2, :, parent]).norm(dim=1)
    assert torch.allclose(lengths[:, :, 0], want)


def test_import_command_reads_kinetics(tmp_path, capsys):
    video(tmp_path / "kinetics_train" / "v1.json")
    out = tmp_path / "k.npz"
    argv = ["data", "import", "kinetics", str(tmp_path / "kinetics_train"), "--frames", "8",
            "-o", str(out), "-q"]  # fmt: skip
    assert main(argv) == 0
    back = SkeletonSet.load(out)
    assert back.topology.score_channels == (2,) and back.unit == "normalized"
    capsys.readouterr()
    bad = ["data", "import", "kinetics", str(tmp_path / "kinetics_train"), "--bodies", "first",
           "-o", str(tmp_path / "no.npz"), "-q"]  # fmt: skip
    assert main(bad) == 2 and "--bodies" in capsys.readouterr().err
    assert not (tmp_path / "no.npz").exists()
