"""The embedded synth-ntu25 generator, its realism statistics, the centroid baseline and ``robench data``."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch

from robench.cli import main
from robench.data import synth
from robench.data.dataset import SkeletonSet
from robench.data.skeleton import BUILTIN_TOPOLOGIES, presence_mask
from robench.errors import ConfigError, DataError

TINY = {"n_train": 48, "n_test": 24, "num_frames": 32}


@pytest.fixture(scope="module")
def tiny() -> SkeletonSet:
    return synth.generate(seed=3, **TINY)


@pytest.fixture(scope="module")
def medium() -> SkeletonSet:
    """Full-length clips, enough of them for stable statistics (about 0.3 s)."""
    return synth.generate(seed=1, n_train=256, n_test=64, num_frames=64)


def test_classes_and_interactions():
    assert len(synth.CLASS_NAMES) >= 12 and len(set(synth.CLASS_NAMES)) == len(synth.CLASS_NAMES)
    assert len(synth.TWO_PERSON_CLASSES) >= 3
    assert {
        "wave_left_hand",
        "wave_right_hand",
        "clap_hands",
        "rub_hands",
        "kick_slow",
        "kick_fast",
    } <= set(synth.CLASS_NAMES)


def test_shapes_dtypes_ids(tiny):
    n = TINY["n_train"] + TINY["n_test"]
    assert tiny.x.shape == (n, 3, TINY["num_frames"], 25, 2) and tiny.x.dtype == torch.float32
    assert tiny.y.dtype == torch.int64 and tiny.subject.dtype == torch.int64
    assert (
        tiny.name == "synth-ntu25"
        and tiny.unit == "m"
        and tiny.topology == BUILTIN_TOPOLOGIES["ntu25"]
    )
    assert tiny.class_names == synth.CLASS_NAMES
    assert tiny.split == ("train",) * TINY["n_train"] + ("test",) * TINY["n_test"]
    assert all(re.fullmatch(r"S\d{3}P\d{3}A\d{3}R\d{3}", s) for s in tiny.ids)
    assert len(set(tiny.ids)) == n
    # the performer and action in the id are the sample's own
    for sid, subj, y in zip(tiny.ids, tiny.subject.tolist(), tiny.y.tolist(), strict=True):
        assert int(sid[5:8]) == subj and int(sid[9:12]) == y + 1
    # balanced classes within the training split (48 = 3 x 16)
    counts = torch.bincount(tiny.get_split("train").y, minlength=len(synth.CLASS_NAMES))
    assert int(counts.max() - counts.min()) <= 1


def test_deterministic_per_seed_and_different_across_seeds(tiny):
    again = synth.generate(seed=3, **TINY)
    assert torch.equal(again.x, tiny.x) and torch.equal(again.y, tiny.y) and again.ids == tiny.ids
    assert torch.equal(again.subject, tiny.subject)
    other = synth.generate(seed=4, **TINY)
    assert not torch.equal(other.x, tiny.x)
    assert other.ids != tiny.ids or not torch.equal(other.y, tiny.y)


def test_padding_at_the_end_is_exactly_zero(tiny):
    t = TINY["num_frames"]
    pres = presence_mask(tiny.x)[:, 0, :, 0, :]  # (N, T, M)
    length = pres[..., 0].sum(-1)
    assert int(length.min()) >= round(0.625 * t) and int(length.max()) <= t
    frame = torch.arange(t)[None] < length[:, None]
    assert torch.equal(pres[..., 0], frame)  # body 1 present exactly on the leading frames
    pad = ~frame[:, None, :, None, None].expand_as(tiny.x)
    assert (tiny.x[pad] == 0).all() and not torch.signbit(tiny.x[pad]).any()  # +0.0, not -0.0
    assert (length < t).any()  # variable length actually occurs


def test_second_body_only_in_interactions(tiny):
    pres = presence_mask(tiny.x)[:, 0, :, 0, :]
    two = torch.tensor([synth.CLASS_NAMES[k] in synth.TWO_PERSON_CLASSES for k in tiny.y.tolist()])
    assert two.any() and (~two).any()
    # single-person clips: body 2 all exactly zero; interactions: body 2 present whenever body 1 is
    assert (tiny.x[~two][..., 1] == 0).all()
    assert torch.equal(pres[two][..., 1], pres[two][..., 0])


def test_cross_subject_split_is_disjoint(tiny):
    tr = set(tiny.get_split("train").subject.tolist())
    te = set(tiny.get_split("test").subject.tolist())
    assert not tr & te
    assert len(tr) == synth.N_SUBJECTS - synth.N_TEST_SUBJECTS and len(te) == synth.N_TEST_SUBJECTS
    assert tr | te <= set(range(1, synth.N_SUBJECTS + 1))


def test_one_body_per_performer(medium):
    """Bone lengths vary across performers but not across one performer's clips."""
    single = torch.tensor(
        [synth.CLASS_NAMES[k] not in synth.TWO_PERSON_CLASSES for k in medium.y.tolist()]
    )
    medium = medium.select(single)  # (in a pair, body 1 may be the partner)
    x = medium.x[:, :, :, :, 0]  # body 1, (N, 3, T, V)
    arm = (x[:, :, :, 5] - x[:, :, :, 4]).norm(dim=1)  # upper arm (N, T)
    pres = presence_mask(medium.x)[:, 0, :, 0, 0]
    per_clip = (arm * pres).sum(-1) / pres.sum(-1)
    subj = medium.subject
    means = torch.stack([per_clip[subj == s].mean() for s in subj.unique()])
    within = torch.cat([per_clip[subj == s] - per_clip[subj == s].mean() for s in subj.unique()])
    assert within.std() < 0.2 * means.std()
    assert 0.03 < float(means.std() / means.mean()) < 0.1


