"""The harness on tiny victims and tiny synthetic data: determinism, access, transfer caching,
invalid/error cells, resume and stale-config handling."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from robench.access import Knowledge, NoBox, Query, Transfer
from robench.attack import ATTACKS, Attack, AttackConfig
from robench.data import open_dataset
from robench.errors import ConfigError, DataError
from robench.run.benchmark import load_benchmark
from robench.run.executor import run_benchmark
from robench.run.harness import benchmark_frame, resolve_device
from robench.victim import build_victim
from robench.zoo.checkpoint import save_victim

DATA = {"name": "synth-ntu25", "seed": 0, "n_train": 40, "n_test": 24, "num_frames": 16}


def _fit_head(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> None:
    """Calibrate batch-norm statistics on ``x`` and fit the 1x1 classifier by ridge regression, so a
    tiny untrained ST-GCN classifies most training clips correctly (a few ms, no SGD)."""
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None
    feats: list[torch.Tensor] = []
    hook = model.fcn.register_forward_hook(lambda m, inp, out: feats.append(inp[0].flatten(1)))
    with torch.no_grad():
        model.train()(x)
        feats.clear()
        model.eval()(x)
    hook.remove()
    f = feats[0].double()
    mu, sd = f.mean(0), f.std(0).clamp_min(1e-6)
    z = torch.cat([(f - mu) / sd, torch.ones(len(x), 1, dtype=torch.double)], 1)
    w = torch.linalg.solve(
        z.T @ z + 1e-2 * torch.eye(z.shape[1], dtype=torch.double), z.T @ F.one_hot(y, k).double()
    )
    wf = w[:-1] / sd[:, None]
    with torch.no_grad():
        model.fcn.weight.copy_(wf.T.reshape(model.fcn.weight.shape).float())
        model.fcn.bias.copy_((w[-1] - (mu[:, None] * wf).sum(0)).float())


def make_victims(directory: Path) -> list[Path]:
    """Two tiny ST-GCNs (widths 8 and 12) saved with save_victim; fitted on the tiny train split."""
    data = open_dataset(DATA["name"], **{k: v for k, v in DATA.items() if k != "name"})
    train = data.get_split("train")
    paths = []
    for i, width in enumerate((8, 12)):
        m = build_victim("stgcn", num_classes=data.num_classes, width=width, depth=2, init_seed=i)
        _fit_head(m, train.x, train.y, data.num_classes)
        save_victim(m, directory / f"v{i}.pt")
        paths.append(directory / f"v{i}.pt")
    return paths


def write_bench(
    directory: Path, victims: list[Path], attacks: list, name: str = "tiny.yaml", **extra
) -> Path:
    doc = {
        "id": "tiny",
        "dataset": DATA,
        "split": "train",  # the fitted heads are accurate there: most samples are eligible
        "subset": {"n": 16, "seed": 0},
        "victims": [str(v) for v in victims],
        "attacks": attacks,
        "threats": [{"norm": "linf", "eps": 0.01}],
        "batch_size": 16,
    }
    doc.update(extra)
    p = directory / name
    p.write_text(yaml.safe_dump(doc))
    return p


@pytest.fixture(scope="module")
def victims(tmp_path_factory):
    return make_victims(tmp_path_factory.mktemp("victims"))


@contextlib.contextmanager
def registered(name: str, cls: type):
    """Register a test attack only for the duration of a test (never at import: registry contract
    tests of other modules must not see these)."""
    ATTACKS.register(name)(cls)
    try:
        yield cls
    finally:
        ATTACKS._items.pop(name, None)


def rows(directory: Path) -> tuple[list, list]:
    con = sqlite3.connect(directory / "results.sqlite")
    cells = con.execute(
        "SELECT cell_key, benchmark, dataset, victim, defense, attack, knowledge, surrogate, threat, norm, eps, seed, "
        "subset_hash, config_json, weights_sha256, status, error, n, zero_grad_frac, forward_random FROM cells ORDER BY cell_key"
    ).fetchall()
    samples = con.execute("SELECT * FROM samples ORDER BY cell_key, sample_id").fetchall()
    con.close()
    return cells, samples


# ---------------------------------------------------------------------- attacks used by the tests
@dataclass(frozen=True)
class _CountCfg(AttackConfig):
    steps: int = 2
    log: str = ""  # a file each call appends a line to (the attack runs in its own worker process)


class CountingTransfer(Attack):
    """Sign steps on the surrogate's CE gradient; counts its calls (per surrogate id)."""

    knowledge = Knowledge.TRANSFER
    Config = _CountCfg

    def run(self, access, x, y, threat, generator, target):
        assert isinstance(access, Transfer)
        with open(self.config.log, "a") as f:
            f.write("+".join(access.surrogate_ids) + "\n")
        x_adv = x.clone()
        for _ in range(self.config.steps):
            xr = x_adv.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(access.surrogates[0](xr), y), xr)
            x_adv = threat.project(x, x_adv + threat.eps / 2 * g.sign())
        return x_adv


