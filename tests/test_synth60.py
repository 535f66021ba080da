"""The synthetic worlds: synth-ntu25 unchanged by the synth-ntu60 additions, and synth-ntu60's classes
doing what their names say (reach targets, hand shapes, direction pairs, fine distinctions)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robench.data import open_dataset, synth
from robench.data.synth_gestures import ACTIONS60, TARGETS, reach_errors, solve_reaches
from robench.data.synth_motion import DOFS, GROUPS, J, body_offsets, forward_kinematics
from robench.errors import ConfigError
from robench.zoo import PLAN, zoo_dir


@pytest.fixture(scope="module")
def ntu60() -> synth.SkeletonSet:
    return synth.generate(seed=3, n_train=240, n_test=120, world="synth-ntu60")


@pytest.mark.parametrize("world", ["synth-ntu25", "synth-ntu60"])
def test_each_world_is_bit_for_bit_the_one_its_shipped_zoo_was_trained_on(world):
    """synth-ntu25 is unchanged by the synth-ntu60 additions (new degrees of freedom stay at zero),
    and neither world changed after its zoo was trained."""
    shipped = [
        n for n, (_, d, _) in PLAN.items() if d == world and (zoo_dir() / f"{n}.json").exists()
    ]
    if not shipped:
        pytest.skip(f"no shipped checkpoint of {world} yet")
    fingerprint = open_dataset(world).fingerprint()
    for name in shipped:
        meta = json.loads((zoo_dir() / f"{name}.json").read_text())
        assert meta["dataset_sha256"] == fingerprint, name


def test_reach_poses_put_the_hand_on_every_target():
    errors = reach_errors()
    assert set(errors) == set(TARGETS)
    assert max(errors.values()) < 0.015, errors
    # joint limits hold (no elbow bent past 2.5 rad, shoulder flexion within [-1.2, 3])
    for pose in solve_reaches().values():
        assert 0 <= pose["elbow"] <= 2.5 and -1.2 <= pose["sh_flex"] <= 3.0


def test_world_shape_classes_and_determinism(ntu60):
    assert ntu60.name == "synth-ntu60" and ntu60.num_classes == 60 == len(ACTIONS60)
    assert len(set(ntu60.class_names)) == 60
    assert len(synth.get_world("synth-ntu60").two_person_classes) == 11
    assert "world='synth-ntu60'" in ntu60.source
    counts = torch.bincount(ntu60.get_split("train").y, minlength=60)
    assert counts.min() == counts.max() == 4
    again = synth.generate(seed=3, n_train=240, n_test=120, world="synth-ntu60")
    assert again.fingerprint() == ntu60.fingerprint()
    other = synth.generate(seed=4, n_train=240, n_test=120, world="synth-ntu60")
    assert other.fingerprint() != ntu60.fingerprint()
    # the default sizes and the built-in name
    w = synth.get_world("synth-ntu60")
    assert (w.n_train, w.n_test) == (3000, 900)
    with pytest.raises(ConfigError, match="synthetic world"):
        synth.get_world("synth-ntu99")


def test_world_passes_the_realism_bands():
    ds = synth.generate(seed=0, n_train=600, n_test=0, world="synth-ntu60")
    stats = synth.realism_stats(ds)
    assert synth.realism_failures(stats, "synth-ntu60") == []
    # the one departure from synth-ntu25's bands: wider two-person distances (walking apart)
    assert synth.realism_bands("synth-ntu60")["pair_distance_in_range"] == (0.7, 1.0)
    assert synth.realism_bands("synth-ntu25")["pair_distance_in_range"] == (0.8, 1.0)
    assert stats["pair_distance_in_range"] > 0.7


def _actor(ds, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(clips, present frames) of the single-person class ``name``: (n, T, V, 3), (n, T)."""
    k = ds.class_names.index(name)
    x = ds.x[ds.y == k][..., 0].permute(0, 2, 3, 1)
    return x, (x != 0).any(-1).any(-1)


def _closest(ds, name: str, a: str, b: str) -> float:
    """Median over the clips of ``name`` of the closest approach of joints ``a`` and ``b`` (m)."""
    x, pres = _actor(ds, name)
    d = (x[:, :, J[a]] - x[:, :, J[b]]).norm(dim=-1)
    d[~pres] = float("inf")
    return float(d.min(1).values.median())


