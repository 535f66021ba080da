"""Regression comparison of two boards (pure, hand-built boards) and the `robench regress` CLI."""

from __future__ import annotations

import copy
import json

import pytest
from test_harness import make_victims, write_bench

from robench.cli import main
from robench.errors import DataError
from robench.report.regress import compare_boards, wilson


def P(value, n=100, ci=None):
    lo, hi = wilson(value, n) if ci is None else ci
    return {"value": value, "n": n, "ci": [lo, hi]}


def board(entries):
    return {"schema": "robench.board/1", "entries": entries}


def entry(victim="v", threat="linf-eps0.01m", sha="aaa", attacks=None, worst=0.3, defense="none"):
    attacks = attacks if attacks is not None else {"pgd": 0.4, "fgsm": 0.6}
    return {
        "victim": victim,
        "defense": defense,
        "threat": threat,
        "weights_sha256": sha,
        "clean_accuracy": P(0.9),
        "attacks": {
            k: {"knowledge": "white-box", "robust_accuracy": P(v), "success_rate": P(0.5)}
            for k, v in attacks.items()
        },
        "worst_case": P(worst),
    }


def verdicts(report):
    return {r.entry: r.verdict for r in report.rows}


def test_wilson_matches_the_formula():
    lo, hi = wilson(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson(0.0, 0) == (0.0, 1.0)


def test_identical_boards_pass():
    b = board([entry(), entry(victim="w")])
    r = compare_boards(b, copy.deepcopy(b))
    assert not r.failed and r.exit_code == 0
    assert set(verdicts(r).values()) == {"ok"} and len(r.rows) == 6


def test_the_interval_decides_not_the_difference():
    base = board([entry(attacks={"pgd": 0.40}, worst=0.30)])
    # new pgd 0.32 on n=100: Wilson [0.237, 0.416] still holds 0.40 -> ok despite a drop of 0.08
    # new worst 0.15 on n=100: Wilson [0.093, 0.233] excludes 0.30 -> regression
    new = board([entry(attacks={"pgd": 0.32}, worst=0.15)])
    r = compare_boards(base, new)
    v = verdicts(r)
    assert v["v / linf-eps0.01m / pgd"] == "ok"
    assert v["v / linf-eps0.01m / worst-case"] == "regression"
    assert r.failed and r.exit_code == 1
    # the same drop on n=1000 is outside the narrower interval
    new_big = board(
        [
            {
                **entry(attacks={"pgd": 0.32}),
                "attacks": {"pgd": {"knowledge": "white-box", "robust_accuracy": P(0.32, n=1000)}},
            }
        ]
    )
    assert verdicts(compare_boards(base, new_big))["v / linf-eps0.01m / pgd"] == "regression"


def test_tolerance_widens_the_interval():
    base = board([entry(attacks={"pgd": 0.40}, worst=0.30)])
    new = board([entry(attacks={"pgd": 0.40}, worst=0.15)])
    hi = P(0.15)["ci"][1]
    assert compare_boards(base, new, tolerance=0.0).failed
    assert not compare_boards(base, new, tolerance=0.30 - hi + 1e-6).failed
    with pytest.raises(DataError, match="tolerance"):
        compare_boards(base, new, tolerance=-0.1)


def test_improvement_fails_two_sided_and_is_only_reported_with_only_drops():
    base = board([entry(attacks={"pgd": 0.10}, worst=0.10)])
    new = board([entry(attacks={"pgd": 0.60}, worst=0.60)])
    r = compare_boards(base, new)
    assert set(verdicts(r).values()) == {"improved"} and r.failed and r.exit_code == 1
    assert not compare_boards(base, new, fail_on_improvement=False).failed


def test_missing_entry_or_attack_fails_and_new_ones_are_listed():
    base = board([entry(), entry(victim="w")])
    new = board([entry(attacks={"pgd": 0.4}), entry(victim="x")])
    v = verdicts(compare_boards(base, new))
    assert v["w / linf-eps0.01m"] == "missing"
    assert v["v / linf-eps0.01m / fgsm"] == "missing"
    assert v["x / linf-eps0.01m"] == "new"
    assert compare_boards(base, new).failed


def test_changed_weights_is_a_warning_row():
    base = board([entry(sha="aaa")])
    new = board([entry(sha="bbb")])
    r = compare_boards(base, new)
    assert verdicts(r)["v / linf-eps0.01m"] == "weights-changed" and not r.failed
    text = r.format()
    assert "weights-changed" in text and "PASSED" in text and "interval" in text


def test_defended_and_per_threat_entries_are_distinct():
    base = board(
        [
            entry(threat="linf-eps0.01m"),
            entry(threat="linf-eps0.02m", worst=0.1),
            entry(defense="jpeg", worst=0.5),
        ]
    )
    new = copy.deepcopy(base)
    new["entries"][2]["worst_case"] = P(0.2)
    v = verdicts(compare_boards(base, new))
    assert v["v+jpeg / linf-eps0.01m / worst-case"] == "regression"
    assert v["v / linf-eps0.02m / worst-case"] == "ok"


def test_malformed_board_is_a_data_error():
    with pytest.raises(DataError, match="entries"):
        compare_boards({"entries": 3}, board([]))


def test_cli_run_results_regress(tmp_path, capsys):
    victims = make_victims(tmp_path)
    p = write_bench(tmp_path, victims, ["fgsm", {"name": "bim", "params": {"steps": 2}}])
    out, boards = tmp_path / "res", tmp_path / "boards"
    assert main(["run", str(p), "--out", str(out), "--board-out", str(boards), "--quiet"]) == 0
    assert (boards / "board.json").exists()
    b = json.loads((boards / "board.json").read_text())
    assert len(b["subset"]["ids"]) == 16 and {e["victim"] for e in b["entries"]} == {"v0", "v1"}
    # a second run finishes from the store
    assert main(["run", str(p), "--out", str(out), "--no-board", "--quiet"]) == 0
    assert "4 cells: 4 ok" in capsys.readouterr().out
    csv = tmp_path / "frame.csv"
    assert main(["results", str(out), "--csv", str(csv)]) == 0
    assert len(csv.read_text().splitlines()) == 1 + 4 * 16
    assert "bim" in capsys.readouterr().out
    # same benchmark again: no regression (exit 0); a baseline claiming more robustness fails (exit 1)
    assert (
        main(
            [
                "regress",
                str(p),
                "--baseline",
                str(boards / "board.json"),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "PASSED" in capsys.readouterr().out
    for e in b["entries"]:
        e["worst_case"] = {"value": 1.0, "n": 16, "ci": [0.8, 1.0]}
    worse = tmp_path / "baseline.json"
    worse.write_text(json.dumps(b))
    assert main(["regress", str(p), "--baseline", str(worse), "--out", str(out), "--quiet"]) == 1
    assert "regression" in capsys.readouterr().out
    assert main(["regress", str(p), "--baseline", str(tmp_path / "nope.json"), "--quiet"]) == 2
    assert main(["results", str(tmp_path / "empty")]) == 2


def test_regress_fails_on_a_deliberately_weakened_victim(tmp_path, capsys):
    """Re-train nothing: replace v0's checkpoint by a copy whose classifier is scrambled (same
    architecture, new sha256) and the gate must fail; the untouched victims pass."""
    import torch

    from robench.zoo.checkpoint import load_victim, save_victim

    victims = make_victims(tmp_path)
    # a small budget, so that the fitted tiny victims keep most of their accuracy under attack
    p = write_bench(tmp_path, victims, ["noise", "fgsm"], threats=[{"norm": "linf", "eps": 0.0005}])
    boards = tmp_path / "boards"
    assert (
        main(["run", str(p), "--out", str(tmp_path / "a"), "--board-out", str(boards), "--quiet"])
        == 0
    )
    args = ["regress", str(p), "--baseline", str(boards / "board.json"), "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    weak = load_victim(victims[0])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        weak.fcn.weight.copy_(
            torch.randn(weak.fcn.weight.shape, generator=g) * weak.fcn.weight.std()
        )
    save_victim(weak, victims[0])
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "regression" in out and "weights-changed" in out and "FAILED" in out
