"""Faults and bad input: every user-caused failure is one line on stderr and exit 2 (1 for a run
whose cells failed), before any cell runs where it can be known then, and leaves nothing behind:
no half-written file, no temporary file, nothing foreign modified.

``CASES`` is the table of malformed inputs (one row per case: what is broken, the command, the exit
code and the message it must print); ``python tests/test_faults.py`` prints it as a Markdown table
with what each case left on disk.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from test_harness import make_victims  # noqa: E402

from robench.cli import main  # noqa: E402
from robench.victim import build_victim  # noqa: E402
from robench.zoo.checkpoint import save_victim  # noqa: E402

DATA = {"name": "synth-ntu25", "seed": 0, "n_train": 40, "n_test": 24, "num_frames": 16}


def bench_doc(victims: list[str], **extra: object) -> dict:
    doc = {
        "id": "faults", "dataset": DATA, "split": "train", "subset": {"n": 8, "seed": 0},
        "victims": victims, "attacks": ["fgsm"], "threats": [{"norm": "linf", "eps": 0.01}],
        "batch_size": 8,
    }  # fmt: skip
    doc.update(extra)
    return doc


def write_yaml(d: Path, doc: dict, name: str = "b.yaml") -> Path:
    p = d / name
    p.write_text(yaml.safe_dump(doc))
    return p


def _npz(d: Path, name: str = "set.npz", **arrays: object) -> Path:
    base = {
        "x": np.ones((2, 3, 4, 25, 1), np.float32), "y": np.array([0, 1]),
        "ids": np.array(["a", "b"]), "class_names": np.array(["p", "q"]),
        "topology": np.array("ntu25"), "unit": np.array("m"),
    }  # fmt: skip
    base.update(arrays)
    np.savez(d / name, **base)
    return d / name


# ---------------------------------------------------------------------- the cases


def yaml_alias_bomb(d: Path, v: list[Path]) -> list[str]:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, n in enumerate("bcdefgh"):
        prev = "abcdefgh"[i]
        levels.append(f"{n}: &{n} [" + ",".join([f"*{prev}"] * 9) + "]")
    p = d / "bomb.yaml"
    p.write_text(
        "id: bomb\nvictims: [stgcn.synth_ntu25]\nattacks: [fgsm]\n" + "\n".join(levels) + "\n"
    )
    return ["run", str(p), "-o", str(d / "out"), "-q"]


def yaml_duplicate_key(d: Path, v: list[Path]) -> list[str]:
    p = d / "dup.yaml"
    p.write_text("id: a\nvictims: [stgcn.synth_ntu25]\nattacks: [fgsm]\nattacks: [pgd]\n")
    return ["run", str(p), "-o", str(d / "out"), "-q"]


def yaml_not_utf8(d: Path, v: list[Path]) -> list[str]:
    p = d / "latin1.yaml"
    p.write_bytes("id: caf\xe9\nvictims: [stgcn.synth_ntu25]\n".encode("latin-1"))
    return ["run", str(p), "-o", str(d / "out"), "-q"]


def yaml_id_absolute_path(d: Path, v: list[Path]) -> list[str]:
    p = write_yaml(d, bench_doc([str(v[0])], id=str(d / "elsewhere")))
    return ["run", str(p), "-q"]


def yaml_id_dotdot(d: Path, v: list[Path]) -> list[str]:
    p = write_yaml(d, bench_doc([str(v[0])], id="../../escape"))
    return ["run", str(p), "-q"]


def yaml_syntax(d: Path, v: list[Path]) -> list[str]:
    p = d / "bad.yaml"
    p.write_text("id: x\nvictims: [a\n")
    return ["run", str(p), "-o", str(d / "out"), "-q"]


def npz_zero_frames(d: Path, v: list[Path]) -> list[str]:
    return ["data", "stats", str(_npz(d, x=np.ones((2, 3, 0, 25, 1), np.float32)))]


def npz_empty_clip(d: Path, v: list[Path]) -> list[str]:
    x = np.ones((2, 3, 4, 25, 1), np.float32)
    x[1] = 0
    return ["data", "stats", str(_npz(d, x=x))]


def npz_string_subjects(d: Path, v: list[Path]) -> list[str]:
    return ["data", "stats", str(_npz(d, subject=np.array(["p1", "p2"])))]


def npz_empty_set(d: Path, v: list[Path]) -> list[str]:
    p = _npz(d, x=np.zeros((0, 3, 4, 25, 1), np.float32), y=np.zeros(0, np.int64),
             ids=np.array([], dtype=str))  # fmt: skip
    return ["data", "stats", str(p)]


def npz_is_npy(d: Path, v: list[Path]) -> list[str]:
    np.save(d / "arr.npy", np.zeros(3))
    return ["data", "stats", str(d / "arr.npy")]


def npz_foreign_format(d: Path, v: list[Path]) -> list[str]:
    (d / "S001C001P001R001A001.skeleton").write_text("42\n1\n")
    return ["data", "stats", str(d / "S001C001P001R001A001.skeleton")]


def npz_pickled_object(d: Path, v: list[Path]) -> list[str]:
    np.savez(d / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    return ["data", "stats", str(d / "obj.npz")]


def _copy_victim(d: Path, src: Path, name: str = "bad") -> Path:
    pt, js = d / f"{name}.pt", d / f"{name}.json"
    pt.write_bytes(src.read_bytes())
    js.write_text(src.with_suffix(".json").read_text())
    return pt


def ckpt_bad_sha256(d: Path, v: list[Path]) -> list[str]:
    pt = _copy_victim(d, v[0])
    data = bytearray(pt.read_bytes())
    data[-20] ^= 0xFF
    pt.write_bytes(bytes(data))
    return ["run", str(write_yaml(d, bench_doc([str(pt)]))), "-o", str(d / "out"), "-q"]


class _Evil:
    def __reduce__(self):  # noqa: ANN204 - runs `touch` if ever unpickled
        return (os.system, (f"touch {EVIL_MARK}",))


EVIL_MARK = Path("/tmp/robench-evil-pickle-ran")


def ckpt_malicious_pickle(d: Path, v: list[Path]) -> list[str]:
    pt = _copy_victim(d, v[0])
    pt.write_bytes(pickle.dumps({"state": _Evil()}))
    meta = json.loads(pt.with_suffix(".json").read_text())
    meta["weights_sha256"] = hashlib.sha256(pt.read_bytes()).hexdigest()
    pt.with_suffix(".json").write_text(json.dumps(meta))
    return ["run", str(write_yaml(d, bench_doc([str(pt)]))), "-o", str(d / "out"), "-q"]


def ckpt_wrong_keys(d: Path, v: list[Path]) -> list[str]:
    other = build_victim("ctrgcn", num_classes=16, width=8, depth=2)
    save_victim(other, d / "other.pt")
    meta = json.loads((d / "other.json").read_text())
    good = json.loads(v[0].with_suffix(".json").read_text())
    meta.update(arch=good["arch"], config=good["config"])  # says stgcn, holds ctrgcn weights
    (d / "other.json").write_text(json.dumps(meta))
    return ["run", str(write_yaml(d, bench_doc([str(d / "other.pt")]))), "-o", str(d / "out"), "-q"]


def ckpt_wrong_classes(d: Path, v: list[Path]) -> list[str]:
    save_victim(build_victim("stgcn", num_classes=3, width=8, depth=2), d / "three.pt")
    return ["run", str(write_yaml(d, bench_doc([str(d / "three.pt")]))), "-o", str(d / "out"), "-q"]


def ckpt_wrong_joints(d: Path, v: list[Path]) -> list[str]:
    from robench.data.skeleton import Topology

    chain = Topology(name="chain20", joint_names=tuple(f"j{i}" for i in range(20)),
                     parents=(-1, *range(19)), center=0)  # fmt: skip
    m = build_victim("stgcn", num_classes=16, width=8, depth=2, topology=chain.to_json())
    save_victim(m, d / "twenty.pt")
    return [
        "run",
        str(write_yaml(d, bench_doc([str(d / "twenty.pt")]))),
        "-o",
        str(d / "out"),
        "-q",
    ]


def ckpt_wrong_bodies(d: Path, v: list[Path]) -> list[str]:
    save_victim(
        build_victim("stgcn", num_classes=16, width=8, depth=2, num_persons=1), d / "one.pt"
    )
    return ["run", str(write_yaml(d, bench_doc([str(d / "one.pt")]))), "-o", str(d / "out"), "-q"]


def ckpt_missing_metadata(d: Path, v: list[Path]) -> list[str]:
    pt = _copy_victim(d, v[0])
    pt.with_suffix(".json").unlink()
    return ["run", str(write_yaml(d, bench_doc([str(pt)]))), "-o", str(d / "out"), "-q"]


def store_foreign_sqlite(d: Path, v: list[Path]) -> list[str]:
    (d / "out").mkdir()
    con = sqlite3.connect(d / "out" / "results.sqlite")
    con.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    con.execute("INSERT INTO invoices VALUES (1, 9.5)")
    con.commit()
    con.close()
    return ["run", str(write_yaml(d, bench_doc([str(v[0])]))), "-o", str(d / "out"), "-q"]


def store_not_sqlite(d: Path, v: list[Path]) -> list[str]:
    (d / "out").mkdir()
    (d / "out" / "results.sqlite").write_text("my notes, not a database\n")
    return ["run", str(write_yaml(d, bench_doc([str(v[0])]))), "-o", str(d / "out"), "-q"]


def store_foreign_for_results(d: Path, v: list[Path]) -> list[str]:
    store_foreign_sqlite(d, v)
    return ["results", str(d / "out")]


def board_no_results(d: Path, v: list[Path]) -> list[str]:
    return ["board", str(d / "nothing"), "-o", str(d / "b")]


def board_foreign_files(d: Path, v: list[Path]) -> list[str]:
    """A board folder holding someone's own files is never swapped away."""
    args = ["run", str(write_yaml(d, bench_doc([str(v[0])]))), "-o", str(d / "out"), "-q"]
    assert main(args) == 0
    (d / "mine").mkdir()
    (d / "mine" / "thesis.tex").write_text("\\documentclass{article}\n")
    return ["board", str(d / "out"), "-o", str(d / "mine"), "-q"]


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Path, list[Path]], list[str]]
    rc: int
    message: str  # a substring of the one stderr line