def test_hand_to_face_classes_bring_the_hand_to_the_head_and_desk_classes_do_not(ntu60):
    for name in ("drink_water", "eat_meal", "brush_teeth", "make_a_phone_call", "salute"):
        assert _closest(ntu60, name, "hand_right", "head") < 0.17, name
    for name in ("writing", "typing_on_a_keyboard", "reach_into_pocket", "back_pain"):
        assert _closest(ntu60, name, "hand_right", "head") > 0.4, name
    for name in ("put_palms_together", "clapping", "rub_two_hands", "put_on_glasses"):
        assert _closest(ntu60, name, "hand_left", "hand_right") < 0.08, name


def _oscillation(ds, name: str, joint: str, ref: str = "spine_shoulder") -> float:
    """Median over clips of the median frame-to-frame change of the ``joint``-``ref`` distance (a
    median, so that the sensor glitches of the distal joints do not dominate)."""
    x, pres = _actor(ds, name)
    d = (x[:, :, J[joint]] - x[:, :, J[ref]]).norm(dim=-1)
    v = (d[:, 1:] - d[:, :-1]).abs()
    ok = pres[:, 1:] & pres[:, :-1]
    return float(torch.stack([v[i][ok[i]].median() for i in range(len(v))]).median())


def test_micro_motions_separate_classes_that_share_a_reach(ntu60):
    # brushing teeth oscillates at the mouth; drinking holds still there
    assert _oscillation(ntu60, "brush_teeth", "hand_right") > _oscillation(
        ntu60, "drink_water", "hand_right"
    )
    # typing moves the hand tips; putting the palms together does not
    assert _oscillation(ntu60, "typing_on_a_keyboard", "handtip_right", "wrist_right") > 1.2 * (
        _oscillation(ntu60, "put_palms_together", "handtip_right", "wrist_right")
    )


def _fk_hand(**angles: float) -> np.ndarray:
    q = np.zeros((1, 1, len(DOFS)))
    for name, v in angles.items():
        q[..., DOFS.index(name)] = v
    p = forward_kinematics(q, body_offsets(np.ones(1), np.ones((1, len(GROUPS)))))[0, 0]
    return p.numpy()


def test_finger_and_thumb_dofs_move_only_the_hand_tip_and_the_thumb():
    rest = _fk_hand()
    fist = _fk_hand(finger_l=1.5)
    moved = np.abs(fist - rest).max(1) > 1e-9
    assert moved.nonzero()[0].tolist() == [J["handtip_left"]]
    # a fist curls the tip to about the palm: the wrist-tip distance shrinks
    wrist = J["wrist_left"]
    assert (
        np.linalg.norm(fist[J["handtip_left"]] - fist[wrist])
        < np.linalg.norm(rest[J["handtip_left"]] - rest[wrist]) - 0.03
    )
    thumb = _fk_hand(thumb_r=0.8)
    assert (np.abs(thumb - rest).max(1) > 1e-9).nonzero()[0].tolist() == [J["thumb_right"]]
    twist = _fk_hand(wrist_twist_l=0.8)
    changed = set((np.abs(twist - rest).max(1) > 1e-9).nonzero()[0].tolist())
    # a twist about the forearm's long axis leaves the wrist and palm joints on that axis in place
    assert changed == {J["handtip_left"], J["thumb_left"]}


def test_put_on_and_take_off_glasses_are_mirror_images_in_time(ntu60):
    """Put on: the hands arrive displaced forward and settle on the eyes; take off: they leave
    forward. So the hand-head distance falls late in put-on clips and rises late in take-off clips."""

    def late_minus_early(name: str) -> float:
        x, pres = _actor(ntu60, name)
        d = (x[:, :, J["hand_right"]] - x[:, :, J["head"]]).norm(dim=-1)
        out = []
        for i in range(len(d)):
            near = (d[i] < 0.25) & pres[i]
            idx = near.nonzero().flatten()
            if len(idx) >= 6:
                third = len(idx) // 3
                out.append(float(d[i][idx[-third:]].mean() - d[i][idx[:third]].mean()))
        return float(np.median(out))

    assert late_minus_early("put_on_glasses") < 0 < late_minus_early("take_off_glasses")


