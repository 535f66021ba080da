"""Nearest-centroid baselines (robench.data.baseline) and ``robench data baseline``."""

from __future__ import annotations

import pytest
import torch

from robench.cli import main
from robench.data import synth
from robench.data.baseline import centroid_baseline, centroid_predict, clip_features
from robench.data.dataset import SkeletonSet
from robench.data.skeleton import BUILTIN_TOPOLOGIES, Topology
from robench.errors import ConfigError, DataError


def _static_two_classes(topo: Topology = BUILTIN_TOPOLOGIES["ntu25"]) -> SkeletonSet:
    """Static poses of two classes, padding in half the clips, one clip translated far away."""
    g = torch.Generator().manual_seed(0)
    v = topo.num_joints
    pose = torch.randn(2, 3, 1, v, 1, generator=g)
    x = torch.zeros(8, 3, 6, v, 2)
    y = torch.tensor([0, 1] * 4)
    x[..., :1] = pose[y] + 0.01 * torch.randn(8, 3, 6, v, 1, generator=g)
    x[::2, :, 4:] = 0  # padding must not count
    x[1, :, :, :, :1] += torch.tensor([5.0, -2.0, 1.0])[:, None, None, None]
    return SkeletonSet(
        x=x, y=y, ids=tuple(map(str, range(8))), class_names=("a", "b"), topology=topo
    )


@pytest.mark.parametrize("kind", ["pose", "sequence"])
def test_static_poses_are_separated_and_a_translation_changes_nothing(kind):
    ds = _static_two_classes()
    assert centroid_baseline(ds, ds, kind) == 1.0
    f = clip_features(ds, kind)
    moved = torch.tensor([1.0, 2.0, 3.0])[:, None, None, None] * (ds.x[3:4] != 0)
    ds2 = SkeletonSet(
        x=ds.x.clone(), y=ds.y, ids=ds.ids, class_names=ds.class_names, topology=ds.topology
    )
    ds2.x[3:4] += moved
    assert torch.allclose(clip_features(ds2, kind)[3], f[3], atol=1e-5)


def test_centring_uses_the_topologys_root_joint():
    topo = Topology("chain3", ("a", "b", "c"), (1, -1, 1), 0)  # root joint 1; centre and 0 differ
    x = torch.zeros(1, 3, 2, 3, 1)
    x[0, :, :, 0, 0] = torch.tensor([1.0, 0, 0])[:, None]
    x[0, :, :, 1, 0] = torch.tensor([2.0, 0, 0])[:, None]
    x[0, :, :, 2, 0] = torch.tensor([3.0, 0, 0])[:, None]
    ds = SkeletonSet(x=x, y=torch.tensor([0]), ids=("s",), class_names=("a",), topology=topo)
    f = clip_features(ds, "pose").view(3, 3)  # (C, V)
    assert f[0].tolist() == [-1.0, 0.0, 1.0] and (f[1:] == 0).all()


def test_sequence_feature_resamples_the_present_frames_in_order():
    topo = Topology("one", ("a", "b"), (-1, 0), 0)
    x = torch.zeros(1, 3, 10, 2, 1)
    present = [0, 1, 3, 4, 6]  # frames 2 and 5 missing, 7.. padding
    for t in present:
        x[0, 0, t, 1, 0] = 1.0 + t  # joint b moves along x; the root stays at 0.5
        x[0, 0, t, 0, 0] = 0.5
    ds = SkeletonSet(x=x, y=torch.tensor([0]), ids=("s",), class_names=("a",), topology=topo)
    f = clip_features(ds, "sequence", frames=3).view(3, 3, 2)  # (C, frames, V)
    assert f[0, :, 1].tolist() == [0.5, 3.5, 6.5]  # frames 0, 3, 6 minus the root
    assert clip_features(ds, "sequence", frames=5).view(3, 5, 2)[0, :, 1].tolist() == [
        0.5, 1.5, 3.5, 4.5, 6.5,
    ]  # fmt: skip


def test_score_channels_are_not_features():
    topo = BUILTIN_TOPOLOGIES["openpose18-score"]
    ds = _static_two_classes(topo)
    assert clip_features(ds, "pose").shape[1] == 2 * 18 * 2  # x, y of 18 joints, 2 bodies


def test_motion_order_needs_the_sequence_feature():
    """Two classes that are one motion forwards and backwards: same mean pose, opposite order."""
    topo = Topology("one", ("a", "b"), (-1, 0), 0)
    t = torch.linspace(0, 1, 12)
    x = torch.zeros(10, 3, 12, 2, 1)
    x[:, 0, :, 0, 0] = 0.1
    x[0::2, 1, :, 1, 0] = t
    x[1::2, 1, :, 1, 0] = t.flip(0)
    x += 1e-3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    ds = SkeletonSet(x=x, y=torch.arange(10) % 2, ids=tuple(map(str, range(10))),
                     class_names=("up", "down"), topology=topo)  # fmt: skip
    assert centroid_baseline(ds, ds, "sequence") == 1.0
    assert centroid_baseline(ds, ds, "pose") < 0.9


def test_pose_baseline_stays_far_below_perfect_on_the_temporal_world():
    medium = synth.generate(seed=1, n_train=256, n_test=64, num_frames=64)
    acc = centroid_baseline(medium.get_split("train"), medium.get_split("test"))
    assert 1 / medium.num_classes < acc < 0.6


