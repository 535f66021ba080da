"""Faults around runs: the folder lock (a second run is refused naming the first), boards written as a
whole set (kill -9 mid-write, then a rerun), failed cells retried when their inputs change, and a
broken plugin isolated from the rest."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from test_faults import bench_doc, write_yaml
from test_harness import make_victims

from robench import registry as registry_module
from robench.cli import main
from robench.errors import DataError
from robench.io import atomic_folder, recover_folder
from robench.run.benchmark import load_benchmark
from robench.run.cells import inputs_sha256
from robench.run.executor import pending, run_benchmark
from robench.run.harness import prepare
from robench.run.store import LOCKNAME, Store, hold_lock

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def victims(tmp_path_factory):
    return make_victims(tmp_path_factory.mktemp("victims-runs"))


# ---------------------------------------------------------------------- the folder lock


def test_second_run_is_refused_naming_the_holder(tmp_path, victims, capsys):
    bench = write_yaml(tmp_path, bench_doc([str(victims[0])]))
    out = tmp_path / "out"
    out.mkdir()
    lock = hold_lock(out)
    try:
        capsys.readouterr()
        assert main(["run", str(bench), "-o", str(out), "-q"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pid {os.getpid()}" in err and "started" in err
        assert sys.argv[0][:40] in err  # the holder's command
        assert not (out / "results.sqlite").exists()  # refused before touching the store
    finally:
        lock.close()
    assert main(["run", str(bench), "-o", str(out), "-q"]) == 0  # released: runs


def test_concurrent_runs_one_refused_the_other_complete_and_identical(tmp_path, victims):
    # long enough (PGD-800 on two victims) that the second run starts while the first runs
    doc = bench_doc(
        [str(victims[0]), str(victims[1])], attacks=[{"name": "pgd", "params": {"steps": 800}}]
    )
    bench = write_yaml(tmp_path, doc)
    out = tmp_path / "shared"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "robench.cli",
        "run",
        str(bench),
        "-o",
        str(out),
        "-q",
        "--no-board",
    ]
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / LOCKNAME).exists() or not (out / LOCKNAME).read_text().strip():
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.05)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.poll() is None, "the first run ended before the second started: lengthen it"
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert second.returncode == 2, second.stderr
    assert f"pid {first.pid}" in second.stderr and second.stderr.count("\n") == 1
    alone = run_benchmark(load_benchmark(bench), tmp_path / "alone", progress=False)
    with Store(out) as st:
        a = st.frame().drop(columns=["run_id", "seconds"]).reset_index(drop=True)
        assert len(st.runs()) == 1  # the refused run recorded nothing
    b = alone.frame().drop(columns=["run_id", "seconds"]).reset_index(drop=True)
    alone.close()
    assert a.equals(b)


# ---------------------------------------------------------------------- boards as a whole set

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from robench.io import atomic_folder

    target, n = Path(sys.argv[1]), 0
    def fill(tmp, gen):
        for name in ("board.json", "board.md", "board.csv", "board.html"):
            (tmp / name).write_text(f"{gen}\\n" * 20000)
    print("ready", flush=True)
    while True:
        n += 1
        atomic_folder(target, lambda tmp: fill(tmp, n), ("board.json", "board.md", "board.csv", "board.html"))
    """
)


def _consistent(folder: Path) -> bool:
    texts = {p.name: p.read_text() for p in folder.iterdir()}
    return (
        set(texts) == {"board.json", "board.md", "board.csv", "board.html"}
        and len(set(texts.values())) == 1
    )


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.31, 0.57, 0.9])
def test_kill_9_while_boards_are_written_leaves_one_consistent_set(tmp_path, delay):
    target = tmp_path / "lb" / "quick"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = [p.name for p in (tmp_path / "lb").iterdir() if p.name != "quick"]
    if target.exists():
        assert _consistent(target), "a reader would have seen a mix of two generations"
    else:
        assert any(".old-" in n for n in leftovers)  # killed between the two renames
    # the rerun: restores or replaces, and leaves no temporary folder or file behind
    atomic_folder(target, lambda tmp: [(tmp / n).write_text("new\n") for n in ("board.json", "board.md")],
                  ("board.json", "board.md", "board.csv", "board.html"))  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "lb").iterdir()) == ["quick"]
    assert sorted(p.name for p in target.iterdir()) == ["board.json", "board.md"]


