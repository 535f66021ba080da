"""board.json building, determinism, validation, renderings, store round trip and the CLI."""

from __future__ import annotations

import copy
import csv
import io
import json
import re

import pandas as pd
import pytest
from test_aggregate import cell_rows, counts, frame

from robench.errors import DataError
from robench.report.board import (
    board_from_store,
    board_json,
    build_board,
    read_board,
    render_markdown,
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
    assert d["schema"] == "robench.board/2"
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
    low = re.sub(r"data:image/png;base64,[a-z0-9+/=]+", "", html.lower())  # embedded figures
    assert (
        "http" not in low
        and "<script src" not in low
        and "<link" not in low
        and "@import" not in low
    )
    assert "<b>agcn</b>" not in html and "&lt;b&gt;agcn&lt;/b&gt;" in html
    assert "table.sortable" in html or 'class="sortable"' in html
    # both figures are embedded in the page, beside the tables they belong to
    assert 'alt="transfer_heatmap.png"' in html and 'alt="robust_vs_eps.png"' in html
    md = (tmp_path / "out" / "board.md").read_text()
    assert "## Threat model L∞, ε = 1 cm" in md
    assert "| stgcn | 100.0 [72.2, 100.0] | 60.0 [31.3, 83.2] |" in md  # victim, clean, worst case
    assert (
        "**tasar: off-diagonal 20.0 [8.1, 41.6]**" in md
    )  # 4 of 20 off-diagonal and "exceeds eps" in md
    assert "| stgcn | 20.0 [5.7, 51.0] | 20.0 [5.7, 51.0] diag. |" in md
    assert "**L∞, ε = 2 cm**" in md
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


def _with_configs(df: pd.DataFrame) -> pd.DataFrame:
    """Give each cell a config JSON naming its attack (steps differ for pgd, none for fgsm)."""
    df = df.copy()
    cfg = {
        "pgd": {"name": "pgd", "knowledge": "white-box", "config": {"steps": 10, "restarts": 2}},
        "fgsm": {"name": "fgsm", "knowledge": "white-box", "config": {"targeted": False}},
        "tasar": {"name": "tasar", "knowledge": "transfer", "config": {"iterations": 30}},
    }
    df["config_json"] = [
        json.dumps(
            {"attack": {"id": a, **cfg[a]}, "threat": {"norm": "linf", "eps": e, "unit": "m"}}
        )
        for a, e in zip(df["attack"], df["eps"], strict=True)
    ]
    return df


def test_board_carries_attack_configs_victim_provenance_and_families():
    df = _with_configs(demo_frame())
    prov = {
        "stgcn": {"source": "stgcn.synth_ntu25", "architecture": "stgcn", "paper": "Yan et al."}
    }
    d = build_board(df, cells_of(df), {**META, "victims": prov})
    validate_board(d)
    assert d["victims"] == prov
    names = {a["name"]: a for a in d["attack_configs"].values()}
    assert names["pgd"]["config"] == {"steps": 10, "restarts": 2}
    e = next(e for e in d["entries"] if e["victim"] == "stgcn" and e["threat"] == "linf-eps0.01m")
    sha = e["attacks"]["pgd"]["config_sha256"]
    assert d["attack_configs"][sha]["name"] == "pgd"
    assert set(e["families"]) == {"white-box", "transfer"}
    md = render_markdown(d)
    assert "pgd (10 it., 2 restarts)" in md  # the budget in the column header
    assert "steps=10" in md and "| stgcn | stgcn | Yan et al." in md
    bad = copy.deepcopy(d)
    bad["entries"][0]["attacks"]["pgd"]["config_sha256"] = "0" * 64
    with pytest.raises(DataError, match="a key of attack_configs"):
        validate_board(bad)
    bad = copy.deepcopy(d)
    bad["transfer"][0]["diagonal"] = [[5, 0]]
    with pytest.raises(DataError, match="diagonal"):
        validate_board(bad)
    old = copy.deepcopy(d)  # a /1 board (e.g. an old regression baseline) is still read
    old["schema"] = "robench.board/1"
    for k in ("attack_configs", "victims"):
        old.pop(k)
    for en in old["entries"]:
        en.pop("families")
    validate_board(old)
    bad = copy.deepcopy(d)
    bad.pop("attack_configs")
    with pytest.raises(DataError, match="attack_configs"):
        validate_board(bad)


def test_headline_comes_first_and_fits(tmp_path):
    from robench.report.render import board_sections

    d = build_board(demo_frame(), cells_of(demo_frame()), META)
    first = board_sections(d)[0]
    (head,) = first.tables
    assert head.head[:3] == ["victim", "clean", "worst case"]
    assert "pgd" not in head.head and "fgsm" not in head.head  # per-attack columns live below
    assert len(head.head) <= 7
    write_board(d, tmp_path)
    html = (tmp_path / "board.html").read_text()
    assert html.index("worst case") < html.index("<h2>White-box")
    assert "position:sticky" in html and 'src="data:image/png;base64,' in html
    assert 'src="transfer_heatmap.png"' not in html and "<img" in html


def test_threat_labels_use_centimetres():
    from robench.report.render import eps_display, family_label, threat_label

    assert threat_label({"norm": "linf", "eps": 0.01, "unit": "m"}) == "L∞, ε = 1 cm"
    assert threat_label({"norm": "l2", "eps": 5.0, "unit": "mm"}) == "L2, ε = 0.5 cm"
    assert eps_display(0.3, "u") == "0.3 u"
    t = {"norm": "linf", "eps": 0.02, "unit": "m", "preserve_bones": True, "bone_tolerance": 0.01,
         "joints": [0, 3], "frames": [0, 32]}  # fmt: skip
    assert threat_label(t) == "L∞, ε = 2 cm, bone lengths ±1%, joints 0,3, frames 0-32"
    assert family_label(json.dumps({"norm": "linf", "unit": "m"})) == "L∞"


def test_heatmap_scale_spans_the_off_diagonal_and_eps_axis_is_in_cm(tmp_path, monkeypatch):
    from robench.report import figures

    captured = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: captured.append(fig) or path)
    d = build_board(_with_configs(demo_frame()), cells_of(demo_frame()), META)
    d["transfer"][0]["success_rate"][0][0]["value"] = (
        0.9  # a strong diagonal must not set the scale
    )
    figures.transfer_heatmap(d, tmp_path / "h.png")
    fig = captured.pop()
    vmax = max(
        im.get_clim()[1]
        for ax in fig.axes
        for im in ax.get_images()
        if im.get_cmap().name == "viridis"
    )
    assert vmax == 20.0  # off-diagonal cells are 20 %: the scale ends at 20, not at 90 or 100
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum(t.startswith("diag.") for t in texts) == 2 and any("[" in t for t in texts)
    figures.robust_vs_eps(d, tmp_path / "e.png")
    ax = captured.pop().axes[0]
    assert ax.get_xlabel() == "ε (cm)" and ax.get_title() == "threat model L∞"
    xs = sorted({float(x) for line in ax.get_lines() for x in line.get_xdata()})
    assert xs == [1.0, 2.0]


