"""Executors: run the pending cells of a prepared plan into the store, in this process or in a pool.

The parent process alone writes the store (one transaction per cell); a killed run resumes and skips
finished cells (status ``ok`` or ``invalid``); ``error`` cells are retried.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from robench.errors import ConfigError
from robench.run.cells import Cell
from robench.run.harness import Plan, prepare, write_meta
from robench.run.spec import Benchmark
from robench.run.store import Store
from robench.run.worker import tune_malloc


def pending(plan: Plan, store: Store, retry_failed: bool = False) -> list[Cell]:
    """The cells to run: every cell without an ``ok`` row, except an ``invalid`` one whose inputs
    (:func:`robench.run.cells.inputs_sha256`) are unchanged, unless ``retry_failed``. ``error``
    cells are always retried; a finished ``ok`` cell never is."""
    keys = [c.key for c in plan.cells]
    done = store.cell_status(keys)
    inputs = store.cell_inputs(keys)
    out = []
    for c in plan.cells:
        status = done.get(c.key)
        if status == "ok":
            continue
        if status == "invalid" and not retry_failed and inputs.get(c.key) == plan.inputs_sha256(c):
            continue
        out.append(c)
    return out


def run_benchmark(
    bench: Benchmark,
    out_dir: str | Path,
    workers: int = 1,
    device: str = "cpu",
    progress: bool = True,
    argv: list[str] | None = None,
    retry_failed: bool = False,
) -> Store:
    """Run every unfinished cell of ``bench`` into ``DIR/results.sqlite``; returns the open Store.

    Every attack runs in a worker process of its own (:mod:`robench.run.worker`); ``workers`` > 1
    runs that many cells at a time (transfer cells sharing a generation stay together), each worker
    with ``max(1, cpu_count // workers)`` torch threads. The rows do not depend on the split (each
    cell's generator is seeded from its own key). Every victim is loaded (sha256-verified) before
    any cell runs: a checkpoint that fails to load is a one-line error, not a board of invalid
    cells. ``retry_failed`` re-runs every ``invalid`` cell (see :func:`pending`).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"expected a positive integer, got {workers!r} in option '--workers'")
    return run_plan(prepare(bench, out_dir, device), workers, progress, argv, retry_failed)


def run_plan(
    plan: Plan,
    workers: int = 1,
    progress: bool = True,
    argv: list[str] | None = None,
    retry_failed: bool = False,
) -> Store:
    """:func:`run_benchmark` on an already prepared :class:`Plan` (the CLI keeps the plan for the
    board)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"expected a positive integer, got {workers!r} in option '--workers'")
    bench = plan.bench
    tune_malloc()  # the harness's scoring gets the workers' allocator settings
    for spec in {v.key: v for v in bench.victims}.values():
        plan.model(spec)  # load and verify every victim: a bad checkpoint stops here (exit 2)
    store = Store(plan.out_dir, lock=True)
    try:
        # held exclusively while cells run: this process is the store's only reader and writer
        with store.exclusive():
            write_meta(plan)
            todo = pending(plan, store, retry_failed)
            run_id = store.begin_run(bench.id, sys.argv if argv is None else argv)
            bar = tqdm(
                total=len(plan.cells),
                initial=len(plan.cells) - len(todo),
                desc=f"robench {bench.id}",
                unit="cell",
                disable=not progress,
                dynamic_ncols=True,
            )
            try:
                if workers == 1 or len(todo) <= 1:
                    for cell in todo:
                        bar.set_postfix_str(f"running {_label(cell)}", refresh=True)
                        rec = plan.run_cell(cell)
                        store.write_cell(dict(rec["cell"], run_id=run_id), rec["samples"])
                        bar.update(1)
                else:
                    _run_parallel(plan, todo, workers, store, run_id, bar)
                store.finish_run(run_id)
            finally:
                bar.close()
    except BaseException:
        store.close()
        raise
    return store


def _label(cell: Cell) -> str:
    via = f"<-{cell.surrogate_id}" if cell.surrogates else ""
    return f"{cell.victim.key} {cell.attack.id}{via} {cell.threat.name} s{cell.seed}"


def _run_parallel(
    plan: Plan, todo: list[Cell], workers: int, store: Store, run_id: int, bar: Any
) -> None:
    """Cells ``workers`` at a time: each unit (one cell, or a transfer generation with its victim
    cells, so it is generated once) is driven by a thread of this process, whose attack runs in its
    own worker process with ``max(1, cpu_count // workers)`` torch threads. This process alone
    writes the store (one transaction per cell), in the main thread."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    units: dict[str, list[Cell]] = {}
    for c in todo:
        units.setdefault(c.gen_key or c.key, []).append(c)
    plan.threads = max(1, (os.cpu_count() or 1) // workers)

    running: dict[str, str] = {}

    def unit(cells: list[Cell]) -> list[dict[str, Any]]:
        out = []
        for c in cells:
            running[cells[0].key] = _label(c)
            bar.set_postfix_str("running " + "; ".join(sorted(running.values())), refresh=True)
            out.append(plan.run_cell(c))
        running.pop(cells[0].key, None)
        return out

    with ThreadPoolExecutor(workers) as pool:
        for fut in as_completed([pool.submit(unit, u) for u in units.values()]):
            for rec in fut.result():
                store.write_cell(dict(rec["cell"], run_id=run_id), rec["samples"])
                bar.update(1)
