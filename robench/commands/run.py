"""``robench run``, ``robench results``, ``robench regress`` and ``robench bench``."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from robench.commands.options import out_option, quiet_option, write_board_noting_tracked
from robench.errors import ConfigError


def _board(store: Any, plan: Any) -> dict[str, Any]:
    """The board of ``plan``'s benchmark from ``store``: only the cells of this definition."""
    from robench.report.board import build_board
    from robench.run.harness import board_meta

    keys = {c.key for c in plan.cells}
    frame = store.frame("ok")
    cells = store.cells()
    board = build_board(
        frame[frame["cell_key"].isin(keys)].reset_index(drop=True),
        cells[cells["cell_key"].isin(keys)].reset_index(drop=True),
        {**board_meta(plan), "runs": store.runs().to_dict("records")},
    )
    board["subset"]["ids"] = list(plan.ids)
    return board


def _counts(store: Any, plan: Any) -> dict[str, int]:
    st = store.cell_status({c.key for c in plan.cells})
    return {s: sum(1 for v in st.values() if v == s) for s in ("ok", "invalid", "error")}


def _status_line(store: Any, plan: Any) -> str:
    counts = _counts(store, plan)
    return f"{len(plan.cells)} cells: {counts['ok']} ok, {counts['invalid']} invalid, {counts['error']} error"


def _broken(counts: dict[str, int], allow_invalid: bool = False) -> str | None:
    """Why the run must not pass as a success: an ``error`` cell (an attack crashed or its worker
    died or exited), an ``invalid`` cell (it left its threat model, broke a rule of the harness or
    could not be set up; ``--allow-invalid`` accepts those), or no ``ok`` cell at all."""
    if counts["error"]:
        return f"{counts['error']} cell(s) ended in error (see `robench results DIR`)"
    if counts["invalid"] and not allow_invalid:
        return (
            f"{counts['invalid']} cell(s) ended invalid (see `robench results DIR`; "
            "--allow-invalid accepts them)"
        )
    if not counts["ok"]:
        return "no cell finished ok"
    return None


def _run(
    benchmark: str, out: str | None, workers: int, device: str, quiet: bool, retry_failed: bool
) -> tuple[Any, Any, Any]:
    from robench.run.benchmark import load_benchmark
    from robench.run.executor import run_plan
    from robench.run.harness import prepare

    bench = load_benchmark(benchmark)
    target = Path(out) if out else Path("results") / bench.id
    if not quiet:
        click.echo(f"robench {bench.id}: preparing (data set, subset, cells) -> {target}", err=True)
    plan = prepare(bench, target, device)
    if not quiet:
        click.echo(
            f"robench {bench.id}: {len(plan.cells)} cells on {len(plan.ids)} clips of {plan.data.name}",
            err=True,
        )
    store = run_plan(
        plan, workers=workers, progress=not quiet, argv=sys.argv, retry_failed=retry_failed
    )
    return bench, store, plan


ALLOW_INVALID = click.option(
    "--allow-invalid",
    is_flag=True,
    help="Exit 0 even when cells ended invalid (they still enter no number).",
)
RETRY_FAILED = click.option(
    "--retry-failed",
    is_flag=True,
    help="Re-run invalid cells too (they are re-run anyway when their checkpoints or plugin change).",
)


@click.command("run")
@click.argument("benchmark", required=False, default="quick")
@out_option(
    "Results folder (default results/ID); the board goes to OUT/board/ unless --board-out.",
    file_okay=False,
)
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Worker processes for cells."
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@quiet_option()
@click.option(
    "--board-out",
    type=click.Path(file_okay=False),
    default=None,
    help="Leaderboard folder (default OUT/board with --out, else leaderboards/ID).",
)
@click.option("--no-board", is_flag=True, help="Only fill the results store.")
@ALLOW_INVALID
@RETRY_FAILED
def run_cmd(
    benchmark: str,
    out: str | None,
    workers: int,
    device: str,
    quiet: bool,
    board_out: str | None,
    no_board: bool,
    allow_invalid: bool,
    retry_failed: bool,
) -> None:
    """Run BENCHMARK (a built-in name such as quick/smoke, or a YAML file; default: quick).

    Finished cells are read from the store, so a second run (or one after a crash) only runs what is
    missing. Then the leaderboard is written: to --board-out, else OUT/board/ when --out is given,
    else leaderboards/ID (the committed boards; the files git tracks that change are named). Exit 1
    when a cell ended in error (an attack crashed, or its worker died or exited) or invalid (unless
    --allow-invalid), or no cell finished ok; exit 2 on user errors.
    """
    bench, store, plan = _run(benchmark, out, workers, device, quiet, retry_failed)
    click.echo(f"{bench.id}: {_status_line(store, plan)} -> {store.path}")
    broken = _broken(_counts(store, plan), allow_invalid)
    if not no_board:
        if board_out:
            target = Path(board_out)
        else:
            target = Path(out) / "board" if out else Path("leaderboards") / bench.id
        paths = write_board_noting_tracked(_board(store, plan), target)
        if not quiet:
            click.echo(f"board: {', '.join(str(p) for p in paths)}")
    store.close()
    if broken:
        click.echo(f"robench: {broken}", err=True)
        raise click.exceptions.Exit(1)