class Cheat(Attack):
    """Leaves the eps-ball: must be recorded as invalid."""

    knowledge = Knowledge.WHITE_BOX

    def run(self, access, x, y, threat, generator, target):
        return x + 3 * threat.eps * (x != 0)


class Crash(Attack):
    knowledge = Knowledge.WHITE_BOX

    def run(self, access, x, y, threat, generator, target):
        raise RuntimeError("kaboom")


class EditVictim(Attack):
    """Tries to fake success by editing the victim's weights: it only edits its own copy, so the
    harness's pristine victim scores the unchanged input (no success)."""

    knowledge = Knowledge.WHITE_BOX

    def run(self, access, x, y, threat, generator, target):
        with torch.no_grad():
            access.victim.fcn.bias.add_(100.0)
        return x.clone()


class PeekingNoBox(Attack):
    """A no-box attack that tries to reach the victim through its access object."""

    knowledge = Knowledge.NO_BOX

    def run(self, access, x, y, threat, generator, target):
        assert isinstance(access, NoBox) and access.data.dim() == 5
        return access.victim(x)  # AccessError: no-box access grants no model


class FiveQueries(Attack):
    """Asks the oracle five times and returns a random point of the ball."""

    knowledge = Knowledge.QUERY
    randomized = True

    def run(self, access, x, y, threat, generator, target):
        assert isinstance(access, Query)
        for _ in range(5):
            access.oracle(x)
        noise = torch.empty_like(x).uniform_(-threat.eps, threat.eps, generator=generator)
        return threat.project(x, x + noise)


# ---------------------------------------------------------------------- tests
def test_same_benchmark_and_seed_give_identical_rows(tmp_path, victims):
    p = write_bench(
        tmp_path, victims, ["fgsm", "noise", {"name": "bim", "params": {"steps": 2}}], seeds=[0, 1]
    )
    b = load_benchmark(p)
    s1 = run_benchmark(b, tmp_path / "a", progress=False)
    s2 = run_benchmark(b, tmp_path / "b", progress=False)
    r1, r2 = rows(tmp_path / "a"), rows(tmp_path / "b")
    assert r1 == r2 and len(r1[0]) == 2 * 3 * 2 and len(r1[1]) == 12 * 16
    f = s1.frame()
    assert f["eligible"].sum() > 0.5 * len(f)  # the fitted victims are mostly correct
    assert (f.loc[f["attack"] == "bim", "success"]).any()
    # the noise attack is randomised: its two seeds differ, so the seed really reaches the generator
    noise = f[f["attack"] == "noise"].groupby("seed")["l2"].apply(list)
    assert noise[0] != noise[1]
    assert (tmp_path / "a" / "subset.json").exists() and (
        tmp_path / "a" / "benchmark.json"
    ).exists()
    # every white-box cell keeps its adversarial examples for `robench show`
    from robench.report.show import load_pair

    assert len(list((tmp_path / "a" / "cache").glob("adv-*.pt"))) == len(r1[0])
    sid = f.loc[(f["attack"] == "bim") & (f["victim"] == "v0") & f["success"], "sample_id"].iloc[0]
    pair = load_pair(tmp_path / "a", sid, "bim", victim="v0", seed=0)
    assert not torch.equal(pair.x_clean, pair.x_adv)
    s1.close()
    s2.close()


def test_rerun_finishes_from_the_store_and_config_change_is_not_reused(tmp_path, victims):
    p = write_bench(tmp_path, victims, [{"name": "bim", "params": {"steps": 2}}])
    store = run_benchmark(load_benchmark(p), tmp_path / "r", progress=False)
    first = rows(tmp_path / "r")
    # while a Store on the folder is open, a second run into it is refused, not interleaved
    with pytest.raises(DataError, match="got one in progress \\(pid "):
        run_benchmark(load_benchmark(p), tmp_path / "r", progress=False)
    store.close()
    store = run_benchmark(load_benchmark(p), tmp_path / "r", progress=False)
    assert rows(tmp_path / "r") == first and store.runs()["run_id"].tolist() == [1, 2]
    assert set(store.cells()["run_id"]) == {1}  # nothing ran again
    p2 = write_bench(
        tmp_path, victims, [{"name": "bim", "params": {"steps": 3}}], name="tiny2.yaml"
    )
    b2 = load_benchmark(p2)
    store.close()
    store = run_benchmark(b2, tmp_path / "r", progress=False)
    cells = store.cells()
    assert len(cells) == 4 and set(cells["run_id"]) == {1, 3}  # new keys, the old rows are stale
    assert set(benchmark_frame(store, b2)["cell_key"]) == set(
        cells.loc[cells["run_id"] == 3, "cell_key"]
    )
    store.close()