def test_realism_statistics_within_bands(medium):
    stats = synth.realism_stats(medium)
    assert set(synth.REALISM_TARGETS) <= set(stats)
    assert synth.realism_failures(stats) == [], synth.realism_failures(stats)
    assert 0.15 < stats["two_person_fraction"] < 0.35


def test_realism_stats_are_computed_on_present_frames_and_in_metres(medium):
    stats = synth.realism_stats(medium)
    cm = replace(medium, x=medium.x * 100, unit="cm")
    stats_cm = synth.realism_stats(cm)
    for key in ("bone_upper_arm_m", "speed_median_mps", "jitter_p90_m", "pair_distance_median_m"):
        assert stats_cm[key] == pytest.approx(stats[key], rel=1e-5)
    # a failing statistic is reported with its band
    assert any(
        s.startswith("bone_thigh_m") for s in synth.realism_failures({**stats, "bone_thigh_m": 0.5})
    )


def test_realism_stats_reject_other_topologies_and_units(tiny):
    with pytest.raises(DataError, match="metric unit"):
        synth.realism_stats(replace(tiny, unit="normalized"))
    hdm = BUILTIN_TOPOLOGIES["hdm05-25"]
    with pytest.raises(DataError, match="ntu25"):
        synth.realism_stats(replace(tiny, topology=hdm))


def test_save_load_round_trip(tiny, tmp_path):
    path = tiny.save(tmp_path / "synth.npz")
    back = SkeletonSet.load(path)
    assert back.fingerprint() == tiny.fingerprint()
    assert torch.equal(back.x, tiny.x) and back.ids == tiny.ids and back.split == tiny.split
    assert torch.equal(back.subject, tiny.subject) and back.class_names == tiny.class_names
    assert back.name == "synth-ntu25" and back.unit == "m"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"num_frames": 4},
        {"n_train": 0, "n_test": 0},
        {"n_train": 2.5},
        {"seed": True},
    ],
)
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError, match="expected"):
        synth.generate(**{**TINY, **kwargs})


def test_cli_build_and_stats(tmp_path, capsys):
    out = tmp_path / "s.npz"
    args = ["--n-train", "32", "--n-test", "16", "--num-frames", "32", "--seed", "2", "--quiet"]
    assert main(["data", "build", "synth-ntu25", "--out", str(out), *args]) == 0
    text = capsys.readouterr().out
    assert out.exists() and "bone_upper_arm_m" in text and "jitter_p90_m" in text
    ds = SkeletonSet.load(out)
    assert torch.equal(ds.x, synth.generate(seed=2, n_train=32, n_test=16, num_frames=32).x)
    assert main(["data", "stats", str(out)]) == 0
    text = capsys.readouterr().out
    assert "48 clips" in text and "split test: 16 clips" in text and "speed_p90_mps" in text


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "build", "synth-ntu52", "--out", str(tmp_path / "a.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "synth-ntu25" in err
    assert main(["data", "stats", str(tmp_path / "missing.npz")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
