"""``robench board DIR --out FOLDER`` and ``robench show DIR --sample ID --attack NAME``."""

from __future__ import annotations

from pathlib import Path

import click

from robench.commands.options import out_option, quiet_option, write_board_noting_tracked


@click.command("board")
@click.argument("results_dir", type=click.Path(file_okay=False))
@out_option("output folder, e.g. leaderboards/quick", required=True, file_okay=False)
@click.option(
    "--benchmark", default=None, help="benchmark id, when the results folder holds several"
)
@click.option(
    "--definition",
    default=None,
    help="benchmark name or YAML: keep only the cells of this definition (drops stale cells) "
    "and take its declared comparisons",
)
@quiet_option("print nothing but errors")
def board_cmd(
    results_dir: str, out: str, benchmark: str | None, definition: str | None, quiet: bool
) -> None:
    """Aggregate RESULTS_DIR/results.sqlite into board.json, .md, .csv, .html and figures in --out.

    Per (victim, defense, threat model): clean accuracy, robust accuracy and success rate of every
    attack, AutoAttack-style per-sample worst case (95% Wilson intervals), flags; transfer matrices
    and robust accuracy against eps. Invalid and failed cells are listed and enter no number.
    """
    from robench.report.board import board_from_store

    keys, meta = None, None
    if definition is not None:
        from robench.run.benchmark import load_benchmark
        from robench.run.harness import prepare

        bench = load_benchmark(definition)
        keys = {c.key for c in prepare(bench, results_dir).cells}
        meta = {"comparisons": [list(p) for p in bench.comparisons]}  # the definition's own
    board = board_from_store(results_dir, meta, benchmark=benchmark, keys=keys)
    paths = write_board_noting_tracked(board, Path(out))
    if not quiet:
        n_flags = sum(len(e["flags"]) for e in board["entries"])
        click.echo(
            f"board {board['benchmark']['id']}: {len(board['entries'])} entries, {n_flags} flag(s), "
            f"{len(board['invalid_cells'])} invalid/failed cell(s)"
        )
        for p in paths:
            click.echo(f"wrote {p}")


@click.command("show")
@click.argument("results_dir", type=click.Path(file_okay=False))
@click.option(
    "--sample", "sample_id", required=True, help="sample id (see the store's samples table)"
)
@click.option("--attack", required=True, help="attack id, or ATTACK<-SURROGATE for a transfer cell")
@click.option("--victim", default=None)
@click.option("--threat", default=None, help="threat-model name, e.g. linf-eps0.01m")
@click.option("--seed", type=int, default=None)
@click.option(
    "-o",
    "--out",
    "out",
    default=None,
    type=click.Path(dir_okay=False),
    help="output prefix (writes PREFIX.gif and PREFIX.png); default RESULTS_DIR/show/SAMPLE-ATTACK",
)
@click.option("--frames", type=int, default=6, show_default=True, help="frames in the PNG strip")
@click.option("--view", type=click.Choice(["front", "3d"]), default="front", show_default=True)
@quiet_option("no progress bar, no output lines")
def show_cmd(results_dir: str, sample_id: str, attack: str, victim: str | None, threat: str | None,
             seed: int | None, out: str | None, frames: int, view: str, quiet: bool) -> None:  # fmt: skip
    """Render the clean and adversarial skeletons of one sample side by side (GIF + PNG strip)."""
    from robench.report.show import load_pair, render_pair

    pair = load_pair(results_dir, sample_id, attack, victim=victim, threat=threat, seed=seed)
    if out is None:
        safe = "".join(
            ch if ch.isalnum() or ch in "-_." else "_"
            for ch in f"{sample_id}-{attack}-{pair.cell['victim']}"
        )
        out = str(Path(results_dir) / "show" / safe)
    gif, png = render_pair(pair.x_clean, pair.x_adv, pair.topology, pair.title, out, unit=pair.unit,
                           frames=frames, view=view, progress=not quiet)  # fmt: skip
    if not quiet:
        click.echo(f"wrote {gif}\nwrote {png}")


COMMANDS = [board_cmd, show_cmd]