@click.command("results")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Export the joined per-sample frame.",
)
@click.option("--all", "all_status", is_flag=True, help="Export invalid/error cells' rows too.")
@click.option(
    "--export",
    "export_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Archive the ok cells and their per-sample rows (JSON lines; gzipped for *.gz).",
)
@click.option(
    "--import",
    "import_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Merge an --export archive into DIRECTORY first (created if needed).",
)
def results_cmd(
    directory: str,
    csv_path: str | None,
    all_status: bool,
    export_path: str | None,
    import_path: str | None,
) -> None:
    """Per-cell summary of a results folder; --csv exports the joined frame (atomically).

    --export / --import carry a store's finished cells between machines and sessions as one text
    file that git can track: a long run resumes elsewhere from an imported archive."""
    import pandas as pd

    from robench.io import atomic_write_text
    from robench.run.archive import export_store, merge_cells, read_archive
    from robench.run.store import Store, store_exists

    if import_path:
        entries = read_archive(import_path)  # a bad archive creates no folder and no store
        with Store(directory, lock=True) as store:
            added, kept = merge_cells(store, entries, import_path)
        click.echo(f"imported {added} cells from {import_path} ({kept} already there)")
    if not store_exists(directory):
        raise ConfigError(
            f"expected a results folder with results.sqlite, got none at {directory} in argument 'DIRECTORY'"
        )
    with Store(directory) as store:
        summary = store.summary()
        if summary.empty:
            click.echo("no cells recorded")
        else:
            cols = [
                "victim",
                "attack",
                "surrogate",
                "threat",
                "seed",
                "status",
                "n",
                "clean_acc",
                "robust_acc",
                "asr",
                "seconds",
            ]
            with pd.option_context(
                "display.width", 200, "display.max_rows", 10000, "display.max_colwidth", 40
            ):
                click.echo(summary[cols].to_string(index=False))
            bad = summary[summary["status"] != "ok"]
            for r in bad.itertuples(index=False):
                click.echo(
                    f"{r.status}: {r.victim} {r.attack} {r.surrogate or ''} {r.threat} seed {r.seed}: {r.error}"
                )
        if csv_path:
            frame = store.frame(None if all_status else "ok")
            atomic_write_text(csv_path, frame.to_csv(index=False))
            click.echo(f"wrote {len(frame)} rows to {csv_path}")
        if export_path:
            n = export_store(store, export_path)
            click.echo(f"archived {n} cells to {export_path}")


@click.command("regress")
@click.argument("benchmark")
@click.option(
    "--baseline", required=True, type=click.Path(), help="Baseline board.json (or its folder)."
)
@click.option(
    "--tolerance",
    type=float,
    default=0.0,
    show_default=True,
    help="Widen the new 95% interval by this much.",
)
@out_option(
    "Results folder, board in OUT/board/ (default: a temporary one, no board kept).",
    file_okay=False,
)
@click.option("--workers", type=int, default=1, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@quiet_option()
@click.option(
    "--only-drops",
    is_flag=True,
    help="Fail only when robustness falls (an improvement beyond the interval is only reported).",
)
@ALLOW_INVALID
@RETRY_FAILED
def regress_cmd(
    benchmark: str,
    baseline: str,
    tolerance: float,
    out: str | None,
    workers: int,
    device: str,
    quiet: bool,
    only_drops: bool,
    allow_invalid: bool,
    retry_failed: bool,
) -> None:
    """Re-run BENCHMARK and fail (exit 1) when a robust accuracy moved against --baseline.

    A value has moved only when the baseline lies outside the new 95% Wilson interval widened by
    --tolerance (the interval decides, not a bare difference); by default both directions fail
    (a weakened attack shows up as higher robustness), --only-drops fails only on a fall. A baseline
    entry missing from the new board also fails, and so does an error or invalid cell (unless
    --allow-invalid) as in `robench run`. Exit 2 on user errors.
    """
    from robench.report.board import read_board
    from robench.report.regress import compare_boards

    if tolerance < 0:
        raise ConfigError(f"expected a tolerance >= 0, got {tolerance} in option '--tolerance'")
    base = read_board(baseline)
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="robench-regress-")
        out = tmp.name
    try:
        bench, store, plan = _run(benchmark, out, workers, device, quiet, retry_failed)
        base_id = (base.get("benchmark") or {}).get("id")
        if base_id and base_id != bench.id:
            raise ConfigError(
                f"expected a baseline board of benchmark {bench.id!r}, got {base_id!r} in option '--baseline'"
            )
        new = _board(store, plan)
        broken = _broken(_counts(store, plan), allow_invalid)
        store.close()
        if tmp is None:
            write_board_noting_tracked(new, Path(out) / "board")
        if (base.get("subset") or {}).get("hash") not in (None, new["subset"]["hash"]):
            click.echo("warning: the baseline was computed on a different sample subset", err=True)
        report = compare_boards(base, new, tolerance, fail_on_improvement=not only_drops)
        click.echo(report.format())
    finally:
        if tmp is not None:
            tmp.cleanup()
    if broken:
        click.echo(f"robench: {broken}", err=True)
    if report.failed or broken:
        raise click.exceptions.Exit(1)


@click.command("bench")
@click.option("--only", "only", multiple=True, help="Run only these measurements (repeatable).")
def bench_cmd(only: tuple[str, ...]) -> None:
    """Performance ratios measured side by side (e.g. harness overhead vs bare forward+backward)."""
    from robench.run.bench import BENCHMARKS, run_benchmarks

    unknown = [o for o in only if o not in BENCHMARKS]
    if unknown:
        raise ConfigError(
            f"expected one of {sorted(BENCHMARKS)}, got {unknown[0]!r} in option '--only'"
        )
    for name, res in run_benchmarks(list(only) or None):
        ratio = res.get("ratio")
        goal = f" (goal {res['goal']})" if res.get("goal") else ""
        click.echo(f"{name}: ratio {ratio:.3f}{goal}  {res.get('detail', '')}")


COMMANDS = [run_cmd, results_cmd, regress_cmd, bench_cmd]
