import numpy as np
import pytest
import torch

from robench.data import SkeletonSet, open_dataset
from robench.errors import DataError, UnknownNameError


def test_round_trip(tiny_set, tmp_path):
    path = tiny_set.save(tmp_path / "d.npz")
    back = SkeletonSet.load(path)
    assert torch.equal(back.x, tiny_set.x) and torch.equal(back.y, tiny_set.y)
    assert back.ids == tiny_set.ids and back.split == tiny_set.split
    assert back.fingerprint() == tiny_set.fingerprint()
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file


def test_split_and_ids(tiny_set):
    test = tiny_set.get_split("test")
    assert set(test.split) == {"test"} and len(test) == 4
    sub = tiny_set.by_ids(["s005", "s001"])
    assert sub.ids == ("s005", "s001") and torch.equal(sub.x[0], tiny_set.x[5])
    with pytest.raises(DataError, match="split 'val'"):
        tiny_set.get_split("val")


def _save_raw(path, **arrays):
    base = {
        "x": np.ones((2, 3, 4, 25, 1), np.float32),
        "y": np.array([0, 1]),
        "ids": np.array(["a", "b"]),
        "class_names": np.array(["p", "q"]),
        "topology": np.array("ntu25"),
        "unit": np.array("m"),
    }
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"x": np.zeros((2, 3, 4, 25), np.float32)}, "field 'x'"),
        ({"x": np.full((2, 3, 4, 25, 1), np.nan, np.float32)}, "NaN/inf in sample 0"),
        ({"y": np.array([0, 7])}, "labels in \\[0, 2\\), got 7 at sample 1"),
        ({"y": np.array([0.5, 1.0])}, "integer labels"),
        ({"ids": np.array(["a", "a"])}, "unique sample ids"),
        ({"topology": np.array("ntu52")}, "unknown topology 'ntu52'"),
        ({"x": np.zeros((2, 3, 4, 18, 1), np.float32)}, "V = 25"),
        ({"y": None}, "key 'y'"),
        ({"x": np.ones((2, 3, 0, 25, 1), np.float32)}, "at least one frame, got T = 0"),
        (
            {"x": np.stack([np.ones((3, 4, 25, 1)), np.zeros((3, 4, 25, 1))]).astype(np.float32)},
            "empty clip \\(all frames zero\\) at sample 1 \\(b\\)",
        ),
        (
            {"subject": np.array(["p1", "p2"])},
            "integer performer ids, got dtype <U2 in .* field 'subject'",
        ),
    ],
)
def test_malformed_npz_names_the_field(tmp_path, arrays, match):
    path = _save_raw(tmp_path / "bad.npz", **arrays)
    with pytest.raises((DataError, UnknownNameError), match=match) as info:
        SkeletonSet.load(path)
    assert "\n" not in str(info.value)


def test_not_a_zip(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="junk.npz"):
        SkeletonSet.load(p)


def test_nan_tensor_rejected(tiny_set):
    x = tiny_set.x.clone()
    x[3, 1, 2, 4, 0] = float("inf")
    with pytest.raises(DataError, match="sample 3"):
        SkeletonSet(
            x=x,
            y=tiny_set.y,
            ids=tiny_set.ids,
            class_names=tiny_set.class_names,
            topology=tiny_set.topology,
        )


def test_open_dataset_unknown_name():
    with pytest.raises(DataError, match="synth-ntu25"):
        open_dataset("synth-ntu52")


@pytest.mark.parametrize("unit,scale", [("m", 1.0), ("cm", 100.0), ("px", 640.0)])
def test_data_stats_reports_bones_and_speeds_in_the_sets_unit(tmp_path, capsys, unit, scale):
    from robench.cli import main
    from robench.data.skeleton import Topology

    topo = Topology("chain3", ("a", "b", "c"), (-1, 0, 1), 0)
    x = torch.zeros(2, 3, 8, 3, 1)
    for t in range(8):  # bones 0.3 and 0.5, every joint moving 0.02 per frame
        pts = torch.tensor([[1.0, 0, 0], [1.0, 0.3, 0], [1.0, 0.3, 0.5]]) + 0.02 * t
        x[:, :, t, :, 0] = pts.T
    ds = SkeletonSet(
        x=x * scale, y=torch.tensor([0, 1]), ids=("a", "b"), class_names=("p", "q"),
        topology=topo, unit=unit, name="chain",
    )  # fmt: skip
    path = ds.save(tmp_path / "c.npz")
    assert main(["data", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    speed = 0.02 * 3**0.5 * scale
    assert f"bone lengths ({unit}): median {0.4 * scale:.4g}, 5-95% [{0.3 * scale:.4g}" in out
    assert f"joint speed ({unit} per frame): median {speed:.4g}" in out
