"""Store archives (``robench results DIR --export / --import``): a round trip keeps every cell and
row, the file is deterministic, only ``ok`` cells travel, a bad line is refused naming its line with
the store untouched, existing cells are kept, and an imported cell is not re-run."""

from __future__ import annotations

import gzip
import json

import pytest
import yaml

from robench.cli import main
from robench.errors import DataError
from robench.run.archive import FORMAT, export_store, import_archive, read_archive
from robench.run.benchmark import load_benchmark
from robench.run.cells import canonical_json, sha256_json
from robench.run.executor import pending, run_benchmark
from robench.run.harness import prepare
from robench.run.store import Store


def _cell(store: Store, i: int, status: str = "ok", n: int = 3) -> str:
    config = {"attack": f"a{i}", "eps": 0.01 * (i + 1)}
    key = sha256_json(config)
    run = store.begin_run("t")
    samples = {
        "sample_id": [f"s{j}" for j in range(n)],
        "label": [j % 2 for j in range(n)],
        "target": [None] * n,
        "clean_pred": [j % 2 for j in range(n)],
        "adv_pred": [(j + i) % 2 for j in range(n)],
        "clean_correct": [True] * n,
        "eligible": [True] * n,
        "success": [(j + i) % 2 == 1 for j in range(n)],
        "margin_clean": [0.5 + j for j in range(n)],
        "margin_adv": [-0.25 * j for j in range(n)],
        "linf": [0.01] * n,
        "l2": [0.1 + j / 7 for j in range(n)],
        "joint_disp_cm": [1.0] * n,
        "bone_dev_pct": [0.0] * n,
        "accel_dev": [None] * n,
        "queries": [0] * n,
    }
    cell = {
        "cell_key": key, "run_id": run, "benchmark": "b", "dataset": "d", "victim": "v",
        "attack": f"a{i}", "knowledge": "white-box", "threat": "linf:0.01", "norm": "linf",
        "eps": 0.01, "seed": 0, "config_json": canonical_json(config), "status": status,
        "error": None if status == "ok" else "boom", "seconds": 1.5, "n": n,
    }  # fmt: skip
    store.write_cell(cell, samples if status == "ok" else None)
    return key


def _frame(store: Store):
    return store.frame().drop(columns=["run_id"]).reset_index(drop=True)


@pytest.fixture
def source(tmp_path):
    store = Store(tmp_path / "src")
    keys = [_cell(store, 0), _cell(store, 1), _cell(store, 2, status="invalid")]
    yield store, keys
    store.close()


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz"])
def test_round_trip_keeps_every_ok_cell_and_row_and_drops_the_others(source, tmp_path, name):
    store, keys = source
    path = tmp_path / name
    assert export_store(store, path) == 2
    with Store(tmp_path / "dst") as dst:
        assert import_archive(dst, path) == (2, 0)
        assert dst.cell_status() == {keys[0]: "ok", keys[1]: "ok"}
        got, want = _frame(dst), _frame(store)
        assert got.equals(want), (got, want)
        assert dst.runs()["benchmark"].tolist() == ["import"]


def test_export_is_deterministic_and_gzipped_only_for_gz(source, tmp_path):
    store, _ = source
    export_store(store, tmp_path / "a.gz")
    first = (tmp_path / "a.gz").read_bytes()
    assert first[4:8] == b"\0\0\0\0"  # no timestamp in the gzip header
    export_store(store, tmp_path / "a.gz")
    assert (tmp_path / "a.gz").read_bytes() == first
    export_store(store, tmp_path / "a.jsonl")
    assert gzip.decompress(first) == (tmp_path / "a.jsonl").read_bytes()
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"format": FORMAT, "cells": 2}
    keys = [json.loads(t)["cell"]["cell_key"] for t in lines[1:]]
    assert keys == sorted(keys)


def test_cells_already_ok_are_kept_not_replaced_and_failed_ones_are(source, tmp_path):
    store, keys = source
    export_store(store, tmp_path / "a.jsonl")
    with Store(tmp_path / "dst") as dst:
        _cell(dst, 0)
        dst.write_cell({"cell_key": keys[1], "status": "error", "error": "boom"})
        dst._con.execute("UPDATE samples SET margin_adv = 9 WHERE cell_key = ?", (keys[0],))
        assert import_archive(dst, tmp_path / "a.jsonl") == (1, 1)
        assert set(dst.samples(keys[0])["margin_adv"]) == {9}
        assert dst.cell_status([keys[1]]) == {keys[1]: "ok"} and len(dst.samples(keys[1])) == 3
        assert import_archive(dst, tmp_path / "a.jsonl") == (0, 2)