def calls(log: Path) -> list[str]:
    return sorted(log.read_text().split()) if log.exists() else []


def test_transfer_attack_runs_once_per_surrogate(tmp_path, victims):
    log = tmp_path / "calls.log"
    with registered("test-counting-transfer", CountingTransfer):
        spec = {"name": "test-counting-transfer", "params": {"log": str(log)}}
        p = write_bench(tmp_path, victims, [spec])
        store = run_benchmark(load_benchmark(p), tmp_path / "t", progress=False)
        # 2 surrogates x 2 victims: 2 generations, plus 2 x 2 runs of the determinism spot check
        assert calls(log) == ["v0"] * 3 + ["v1"] * 3
        cells = store.cells()
        assert len(cells) == 4 and set(cells["status"]) == {"ok"}
        assert set(zip(cells["surrogate"], cells["victim"], strict=True)) == {
            ("v0", "v0"),
            ("v0", "v1"),
            ("v1", "v0"),
            ("v1", "v1"),
        }
        f = store.frame()
        # transfer eligibility: surrogate AND victim correct on the clean input, sample by sample
        cc = f.groupby(["victim", "sample_id"])["clean_correct"].first()
        assert 0 < cc.sum() < len(cc)  # both kinds of sample occur, so the rule is exercised
        for (s, v), g in f.groupby(["surrogate", "victim"]):
            expect = [bool(cc[(v, i)] and cc[(s, i)]) for i in g["sample_id"]]
            assert g["eligible"].tolist() == expect
            assert (g["success"] <= g["eligible"]).all()
        first = rows(tmp_path / "t")
        # a fresh store beside the cached generations: evaluated again without calling the attack
        (tmp_path / "t" / "results.sqlite").unlink()
        for extra in ("-wal", "-shm"):
            Path(str(tmp_path / "t" / "results.sqlite") + extra).unlink(missing_ok=True)
        store.close()
        log.unlink()
        store = run_benchmark(load_benchmark(p), tmp_path / "t", progress=False)
        assert calls(log) == [] and rows(tmp_path / "t") == first
        store.close()


def test_cheating_and_crashing_attacks_are_recorded_not_fatal(tmp_path, victims):
    with (
        registered("test-cheat", Cheat),
        registered("test-crash", Crash),
        registered("test-peek", PeekingNoBox),
        registered("test-edit", EditVictim),
    ):
        attacks = ["test-cheat", "test-crash", "test-edit", "test-peek", "fgsm"]
        p = write_bench(tmp_path, victims[:1], attacks)
        store = run_benchmark(load_benchmark(p), tmp_path / "c", progress=False)
        cells = store.cells().set_index("attack")
        assert cells.loc["test-cheat", "status"] == "invalid"
        assert (
            "left the threat model" in cells.loc["test-cheat", "error"]
            and "linf" in cells.loc["test-cheat", "error"]
        )
        assert (
            cells.loc["test-crash", "status"] == "error"
            and cells.loc["test-crash", "error"] == "RuntimeError: kaboom"
        )
        assert (
            cells.loc["test-peek", "status"] == "invalid"
            and "no-box" in cells.loc["test-peek", "error"]
        )
        # the weights it edited were its worker's copy: scored on the pristine victim, no success
        assert cells.loc["test-edit", "status"] == "ok"
        assert cells.loc["fgsm", "status"] == "ok"
        edit = store.frame()[lambda d: d["attack"] == "test-edit"]
        assert edit["eligible"].any() and not edit["success"].any()
        assert (edit["adv_pred"] == edit["clean_pred"]).all()
        # the victim was never touched: the fgsm cell gives the same rows as fgsm alone
        alone = run_benchmark(
            load_benchmark(write_bench(tmp_path, victims[:1], ["fgsm"], name="f.yaml")),
            tmp_path / "f",
            progress=False,
        )
        fg = store.frame()[lambda d: d["attack"] == "fgsm"]
        assert alone.frame()["adv_pred"].tolist() == fg["adv_pred"].tolist()
        alone.close()
        ok = {"fgsm", "test-edit"}
        assert set(store.frame()["attack"]) == ok  # invalid/error rows never reach frame()
        assert set(store.frame(None)["attack"]) == ok  # and they wrote no sample rows
        # error cells are retried by the next run, invalid ones are not
        store.close()
        store = run_benchmark(load_benchmark(p), tmp_path / "c", progress=False)
        c2 = store.cells().set_index("attack")
        assert c2.loc["test-crash", "run_id"] == 2 and c2.loc["test-cheat", "run_id"] == 1
        store.close()


