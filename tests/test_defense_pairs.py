"""Defended rows paired with their undefended base on the same clips (robench.report.defended)."""

from __future__ import annotations

import re

import pandas as pd
from test_aggregate import cell_rows, frame

from robench.report.aggregate import mcnemar_p
from robench.report.board import build_board
from robench.report.defended import defense_pairs, p_text, undefended_bases
from robench.report.render import render_markdown

T = "linf-eps0.01m"
PLAIN = {"source": "m", "defense": "none", "defense_training": None}
VICTIMS = {
    "m": PLAIN,
    "m-smooth+temporal-smoothing": {"source": "m", "defense": "temporal-smoothing"},
    "m.pgd-at": {"source": "m.pgd-at", "defense": "pgd-at", "defense_training": {"base": "m"}},
    "other+beat": {"source": "other", "defense": "beat"},  # no undefended 'other' on the board
    # a trained checkpoint is defended by its recorded training even where its defense reads none
    "m.trades": {"source": "m.trades", "defense": "none", "defense_training": {"base": "m"}},
}


def test_bases_are_the_same_source_or_the_recorded_base_and_never_a_plain_row():
    assert undefended_bases(VICTIMS) == {
        "m-smooth+temporal-smoothing": "m", "m.pgd-at": "m", "m.trades": "m"
    }  # fmt: skip
    assert undefended_bases({"m": PLAIN}) == {}


def _pair_frame(threat: str = T) -> pd.DataFrame:
    # 6 clips, label 0. Undefended: pgd leaves {0, 1}; transfer leaves {0, 1, 2, 3}.
    # Defended: pgd leaves {0, 2, 3, 4}; transfer leaves {0, 2, 3, 4, 5}; clip 5 is wrong
    # clean for the undefended model. A diagonal transfer cell on the defended row fools all.
    kw = {"threat": threat}
    return frame(
        cell_rows("u1", "pgd", [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0], victim="m", **kw),
        cell_rows("u2", "transfer-ifgsm", [0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 1, 0], victim="m",
                  knowledge="transfer", surrogate="s", **kw),
        cell_rows("d1", "pgd", [0, 1, 0, 0, 0, 1], [1] * 6, victim="m-smooth",
                  defense="temporal-smoothing", **kw),
        cell_rows("d2", "transfer-ifgsm", [0, 1, 0, 0, 0, 0], [1] * 6, victim="m-smooth",
                  defense="temporal-smoothing", knowledge="transfer", surrogate="s", **kw),
        cell_rows("d3", "transfer-ifgsm", [1] * 6, [1] * 6, victim="m-smooth",
                  defense="temporal-smoothing", knowledge="transfer", surrogate="m-smooth", **kw),
    )  # fmt: skip


def test_pairs_count_clips_robust_on_one_side_only_per_attack_and_worst_case():
    pairs = defense_pairs(_pair_frame(), VICTIMS, {T})
    by = {p["attack"]: p for p in pairs}
    assert [p["attack"] for p in pairs] == ["worst-case", "pgd", "transfer-ifgsm<-s"]
    pgd = by["pgd"]
    assert (pgd["victim"], pgd["undefended"], pgd["n"]) == ("m-smooth+temporal-smoothing", "m", 6)
    assert (pgd["only_defended"], pgd["only_undefended"]) == (3, 1)  # {2, 3, 4} vs {1}
    assert pgd["defended_robust"]["value"] == 4 / 6 and pgd["undefended_robust"]["value"] == 2 / 6
    assert pgd["difference"] == (3 - 1) / 6 and pgd["p_mcnemar"] == mcnemar_p(3, 1)
    tr = by["transfer-ifgsm<-s"]  # the diagonal cell d3 (surrogate = victim) never enters
    assert (tr["only_defended"], tr["only_undefended"]) == (2, 1)  # {4, 5} vs {1}
    worst = by["worst-case"]  # defended {0, 2, 3, 4}, undefended {0, 1}
    assert worst["suite"] == ["pgd", "transfer-ifgsm<-s"]
    assert (worst["only_defended"], worst["only_undefended"], worst["n"]) == (3, 1, 6)