def test_bad_input():
    ds = _static_two_classes()
    with pytest.raises(ConfigError, match="'kind'"):
        clip_features(ds, "mean")
    with pytest.raises(ConfigError, match="'frames'"):
        clip_features(ds, "sequence", frames=0)
    other = SkeletonSet(x=ds.x, y=ds.y, ids=ds.ids, class_names=("a", "c"), topology=ds.topology)
    with pytest.raises(DataError, match="class names"):
        centroid_baseline(ds, other)
    one_body = SkeletonSet(x=ds.x[..., :1].contiguous(), y=ds.y, ids=ds.ids,
                           class_names=ds.class_names, topology=ds.topology)  # fmt: skip
    with pytest.raises(DataError, match="field 'x'"):
        centroid_baseline(ds, one_body)


def test_a_class_without_training_clips_is_never_predicted():
    ds = _static_two_classes()
    only_a = ds.select(ds.y == 0)
    train = SkeletonSet(x=only_a.x, y=only_a.y, ids=only_a.ids, class_names=ds.class_names,
                        topology=ds.topology)  # fmt: skip
    assert (centroid_predict(train, ds) == 0).all()  # class b has no centroid


def test_data_baseline_command(tmp_path, capsys):
    ds = synth.generate(seed=1, n_train=64, n_test=32, num_frames=32)
    path = ds.save(tmp_path / "s.npz")
    assert main(["data", "baseline", str(path)]) == 0
    out = capsys.readouterr().out
    pose = centroid_baseline(ds.get_split("train"), ds.get_split("test"), "pose")
    seq = centroid_baseline(ds.get_split("train"), ds.get_split("test"), "sequence")
    assert f"time-averaged pose: {100 * pose:.1f}%" in out
    assert f"16-frame pose sequence: {100 * seq:.1f}%" in out and "32 test clips" in out
    assert f"chance {100 / ds.num_classes:.1f}%" in out
    assert main(["data", "baseline", str(path), "--test", "val"]) == 2
    assert "'val'" in capsys.readouterr().err
    from robench.run.metrics import wilson_interval

    assert main(["data", "baseline", str(path), "--frames", "8", "--train", "train"]) == 0
    out = capsys.readouterr().out
    seq8 = centroid_predict(ds.get_split("train"), ds.get_split("test"), "sequence", 8)
    k = int((seq8 == ds.get_split("test").y).sum())
    lo, hi = wilson_interval(k, 32)
    assert f"8-frame pose sequence: {100 * k / 32:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]" in out
    major = int(torch.bincount(ds.get_split("train").y).argmax())
    share = float((ds.get_split("test").y == major).double().mean())
    assert f"majority class of train ({ds.class_names[major]}) {100 * share:.1f}%" in out
    assert main(["data", "baseline", str(path), "--frames", "0"]) == 2
    out, err = capsys.readouterr()
    assert "'--frames'" in err and err.count("\n") == 1 and out == ""  # refused before any output


def test_data_baseline_compares_a_victim_clip_by_clip(tmp_path, capsys):
    from robench.data.baseline import centroid_predict
    from robench.report.aggregate import mcnemar_p
    from robench.victim import build_victim
    from robench.zoo.checkpoint import load_victim, save_victim

    ds = synth.generate(seed=1, n_train=64, n_test=32, num_frames=32)
    path = ds.save(tmp_path / "s.npz")
    save_victim(build_victim("stgcn", num_classes=ds.num_classes, width=4, depth=1),
                tmp_path / "v.pt")  # fmt: skip
    assert main(["data", "baseline", str(path), "--victim", str(tmp_path / "v.pt")]) == 0
    out = capsys.readouterr().out
    test = ds.get_split("test")
    with torch.inference_mode():
        right = load_victim(tmp_path / "v.pt").eval()(test.x).argmax(1) == test.y
    ok = centroid_predict(ds.get_split("train"), test, "pose") == test.y
    b, c = int((right & ~ok).sum()), int((~right & ok).sum())
    assert (
        f"victim - baseline {100 * (b - c) / 32:+.1f} points, McNemar p = {mcnemar_p(b, c):.3g} (b {b}, c {c})"
        in out
    )
    assert f"victim {tmp_path / 'v.pt'}: {100 * float(right.double().mean()):.1f}%" in out
    save_victim(build_victim("stgcn", num_classes=3, width=4, depth=1), tmp_path / "w.pt")
    assert main(["data", "baseline", str(path), "--victim", str(tmp_path / "w.pt")]) == 2
    assert "'--victim'" in capsys.readouterr().err
    one = build_victim("stgcn", num_classes=ds.num_classes, width=4, depth=1, num_persons=1)
    save_victim(one, tmp_path / "one.pt")  # the data has two bodies
    assert main(["data", "baseline", str(path), "--victim", str(tmp_path / "one.pt")]) == 2
    err = capsys.readouterr().err
    assert "'--victim'" in err and "2 bodies" in err and err.count("\n") == 1
    ts = torch.jit.trace(load_victim(tmp_path / "w.pt").eval(), test.x[:2])  # no config: logits
    torch.jit.save(ts, str(tmp_path / "w.ts"))
    import hashlib

    sha = hashlib.sha256((tmp_path / "w.ts").read_bytes()).hexdigest()
    assert (
        main(["data", "baseline", str(path), "--victim", f"torchscript:{tmp_path / 'w.ts'}#{sha}"])
        == 2
    )
    assert "(N, 16) logits" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["pose", "sequence"])
def test_features_in_chunks_equal_one_pass(kind):
    ds = synth.generate(seed=2, n_train=8, n_test=4, num_frames=16)
    whole = clip_features(ds, kind, chunk=len(ds))
    assert whole.shape[0] == len(ds) and torch.equal(clip_features(ds, kind, chunk=5), whole)
