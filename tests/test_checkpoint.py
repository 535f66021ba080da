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


def test_a_checkpoint_trained_with_a_weights_defense_shows_it_in_its_provenance(tmp_path):
    """The board's victim table names the weights defense a checkpoint records (robench defend) and
    gives the defense's recipe instead of the base's training recipe; a clean one says none."""
    from robench.report.render import _victims_table
    from robench.victim import build_victim
    from robench.zoo import victim_provenance
    from robench.zoo.checkpoint import save_victim

    m = build_victim("stgcn", num_classes=3, width=4, depth=1)
    d = {"name": "pgd-at", "base": "stgcn.base", "base_weights_sha256": "ab" * 32,
         "config": {"epochs": 2, "eps": 0.01, "steps": 10, "lr": 0.01}}  # fmt: skip
    save_victim(m, tmp_path / "at.pt", {"defense": d, "train": {"epochs": 24}})
    save_victim(m, tmp_path / "clean.pt", {"train": {"epochs": 24}})
    at, clean = (
        victim_provenance(str(tmp_path / "at.pt")),
        victim_provenance(str(tmp_path / "clean.pt")),
    )
    assert at["defense"] == "pgd-at" and at["defense_training"] == d
    assert clean["defense"] is None and clean["defense_training"] is None
    assert (
        victim_provenance(str(tmp_path / "clean.pt"), "temporal-smoothing")["defense"]
        == "temporal-smoothing"
    )
    table = _victims_table({"victims": {"at": at, "clean": clean}})
    rows = {r[0].text: [c.text for c in r] for r in table.rows}
    col = table.head.index("defense")
    assert rows["at"][col] == "pgd-at" and rows["clean"][col] == "none"
    recipe = rows["at"][table.head.index("recipe")]
    assert recipe == "pgd-at of stgcn.base, epochs 2, eps 0.01, steps 10"
    assert rows["clean"][table.head.index("recipe")] == "epochs 24"