def _edit(path, line, fn):
    lines = path.read_text().splitlines()
    obj = json.loads(lines[line - 1])
    fn(obj)
    lines[line - 1] = json.dumps(obj)
    path.write_text("\n".join(lines) + "\n")


EDITS = {
    "config edited": (lambda o: o["cell"].update(config_json='{"attack":"x"}'), "sha256"),
    "key edited": (lambda o: o["cell"].update(cell_key="0" * 64), "sha256"),
    "not ok": (lambda o: o["cell"].update(status="error"), "status 'ok'"),
    "unknown column": (lambda o: o["cell"].update(bogus=1), "unknown 'bogus'"),
    "missing sample column": (lambda o: o["samples"].pop("success"), "'success'"),
    "short column": (lambda o: o["samples"]["adv_pred"].pop(), "'adv_pred'"),
    "repeated id": (lambda o: o["samples"]["sample_id"].__setitem__(1, "s0"), "unique"),
    "no samples": (lambda o: o.pop("samples"), "'cell' and 'samples'"),
}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_a_bad_last_line_is_refused_naming_it_and_nothing_is_written(source, tmp_path, edit):
    store, _ = source
    path = tmp_path / "a.jsonl"
    export_store(store, path)
    fn, words = EDITS[edit]
    _edit(path, 3, fn)
    with Store(tmp_path / "dst") as dst:
        with pytest.raises(DataError, match="line 3") as e:
            import_archive(dst, path)
        assert words in str(e.value)
        assert dst.cell_status() == {} and dst.runs().empty


def test_bad_headers_counts_and_json_are_refused(source, tmp_path):
    store, _ = source
    path = tmp_path / "a.jsonl"
    export_store(store, path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(DataError, match="expected 2 cell lines .* got 1"):
        read_archive(path)
    path.write_text("\n".join([lines[0], lines[1], "{nope"]) + "\n")
    with pytest.raises(DataError, match="expected JSON.* line 3"):
        read_archive(path)
    path.write_text(json.dumps({"format": "other/1", "cells": 0}) + "\n")
    with pytest.raises(DataError, match="format 'robench.store-archive/1', got 'other/1'.* line 1"):
        read_archive(path)
    path.write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_archive(path)
    path.write_bytes(b"\x1f\x8b broken")
    with pytest.raises(DataError, match="readable store archive"):
        read_archive(path)


def test_cli_exports_imports_and_refuses_a_bad_file_with_exit_2(source, tmp_path, capsys):
    store, _ = source
    assert main(["results", str(store.dir), "--export", str(tmp_path / "a.gz")]) == 0
    assert "archived 2 cells" in capsys.readouterr().out
    dst = str(tmp_path / "fresh")
    assert main(["results", dst, "--import", str(tmp_path / "a.gz")]) == 0
    out = capsys.readouterr().out
    assert "imported 2 cells" in out and " a0 " in out and " a1 " in out
    (tmp_path / "bad.jsonl").write_text("[]\n")
    assert main(["results", dst, "--import", str(tmp_path / "bad.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.jsonl line 1" in err and "\n" not in err
    assert main(["results", str(tmp_path / "none"), "--import", str(tmp_path / "bad.jsonl")]) == 2
    assert not (tmp_path / "none").exists()


def test_an_imported_cell_is_not_run_again(tmp_path):
    doc = {
        "id": "arch", "dataset": {"name": "synth-ntu25", "seed": 0}, "split": "test",
        "subset": {"n": 8, "seed": 0}, "victims": ["stgcn.synth_ntu25"],
        "attacks": ["fgsm", {"name": "pgd", "params": {"steps": 2}}],
        "threats": [{"norm": "linf", "eps": 0.01}], "batch_size": 8,
    }  # fmt: skip
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(doc))
    bench = load_benchmark(path)
    run_benchmark(bench, tmp_path / "a", progress=False).close()
    with Store(tmp_path / "a") as a:
        export_store(a, tmp_path / "a.gz")
        want = _frame(a)
    with Store(tmp_path / "b") as b:
        import_archive(b, tmp_path / "a.gz")
        plan = prepare(bench, tmp_path / "b")
        assert len(plan.cells) == 2 and pending(plan, b) == []
        assert _frame(b).equals(want)
