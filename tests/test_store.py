"""The SQLite results store: schema, one-transaction cells, frame(), summary, integrity."""

from __future__ import annotations

import sqlite3

import pytest
import torch

from robench.errors import ConfigError
from robench.run.store import CELL_COLUMNS, SAMPLE_COLUMNS, Store


def _cell(key: str, status: str = "ok", **kw) -> dict:
    row = {
        "cell_key": key,
        "run_id": 1,
        "benchmark": "b",
        "dataset": "synth-ntu25",
        "victim": "v",
        "defense": None,
        "attack": "fgsm",
        "knowledge": "white-box",
        "surrogate": None,
        "threat": "linf-eps0.01m",
        "norm": "linf",
        "eps": 0.01,
        "seed": 0,
        "subset_hash": "h",
        "config_json": "{}",
        "weights_sha256": "w",
        "status": status,
        "error": None if status == "ok" else "boom",
        "seconds": 0.5,
        "n": 3,
        "zero_grad_frac": 0.0,
        "forward_random": 0,
    }
    row.update(kw)
    return row


def _samples(n: int = 3) -> dict:
    return {
        "sample_id": [f"s{i}" for i in range(n)],
        "label": torch.tensor([1, 2, 3][:n]),
        "target": torch.full((n,), -1),
        "clean_pred": torch.tensor([1, 2, 0][:n]),
        "adv_pred": torch.tensor([0, 2, 0][:n]),
        "clean_correct": torch.tensor([True, True, False][:n]),
        "eligible": torch.tensor([True, True, False][:n]),
        "success": torch.tensor([True, False, False][:n]),
        "margin_clean": torch.tensor([0.5, 1.0, -0.25][:n], dtype=torch.float64),
        "margin_adv": torch.tensor([-0.1, 0.2, -0.3][:n], dtype=torch.float64),
        "linf": torch.tensor([0.01, 0.01, 0.0][:n]),
        "l2": torch.tensor([0.1, 0.2, 0.0][:n]),
        "joint_disp_cm": torch.tensor([0.5, 0.6, 0.0][:n]),
        "bone_dev_pct": torch.tensor([1.0, 2.0, 0.0][:n]),
        "accel_dev": torch.tensor([0.001, 0.002, 0.0][:n]),
        "queries": torch.full((n,), -1),
    }


def test_schema_is_the_contract(tmp_path):
    st = Store(tmp_path)
    con = sqlite3.connect(st.path)
    cols = {
        t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")]
        for t in ("runs", "cells", "samples")
    }
    assert cols["runs"] == [
        "run_id",
        "started",
        "finished",
        "robench_version",
        "torch_version",
        "git_commit",
        "host",
        "benchmark",
        "argv",
    ]
    assert cols["cells"] == [c for c, _ in CELL_COLUMNS]
    assert cols["samples"] == [c for c, _ in SAMPLE_COLUMNS]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    pk = [r[1] for r in con.execute("PRAGMA table_info(samples)") if r[5]]
    assert pk == ["cell_key", "sample_id"]


def test_round_trip_and_frame(tmp_path):
    with Store(tmp_path) as st:
        run = st.begin_run("b", ["robench", "run"])
        st.write_cell(_cell("k1", run_id=run), _samples())
        st.write_cell(_cell("k2", status="invalid", run_id=run), None)
        st.finish_run(run)
        runs = st.runs()
        assert runs.loc[0, "benchmark"] == "b" and runs.loc[0, "finished"] >= runs.loc[0, "started"]
        assert runs.loc[0, "torch_version"] == torch.__version__
        f = st.frame()
        assert len(f) == 3 and set(f["cell_key"]) == {"k1"}  # invalid cells never enter frame()
        assert f["success"].dtype == bool and f["success"].tolist() == [True, False, False]
        assert f["margin_clean"].tolist() == [0.5, 1.0, -0.25]
        assert f["linf"].tolist()[0] == pytest.approx(0.01)
        assert f["victim"].unique().tolist() == ["v"]
        assert st.cell_status() == {"k1": "ok", "k2": "invalid"}
        s = st.summary().set_index("attack")
        assert s.loc["fgsm"].to_dict()["robust_acc"] is not None
        assert st.integrity_check() == "ok"
    # reopen: persistent
    with Store(tmp_path / "results.sqlite") as st:
        assert len(st.frame(status=None)) == 3
        one = st.summary()
        row = one[one["status"] == "ok"].iloc[0]
        assert (
            row["clean_acc"] == round(2 / 3, 3)
            and row["robust_acc"] == round(1 / 3, 3)
            and row["asr"] == 0.5
        )


def test_rewrite_replaces_rows(tmp_path):
    with Store(tmp_path) as st:
        st.write_cell(_cell("k"), _samples(3))
        st.write_cell(_cell("k"), _samples(2))
        assert len(st.samples("k")) == 2
        assert len(st.cells()) == 1


def test_failed_transaction_leaves_nothing(tmp_path):
    with Store(tmp_path) as st:
        bad = _samples()
        bad["sample_id"] = [
            "s0",
            "s0",
            "s1",
        ]  # duplicate primary key -> the insert fails mid-transaction
        with pytest.raises(sqlite3.IntegrityError):
            st.write_cell(_cell("k"), bad)
        assert st.cells().empty and st.frame(None).empty


def test_write_cell_validates(tmp_path):
    with Store(tmp_path) as st:
        with pytest.raises(ConfigError, match="status"):
            st.write_cell(_cell("k", status="done"), None)
        with pytest.raises(ConfigError, match="unknown 'colour'"):
            st.write_cell({**_cell("k"), "colour": 1}, None)
        s = _samples()
        del s["l2"]
        with pytest.raises(ConfigError, match="'l2'"):
            st.write_cell(_cell("k"), s)