def test_query_attack_gets_an_oracle_and_queries_are_stored(tmp_path, victims):
    with registered("test-five-queries", FiveQueries):
        p = write_bench(tmp_path, victims[:1], [{"name": "test-five-queries", "budget": 10}])
        store = run_benchmark(load_benchmark(p), tmp_path / "q", progress=False)
        f = store.frame()
        assert len(f) == 16
        assert (f.loc[f["clean_correct"], "queries"] == 5).all()
        assert (f.loc[~f["clean_correct"], "queries"] == 0).all()
        assert f["zero_grad_frac"].isna().all()  # only white-box cells compute it
        p = write_bench(
            tmp_path, victims[:1], [{"name": "test-five-queries", "budget": 4}], name="q2.yaml"
        )
        store = run_benchmark(load_benchmark(p), tmp_path / "q2", progress=False)
        c = store.cells().iloc[0]
        assert c["status"] == "invalid" and "budget" in c["error"]
        store.close()


def test_white_box_cell_diagnostics(tmp_path, victims):
    p = write_bench(tmp_path, victims[:1], ["fgsm"])
    store = run_benchmark(load_benchmark(p), tmp_path / "d", progress=False)
    c = store.cells().iloc[0]
    assert c["zero_grad_frac"] == 0.0 and c["forward_random"] == 0 and c["n"] == 16
    assert c["knowledge"] == "white-box" and c["weights_sha256"] and c["seconds"] > 0
    store.close()


def test_device_and_workers_are_checked(tmp_path, victims):
    p = write_bench(tmp_path, victims[:1], ["fgsm"])
    with pytest.raises(ConfigError, match="--workers"):
        run_benchmark(load_benchmark(p), tmp_path / "w", workers=0, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="'cpu' or 'cuda'"):
        resolve_device("tpu")


def test_worker_processes_give_the_same_rows(tmp_path, victims):
    attacks = ["fgsm", "noise", {"name": "transfer-ifgsm", "params": {"steps": 2}}]
    b = load_benchmark(write_bench(tmp_path, victims, attacks))
    run_benchmark(b, tmp_path / "one", progress=False).close()
    run_benchmark(b, tmp_path / "two", workers=2, progress=False).close()
    assert rows(tmp_path / "one") == rows(tmp_path / "two")
    assert len(rows(tmp_path / "two")[0]) == 2 * 2 + 2 * 2


class EnsembleLogger(CountingTransfer):
    """An ensemble attack: must receive every declared surrogate in ONE generation."""

    ensemble = True


def test_ensemble_attacks_receive_every_surrogate_in_one_generation(tmp_path, victims):
    log = tmp_path / "calls.log"
    with registered("test-ensemble", EnsembleLogger):
        spec = {"name": "test-ensemble", "params": {"log": str(log)}}
        store = run_benchmark(
            load_benchmark(write_bench(tmp_path, victims, [spec, "ensemble"])),
            tmp_path / "e",
            progress=False,
        )
        # one generation with both surrogates (+ 2 spot-check runs), evaluated on both victims
        assert calls(log) == ["v0+v1"] * 3
        cells = store.cells()
        assert set(cells["status"]) == {"ok"}
        assert sorted(cells["surrogate"]) == ["v0+v1"] * 4
        # the built-in ensemble and svre declare it
        assert ATTACKS.get("ensemble").ensemble and ATTACKS.get("svre").ensemble
        assert not ATTACKS.get("transfer-mifgsm").ensemble
        f = store.frame()
        both = f[f["attack"] == "ensemble"].groupby("sample_id")["clean_correct"].all()
        for _, g in f[f["attack"] == "ensemble"].groupby("victim"):
            # eligible: every surrogate and the victim correct (here victims = surrogates)
            assert g["eligible"].tolist() == both.loc[g["sample_id"]].tolist()
        store.close()