CASES = [
    Case("YAML: nested aliases (billion laughs)", yaml_alias_bomb, 2, "nested aliases"),
    Case("YAML: duplicate key", yaml_duplicate_key, 2, "duplicate key 'attacks' (first at line 3)"),
    Case("YAML: not UTF-8", yaml_not_utf8, 2, "expected UTF-8 text, got byte 0xe9"),
    Case("YAML: syntax error", yaml_syntax, 2, "expected valid YAML"),
    Case("YAML: id is an absolute path", yaml_id_absolute_path, 2, "a name, not a path"),
    Case("YAML: id contains ..", yaml_id_dotdot, 2, "a name, not a path"),
    Case("npz: clips of zero frames", npz_zero_frames, 2, "got T = 0"),
    Case("npz: a clip with every frame zero", npz_empty_clip, 2, "empty clip (all frames zero) at sample 1 (b)"),
    Case("npz: subjects are strings", npz_string_subjects, 2, "field 'subject'"),
    Case("npz: no clips", npz_empty_set, 2, "expected at least one clip"),
    Case("npz: a .npy file", npz_is_npy, 2, "a .npy file"),
    Case("npz: another format (.skeleton)", npz_foreign_format, 2, "a file of another format"),
    Case("npz: pickled objects", npz_pickled_object, 2, "readable .npz archive"),
    Case("checkpoint: weights do not match sha256", ckpt_bad_sha256, 2, "refusing to load"),
    Case("checkpoint: malicious pickle", ckpt_malicious_pickle, 2, "bad.pt"),
    Case("checkpoint: keys of another architecture", ckpt_wrong_keys, 2, "other.pt"),
    Case("checkpoint: class count is not the data's", ckpt_wrong_classes, 2, "expected a victim with 16 classes"),
    Case("checkpoint: joint count is not the data's", ckpt_wrong_joints, 2, "expected a victim of 25 joints"),
    Case("checkpoint: body count is not the data's", ckpt_wrong_bodies, 2, "expected a victim of 2 bodies"),
    Case("checkpoint: metadata missing", ckpt_missing_metadata, 2, "cannot verify the weights"),
    Case("store: a foreign SQLite results.sqlite", store_foreign_sqlite, 2, "foreign SQLite file"),
    Case("store: results.sqlite is not SQLite", store_not_sqlite, 2, "not SQLite"),
    Case("store: `results` on a foreign SQLite file", store_foreign_for_results, 2, "foreign SQLite file"),
    Case("board: no results folder", board_no_results, 2, "expected a results folder"),
    Case("board: folder holds other files", board_foreign_files, 2, "only board files, got thesis.tex"),
]  # fmt: skip