def test_recover_restores_a_folder_lost_between_the_renames_and_cleans_orphans(tmp_path):
    owned = ("board.json", "board.md")
    target = tmp_path / "quick"
    old = tmp_path / ".quick.old-999999999-abcd1234"
    old.mkdir()
    (old / "board.json").write_text("{}")
    (tmp_path / ".quick.tmp-999999999-efgh5678").mkdir()
    recover_folder(target, owned)
    assert (target / "board.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quick"]
    (target / ".board.json.x1y2z3w4.tmp").write_text("half")  # a per-file writer's orphan
    recover_folder(target, owned)
    assert sorted(p.name for p in target.iterdir()) == ["board.json"]
    live = tmp_path / f".quick.tmp-{os.getppid()}-live0000"  # a live process's folder is left alone
    live.mkdir()
    own = tmp_path / f".quick.tmp-{os.getpid()}-mine0000"  # this process's (another thread's) too
    own.mkdir()
    recover_folder(target, owned)
    assert live.exists() and own.exists()


def test_recovery_never_touches_what_robench_did_not_write(tmp_path):
    """Names that only resemble robench's leftovers, and leftovers holding other files, stay."""
    owned = ("board.json",)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "board.json").write_text("{}")
    (tmp_path / "mine" / ".draft.tmp").write_text("a user's draft")  # not an owned file's temporary
    (tmp_path / ".mine.tmp-backup").mkdir()  # no pid in the name
    backup = tmp_path / ".mine.old-999999999-zzzz9999"
    backup.mkdir()
    (backup / "thesis.tex").write_text("keep")  # a file robench never writes
    with pytest.raises(DataError, match="only board files, got .draft.tmp"):
        atomic_folder(tmp_path / "mine", lambda tmp: None, owned)
    (tmp_path / "mine" / ".draft.tmp").unlink()
    atomic_folder(tmp_path / "mine", lambda tmp: (tmp / "board.json").write_text("[]"), owned)
    assert (tmp_path / ".mine.tmp-backup").exists() and (
        backup / "thesis.tex"
    ).read_text() == "keep"
    assert (tmp_path / "mine" / "board.json").read_text() == "[]"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="expected a folder, got a file"):
        atomic_folder(tmp_path / "afile", lambda tmp: None, owned)


def test_atomic_folder_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="only board files, got notes.txt"):
        atomic_folder(tmp_path / "mine", lambda tmp: None, ("board.json",))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


# ---------------------------------------------------------------------- retrying failed cells


def test_invalid_cells_are_retried_when_inputs_change_or_on_request(tmp_path, victims):
    bench = load_benchmark(write_yaml(tmp_path, bench_doc([str(victims[0])])))
    plan = prepare(bench, tmp_path / "r")
    (cell,) = plan.cells
    with Store(tmp_path / "r") as st:
        assert pending(plan, st) == [cell]  # nothing recorded yet
        st.write_cell({"cell_key": cell.key, "status": "invalid", "error": "x",
                       "inputs_sha256": plan.inputs_sha256(cell)})  # fmt: skip
        assert pending(plan, st) == []  # same inputs: not retried
        assert pending(plan, st, retry_failed=True) == [cell]
        st.write_cell(
            {"cell_key": cell.key, "status": "invalid", "error": "x", "inputs_sha256": "0" * 64}
        )
        assert pending(plan, st) == [cell]  # inputs changed (a repaired checkpoint, a fixed plugin)
        st.write_cell({"cell_key": cell.key, "status": "error", "error": "x",
                       "inputs_sha256": plan.inputs_sha256(cell)})  # fmt: skip
        assert pending(plan, st) == [cell]  # errors are always retried
        st.write_cell({"cell_key": cell.key, "status": "ok", "inputs_sha256": "0" * 64})
        assert pending(plan, st, retry_failed=True) == []  # a finished cell never is


