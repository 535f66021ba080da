"""Executors: run the pending cells of a prepared plan into the store, in this process or in a pool.

The parent process alone writes the store (one transaction per cell); a killed run resumes and skips
finished cells (status ``ok`` or ``invalid``); ``error`` cells are retried.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from robench.errors import ConfigError
from robench.run.cells import Cell
from robench.run.harness import Plan, prepare, write_meta
from robench.run.spec import Benchmark
from robench.run.store import Store


def pending(plan: Plan, store: Store) -> list[Cell]:
    """Cells without an ``ok``/``invalid`` row in the store (``error`` cells are retried)."""
    done = store.cell_status(c.key for c in plan.cells)
    return [c for c in plan.cells if done.get(c.key) not in ("ok", "invalid")]


def run_benchmark(
    bench: Benchmark,
    out_dir: str | Path,
    workers: int = 1,
    device: str = "cpu",
    progress: bool = True,
    argv: list[str] | None = None,
) -> Store:
    """Run every unfinished cell of ``bench`` into ``DIR/results.sqlite``; returns the open Store.

    ``workers`` > 1 runs the cells in that many processes (transfer cells sharing a generation stay
    in one process); each process uses ``max(1, cpu_count // workers)`` torch threads. The rows do not
    depend on the split (each cell's generator is seeded from its own key).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"expected a positive integer, got {workers!r} in option '--workers'")
    return run_plan(prepare(bench, out_dir, device), workers, progress, argv)


def run_plan(
    plan: Plan, workers: int = 1, progress: bool = True, argv: list[str] | None = None
) -> Store:
    """:func:`run_benchmark` on an already prepared :class:`Plan` (the CLI keeps the plan for the
    board)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"expected a positive integer, got {workers!r} in option '--workers'")
    bench = plan.bench
    write_meta(plan)
    store = Store(plan.out_dir)
    todo = pending(plan, store)
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
                bar.set_postfix_str(_label(cell), refresh=False)
                rec = plan.run_cell(cell)
                store.write_cell(dict(rec["cell"], run_id=run_id), rec["samples"])
                bar.update(1)
        else:
            _run_parallel(plan, todo, workers, str(plan.device), store, run_id, bar)
    finally:
        bar.close()
    store.finish_run(run_id)
    return store


def _label(cell: Cell) -> str:
    via = f"<-{cell.surrogate.id}" if cell.surrogate else ""
    return f"{cell.victim.key} {cell.attack.id}{via} {cell.threat.name} s{cell.seed}"


# ---------------------------------------------------------------------- worker processes
_WORKER_PLAN: Plan | None = None


def _worker_init(bench: Benchmark, out_dir: str, device: str, workers: int) -> None:
    global _WORKER_PLAN
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    _WORKER_PLAN = prepare(bench, out_dir, device)


def _worker_unit(keys: list[str]) -> list[dict[str, Any]]:
    """Run the cells ``keys`` (one cell, or every cell of one transfer generation) in this worker."""
    plan = _WORKER_PLAN
    by_key = {c.key: c for c in plan.cells}
    out = []
    for k in keys:
        rec = plan.run_cell(by_key[k])
        if rec["samples"] is not None:
            rec["samples"] = {c: _plain(v) for c, v in rec["samples"].items()}
        out.append(rec)
    return out


def _plain(v: Any) -> Any:
    return v.detach().cpu() if isinstance(v, torch.Tensor) else v


def _run_parallel(
    plan: Plan, todo: list[Cell], workers: int, device: str, store: Store, run_id: int, bar: Any
) -> None:
    """Cells in ``workers`` spawned processes; the parent alone writes the store (one transaction per
    cell). A transfer generation and its victim cells form one unit so it is generated once."""
    import multiprocessing as mp

    units: dict[str, list[str]] = {}
    for c in todo:
        units.setdefault(c.gen_key or c.key, []).append(c.key)
    ctx = mp.get_context("spawn")
    with ctx.Pool(
        workers, initializer=_worker_init, initargs=(plan.bench, str(plan.out_dir), device, workers)
    ) as pool:
        for recs in pool.imap_unordered(_worker_unit, list(units.values())):
            for rec in recs:
                store.write_cell(dict(rec["cell"], run_id=run_id), rec["samples"])
                bar.update(1)