def test_budget_names_iterations_restarts_eot_and_query_budgets():
    from robench.report.render import budget

    assert budget({"config": {"steps": 1, "restarts": 1, "eot_iter": 1}}) == "1 it."
    assert (
        budget({"config": {"steps": 100, "restarts": 5, "eot_iter": 20}})
        == "100 it., 5 restarts, 20 EOT"
    )
    assert budget({"config": {"iterations": 20}}) == "20 it."
    assert budget({"config": {"targeted": False}, "budget": 500}) == "≤500 queries"
    assert budget({"config": {"steps": True}}) == ""  # a flag is not a count
    assert budget(None) == ""


def test_eps_sweep_tables_show_the_worst_case_and_titles():
    from robench.report.render import board_sections

    d = build_board(demo_frame(), cells_of(demo_frame()), META)
    (sweep,) = [s for s in board_sections(d) if s.title.startswith("Robust accuracy against")]
    (t,) = sweep.tables
    assert t.head[-1] == "worst case" and t.show_title and t.title == "L∞, ε = 2 cm"
    assert t.figure == "robust_vs_eps.png"


def test_figure_axes_and_bands(tmp_path, monkeypatch):
    from matplotlib.collections import PolyCollection

    from robench.report import figures

    captured = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: captured.append(fig) or path)
    d = build_board(_with_configs(demo_frame()), cells_of(demo_frame()), META)
    figures.transfer_heatmap(d, tmp_path / "h.png")
    ax = captured.pop().axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("victim", "surrogate")
    figures.robust_vs_eps(d, tmp_path / "e.png")
    fig = captured.pop()
    ax = fig.axes[0]
    assert "ε" in fig._suptitle.get_text() and "95% Wilson" in fig._suptitle.get_text()
    curve = next(c for c in d["eps_curves"] if c["victim"] == "stgcn" and c["attack"] == "pgd")
    lo = [100 * p["robust_accuracy"]["ci"][0] for p in curve["points"]]
    hi = [100 * p["robust_accuracy"]["ci"][1] for p in curve["points"]]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = [sorted({round(float(v), 6) for v in b.get_paths()[0].vertices[:, 1]}) for b in bands]
    assert any(min(y) == round(min(lo), 6) and max(y) == round(max(hi), 6) for y in ys)