def snapshot(d: Path) -> dict[str, str]:
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def victims(tmp_path_factory):
    return make_victims(tmp_path_factory.mktemp("victims-faults"))


def run_case(case: Case, d: Path, victims: list[Path], capsys) -> tuple[int, str, dict, dict]:  # noqa: ANN001
    argv = case.setup(d, victims)
    before = snapshot(d)
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err, before, snapshot(d)


@pytest.mark.parametrize("case", CASES, ids=[c.setup.__name__ for c in CASES])
def test_malformed_input_is_one_line_and_leaves_nothing(
    case, tmp_path, victims, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    EVIL_MARK.unlink(missing_ok=True)
    rc, err, before, after = run_case(case, tmp_path, victims, capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == case.rc, err
    assert len(lines) == 1 and lines[0].startswith("robench: error: "), err
    assert case.message in lines[0], lines[0]
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    # what a refused command may leave: the results folder's lock, meta files of a run that loaded
    # its data; never a temporary file, a store or a board, never a changed foreign file
    allowed = (
        {"out/.robench.lock"}
        if case.setup not in (store_foreign_sqlite, store_not_sqlite)
        else set()
    )
    assert changed <= allowed, sorted(changed)
    assert not [k for k in after if k.endswith(".tmp") or ".tmp-" in k]
    assert not EVIL_MARK.exists()  # the pickle never ran
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path.parent / "escape").exists()


def test_bad_checkpoint_stops_before_any_cell_and_the_repaired_one_runs(tmp_path, victims, capsys):
    args = ckpt_bad_sha256(tmp_path, victims)
    assert main(args) == 2
    from robench.run.store import Store, store_exists

    if store_exists(tmp_path / "out"):
        with Store(tmp_path / "out") as st:
            assert st.cells().empty  # no invalid cell to be stuck with
    _copy_victim(tmp_path, victims[0])  # repaired
    assert main(args) == 0
    with Store(tmp_path / "out") as st:
        assert set(st.cells()["status"]) == {"ok"}


def test_read_only_and_full_disk_are_named(tmp_path, victims, capsys, monkeypatch):
    bench = write_yaml(tmp_path, bench_doc([str(victims[0])]))
    real_mkdir = Path.mkdir

    def refuse(self, *a, **k):  # noqa: ANN001, ANN202
        if "ro" in self.parts:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", refuse)
    capsys.readouterr()
    assert main(["run", str(bench), "-o", str(tmp_path / "ro" / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "read-only" in err
    monkeypatch.setattr(Path, "mkdir", real_mkdir)
    assert main(["run", str(bench), "-o", str(tmp_path / "ok"), "-q", "--no-board"]) == 0

    from robench.io import atomic_write_text

    def full(p):  # noqa: ANN001, ANN202
        raise OSError(errno.ENOSPC, "No space left on device", str(p))

    with pytest.raises(Exception, match="the disk full writing") as info:
        from robench.io import atomic_write

        atomic_write(tmp_path / "x.txt", full)
    assert "\n" not in str(info.value) and not list(tmp_path.glob(".x.txt*"))
    assert atomic_write_text(tmp_path / "y.txt", "fine").read_text() == "fine"
    from robench.run.store import _open_error

    msg = str(_open_error(sqlite3.OperationalError("database or disk is full"), tmp_path / "r"))
    assert "disk full" in msg


def test_foreign_store_is_left_byte_for_byte(tmp_path, victims, capsys):
    args = store_foreign_sqlite(tmp_path, victims)
    db = tmp_path / "out" / "results.sqlite"
    before = db.read_bytes()
    assert main(args) == 2
    assert db.read_bytes() == before
    assert not (tmp_path / "out" / "results.sqlite-wal").exists()
    con = sqlite3.connect(db)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["invoices"]
    con.close()


if __name__ == "__main__":  # the table for the issue note
    import tempfile

    class _Cap:
        def readouterr(self):  # noqa: ANN202
            return type("R", (), {"err": ""})()

    vdir = Path(tempfile.mkdtemp())
    vics = make_victims(vdir)
    print("| case | command | exit | message | left on disk |\n|---|---|---|---|---|")
    for c in CASES:
        d = Path(tempfile.mkdtemp())
        os.chdir(d)
        import contextlib
        import io

        argv = c.setup(d, vics)
        before = snapshot(d)
        buf = io.StringIO()
        with contextlib.redirect_stderr(buf):
            rc = main(argv)
        after = snapshot(d)
        left = sorted(k for k in set(after) if before.get(k) != after.get(k))
        msg = buf.getvalue().strip().replace("|", "\\|").replace(str(d), "DIR")
        cmd = " ".join(a.replace(str(d), "DIR") for a in argv)
        print(f"| {c.name} | `robench {cmd}` | {rc} | {msg} | {', '.join(left) or 'nothing'} |")
    _ = torch


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs (needs root and mount; skipped elsewhere)."""
    import shutil
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tiny tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                       capture_output=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        import gc

        gc.collect()  # a writer that failed mid-file may hold its descriptor until collected
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_really_full_disk_is_named_and_loses_nothing(tiny_disk, victims, capsys):
    capsys.readouterr()
    assert main(["data", "build", "synth-ntu25", "-o", str(tiny_disk / "set.npz"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the disk full writing" in err
    assert not list(tiny_disk.iterdir())  # no partial .npz, no temporary file
    bench = write_yaml(tiny_disk.parent, bench_doc([str(victims[0])], subset={"n": 24, "seed": 0}))
    assert main(["run", str(bench), "-o", str(tiny_disk / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk full" in err
    from robench.run.store import Store

    with Store(tiny_disk / "out") as st:
        assert st.integrity_check() == "ok"
        assert set(st.cells()["status"]) <= {"ok"}  # whatever landed is whole


def test_os_and_sqlite_errors_reaching_the_cli_are_one_line(monkeypatch, capsys, tmp_path):
    import robench.commands.data as data_cmd

    def boom(path):  # noqa: ANN001, ANN202
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(data_cmd.SkeletonSet, "load", staticmethod(boom))
    assert main(["data", "stats", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"robench: error: expected to read or write {tmp_path / 'x.npz'}, got Permission denied\n"
    )

    def full(path):  # noqa: ANN001, ANN202
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(data_cmd.SkeletonSet, "load", staticmethod(full))
    assert main(["data", "stats", "y.npz"]) == 2
    assert (
        capsys.readouterr().err
        == "robench: error: expected free disk space, got the disk full at y.npz\n"
    )

    def locked(path):  # noqa: ANN001, ANN202
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(data_cmd.SkeletonSet, "load", staticmethod(locked))
    assert main(["data", "stats", "z.npz"]) == 2
    assert "results database: expected free disk space" in capsys.readouterr().err


def test_write_errors_are_named(tmp_path):
    from robench.errors import DataError
    from robench.io import write_error

    p = tmp_path / "f"
    assert "read-only file system" in str(write_error(OSError(errno.EROFS, "x"), p))
    assert "no write permission" in str(write_error(PermissionError(errno.EACCES, "x"), p))
    assert "the disk full" in str(write_error(OSError(errno.ENOSPC, "x"), p))
    other = OSError(errno.ENOENT, "gone")
    assert write_error(other, p) is other  # not the user's folder: passes through
    assert isinstance(write_error(OSError(errno.EROFS, "x"), p), DataError)


def test_torch_save_on_a_full_disk_is_named(tiny_disk):
    from robench.io import atomic_write

    with pytest.raises(Exception, match="the disk full writing") as info:
        atomic_write(tiny_disk / "w.pt", lambda p: torch.save({"w": torch.zeros(200_000)}, p))
    assert "\n" not in str(info.value) and not list(tiny_disk.iterdir())


def test_review_cases_are_one_line_too(tmp_path, victims, capsys):
    """Inputs a review found escaping as tracebacks or slipping through."""
    con = sqlite3.connect(tmp_path / "runs_only.sqlite")  # robench-like, but not robench's tables
    con.execute("CREATE TABLE runs (name TEXT, score REAL)")
    con.commit()
    con.close()
    sqlite3.connect(tmp_path / "empty.sqlite").execute("PRAGMA user_version=1").connection.commit()
    from robench.errors import DataError
    from robench.run.store import Store

    for name in ("runs_only.sqlite", "empty.sqlite"):
        before = (tmp_path / name).read_bytes()
        with pytest.raises(DataError, match="foreign SQLite file"):
            Store(tmp_path / name)
        assert (tmp_path / name).read_bytes() == before
    (tmp_path / "ctl.yaml").write_text("id: a\x07\nvictims: [x]\n")
    (tmp_path / "png.json").write_bytes(b"\x89PNG\r\n\x1a\n")
    cases = [
        (["run", str(tmp_path / "ctl.yaml"), "-q"], "character #x0007"),
        (["prepare", "tasar", "--surrogate", "stgcn.synth_ntu25", "--set", "steps=[1"], "--set steps"),
        (["regress", "smoke", "--baseline", str(tmp_path / "png.json")], "expected UTF-8 JSON"),
        (["attack", "stgcn.synth_ntu25", "fgsm", "--checkpoint", str(victims[0])], "an architecture name with --checkpoint"),
    ]  # fmt: skip
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (argv, err)


def test_yaml_merge_keys_still_work():
    from robench.yamlio import load_yaml

    doc = load_yaml("base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  b: 3\n", "t.yaml")
    assert doc["x"] == {"a": 1, "b": 3}


def test_threat_unit_and_joints_are_checked_before_any_cell(tmp_path, victims, capsys):
    for threat, message in (
        ({"norm": "linf", "eps": 1.0, "unit": "cm"}, "expected threat unit 'm'"),
        ({"norm": "linf", "eps": 0.01, "topology": "openpose18"}, "threat topology with 25 joints"),
    ):
        bench = write_yaml(tmp_path, bench_doc([str(victims[0])], threats=[threat]))
        capsys.readouterr()
        assert main(["run", str(bench), "-o", str(tmp_path / "t"), "-q"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "field 'threats'" in err
    assert not (tmp_path / "t" / "results.sqlite").exists()
