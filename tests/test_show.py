"""Skeleton pictures on synthetic tensors and a hand-made results folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from robench.data.skeleton import BUILTIN_TOPOLOGIES
from robench.errors import DataError
from robench.report.show import _pick, load_pair, render_pair

NTU = BUILTIN_TOPOLOGIES["ntu25"]


def clip(t: int = 8, present: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, t, 25, 2): ``present`` frames of body 0, padding after, body 1 absent; x_adv moves joint 7."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, t, 25, 2, generator=g) * 0.3
    x[:, present:] = 0
    x[..., 1] = 0
    xa = x.clone()
    xa[:, :present, 7, 0] += 0.05
    return x, xa


def test_render_pair_writes_gif_with_one_frame_per_present_step_and_png(tmp_path):
    x, xa = clip()
    gif, png = render_pair(x, xa, NTU, "sample s0: pgd <on> stgcn", tmp_path / "pair", frames=3)
    assert gif == tmp_path / "pair.gif" and png == tmp_path / "pair.png"
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 6  # padding frames are skipped
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]
    assert _pick(np.arange(3, 9), 4).tolist() == [3, 5, 6, 8]  # the GIF frame cap: evenly spaced
    assert _pick(np.arange(3), 4).tolist() == [0, 1, 2]
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_render_pair_rejects_bad_input(tmp_path):
    x, xa = clip()
    with pytest.raises(DataError, match="x_adv"):
        render_pair(x, xa[:, :5], NTU, "t", tmp_path / "p")
    with pytest.raises(DataError, match=r"\(3, T, 25, M\)"):
        render_pair(x[:, :, :20], xa[:, :, :20], NTU, "t", tmp_path / "p")
    with pytest.raises(DataError, match="all-zero"):
        render_pair(torch.zeros_like(x), torch.zeros_like(x), NTU, "t", tmp_path / "p")
    with pytest.raises(DataError, match="view"):
        render_pair(x, xa, NTU, "t", tmp_path / "p", view="side")


def _results_folder(tmp_path, tiny_set):
    """A results folder as the harness leaves it: store, benchmark.json, cache files."""
    from robench.run.cells import sha256_json
    from robench.run.store import Store

    test = tiny_set.get_split("test")
    npz = tiny_set.save(tmp_path / "tiny.npz")
    res = tmp_path / "res"
    res.mkdir()
    (res / "benchmark.json").write_text(json.dumps({"id": "b", "dataset": {"path": str(npz)}}))
    ids = list(test.ids)
    n = len(ids)
    common = {"dataset": {"name": "tiny", "fingerprint": tiny_set.fingerprint()}, "seed": 0}
    sur = {"id": "u", "weights_sha256": "s" * 64}
    gen_cfg = dict(common, kind="transfer-generation", surrogate=sur)
    configs = {
        "wb": dict(common, victim={"id": "v"}, surrogate=None),
        "tr": dict(common, victim={"id": "v"}, surrogate=sur),
    }
    samples = {
        "sample_id": ids, "label": test.y.tolist(), "target": [-1] * n, "clean_pred": test.y.tolist(),
        "adv_pred": ((test.y + 1) % 3).tolist(), "clean_correct": [1] * n, "eligible": [1] * n,
        "success": [1] * n, **{c: [0.0] * n for c in ("margin_clean", "margin_adv", "linf", "l2",
        "joint_disp_cm", "bone_dev_pct", "accel_dev")}, "queries": [-1] * n,
    }  # fmt: skip
    with Store(res) as st:
        for key, attack, surrogate in (("wb", "pgd", None), ("tr", "tasar", "u")):
            st.write_cell(
                {"cell_key": key, "benchmark": "b", "victim": "v", "attack": attack, "surrogate": surrogate,
                 "threat": "linf-eps0.01m", "seed": 0, "status": "ok", "config_json": json.dumps(configs[key])},
                samples,
            )  # fmt: skip
    x_adv = test.x + 0.01 * (test.x != 0)
    (res / "cache").mkdir()
    torch.save({"ids": ids, "x_adv": x_adv}, res / "cache" / "adv-wb.pt")
    torch.save(
        {"ids": ids[1:], "x_adv": x_adv[1:] * 1.5},
        res / "cache" / f"transfer-{sha256_json(gen_cfg)}.pt",
    )
    return res, test, x_adv


def test_load_pair_reads_store_cache_and_dataset(tmp_path, tiny_set):
    res, test, x_adv = _results_folder(tmp_path, tiny_set)
    pair = load_pair(res, test.ids[2], "pgd")
    assert torch.equal(pair.x_clean, test.x[2]) and torch.equal(pair.x_adv, x_adv[2])
    assert pair.topology is NTU and pair.unit == "m" and "success" in pair.title
    tr = load_pair(res, test.ids[2], "tasar<-u", victim="v")
    assert torch.equal(tr.x_adv, x_adv[2] * 1.5)
    with pytest.raises(DataError, match="did not attack"):
        load_pair(res, test.ids[0], "tasar<-u")
    with pytest.raises(DataError, match="pgd, tasar<-u"):
        load_pair(res, test.ids[2], "cw")
    with pytest.raises(DataError, match="--sample"):
        load_pair(res, "nope", "pgd")
    with pytest.raises(DataError, match="--victim"):
        load_pair(res, test.ids[2], "pgd", victim="w")
    (res / "cache" / "adv-wb.pt").unlink()
    with pytest.raises(DataError, match="adv-wb.pt"):
        load_pair(res, test.ids[2], "pgd")


def test_show_cli(tmp_path, tiny_set):
    from robench.cli import main

    res, test, _ = _results_folder(tmp_path, tiny_set)
    out = tmp_path / "pic"
    args = [
        "show",
        str(res),
        "--sample",
        test.ids[1],
        "--attack",
        "pgd",
        "--out",
        str(out),
        "--frames",
        "2",
        "--quiet",
    ]
    assert main(args) == 0
    assert (tmp_path / "pic.gif").exists() and (tmp_path / "pic.png").exists()
    assert main(["show", str(tmp_path / "nothing"), "--sample", "x", "--attack", "pgd"]) == 2