def _arm_delta(target: str, flex: float, elbow: float) -> np.ndarray:
    """Hand displacement (body frame) of adding (flex, elbow) to the reach pose of ``target``."""
    pose = solve_reaches()[target]

    def hand(df: float, de: float) -> np.ndarray:
        q = np.zeros((1, 1, len(DOFS)))
        for k, v in pose.items():
            q[..., DOFS.index(f"{k}_l")] = v
        q[..., DOFS.index("sh_flex_l")] += df
        q[..., DOFS.index("elbow_l")] += de
        off = body_offsets(np.ones(1), np.ones((1, len(GROUPS))))
        return forward_kinematics(q, off)[0, 0, J["hand_left"]].numpy()

    return hand(flex, elbow) - hand(0.0, 0.0)


def test_glasses_are_displaced_forward_and_a_hat_upward():
    """The displacement of reach_directed: about 8 cm along its stated direction, little across it."""
    fwd = _arm_delta("eyes", -0.05, -0.25)
    up = _arm_delta("head_top", 0.3, -0.5)
    assert fwd[2] > 0.07 and abs(fwd[1]) < 0.02  # z: forward
    assert up[1] > 0.07 and abs(up[2]) < 0.02  # y: up


def test_drink_tilts_the_wrist_while_the_hand_is_at_the_mouth(ntu60):
    """The cue of drinking lies inside the held reach: the palm-to-hand-tip direction changes while
    the hand is near the head."""
    x, pres = _actor(ntu60, "drink_water")
    near = ((x[:, :, J["hand_right"]] - x[:, :, J["head"]]).norm(dim=-1) < 0.2) & pres
    tip = x[:, :, J["handtip_right"]] - x[:, :, J["wrist_right"]]
    tilted = 0
    for i in range(len(x)):
        idx = near[i].nonzero().flatten()
        if len(idx) >= 6:
            first, last = tip[i, idx[:3]].mean(0), tip[i, idx[-3:]].mean(0)
            tilted += int(torch.nn.functional.cosine_similarity(first, last, dim=0) < 0.97)
    assert tilted >= len(x) // 2


def test_trained_on_names_the_world_and_refuses_a_file(tmp_path):
    from robench.run.oneoff import trained_on
    from robench.victim import build_victim
    from robench.zoo.checkpoint import save_victim

    m = build_victim("stgcn", num_classes=60, width=4, depth=1)
    for dataset, expect in (("synth-ntu60", "synth-ntu60"), (None, "synth-ntu25")):
        p = save_victim(m, tmp_path / f"v-{dataset}", {"dataset": dataset} if dataset else {})
        assert trained_on(str(tmp_path / f"v-{dataset}.pt")) == expect, p
    save_victim(m, tmp_path / "f", {"dataset": "mine.npz"})
    with pytest.raises(ConfigError, match="--dataset"):
        trained_on(str(tmp_path / "f.pt"))
    assert trained_on("stgcn.synth_ntu25") == "synth-ntu25"


def test_robench_train_defaults_to_the_default_world():
    from robench.commands.zoo import train_cmd
    from robench.data import DEFAULT_WORLD
    from robench.run.oneoff import trained_on
    from robench.run.spec import DatasetSpec

    (opt,) = [p for p in train_cmd.params if p.name == "dataset"]
    assert DEFAULT_WORLD == "synth-ntu60" == opt.default == DatasetSpec().name
    assert trained_on("stgcn") == "synth-ntu60"  # a bare architecture: nothing trained yet


