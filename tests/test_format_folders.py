"""The BEAT/TASAR HDM05 arrays and the generic clip folder: files of the exact layout written here,
values checked one by one, malformed input named (file and line), nothing written on error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robench.cli import main
from robench.data.dataset import SkeletonSet
from robench.data.formats.folder import import_folder
from robench.data.formats.hdm05_arrays import import_hdm05_arrays
from robench.errors import DataError


def hdm05_files(tmp_path, n_train=3, n_test=2, t=5):
    rng = np.random.default_rng(0)
    out = {}
    for part, n in (("Train", n_train), ("Test", n_test)):
        clips = rng.normal(size=(n, t, 75)).astype(np.float32)
        classes = np.arange(n) * 7 % 65
        np.savez(tmp_path / f"class{part}.npz", clips=clips, classes=classes)
        out[part] = (clips, classes)
    return out


def test_hdm05_arrays_are_read_as_beat_reads_them(tmp_path):
    a = hdm05_files(tmp_path)
    ds = import_hdm05_arrays([tmp_path / "classTest.npz", tmp_path / "classTrain.npz"])
    assert ds.x.shape == (5, 3, 5, 25, 1) and ds.unit == "normalized"
    assert ds.topology.name == "hdm05-25" and ds.split == ("train",) * 3 + ("test",) * 2
    assert ds.ids[0] == "train-000000" and ds.ids[3] == "test-000000"
    assert ds.y.tolist() == [0, 7, 14, 0, 7] and ds.num_classes == 15
    # frame t, joint v, coordinate c sits at column v*3 + c
    clips = a["Train"][0]
    x = ds.x.numpy()
    for i, t, v, c in ((0, 0, 0, 0), (1, 3, 24, 2), (2, 4, 10, 1)):
        assert x[i, c, t, v, 0] == clips[i, t, v * 3 + c]
    assert x[3, 1, 2, 5, 0] == a["Test"][0][0, 2, 5 * 3 + 1]


@pytest.mark.parametrize(
    "edit, msg",
    [
        (
            lambda p: np.savez(
                p / "classTrain.npz", clips=np.zeros((2, 5, 74)), classes=np.arange(2)
            ),
            "(N, T, 75)",
        ),
        (lambda p: np.savez(p / "classTrain.npz", clips=np.zeros((2, 5, 75))), "'classes'"),
        (
            lambda p: np.savez(
                p / "classTrain.npz", clips=np.zeros((2, 5, 75)), classes=np.array([0.5, 1.0])
            ),
            "integer labels",
        ),  # fmt: skip
    ],
)
def test_hdm05_bad_arrays_are_named(tmp_path, edit, msg):
    edit(tmp_path)
    with pytest.raises(DataError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        import_hdm05_arrays([tmp_path / "classTrain.npz"])


def test_hdm05_file_names_give_the_split(tmp_path):
    hdm05_files(tmp_path)
    (tmp_path / "classTrain.npz").rename(tmp_path / "clips.npz")
    with pytest.raises(DataError, match="containing 'train' or 'test'"):
        import_hdm05_arrays([tmp_path / "clips.npz"])
    ds = import_hdm05_arrays([tmp_path / "classTest.npz"])
    assert set(ds.split) == {"test"}


TOPO = {"name": "five", "joint_names": ["root", "a", "b", "c", "d"], "parents": [-1, 0, 1, 0, 3],
        "center": 0}  # fmt: skip


def clip_folder(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "clips"
    d.mkdir()
    a = rng.normal(size=(4, 5, 3)).astype(np.float32)  # (T, V, C)
    b = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)  # (M, T, V, C)
    c = rng.normal(size=(3, 15)).astype(np.float32)  # CSV: frames × V·C
    np.save(d / "walk_01.npy", a)
    np.save(d / "jump_01.npy", b)
    with open(d / "walk_02.csv", "w") as f:
        f.write(",".join(f"j{v}{k}" for v in range(5) for k in "xyz") + "\n")
        for row in c:
            f.write(",".join(repr(float(v)) for v in row) + "\n")
    (tmp_path / "labels.csv").write_text(
        "id,label,split,subject\nwalk_01,walk,train,1\njump_01,jump,train,2\nwalk_02,walk,test,3\n"
    )
    (tmp_path / "topo.json").write_text(json.dumps(TOPO))
    return a, b, c


def test_folder_clips_labels_and_topology_are_read_value_by_value(tmp_path):
    a, b, c = clip_folder(tmp_path)
    ds = import_folder(tmp_path / "clips", tmp_path / "labels.csv", tmp_path / "topo.json", "cm")
    assert ds.x.shape == (3, 3, 6, 5, 2) and ds.unit == "cm" and ds.topology.name == "five"
    assert ds.class_names == ("jump", "walk") and ds.y.tolist() == [1, 0, 1]
    assert ds.split == ("train", "train", "test") and ds.subject.tolist() == [1, 2, 3]
    x = ds.x.numpy()
    assert x[0, 2, 3, 4, 0] == a[3, 4, 2] and (x[0, :, 4:] == 0).all() and (x[0, ..., 1] == 0).all()
    assert x[1, 1, 5, 2, 1] == b[1, 5, 2, 1]
    assert x[2, 0, 2, 3, 0] == pytest.approx(c[2, 3 * 3 + 0])
    assert ds.ids == ("walk_01", "jump_01", "walk_02")


def _bad_label_rows(p):
    (p / "labels.csv").write_text("id,label\nwalk_01,walk\njump_01,jump\n")  # walk_02 unlisted


@pytest.mark.parametrize(
    "edit, msg",
    [
        (_bad_label_rows, "'walk_02' not listed"),
        (
            lambda p: (p / "labels.csv").write_text(
                "id,label\nwalk_01,walk\njump_01,jump\nwalk_02,walk\nghost,walk\n"
            ),  # fmt: skip
            "ghost.npy or ghost.csv .*line 5 of",
        ),
        (
            lambda p: (p / "labels.csv").write_text("id,label\nwalk_01,walk\nwalk_01,jump\n"),
            "'walk_01' again at line 3",
        ),
        (lambda p: (p / "labels.csv").write_text("name,label\n"), "column 'id'"),
        (
            lambda p: (p / "labels.csv").write_text(
                "id,label,split\nwalk_01,walk,train\njump_01,jump,\nwalk_02,walk,test\n"
            ),
            "split for every clip or none, got none at line 3",
        ),
        (lambda p: np.save(p / "clips" / "walk_01.npy", np.zeros((4, 5, 4))), "C = 3 channels"),
        (lambda p: np.save(p / "clips" / "walk_01.npy", np.zeros((4, 6, 3))), "expected 5 joints"),
        (lambda p: (p / "clips" / "walk_02.csv").write_text("1,2,3\n"), "at line 1 of"),
        (
            lambda p: (p / "clips" / "walk_02.csv").write_text(
                "h\n" + ",".join(["1"] * 15) + "\nx,y\n"
            ),
            "expected numbers.* at line 3 of",
        ),
    ],
)
def test_folder_bad_input_is_named(tmp_path, edit, msg):
    clip_folder(tmp_path)
    edit(tmp_path)
    with pytest.raises(DataError, match=msg):
        import_folder(tmp_path / "clips", tmp_path / "labels.csv", tmp_path / "topo.json")


def test_import_command_reads_both_and_writes_nothing_on_error(tmp_path, capsys):
    hdm05_files(tmp_path)
    out = tmp_path / "hdm.npz"
    argv = ["data", "import", "hdm05-arrays", str(tmp_path / "classTrain.npz"),
            str(tmp_path / "classTest.npz"), "-o", str(out), "-q"]  # fmt: skip
    assert main(argv) == 0
    assert SkeletonSet.load(out).topology.name == "hdm05-25"
    clip_folder(tmp_path)
    out2 = tmp_path / "f.npz"
    argv = ["data", "import", "folder", str(tmp_path / "clips"), "--labels",
            str(tmp_path / "labels.csv"), "--topology", str(tmp_path / "topo.json"), "--unit", "mm",
            "-o", str(out2), "-q"]  # fmt: skip
    assert main(argv) == 0
    back = SkeletonSet.load(out2)
    assert back.unit == "mm" and back.topology.num_joints == 5 and len(back) == 3
    capsys.readouterr()
    for bad, msg in (
        (
            ["folder", str(tmp_path / "clips"), "--labels", str(tmp_path / "labels.csv")],
            "--topology",
        ),
        (["hdm05-arrays", str(tmp_path / "classTrain.npz"), "--unit", "m"], "only 'folder'"),
        (["ctrgcn-npz", str(tmp_path / "classTrain.npz"), "--labels", "x.csv"], "only 'folder'"),
    ):
        target = tmp_path / "bad.npz"
        assert main(["data", "import", *bad, "-o", str(target), "-q"]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1
        assert not target.exists()