def test_only_primary_threats_and_clips_scored_in_every_cell_are_paired():
    assert defense_pairs(_pair_frame("linf-eps0.02m"), VICTIMS, {T}) == []
    df = _pair_frame()
    df = df[~((df["cell_key"] == "u1") & (df["sample_id"] == "s01"))]  # s01 missing from u1
    by = {p["attack"]: p for p in defense_pairs(df, VICTIMS, {T})}
    assert by["pgd"]["n"] == 5 and by["pgd"]["only_undefended"] == 0
    assert by["worst-case"]["n"] == 5 and by["transfer-ifgsm<-s"]["n"] == 6
    assert defense_pairs(df, {"m": PLAIN}, {T}) == []
    apart = df.assign(sample_id=df["sample_id"].where(df["victim"] == "m", "x" + df["sample_id"]))
    assert defense_pairs(apart, VICTIMS, {T}) == []  # no clip scored on both rows


def test_a_clip_fooled_by_the_cell_of_any_seed_is_not_robust_in_the_worst_case():
    df = frame(
        cell_rows("u1", "pgd", [0, 0], [1, 1], victim="m", seed=0),
        cell_rows("u2", "pgd", [0, 0], [1, 1], victim="m", seed=1),
        cell_rows("d1", "pgd", [0, 0], [1, 1], victim="m-smooth", defense="temporal-smoothing"),
        cell_rows("d2", "pgd", [1, 0], [1, 1], victim="m-smooth", defense="temporal-smoothing",
                  seed=1),
    )  # fmt: skip
    w = defense_pairs(df, VICTIMS, {T})[0]
    assert w["attack"] == "worst-case" and len(w["suite"]) == 2  # one attack key per seed
    assert (w["only_defended"], w["only_undefended"], w["n"]) == (0, 1, 2)


def test_the_board_carries_the_pairs_only_when_there_are_some_and_renders_them():
    df = _pair_frame()
    cells = df.drop_duplicates("cell_key")[["cell_key", "status"]]
    meta = {"victims": VICTIMS, "threat_models": [T]}
    board = build_board(df, cells, meta)
    assert [p["attack"] for p in board["defense_pairs"]][:2] == ["worst-case", "pgd"]
    md = render_markdown(board)
    assert "## Defended vs undefended, paired on the same clips" in md
    assert "| m-smooth+temporal-smoothing | m | pgd | 66.7" in md and "| 3 / 1 |" in md
    plain = build_board(df[df["victim"] == "m"], cells, {"victims": {"m": PLAIN}})
    assert "defense_pairs" not in plain and "paired on the same clips" not in render_markdown(plain)


def test_p_values_the_board_rounds_to_zero_read_as_a_bound():
    assert p_text(0.0) == "< 1e-06" and p_text(0.0386) == "0.039"


def test_a_malformed_pair_is_refused_naming_its_field():
    import copy

    import pytest

    from robench.errors import DataError
    from robench.report.schema import validate_board

    df = _pair_frame()
    cells = df.drop_duplicates("cell_key")[["cell_key", "status"]]
    board = build_board(df, cells, {"victims": VICTIMS, "threat_models": [T]})
    validate_board(board)
    for path, value, field in [
        (("n",), 0, "defense_pairs[1].n"),
        (("only_defended",), 9, "defense_pairs[1].n"),
        (("difference",), 0.5, "defense_pairs[1].difference"),
        (("p_mcnemar",), 1.5, "defense_pairs[1].p_mcnemar"),
        (("defended_robust", "n"), 5, "defense_pairs[1].defended_robust.n"),
        (("only_undefended",), -1, "defense_pairs[1].only_undefended"),
        (("victim",), 3, "defense_pairs[1].victim"),
    ]:
        bad = copy.deepcopy(board)
        target = bad["defense_pairs"][1]
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
        with pytest.raises(DataError, match=re.escape(field)):
            validate_board(bad)
