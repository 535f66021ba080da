"""CTR-GCN npz arrays and pyskl pickles: files of the exact layout written here, values checked
one by one, a malicious pickle refused, malformed input named."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from robench.data.formats.ctrgcn_npz import import_ctrgcn_npz
from robench.data.formats.pyskl import import_pyskl
from robench.errors import DataError


def ctrgcn_file(path, n_train=3, n_test=2, t=6, k=60):
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        x = rng.normal(size=(n, t, 150)).astype(np.float32)
        x[:, t - 2 :] = 0  # padded frames
        x[0, :, 75:] = 0  # sample 0 has no second body
        y = np.zeros((n, k), np.float32)
        y[np.arange(n), np.arange(n) % k] = 1
        arrays[f"x_{part}"], arrays[f"y_{part}"] = x, y
    np.savez(path, **arrays)
    return arrays


def test_ctrgcn_arrays_are_read_as_its_feeder_reads_them(tmp_path):
    a = ctrgcn_file(tmp_path / "NTU60_CS.npz")
    ds = import_ctrgcn_npz(tmp_path / "NTU60_CS.npz")
    assert ds.x.shape == (5, 3, 6, 25, 2) and ds.num_classes == 60 and ds.unit == "m"
    assert ds.split == ("train",) * 3 + ("test",) * 2
    assert ds.ids[0] == "train-000000" and ds.ids[3] == "test-000000"
    assert ds.y.tolist() == [0, 1, 2, 0, 1]
    # frame t, body m, joint v, coordinate c sits at column m*75 + v*3 + c
    x = ds.x.numpy()
    for (i, src, j), (t, m, v, c) in [
        ((0, "train", 0), (1, 0, 4, 2)),
        ((4, "test", 1), (3, 1, 24, 0)),
    ]:
        assert x[i, c, t, v, m] == a[f"x_{src}"][j, t, m * 75 + v * 3 + c]
    assert (x[0, ..., 1] == 0).all()


@pytest.mark.parametrize(
    "edit, msg",
    [
        (lambda a: a.pop("y_test"), "expected a field 'y_test'"),
        (lambda a: a.update(x_train=a["x_train"][..., :149]), "expected shape \\(N, T, 150\\)"),
        (lambda a: a["x_test"].__setitem__((1, 0, 0), np.nan), "NaN/inf in sample 1 of NTU60_CS.npz field 'x_test'"),
        (lambda a: a["y_train"].__setitem__((2, 5), 1), "row 2 not one-hot in NTU60_CS.npz field 'y_train'"),
    ],
)  # fmt: skip
def test_ctrgcn_bad_arrays_are_named(tmp_path, edit, msg):
    a = ctrgcn_file(tmp_path / "x.npz")
    edit(a)
    np.savez(tmp_path / "NTU60_CS.npz", **a)
    with pytest.raises(DataError, match=msg):
        import_ctrgcn_npz(tmp_path / "NTU60_CS.npz")


def pyskl_doc(n=4):
    rng = np.random.default_rng(1)
    ann = []
    for i in range(n):
        m, t = (1 if i % 2 else 2), 5 + i
        ann.append({"frame_dir": f"S001C001P00{i + 1}R001A00{i + 1}", "total_frames": t,
                    "label": i, "keypoint": rng.normal(size=(m, t, 25, 3)).astype(np.float32)})  # fmt: skip
    split = {"xsub_train": [a["frame_dir"] for a in ann[:2]],
             "xsub_val": [a["frame_dir"] for a in ann[2:3]]}  # fmt: skip
    return {"split": split, "annotations": ann}


def test_pyskl_pickle_is_read_value_by_value(tmp_path):
    doc = pyskl_doc()
    p = tmp_path / "ntu60_3danno.pkl"
    p.write_bytes(pickle.dumps(doc))
    ds = import_pyskl(p)
    assert ds.ids == tuple(a["frame_dir"] for a in doc["annotations"][:3])  # the 4th is in no split
    assert ds.split == ("train", "train", "test") and ds.y.tolist() == [0, 1, 2]
    assert ds.x.shape == (3, 3, 7, 25, 2) and ds.num_classes == 60
    kp = doc["annotations"][0]["keypoint"]  # (M, T, V, C)
    assert np.array_equal(ds.x.numpy()[0, :, :5, :, :2], kp.transpose(3, 1, 2, 0))
    assert (ds.x.numpy()[1, ..., 1] == 0).all()  # one body
    assert (ds.x.numpy()[0, :, 5:] == 0).all()  # padded


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pyskl_pickles_of_every_protocol_load(tmp_path, protocol):
    p = tmp_path / "a.pkl"
    p.write_bytes(pickle.dumps(pyskl_doc(), protocol=protocol))
    assert len(import_pyskl(p)) == 3


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/robench-pwned",))


def test_pyskl_pickle_with_code_is_refused_before_it_runs(tmp_path):
    doc = pyskl_doc()
    doc["annotations"][0]["extra"] = Evil()
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(doc))
    marker = "/tmp/robench-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    with pytest.raises(DataError, match="global 'posix.system' is not allowed|global 'os.system'"):
        import_pyskl(p)
    assert not os.path.exists(marker)


@pytest.mark.parametrize(
    "edit, msg",
    [
        (lambda d: d["split"].pop("xsub_val"), "expected splits 'xsub_train' and 'xsub_val'"),
        (lambda d: d["annotations"][1].__setitem__("keypoint", np.zeros((1, 5, 17, 2))), "2-D keypoints"),
        (lambda d: d["annotations"][0]["keypoint"].__setitem__((0, 0, 0, 0), np.nan), "annotations\\[0\\]"),
        (lambda d: d["annotations"][2].__setitem__("label", -1), "label >= 0, got -1"),
    ],
)  # fmt: skip
def test_pyskl_bad_content_is_named(tmp_path, edit, msg):
    doc = pyskl_doc()
    edit(doc)
    p = tmp_path / "bad.pkl"
    p.write_bytes(pickle.dumps(doc))
    with pytest.raises(DataError, match=msg):
        import_pyskl(p)


def test_import_command_reads_both_formats(tmp_path, capsys):
    from robench.cli import main
    from robench.data.dataset import SkeletonSet

    ctrgcn_file(tmp_path / "NTU60_CS.npz")
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(pyskl_doc()))
    for fmt, src in (("ctrgcn-npz", "NTU60_CS.npz"), ("pyskl", "a.pkl")):
        out = tmp_path / f"{fmt}.npz"
        assert main(["data", "import", fmt, str(tmp_path / src), "-o", str(out), "-q"]) == 0
        got = SkeletonSet.load(out)
        assert len(got) == {"ctrgcn-npz": 5, "pyskl": 3}[fmt] and got.name == Path(src).stem
    assert main(["data", "import", "pyskl", str(tmp_path / "a.pkl"), str(tmp_path / "a.pkl"),
                 "-o", str(tmp_path / "z.npz")]) == 2  # fmt: skip
    assert "expected one path" in capsys.readouterr().err
    for fmt, src, opt in (("pyskl", "a.pkl", ["--frames", "64"]), ("ctrgcn-npz", "NTU60_CS.npz",
                          ["--split", "xview"]), ("pyskl", "a.pkl", ["--truncate"])):  # fmt: skip
        argv = ["data", "import", fmt, str(tmp_path / src), "-o", str(tmp_path / "z.npz"), *opt]
        assert main(argv) == 2
        assert f"expected no {opt[0]} for format {fmt!r}" in capsys.readouterr().err
    assert not (tmp_path / "z.npz").exists()