def test_inputs_hash_follows_checkpoint_bytes_and_plugin_source(tmp_path, victims):
    import shutil

    for name in ("v.pt", "v.json"):
        shutil.copy(victims[0].with_name(victims[0].stem + Path(name).suffix), tmp_path / name)
    bench = load_benchmark(write_yaml(tmp_path, bench_doc([str(tmp_path / "v.pt")])))
    (cell,) = prepare(bench, tmp_path / "r").cells
    h0 = inputs_sha256(cell, {})
    assert inputs_sha256(cell, {}) == h0  # deterministic
    meta = (tmp_path / "v.json").read_text()
    (tmp_path / "v.json").write_text(meta + " ")
    assert inputs_sha256(cell, {}) != h0
    (tmp_path / "v.json").write_text(meta)
    assert inputs_sha256(cell, {}) == h0

    # the attack's plugin file enters too: fgsm lives in attacks/gradient.py, smart in smart.py
    other = dataclasses.replace(cell, attack=dataclasses.replace(cell.attack, name="smart"))
    assert inputs_sha256(other, {}) != h0


# ---------------------------------------------------------------------- broken plugins


def _plugin_package(tmp_path: Path, name: str) -> str:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "good.py").write_text(
        f"from {name} import REG\n@REG.register('good')\nclass Good:\n    pass\n"
    )
    (pkg / "broken.py").write_text("def oops(:\n")
    (pkg / "__init__.py").write_text(
        "from robench.registry import Registry\nREG = Registry('gadget', __name__, 'robench.test-none', 'x')\n"
    )
    sys.path.insert(0, str(tmp_path))
    return name


def test_a_broken_plugin_is_isolated_with_one_warning(tmp_path, capsys, monkeypatch):
    import importlib

    name = _plugin_package(tmp_path, "robench_test_plugins_a")
    try:
        reg = importlib.import_module(name).REG
        capsys.readouterr()
        assert reg.names() == ["good"]
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("robench: warning: gadget plugin ")
        assert "broken.py" in err[0] and "SyntaxError" in err[0] and "unavailable" in err[0]
        with pytest.raises(Exception, match="1 gadget plugin\\(s\\) failed to load"):
            reg.get("broken")
    finally:
        sys.path.remove(str(tmp_path))


def test_an_entry_point_naming_a_missing_module_is_isolated(tmp_path, capsys, monkeypatch):
    import importlib

    name = _plugin_package(tmp_path, "robench_test_plugins_b")
    (tmp_path / name / "broken.py").unlink()
    ep = EntryPoint(name="ghost", value="robench_no_such_module:Ghost", group="robench.test-none")
    monkeypatch.setattr(
        registry_module, "entry_points", lambda group: [ep] if group == ep.group else []
    )
    try:
        reg = importlib.import_module(name).REG
        capsys.readouterr()
        assert reg.names() == ["good"]  # the other plugin is still there
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "entry point ghost = robench_no_such_module:Ghost" in err[0]
        assert "ModuleNotFoundError" in err[0]
    finally:
        sys.path.remove(str(tmp_path))


