"""Raw NTU .skeleton import: files of the exact layout written here (LF and CRLF, a third noisy
body, an interaction), values checked one by one; splits, labels, body selection, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from robench.data.dataset import SkeletonSet
from robench.data.formats.ntu_skeleton import (
    XSUB60_TRAIN,
    import_ntu,
    parse_name,
    read_skeleton,
    select_bodies,
    write_skeleton,
)
from robench.errors import DataError


def joint_line(x: float, y: float, z: float) -> str:
    # x y z depthX depthY colorX colorY orientW orientX orientY orientZ trackingState
    return f"{x:.6f} {y:.6f} {z:.6f} 250.1 200.2 900.3 500.4 0.1 0.2 0.3 0.4 2"


def body_block(body_id: str, coords: np.ndarray) -> list[str]:
    """coords (25, 3)."""
    info = f"{body_id} 0 1 1 1 1 0 0.01 0.02 2"
    return [info, "25", *(joint_line(*c) for c in coords)]


def write_clip(path, frames: list[list[tuple[str, np.ndarray]]], crlf: bool = False) -> None:
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for bid, c in bodies:
            lines += body_block(bid, c)
    sep = "\r\n" if crlf else "\n"
    path.write_bytes((sep.join(lines) + sep).encode("ascii"))


def coords(t: int, scale: float, offset: float = 0.0) -> np.ndarray:
    j = np.arange(25, dtype=np.float64)[:, None]
    return np.concatenate([j * 0.01 + offset, np.full((25, 1), t * scale), j * 0.0 + 3.0], 1)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "nturgbd"
    d.mkdir()
    # a one-person clip, 14 frames, CRLF, performer 1 (xsub train), camera 1 (xview test)
    write_clip(d / "S001C001P001R001A001.skeleton",
               [[("72057594037931101", coords(t, 0.01))] for t in range(14)], crlf=True)  # fmt: skip
    # an interaction of two people plus a third, noisy body present in 5 frames only; the quieter
    # real body appears first, the more moving one second
    frames = []
    for t in range(20):
        fr = [("111", coords(t, 0.001, 1.0)), ("222", coords(t, 0.05, -1.0))]
        if t < 5:
            fr.append(("333", coords(t, 0.5, 9.0)))
        frames.append(fr)
    write_clip(d / "S002C002P003R002A050.skeleton", frames)
    return d


def test_a_file_is_read_value_by_value(folder):
    bodies = read_skeleton(folder / "S001C001P001R001A001.skeleton")
    (a,) = bodies.values()
    assert a.shape == (14, 25, 3) and a.dtype == np.float32
    assert np.allclose(a[3], coords(3, 0.01), atol=1e-6)


def test_body_selection_drops_noise_and_ranks_by_motion(folder):
    bodies = read_skeleton(folder / "S002C002P003R002A050.skeleton")
    assert set(bodies) == {"111", "222", "333"}
    assert np.isnan(bodies["333"][5:]).all() and not np.isnan(bodies["333"][:5]).any()
    by_motion = select_bodies(bodies, "motion")
    assert len(by_motion) == 2  # the 5-frame body is noise
    assert np.allclose(by_motion[0][0], coords(0, 0.05, -1.0))  # the most moving first
    first = select_bodies(bodies, "first")
    assert np.allclose(first[0][0], coords(0, 0.001, 1.0))
    assert len(select_bodies(bodies, "first", min_frames=3)) == 2  # keep = 2 even with 3 real
    with pytest.raises(DataError, match="bodies"):
        select_bodies(bodies, "loudest")


def test_import_builds_a_set_with_labels_splits_and_padding(folder, tmp_path):
    ds = import_ntu([folder], num_frames=32)
    assert ds.ids == ("S001C001P001R001A001", "S002C002P003R002A050")
    assert ds.y.tolist() == [0, 49] and ds.num_classes == 60
    assert ds.class_names[0] == "drink_water" and ds.unit == "m"
    assert ds.x.shape == (2, 3, 32, 25, 2)
    assert ds.split == ("train", "test")  # performers 1 (train) and 3 (test) under xsub
    assert 1 in XSUB60_TRAIN and 3 not in XSUB60_TRAIN
    assert ds.subject.tolist() == [1, 3]
    x = ds.x.numpy()
    assert np.allclose(x[0, :, 5, :, 0].T, coords(5, 0.01), atol=1e-6)
    assert (x[0, :, 14:] == 0).all() and (x[0, ..., 1] == 0).all()  # padding, no second body
    assert np.allclose(x[1, :, 0, :, 0].T, coords(0, 0.05, -1.0), atol=1e-6)
    assert import_ntu([folder], split="xview", num_frames=32).split == ("test", "train")
    assert import_ntu([folder], split="xset", num_frames=32).split == ("test", "train")
    # round trip through the npz
    p = ds.save(tmp_path / "ntu.npz")
    assert SkeletonSet.load(p).fingerprint() == ds.fingerprint()


def test_missing_list_ntu120_labels_and_long_clips(folder):
    ds = import_ntu([folder], missing=["S002C002P003R002A050"], num_frames=32)
    assert ds.ids == ("S001C001P001R001A001",)
    write_clip(folder / "S018C001P045R001A099.skeleton",
               [[("1", coords(t, 0.01))] for t in range(14)])  # fmt: skip
    ds = import_ntu([folder], num_frames=32)
    assert ds.num_classes == 120 and ds.class_names[98] == "A099" and ds.y.tolist()[-1] == 98
    assert ds.split[-1] == "train"  # performer 45 trains under NTU-120 cross-subject
    with pytest.raises(DataError, match="at most 16 frames, got 20"):
        import_ntu([folder], num_frames=16)
    assert import_ntu([folder], num_frames=16, truncate=True).x.shape[2] == 16


@pytest.mark.parametrize(
    "mutate, msg",
    [
        (lambda ls: ls[:40], "end of the file in S001C001P001R001A001.skeleton line 41"),
        (lambda ls: [*ls[:3], "24", *ls[4:]], "expected 25 joints, got 24 in S001C001P001R001A001.skeleton line 4"),
        (lambda ls: [*ls[:5], "0.1 0.2", *ls[6:]], "12 values on a joint line, got 2 in S001C001P001R001A001.skeleton line 6"),
        (lambda ls: [*ls[:5], ls[5].replace("0.000000", "nan", 1), *ls[6:]], "NaN/inf in S001C001P001R001A001.skeleton line 6"),
        (lambda ls: ["x", *ls[1:]], "the frame count"),
        (lambda ls: [*ls, "9"], "expected the end of the file"),
    ],
)  # fmt: skip
def test_malformed_files_name_the_file_and_line(folder, mutate, msg):
    f = folder / "S001C001P001R001A001.skeleton"
    lines = f.read_text().splitlines()
    f.write_text("\n".join(mutate(lines)) + "\n")
    with pytest.raises(DataError, match=msg.replace("(", r"\(")):
        import_ntu([f], num_frames=32)


def test_bad_names_and_paths(tmp_path, folder):
    with pytest.raises(DataError, match="SsssCcccPpppRrrrAaaa"):
        parse_name("clip01")
    with pytest.raises(DataError, match="no such path"):
        import_ntu([tmp_path / "nope"])
    with pytest.raises(DataError, match="none in"):
        import_ntu([tmp_path / "nturgbd"], missing=["S001C001P001R001A001", "S002C002P003R002A050"])


def test_data_import_command_writes_the_set_or_nothing(folder, tmp_path, capsys):
    from robench.cli import main

    out = tmp_path / "ntu.npz"
    assert main(["data", "import", "ntu-skeleton", str(folder), "-o", str(out), "--frames", "32",
                 "-q"]) == 0  # fmt: skip
    assert SkeletonSet.load(out).ids == ("S001C001P001R001A001", "S002C002P003R002A050")
    assert "clips/s" in capsys.readouterr().out
    bad = folder / "S003C001P001R001A002.skeleton"
    bad.write_text("3\n1\n")
    out2 = tmp_path / "ntu2.npz"
    assert main(["data", "import", "ntu-skeleton", str(folder), "-o", str(out2), "-q"]) == 2
    err = capsys.readouterr().err
    assert "S003C001P001R001A002.skeleton line 3" in err and len(err.strip().splitlines()) == 1
    assert not out2.exists()
    assert main(["data", "import", "ntu-skeletons", str(folder), "-o", str(out2)]) == 2
    assert "did you mean 'ntu-skeleton'" in capsys.readouterr().err


def test_noise_boundary_is_eleven_frames_and_setups_above_17_are_ntu120():
    a = np.zeros((30, 25, 3), np.float32)
    b11, b12 = a.copy(), a.copy()
    b11[11:] = np.nan  # present in 11 frames: noise
    b12[12:] = np.nan  # present in 12 frames: kept
    kept = select_bodies({"x": b11, "y": b12}, "first")
    assert len(kept) == 1 and kept[0] is b12


def test_a_setup_above_17_makes_the_set_ntu120(tmp_path):
    d = tmp_path / "n"
    d.mkdir()
    write_clip(d / "S018C001P045R001A001.skeleton", [[("1", coords(t, 0.01))] for t in range(14)])
    ds = import_ntu([d], num_frames=16)
    assert ds.num_classes == 120 and ds.split == ("train",)  # performer 45 trains in NTU-120 only


@pytest.mark.parametrize("crlf", [False, True])
def test_write_skeleton_reads_back_the_same_bodies(folder, tmp_path, crlf):
    bodies = read_skeleton(folder / "S002C002P003R002A050.skeleton")
    out = write_skeleton(tmp_path / "S002C002P003R002A050.skeleton", bodies, crlf=crlf)
    assert (b"\r\n" in out.read_bytes()) == crlf
    again = read_skeleton(out)
    assert list(again) == list(bodies)  # body ids in order of appearance
    for bid, a in bodies.items():
        assert np.array_equal(np.isnan(again[bid]), np.isnan(a))  # absent frames stay absent
        assert np.allclose(np.nan_to_num(again[bid]), np.nan_to_num(a), atol=1e-6)


def test_bench_ntu_import_times_the_reader_on_real_layout_files(monkeypatch):
    from robench.data.formats import ntu_skeleton
    from robench.run import bench

    seen = []
    real = ntu_skeleton.import_ntu

    def spy(paths, **kw):
        ds = real(paths, **kw)
        seen.append(ds)
        return ds

    monkeypatch.setattr(ntu_skeleton, "import_ntu", spy)
    out = bench.BENCHMARKS["ntu-import"](n=4, frames=20, repeats=1)
    (ds,) = seen
    assert len(ds) == 4 and ds.x.shape[2] == 300  # read as NTU: padded to 300 frames
    assert (ds.x[:, :, :, :, 1] != 0).any(1).any(1).any(1).tolist() == [False, True, False, True]
    assert (
        out["ratio"] == pytest.approx(4 / out["seconds"])
        and "4 files of 20 frames" in out["detail"]
    )
