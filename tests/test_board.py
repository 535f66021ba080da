"""board.json building, determinism, validation, renderings, store round trip and the CLI."""

from __future__ import annotations

import copy
import csv
import io
import json

import pandas as pd
import pytest
from test_aggregate import cell_rows, counts, frame

from robench.errors import DataError
from robench.report.board import (
    board_from_store,
    board_json,
    build_board,
    read_board,
    validate_board,
    write_board,
)

CELL_COLS = (
    "cell_key", "run_id", "benchmark", "dataset", "victim", "defense", "attack", "knowledge",
    "surrogate", "threat", "norm", "eps", "seed", "subset_hash", "config_json", "weights_sha256",
    "status", "error", "seconds", "n", "zero_grad_frac", "forward_random",
)  # fmt: skip


def demo_frame() -> pd.DataFrame:
    """Two victims, two white-box attacks, a transfer attack, an eps sweep of pgd."""
    parts = []
    for v, k in (("stgcn", 6), ("<b>agcn</b>", 4)):
        parts.append(cell_rows(f"{v}-pgd", "pgd", *counts(k, 10), victim=v))
        parts.append(cell_rows(f"{v}-fgsm", "fgsm", *counts(k + 2, 10), victim=v))
        parts.append(
            cell_rows(
                f"{v}-pgd2", "pgd", *counts(k - 2, 10), victim=v, threat="linf-eps0.02m", eps=0.02
            )
        )
        for s in ("stgcn", "<b>agcn</b>"):
            parts.append(
                cell_rows(
                    f"{v}-tasar-{s}",
                    "tasar",
                    *counts(8, 10),
                    victim=v,
                    knowledge="transfer",
                    surrogate=s,
                )
            )
    return frame(*parts)


def cells_of(df: pd.DataFrame, extra: list[dict] | None = None) -> pd.DataFrame:
    cells = df.drop_duplicates("cell_key")[list(CELL_COLS)]
    return pd.concat([cells, pd.DataFrame(extra or [])], ignore_index=True)


INVALID = {
    "cell_key": "bad", "benchmark": "b", "victim": "stgcn", "attack": "cw", "knowledge": "white-box",
    "threat": "linf-eps0.01m", "seed": 0, "status": "invalid",
    "error": "linf norm 0.02 exceeds eps 0.01 by 0.01 in 3 sample(s)",
}  # fmt: skip
IDS = [f"s{i:02d}" for i in range(10)]
META = {
    "benchmark_version": 2,
    "dataset_hash": "f" * 64,
    "threat_models": [{"norm": "linf", "eps": 0.01}],
}


def test_board_is_deterministic_and_complete():
    df = demo_frame()
    cells = cells_of(df, [INVALID])
    a = board_json(build_board(df, cells, META))
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    b = board_json(build_board(shuffled, cells.iloc[::-1], META))
    assert a == b
    d = json.loads(a)
    validate_board(d)
    assert d["schema"] == "robench.board/1"
    assert d["benchmark"] == {"id": "b", "version": 2, "description": ""}
    assert d["dataset"] == {"name": "synth-ntu25", "hash": "f" * 64}
    assert d["subset"] == {"hash": "subsethash", "n": 10}
    assert {t["name"]: t["primary"] for t in d["threat_models"]} == {
        "linf-eps0.01m": True,
        "linf-eps0.02m": False,
    }
    e = next(e for e in d["entries"] if e["victim"] == "stgcn" and e["threat"] == "linf-eps0.01m")
    assert e["weights_sha256"] == "sha-stgcn"
    assert set(e["attacks"]) == {"pgd", "fgsm", "tasar<-stgcn", "tasar<-<b>agcn</b>"}
    assert e["attacks"]["pgd"]["robust_accuracy"]["value"] == 0.6
    assert e["worst_case"]["value"] == 0.6 and len(e["worst_case"]["ci"]) == 2
    assert d["invalid_cells"] == [
        {"cell_key": "bad", "victim": "stgcn", "defense": "none", "attack": "cw", "surrogate": None,
         "threat": "linf-eps0.01m", "seed": 0, "status": "invalid", "reason": INVALID["error"]}
    ]  # fmt: skip
    assert [c["attack"] for c in d["eps_curves"]] == ["pgd", "pgd"]
    # floats rounded to 6 decimals
    ci = e["attacks"]["pgd"]["robust_accuracy"]["ci"]
    assert all(round(c, 6) == c for c in ci)


def test_invalid_cells_never_enter_numbers():
    df = demo_frame()
    bad = pd.DataFrame(cell_rows("bad", "cw", *counts(0, 10), victim="stgcn"))
    cells = cells_of(df, [INVALID])
    with_bad = build_board(pd.concat([df, bad], ignore_index=True), cells, META)
    assert board_json(with_bad) == board_json(build_board(df, cells, META))