def test_commands_keep_working_beside_a_broken_plugin_file(tmp_path):
    """A syntax error in a file of the installed plugin folder: `robench list attacks` still works."""
    bad = ROOT / "attacks" / "zz_broken_for_test.py"
    bad.write_text("def oops(:\n")
    try:
        out = subprocess.run([sys.executable, "-m", "robench.cli", "list", "attacks"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    finally:
        bad.unlink()
    assert out.returncode == 0 and "pgd" in out.stdout
    warn = [x for x in out.stderr.splitlines() if x.strip()]
    assert len(warn) == 1 and "zz_broken_for_test.py" in warn[0] and "SyntaxError" in warn[0]


def test_retry_failed_on_the_command_line(tmp_path, victims):
    from test_harness import Cheat, registered

    with registered("test-cheat", Cheat):
        bench = write_yaml(tmp_path, bench_doc([str(victims[0])], attacks=["fgsm", "test-cheat"]))
        out = tmp_path / "r"
        assert main(["run", str(bench), "-o", str(out), "-q", "--allow-invalid"]) == 0
        assert main(["run", str(bench), "-o", str(out), "-q", "--allow-invalid"]) == 0
        with Store(out) as st:
            c = st.cells().set_index("attack")
            assert c.loc["test-cheat", "run_id"] == 1 and c.loc["fgsm", "run_id"] == 1
        assert (
            main(["run", str(bench), "-o", str(out), "-q", "--allow-invalid", "--retry-failed"])
            == 0
        )
        with Store(out) as st:
            c = st.cells().set_index("attack")
            assert c.loc["test-cheat", "run_id"] == 3 and c.loc["fgsm", "run_id"] == 1


def test_the_run_lock_lasts_until_the_store_is_closed(tmp_path, victims):
    bench = load_benchmark(write_yaml(tmp_path, bench_doc([str(victims[0])])))
    store = run_benchmark(bench, tmp_path / "r", progress=False)  # the CLI writes the board now
    with pytest.raises(DataError, match="got one in progress"):
        hold_lock(tmp_path / "r")
    store.close()
    hold_lock(tmp_path / "r").close()


def test_names_of_a_plugin_that_failed_halfway_are_unavailable(tmp_path, capsys):
    import importlib

    name = _plugin_package(tmp_path, "robench_test_plugins_c")
    (tmp_path / name / "broken.py").write_text(
        f"from {name} import REG\n@REG.register('half')\nclass Half:\n    pass\nraise ImportError('needs foo')\n"
    )
    try:
        reg = importlib.import_module(name).REG
        assert reg.names() == ["good"]
        assert "ImportError: needs foo" in capsys.readouterr().err
    finally:
        sys.path.remove(str(tmp_path))


def test_an_old_store_gains_the_new_column_and_the_stamp(tmp_path):
    """A store written before inputs_sha256 and the application_id stamp opens, keeps its rows,
    gets the column (empty) and the stamp; its invalid cells then count as changed (retried)."""
    import sqlite3

    from robench.run.store import APPLICATION_ID, CELL_COLUMNS

    old_cols = [(c, t) for c, t in CELL_COLUMNS if c != "inputs_sha256"]
    con = sqlite3.connect(tmp_path / "results.sqlite")
    con.execute("CREATE TABLE runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL)")
    con.execute(f"CREATE TABLE cells ({', '.join(f'{c} {t}' for c, t in old_cols)})")
    con.execute("CREATE TABLE samples (cell_key TEXT, sample_id TEXT)")
    con.execute("INSERT INTO cells (cell_key, status, error) VALUES ('k', 'invalid', 'old')")
    con.commit()
    con.close()
    with Store(tmp_path) as st:
        assert st.cell_status() == {"k": "invalid"} and st.cell_inputs() == {"k": None}
    con = sqlite3.connect(tmp_path / "results.sqlite")
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    con.close()


def test_a_leftover_of_a_process_we_may_not_signal_counts_as_alive(tmp_path, monkeypatch):
    def refuse(pid, sig):  # noqa: ANN001, ANN202 - another user's live process
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", refuse)
    other = tmp_path / ".quick.tmp-1-abcd1234"
    other.mkdir()
    recover_folder(tmp_path / "quick", ("board.json",))
    assert other.exists()