def test_zoo_build_trains_the_named_entries_or_a_worlds(tmp_path, monkeypatch):
    from robench.cli import main
    from robench.commands import zoo as zoo_cmd

    calls = []

    def fake(arch, data, out, config, victim_config, progress, extra_meta):
        calls.append((arch, data.name, Path(out).name, config.seed))
        assert victim_config["init_seed"] == config.seed  # another seed draws other initial weights
        return {"clean_accuracy": 0.5, "train_seconds": 0.0}

    from robench.commands import defend as defend_cmd
    from robench.zoo import DEFENDED

    defended = []
    real = defend_cmd.defend_cmd.callback

    def fake_defend(**kw):
        inspect.signature(real).bind(**kw)  # the arguments the real command takes
        defended.append((kw["victim"], kw["defense"], kw["params"], Path(kw["out"]).name))
        calls.append(("defend", kw["victim"]))

    monkeypatch.setattr(zoo_cmd, "train_and_save", fake)
    monkeypatch.setattr(zoo_cmd, "open_dataset", lambda name: type("D", (), {"name": name})())
    monkeypatch.setattr(defend_cmd.defend_cmd, "callback", fake_defend)
    assert main(["zoo", "build", "stgcn.synth_ntu60_seed1", "-o", str(tmp_path), "-q"]) == 0
    assert calls == [("stgcn", "synth-ntu60", "stgcn.synth_ntu60_seed1", 1)] and not defended
    calls.clear()
    assert main(["zoo", "build", "stgcn.synth_ntu60.pgd-at", "-o", str(tmp_path), "-q"]) == 0
    assert defended == [("stgcn.synth_ntu60", "pgd-at", ("epochs=2",), "stgcn.synth_ntu60.pgd-at")]
    defended.clear()
    calls.clear()
    assert main(["zoo", "build", "--dataset", "synth-ntu60", "-o", str(tmp_path), "-q"]) == 0
    trained = [c[2] for c in calls if c[0] != "defend"]
    assert trained == [n for n, (_, d, _) in PLAN.items() if d == "synth-ntu60"]
    assert [d[3] for d in defended] == list(DEFENDED)
    assert calls[-len(DEFENDED) :] == [
        ("defend", b) for b, _, _ in DEFENDED.values()
    ]  # bases first
    (tmp_path / "stgcn.synth_ntu60.pt").write_bytes(b"")  # a base rebuilt under -o DIR is used
    defended.clear()
    assert main(["zoo", "build", "stgcn.synth_ntu60.pgd-at", "-o", str(tmp_path), "-q"]) == 0
    assert defended[0][0] == str(tmp_path / "stgcn.synth_ntu60.pt")
    assert main(["zoo", "build", "stgcn.synth_ntu25", "--dataset", "synth-ntu60", "-o",
                 str(tmp_path)]) == 2  # fmt: skip
    assert main(["zoo", "build", "nope.synth_ntu60", "-o", str(tmp_path)]) == 2


def test_data_build_writes_the_world_it_is_asked_for(tmp_path):
    from robench.cli import main
    from robench.data.dataset import SkeletonSet

    out = tmp_path / "w.npz"
    assert main(["data", "build", "synth-ntu60", "--n-train", "60", "--n-test", "60", "-o",
                 str(out), "-q"]) == 0  # fmt: skip
    ds = SkeletonSet.load(out)
    assert ds.name == "synth-ntu60" and ds.num_classes == 60 and len(ds) == 120


def test_every_shipped_checkpoint_is_in_the_zoo_plan_with_its_world_and_seed():
    from robench.zoo import DEFENDED, names

    for name in names():
        if name in DEFENDED:  # a defended fine-tune of a shipped base, which it names by sha256
            base, defense, overrides = DEFENDED[name]
            meta = json.loads((zoo_dir() / f"{name}.json").read_text())
            base_meta = json.loads((zoo_dir() / f"{base}.json").read_text())
            d = meta["defense"]
            assert (d["name"], d["base"]) == (defense, base), name
            assert d["base_weights_sha256"] == base_meta["weights_sha256"], name
            assert {k: d["config"][k] for k in overrides} == overrides, name
            assert meta["dataset"] == base_meta["dataset"] and meta["clean_accuracy"] > 0.5, name
            continue
        arch, dataset, seed = PLAN[name]
        meta = json.loads((zoo_dir() / f"{name}.json").read_text())
        assert (meta["arch"], meta["dataset"], meta["seed"]) == (arch, dataset, seed), name
        assert meta["config"]["init_seed"] == seed, name


def test_zoo_list_names_each_defended_checkpoint_with_its_recipe(capsys):
    from robench.cli import main
    from robench.zoo import DEFENDED, names

    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name, (base, defense, overrides) in DEFENDED.items():
        if name in names():
            line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
            assert f"({defense} of {base}, {overrides['epochs']} epochs," in line