def test_board_ranks_transfer_attacks_with_paired_p_values():
    rows = []
    n = 10
    cc = [1] * n
    fool = lambda idx: [1 if i in idx else 0 for i in range(n)]  # noqa: E731
    for key, attack, s, v, idx in (
        ("r-uv", "transfer-ifgsm", "u", "v", {0, 1, 2}),
        ("r-vu", "transfer-ifgsm", "v", "u", set()),
        ("a-uv", "tasar", "u", "v", {1, 2, 3, 4, 5, 6}),
        ("a-vu", "tasar", "v", "u", {0}),
        ("b-uu", "ba", "u", "u", {0}),  # only a diagonal cell: no off-diagonal success at all
    ):
        rows.append(cell_rows(key, attack, fool(idx), cc, knowledge="transfer", surrogate=s,
                              victim=v))  # fmt: skip
    df = frame(*rows)
    board = build_board(df, cells_of(df), META)
    validate_board(board)
    md = render_markdown(board)
    assert "transfer attacks compared" in md and "Δ vs transfer-ifgsm" in md
    # ranked by transfer success: tasar (7/20) above transfer-ifgsm (3/20); b / c = 5 / 1
    i_tasar, i_ref = md.index("| tasar |"), md.index("| transfer-ifgsm |")
    assert i_tasar < i_ref < md.index("| ba |")  # an attack without off-diagonal units ranks last
    line = next(ln for ln in md.splitlines() if ln.startswith("| tasar |"))
    assert "+20.0" in line and "5 / 1" in line and "0.22" in line  # McNemar p = 14/64
    lo, hi = next(m for m in board["transfer"] if m["attack"] == "tasar")["vs_reference"]["ci"]
    assert f"| +20.0 [{100 * lo:+.1f}, {100 * hi:+.1f}] |" in line
    assert "p (clips)" in md and "clustered by clip" in md
    bad = copy.deepcopy(board)
    tasar = next(m for m in bad["transfer"] if m["attack"] == "tasar")
    tasar["vs_reference"]["p_value"] = 2
    with pytest.raises(DataError, match="vs_reference.p_value"):
        validate_board(bad)
    bad = copy.deepcopy(board)
    tasar = next(m for m in bad["transfer"] if m["attack"] == "tasar")
    tasar["vs_reference"]["ci"] = [0.5, 0.6]  # does not contain the difference
    with pytest.raises(DataError, match="vs_reference.ci"):
        validate_board(bad)
    del tasar["vs_reference"]["difference"]
    with pytest.raises(DataError, match="difference"):
        validate_board(bad)


