"""What every command does the same way: ``-o/--out`` (where a command writes), ``-q/--quiet`` (no
progress bar, no output lines but the result and errors), and writing a board that names the files
git tracks it changed (nothing tracked is overwritten silently)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click


def out_option(
    help: str, *, required: bool = False, file_okay: bool = True, dir_okay: bool = True
) -> Callable[[Any], Any]:
    """``-o/--out PATH``; a command writes nothing outside it (unless another option says so)."""
    return click.option(
        "-o",
        "--out",
        "out",
        required=required,
        default=None,
        type=click.Path(file_okay=file_okay, dir_okay=dir_okay),
        help=help,
    )


def quiet_option(
    help: str = "no progress bar, no output but the result and errors",
) -> Callable[[Any], Any]:
    """``-q/--quiet``."""
    return click.option("-q", "--quiet", "quiet", is_flag=True, help=help)


@contextlib.contextmanager
def noting_tracked(folder: Path) -> Iterator[None]:
    """Name on stderr, after the block, every file under ``folder`` that git tracks and the block
    changed (nothing tracked is overwritten silently)."""
    from robench.io import tracked_files

    tracked = tracked_files(folder)
    before = {p: p.read_bytes() for p in tracked if p.exists()}
    yield
    changed = sorted(
        str(p) for p in tracked if before.get(p) != (p.read_bytes() if p.exists() else None)
    )
    if changed:
        click.echo(
            f"robench: note: updated {len(changed)} file(s) tracked by git: {', '.join(changed)} "
            "(`git diff` shows the change)",
            err=True,
        )


def write_board_noting_tracked(board: dict[str, Any], target: Path) -> list[Path]:
    """Write the board into ``target``, naming the tracked files it changed."""
    from robench.report.board import write_board

    with noting_tracked(target):
        return write_board(board, target)
