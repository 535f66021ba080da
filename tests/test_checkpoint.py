import json

import pytest
import torch

from robench.errors import CheckpointError, UnknownNameError
from robench.victim import build_victim
from robench.zoo import create_victim
from robench.zoo.checkpoint import load_victim, save_victim


def _tiny():
    torch.manual_seed(0)
    return build_victim("stgcn", num_classes=3, width=8, depth=2).eval()


def test_round_trip_verifies_sha256(tmp_path):
    model = _tiny()
    meta = save_victim(model, tmp_path / "m", {"clean_accuracy": 0.5})
    loaded = load_victim(tmp_path / "m.pt")
    x = torch.randn(2, 3, 8, 25, 2)
    assert torch.equal(loaded(x), model(x))
    assert loaded.weights_sha256 == meta["weights_sha256"]
    assert json.loads((tmp_path / "m.json").read_text())["clean_accuracy"] == 0.5
    assert create_victim(str(tmp_path / "m.pt")).weights_sha256 == meta["weights_sha256"]


def test_sha256_mismatch_is_refused(tmp_path):
    save_victim(_tiny(), tmp_path / "m")
    data = bytearray((tmp_path / "m.pt").read_bytes())
    data[-20] ^= 0xFF
    (tmp_path / "m.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_victim(tmp_path / "m.pt")


def test_missing_metadata_is_refused(tmp_path):
    save_victim(_tiny(), tmp_path / "m")
    (tmp_path / "m.json").unlink()
    with pytest.raises(CheckpointError, match="cannot verify"):
        load_victim(tmp_path / "m.pt")


def test_unknown_zoo_name_suggests():
    with pytest.raises(UnknownNameError, match="stgcn"):
        create_victim("stgcm.synth_ntu25")