def test_two_transfer_attacks_on_one_surrogate_keep_their_own_generations(tmp_path, victims):
    """The HDM05 oddity of issue 12 (TASAR and transfer-I-FGSM with identical per-sample outcomes):
    each attack config has its own generation key, its own cached examples and its own outcomes,
    so identical outcomes can only come from the examples themselves (e.g. both fooling nothing)."""
    from robench.run.harness import prepare

    attacks = [
        {"name": "transfer-ifgsm", "params": {"steps": 3}},
        {"name": "transfer-mifgsm", "params": {"steps": 3}},
    ]
    b = load_benchmark(write_bench(tmp_path, victims, attacks, surrogates=[str(victims[0])]))
    cells = prepare(b, tmp_path / "g", "cpu").cells
    by_attack: dict[str, set] = {}
    for c in cells:
        by_attack.setdefault(c.attack.name, set()).add(c.gen_key)
    assert all(len(v) == 1 for v in by_attack.values()), by_attack  # one generation per attack
    assert by_attack["transfer-ifgsm"] != by_attack["transfer-mifgsm"]
    store = run_benchmark(b, tmp_path / "g", progress=False)
    f = store.frame()
    store.close()
    cached = {
        c.attack.name: torch.load(
            tmp_path / "g" / "cache" / f"transfer-{c.gen_key}.pt", weights_only=True
        )
        for c in cells
    }
    assert len(list((tmp_path / "g" / "cache").glob("transfer-*.pt"))) == 2
    assert not torch.equal(cached["transfer-ifgsm"]["x_adv"], cached["transfer-mifgsm"]["x_adv"])
    for name in by_attack:
        assert len(f[f["attack"] == name]) == len(victims) * 16


class ThreadLogger(Attack):
    """A deterministic white-box attack that logs the torch thread count of each worker it runs in."""

    knowledge = Knowledge.WHITE_BOX
    Config = _CountCfg

    def run(self, access, x, y, threat, generator, target):
        with open(self.config.log, "a") as f:
            f.write(f"{torch.get_num_threads()}\n")
        return x.clone()


def test_spot_check_workers_are_single_threaded(tmp_path, victims):
    """The main run gets the plan's thread count; both determinism spot-check runs get one thread
    (a thread-parallel CPU reduction may round differently from one process to the next)."""
    from robench.run.executor import prepare, run_plan

    log = tmp_path / "threads.log"
    with registered("test-thread-logger", ThreadLogger):
        spec = {"name": "test-thread-logger", "params": {"log": str(log)}}
        plan = prepare(load_benchmark(write_bench(tmp_path, victims[:1], [spec])), tmp_path / "s")
        plan.threads = 3
        store = run_plan(plan, 1, progress=False)
        assert store.cells()["status"].tolist() == ["ok"]
        store.close()
    assert sorted(int(t) for t in log.read_text().split()) == [1, 1, 3]


def test_declared_comparisons_travel_from_the_definition_to_the_board(tmp_path, victims):
    from robench.cli import main
    from robench.report.board import board_from_store, read_board

    attacks = [{"name": "transfer-ifgsm", "params": {"steps": 2}},
               {"name": "transfer-mifgsm", "params": {"steps": 2}}]  # fmt: skip
    pairs = [["transfer-mifgsm", "transfer-ifgsm"]]
    p = write_bench(tmp_path, victims, attacks, comparisons=pairs)
    run_benchmark(load_benchmark(p), tmp_path / "r", progress=False).close()
    meta = yaml.safe_load((tmp_path / "r" / "benchmark.json").read_text())
    assert meta["comparisons"] == pairs and meta["board_meta"]["comparisons"] == pairs
    (c,) = board_from_store(tmp_path / "r")["transfer_comparisons"]
    assert (c["attack"], c["reference"]) == tuple(pairs[0]) and c["result"]["n"] > 0
    # --definition takes the definition's own declarations over the stored ones: none, or others
    plain = write_bench(tmp_path, victims, attacks, name="plain.yaml")
    args = ["board", str(tmp_path / "r"), "-o", str(tmp_path / "b"), "--definition", str(plain)]
    assert main([*args, "-q"]) == 0
    assert "transfer_comparisons" not in read_board(tmp_path / "b" / "board.json")
    other = write_bench(tmp_path, victims, attacks, name="other.yaml",
                        comparisons=[["transfer-ifgsm", "transfer-mifgsm"]])  # fmt: skip
    args = ["board", str(tmp_path / "r"), "-o", str(tmp_path / "c"), "--definition", str(other)]
    assert main([*args, "-q"]) == 0
    (c,) = read_board(tmp_path / "c" / "board.json")["transfer_comparisons"]
    assert (c["attack"], c["reference"]) == ("transfer-ifgsm", "transfer-mifgsm")