def test_validate_board_names_the_field():
    d = build_board(demo_frame(), cells_of(demo_frame()), META)
    validate_board(d)
    cases = [
        (lambda b: b.pop("schema"), "'schema'"),
        (lambda b: b.update(schema="robench.board/0"), "field 'schema'"),
        (
            lambda b: b["entries"][0]["clean_accuracy"].update(ci=[0.9, 0.1]),
            "entries[0].clean_accuracy.ci",
        ),
        (
            lambda b: b["entries"][1]["attacks"]["pgd"].update(knowledge="grey-box"),
            "entries[1].attacks.pgd.knowledge",
        ),
        (lambda b: b["entries"][0]["worst_case"].update(n=-1), "entries[0].worst_case.n"),
        (lambda b: b["transfer"][0]["success_rate"].pop(), "transfer[0].success_rate"),
        (lambda b: b["entries"][0]["flags"].append({"code": 3}), "entries[0].flags[0]"),
        (lambda b: b.update(entries={}), "field 'entries'"),
        (lambda b: b["subset"].update(ids=["s00"]), "subset.ids"),
    ]
    for mutate, field in cases:
        bad = copy.deepcopy(d)
        mutate(bad)
        with pytest.raises(DataError) as info:
            validate_board(bad)
        msg = str(info.value)
        assert field in msg and "\n" not in msg and msg.startswith("expected")


def test_write_board_files(tmp_path):
    d = build_board(demo_frame(), cells_of(demo_frame(), [INVALID]), META)
    paths = write_board(d, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "board.json",
            "board.md",
            "board.csv",
            "board.html",
            "transfer_heatmap.png",
            "robust_vs_eps.png",
        ]
    )
    assert read_board(tmp_path / "out") == json.loads(board_json(d))
    html = (tmp_path / "out" / "board.html").read_text()
    low = html.lower()
    assert (
        "http" not in low
        and "<script src" not in low
        and "<link" not in low
        and "@import" not in low
    )
    assert "<b>agcn</b>" not in html and "&lt;b&gt;agcn&lt;/b&gt;" in html
    assert "table.sortable" in html or 'class="sortable"' in html
    md = (tmp_path / "out" / "board.md").read_text()
    assert "## Threat model linf-eps0.01m" in md and "| stgcn | none | 100.0 [72.2, 100.0] |" in md
    assert "Transfer success rate: tasar" in md and "exceeds eps" in md
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "board.csv").read_text())))
    assert len(rows) == sum(len(e["attacks"]) for e in d["entries"])
    pgd = next(
        r
        for r in rows
        if r["victim"] == "stgcn" and r["attack_key"] == "pgd" and r["threat"] == "linf-eps0.01m"
    )
    assert float(pgd["robust_accuracy"]) == 0.6 and pgd["n"] == "10" and pgd["n_eligible"] == "10"
    for name in ("transfer_heatmap.png", "robust_vs_eps.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_skipped_without_data_and_stale_ones_removed(tmp_path):
    out = tmp_path / "o"
    write_board(build_board(demo_frame(), cells_of(demo_frame()), META), out)
    only_wb = frame(cell_rows("a", "pgd", *counts(3, 5)))
    paths = write_board(build_board(only_wb, cells_of(only_wb), {}), out)
    assert {p.name for p in paths} == {"board.json", "board.md", "board.csv", "board.html"}
    assert not (out / "transfer_heatmap.png").exists() and not (out / "robust_vs_eps.png").exists()


def _fill_store(path) -> None:
    from robench.run.store import SAMPLE_COLUMNS, Store

    df = demo_frame()
    with Store(path) as st:
        for _key, g in df.groupby("cell_key"):
            cell = {c: g.iloc[0][c] for c in CELL_COLS}
            cell = {
                k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in cell.items()
            }
            samples = {c: g[c].tolist() for c, _ in SAMPLE_COLUMNS if c != "cell_key"}
            st.write_cell(cell, samples)
        st.write_cell(dict(INVALID, run_id=1))
    (path / "benchmark.json").write_text(
        json.dumps({"id": "b", "version": 3, "threats": [{"norm": "linf", "eps": 0.01}]})
    )
    (path / "subset.json").write_text(json.dumps({"sha256": "subsethash", "ids": IDS}))


def test_board_from_store_and_cli(tmp_path):
    from robench.cli import main

    res = tmp_path / "res"
    _fill_store(res)
    d = board_from_store(res)
    assert d["benchmark"]["version"] == 3 and d["subset"] == {
        "hash": "subsethash",
        "n": 10,
        "ids": IDS,
    }
    assert len(d["invalid_cells"]) == 1
    assert board_json(d) == board_json(
        build_board(
            demo_frame(),
            cells_of(demo_frame(), [INVALID]),
            {**META, "benchmark_version": 3, "dataset_hash": None, "subset_ids": IDS},
        )
    )
    assert main(["board", str(res), "--out", str(tmp_path / "lb"), "--quiet"]) == 0
    assert json.loads((tmp_path / "lb" / "board.json").read_text()) == d
    assert main(["board", str(res), "--out", str(tmp_path / "lb"), "--benchmark", "nope"]) == 2
    assert main(["board", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
