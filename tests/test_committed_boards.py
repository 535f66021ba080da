"""Every committed board under ``leaderboards/`` is a valid board of the built-in benchmark its
folder names, at that benchmark's version, and its markdown and CSV are what its JSON renders to
(nobody edited a number by hand after the run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from robench.report.board import read_board
from robench.report.render import render_csv, render_markdown
from robench.run.benchmark import builtin_benchmarks, load_benchmark

ROOT = Path(__file__).resolve().parents[1] / "leaderboards"
BOARDS = sorted(p.parent for p in ROOT.glob("*/board.json"))


def test_the_committed_boards_include_the_defenses_board():
    assert {p.name for p in BOARDS} >= {"quick", "smoke", "defenses"}


@pytest.mark.parametrize("folder", BOARDS, ids=lambda p: p.name)
def test_committed_board_is_valid_and_renders_to_its_files(folder):
    board = read_board(folder)
    assert board["benchmark"]["id"] == folder.name
    assert folder.name in builtin_benchmarks()
    assert board["benchmark"]["version"] == load_benchmark(folder.name).version
    assert (folder / "board.md").read_text() == render_markdown(board)
    assert (folder / "board.csv").read_text() == render_csv(board)
    assert (folder / "board.html").is_file()
