"""CLI conventions: -o/--out and -q/--quiet everywhere, a run writes only under its --out, exit codes
for invalid and error cells, and refusals (untrained architectures, class-count mismatches) before
any cell runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click
import pytest
import torch
from test_harness import Cheat, Crash, make_victims, registered, write_bench

from robench.cli import cli, main
from robench.run.store import Store, store_exists
from robench.victim import build_victim
from robench.zoo.checkpoint import save_victim

ROOT = Path(__file__).resolve().parents[1]


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix}{name} ")
        else:
            out.append((f"{prefix}{name}", cmd))
    return out


@pytest.mark.parametrize("name,cmd", _commands(cli), ids=[n for n, _ in _commands(cli)])
def test_out_and_quiet_are_spelled_the_same_everywhere(name, cmd):
    for p in cmd.params:
        if p.name == "out":
            assert set(p.opts) == {"-o", "--out"}, f"{name}: {p.opts}"
        if p.name == "quiet":
            assert set(p.opts) == {"-q", "--quiet"} and p.is_flag, f"{name}: {p.opts}"
        assert not any(o.startswith("--out-") for o in p.opts), f"{name}: {p.opts} (use -o/--out)"


def test_every_writing_command_takes_out_and_every_long_one_quiet():
    cmds = dict(_commands(cli))
    for name in ("run", "regress", "board", "show", "data build", "train", "zoo build"):
        assert "out" in {p.name for p in cmds[name].params}, name
    for name in ("run", "regress", "board", "attack", "data build", "train", "zoo build",
                 "prepare tasar", "prepare ba", "show"):  # fmt: skip
        assert "quiet" in {p.name for p in cmds[name].params}, name


@pytest.fixture(scope="module")
def victims(tmp_path_factory):
    return make_victims(tmp_path_factory.mktemp("victims-cli"))


def _clone(tmp_path: Path) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and the project's git repository")
    dest = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--shared", str(ROOT), str(dest)], check=True)
    return dest


def _status(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()


def test_run_out_writes_only_under_out_and_leaves_tracked_files_alone(
    tmp_path, victims, monkeypatch
):
    repo = _clone(tmp_path)
    bench = write_bench(tmp_path, victims[:1], ["fgsm"], id="smoke")  # the id of a committed board
    monkeypatch.chdir(repo)
    assert main(["run", str(bench), "-o", "out", "-q"]) == 0
    changed = _status(repo)
    assert changed and all(line.startswith("?? out/") for line in changed), changed
    assert (repo / "out" / "board" / "board.json").exists()
    assert (repo / "out" / "results.sqlite").exists()
    assert not (repo / "results").exists()


def test_run_without_out_names_the_tracked_board_files_it_updates(
    tmp_path, victims, monkeypatch, capsys
):
    repo = _clone(tmp_path)
    bench = write_bench(tmp_path, victims[:1], ["fgsm"], id="smoke")
    monkeypatch.chdir(repo)
    capsys.readouterr()
    assert main(["run", str(bench), "-q"]) == 0
    err = capsys.readouterr().err
    modified = [line[3:] for line in _status(repo) if line.startswith(" M")]
    assert modified and all(m.startswith("leaderboards/smoke/") for m in modified)
    assert "tracked by git" in err and all(m in err for m in modified)


def test_exit_codes_for_invalid_error_and_mixed_runs(tmp_path, victims):
    with registered("test-cheat", Cheat), registered("test-crash", Crash):
        all_invalid = write_bench(tmp_path, victims[:1], ["test-cheat"], name="inv.yaml")
        assert main(["run", str(all_invalid), "-o", str(tmp_path / "a"), "-q"]) == 1
        assert (
            main(["run", str(all_invalid), "-o", str(tmp_path / "a"), "-q", "--allow-invalid"]) == 1
        )  # no ok cell
        mixed = write_bench(tmp_path, victims[:1], ["fgsm", "test-cheat"], name="mixed.yaml")
        assert main(["run", str(mixed), "-o", str(tmp_path / "m"), "-q"]) == 1
        assert main(["run", str(mixed), "-o", str(tmp_path / "m"), "-q", "--allow-invalid"]) == 0
        crash = write_bench(tmp_path, victims[:1], ["fgsm", "test-crash"], name="crash.yaml")
        assert main(["run", str(crash), "-o", str(tmp_path / "c"), "-q", "--allow-invalid"]) == 1
        ok = write_bench(tmp_path, victims[:1], ["fgsm"], name="ok.yaml")
        assert main(["run", str(ok), "-o", str(tmp_path / "o"), "-q"]) == 0


def test_attack_refuses_an_untrained_architecture(capsys):
    assert main(["attack", "stgcn", "pgd"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "untrained architecture 'stgcn'" in err
    assert "stgcn.synth_ntu25" in err  # names the trained one to use


def test_class_count_mismatch_is_refused_before_any_cell(tmp_path, victims, capsys):
    wrong = build_victim("stgcn", num_classes=3, width=8, depth=2)
    save_victim(wrong, tmp_path / "three.pt")
    bench = write_bench(tmp_path, [tmp_path / "three.pt"], ["fgsm"], name="k.yaml")
    capsys.readouterr()
    assert main(["run", str(bench), "-o", str(tmp_path / "k"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3" in err and "field 'victims[0]'" in err
    if store_exists(tmp_path / "k"):
        with Store(tmp_path / "k") as st:
            assert st.cells().empty
    # the one-off run refuses it too (the synthetic test split has 16 classes)
    assert main(["attack", "stgcn", "fgsm", "--checkpoint", str(tmp_path / "three.pt"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "expected a victim with 16 classes" in err and "got 3" in err


def test_attack_checkpoint_must_match_the_architecture(tmp_path, capsys):
    torch.manual_seed(0)
    save_victim(build_victim("ctrgcn", num_classes=16, width=8, depth=2), tmp_path / "c.pt")
    assert main(["attack", "stgcn", "fgsm", "--checkpoint", str(tmp_path / "c.pt"), "-q"]) == 2
    assert "architecture 'stgcn', got one of 'ctrgcn'" in capsys.readouterr().err
