"""A run killed with SIGKILL mid-matrix resumes to exactly the rows of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from test_harness import make_victims, rows, write_bench

from robench.run.benchmark import load_benchmark
from robench.run.executor import run_benchmark

# the child slows every cell down a little so the kill lands mid-matrix, not after the last cell
CHILD = """
import sys, time
import robench.run.harness as h
run_cell = h.Plan.run_cell
def slow(self, cell):
    time.sleep(0.1)
    return run_cell(self, cell)
h.Plan.run_cell = slow
from robench.run.benchmark import load_benchmark
from robench.run.executor import run_benchmark
run_benchmark(load_benchmark(sys.argv[1]), sys.argv[2], progress=False)
"""


def _finished(db) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM cells WHERE status = 'ok'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_sigkill_mid_matrix_then_resume(tmp_path):
    victims = make_victims(tmp_path)
    attacks = [
        "fgsm",
        "noise",
        {"name": "bim", "params": {"steps": 2}},
        {"name": "transfer-ifgsm", "params": {"steps": 2}},
    ]
    p = write_bench(tmp_path, victims, attacks, threats=[{"norm": "linf", "eps": [0.01, 0.02]}])
    total = 3 * 2 * 2 + 2 * 2 * 2
    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(p), str(killed)], env=env, stderr=subprocess.PIPE
    )
    db = killed / "results.sqlite"
    deadline = time.monotonic() + 60
    cache = killed / "cache"
    try:  # the store is locked while the run holds it: watch the examples each cell saves
        while len(list(cache.glob("adv-*.pt"))) < 2:
            assert child.poll() is None, (
                f"the run ended before it could be killed: {child.stderr.read().decode()[-500:]}"
            )
            assert time.monotonic() < deadline, "no cell finished within 60 s"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    done = _finished(db)
    assert 0 < done < total, f"expected the kill mid-matrix, got {done} of {total} cells"

    bench = load_benchmark(p)
    resumed = run_benchmark(bench, killed, progress=False)
    assert resumed.integrity_check() == "ok"
    cells = resumed.cells()
    assert len(cells) == total and set(cells["status"]) == {"ok"}
    assert (cells["run_id"] == 1).sum() >= done  # the finished cells were not run again
    straight = run_benchmark(bench, tmp_path / "straight", progress=False)
    assert rows(killed) == rows(tmp_path / "straight")
    assert len(rows(killed)[1]) == total * 16
    resumed.close()
    straight.close()