def test_declared_comparisons_reach_the_board_with_their_verdicts():
    n = 30
    cc = [1] * n
    fool = lambda idx: [1 if i in idx else 0 for i in range(n)]  # noqa: E731
    tr = dict(knowledge="transfer", surrogate="u", victim="v")
    rows = [
        cell_rows("a", "tasar", fool(set(range(12))), cc, **tr),
        cell_rows("b", "ba", fool(set(range(11))), cc, **tr),
        cell_rows("r", "transfer-ifgsm", fool(set()), cc, **tr),
        cell_rows("m", "transfer-mifgsm", fool(set(range(25))), cc, **tr),
    ]
    df = frame(*rows)
    assert "transfer_comparisons" not in build_board(df, cells_of(df), META)
    meta = {**META, "comparisons": [["tasar", "ba"], ["ba", "transfer-ifgsm"], ["mig", "ba"],
                                    ["transfer-mifgsm", "transfer-ifgsm"]]}  # fmt: skip
    board = build_board(df, cells_of(df), meta)
    validate_board(board)
    got = board["transfer_comparisons"]
    assert [(c["attack"], c["reference"]) for c in got] == [
        ("tasar", "ba"), ("ba", "transfer-ifgsm"), ("mig", "ba"),
        ("transfer-mifgsm", "transfer-ifgsm"),
    ]  # fmt: skip
    md = render_markdown(board)
    assert "declared comparisons" in md
    lines = {ln.split("|")[1].strip() + ">" + ln.split("|")[2].strip(): ln
             for ln in md.split("**declared comparisons**")[1].splitlines() if ln.startswith("| ")}  # fmt: skip
    assert "| 40.0 | 36.7 | +3.3" in lines["tasar>ba"] and "not resolved" in lines["tasar>ba"]
    lo, hi = got[0]["result"]["ci"]
    assert f"| +3.3 [{100 * lo:+.1f}, {100 * hi:+.1f}] |" in lines["tasar>ba"]
    assert "| 36.7 | 0.0 | +36.7" in lines["ba>transfer-ifgsm"]
    assert (
        "attack > reference" in lines["ba>transfer-ifgsm"]
        and "11 / 0" in lines["ba>transfer-ifgsm"]
    )
    assert "not resolved: no units in common" in lines["mig>ba"]
    # every row of the table, the one without shared units included, has the header's columns
    block = md.split("**declared comparisons**")[1].strip().split("\n\n")[0].splitlines()
    assert len(block) == 2 + len(got) and len({ln.count("|") for ln in block}) == 1
    assert [c["verdict"] for c in got] == [
        "not resolved", "attack > reference", "not resolved", "attack > reference"
    ]  # fmt: skip
    # MI-FGSM fools 25 clips the reference does not and nothing else: none of the 9,999 sign
    # vectors reaches 25, so the clustered p sits at its floor, printed as the bound it is in both
    # tables (11 such clips leave p = 0.0008, above the floor)
    assert "≤ 0.0001" in lines["transfer-mifgsm>transfer-ifgsm"]
    assert "| 0.0008 |" in lines["ba>transfer-ifgsm"]
    ranked = md.split("**transfer attacks compared**")[1].split("**declared comparisons**")[0]
    mi = next(ln for ln in ranked.splitlines() if ln.startswith("| transfer-mifgsm |"))
    ci = next(m for m in board["transfer"] if m["attack"] == "transfer-mifgsm")["vs_reference"][
        "ci"
    ]
    lo, hi = ci
    assert "≤ 0.0001" in mi and f"| +83.3 [{100 * lo:+.1f}, {100 * hi:+.1f}] |" in mi
    assert lo > 0.5  # an interval far from 0, so every factor of its printing shows
    # the McNemar p of 11 / 0 is 2/2^11 ~ 0.00098
    assert "0.00098" in lines["ba>transfer-ifgsm"]
    bad = copy.deepcopy(board)
    bad["transfer_comparisons"][0]["result"]["attack_success"] = 0.0  # below the 1/30 only it fools
    with pytest.raises(DataError, match=r"transfer_comparisons\[0\].result.attack_success"):
        validate_board(bad)
    bad = copy.deepcopy(board)
    bad["transfer_comparisons"][1]["result"]["reference"] = "tasar"
    with pytest.raises(DataError, match=r"transfer_comparisons\[1\].result.reference"):
        validate_board(bad)
    bad = copy.deepcopy(board)
    del bad["transfer_comparisons"][2]["attack"]
    with pytest.raises(DataError, match=r"transfer_comparisons\[2\]"):
        validate_board(bad)
    bad = copy.deepcopy(board)
    bad["transfer_comparisons"][0]["result"]["p_value"] = -1
    with pytest.raises(DataError, match=r"transfer_comparisons\[0\].result.p_value"):
        validate_board(bad)
    cases = [
        # a difference that is not (b - c)/n, even inside a matching interval
        (lambda r: r.update(difference=0.5, ci=[0.4, 0.6]), r"\[1\].result.difference"),
        (lambda r: r.pop("attack_success"), r"\[1\].result"),
        (lambda r: r.update(reference_success=0.5), r"\[1\].result.reference_success"),
        (lambda r: r.update(attack_success=0.2, reference_success=0.2 - 11 / 30),
         r"\[1\].result.reference_success"),
    ]  # fmt: skip
    for mutate, field in cases:
        bad = copy.deepcopy(board)
        mutate(bad["transfer_comparisons"][1]["result"])
        with pytest.raises(DataError, match=r"transfer_comparisons" + field):
            validate_board(bad)
    bad = copy.deepcopy(board)
    bad["transfer_comparisons"][1]["verdict"] = "not resolved"  # the result says otherwise
    with pytest.raises(DataError, match=r"transfer_comparisons\[1\].verdict"):
        validate_board(bad)
    bad = copy.deepcopy(board)
    bad["transfer_comparisons"][2]["threat"] = "linf-eps0.05m"
    with pytest.raises(DataError, match=r"transfer_comparisons\[2\].threat"):
        validate_board(bad)


def test_flags_get_their_own_section():
    rows = cell_rows("k", "pgd", [1, 0], [1, 1], zero_grad_frac=0.9)
    df = frame(rows)
    md = render_markdown(build_board(df, cells_of(df), META))
    section = md.split("## Flags")[1]
    assert "**zero-gradients**" in section and "pgd: 90% of samples" in section
