"""Cheating plugins written against the public API, run through the harness like any benchmark.

Each is either impossible by construction (the attack's worker process holds only its grant, the
harness scores on its own pristine victim and judges with its own threat model) or caught (the cell
is ``invalid`` or ``error`` with the reason); honest cells of the same victim run after them are
unaffected. The attacks are registered only for the duration of a test (``registered``) and report
what they could reach through a log file passed in their config (they run in another process).
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_harness import DATA, make_victims, registered, write_bench

from robench.access import Knowledge
from robench.attack import Attack, AttackConfig
from robench.data import open_dataset
from robench.data.dataset import SkeletonSet
from robench.run.benchmark import load_benchmark
from robench.run.executor import run_benchmark


@dataclass(frozen=True)
class LogCfg(AttackConfig):
    log: str = ""  # where the attack writes what it found
    folder: str = ""  # a path a plugin might have found on disk (results folder)


def note(cfg: LogCfg, **what) -> None:
    with open(cfg.log, "a") as f:
        f.write(json.dumps(what) + "\n")


def notes(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def fgsm_step(model, x, y, threat):
    xr = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    return threat.project(x, x + threat.eps * g.sign())


class _WB(Attack):
    knowledge = Knowledge.WHITE_BOX
    Config = LogCfg


# ---------------------------------------------------------------------- white-box cheats
class ForwardHook(_WB):
    """Registers a hook that makes the victim predict a wrong class, returns the input unchanged."""

    def run(self, access, x, y, threat, generator, target):
        access.victim.register_forward_hook(lambda m, i, out: out.roll(1, dims=1) * 100)
        return x.clone()


class ReplacedForward(_WB):
    def run(self, access, x, y, threat, generator, target):
        v = access.victim
        v.forward = lambda z: torch.zeros(z.shape[0], 16).index_fill_(1, torch.tensor([15]), 1e3)
        return x.clone()


class EditedBuffers(_WB):
    """Scrambles every buffer (non-persistent ones included) and every weight of its victim."""

    def run(self, access, x, y, threat, generator, target):
        with torch.no_grad():
            for t in (*access.victim.buffers(), *access.victim.parameters()):
                if t.is_floating_point():
                    t.mul_(-3.0)
        return x.clone()


class PatchedCheck(_WB):
    """Disables the threat check in its process, then goes 10x over the budget."""

    def run(self, access, x, y, threat, generator, target):
        import robench.threat

        robench.threat.ThreatModel.check = lambda self, a, b: []
        return x + 10 * threat.eps * (x != 0)


class MutatedThreat(_WB):
    """Widens the threat model it was given to eps = 0.5 and uses it."""

    def run(self, access, x, y, threat, generator, target):
        object.__setattr__(threat, "eps", 0.5)
        return threat.project(x, x + 0.4 * (x != 0))


class LooksClean(torch.Tensor):
    """A tensor subclass that reports itself inside every threat model."""


class TensorSubclass(_WB):
    def run(self, access, x, y, threat, generator, target):
        import robench.threat

        original = robench.threat.ThreatModel.check
        robench.threat.ThreatModel.check = lambda self, a, b: (
            [] if isinstance(b, LooksClean) else original(self, a, b)
        )
        return (x + 0.5 * (x != 0)).as_subclass(LooksClean)


class OverridesCall(_WB):
    def __call__(self, access, x, y, threat, generator=None, target=None):  # type: ignore[override]
        return x + 10 * threat.eps

    def run(self, access, x, y, threat, generator, target):
        return x.clone()


class Exits(_WB):
    def run(self, access, x, y, threat, generator, target):
        sys.exit(0)


class HardExits(_WB):
    def run(self, access, x, y, threat, generator, target):
        os._exit(0)


class StoreWriter(_WB):
    """Looks for the results store in memory and on disk and tries to write success rows."""

    def run(self, access, x, y, threat, generator, target):
        conns = [o for o in gc.get_objects() if type(o) is sqlite3.Connection]
        here = [str(p) for p in Path.cwd().rglob("results.sqlite")]
        try:
            con = sqlite3.connect(Path(self.config.folder) / "results.sqlite", timeout=0.2)
            con.execute("UPDATE samples SET success = 1")
            con.commit()
            wrote = "yes"
        except sqlite3.OperationalError as e:
            wrote = str(e)
        note(self.config, connections=len(conns), found_in_cwd=here, wrote=wrote)
        return x.clone()


class LiesAboutDeterminism(_WB):
    """Declares randomized=False (the default) but draws from torch's global generator."""

    def run(self, access, x, y, threat, generator, target):
        return threat.project(x, x + threat.eps * torch.randn_like(x).sign())


WHITE_BOX_CHEATS = {
    "cheat-hook": ForwardHook,
    "cheat-forward": ReplacedForward,
    "cheat-buffers": EditedBuffers,
    "cheat-patch-check": PatchedCheck,
    "cheat-mutate-threat": MutatedThreat,
    "cheat-subclass": TensorSubclass,
    "cheat-override-call": OverridesCall,
    "cheat-exit": Exits,
    "cheat-os-exit": HardExits,
    "cheat-store": StoreWriter,
    "cheat-nondeterministic": LiesAboutDeterminism,
}


@pytest.fixture(scope="module")
def victims(tmp_path_factory):
    return make_victims(tmp_path_factory.mktemp("victims"))


def run_with(tmp_path, victims, attacks: dict, specs: list, **extra):
    import contextlib

    with contextlib.ExitStack() as stack:
        for name, cls in attacks.items():
            stack.enter_context(registered(name, cls))
        p = write_bench(tmp_path, victims, specs, **extra)
        return run_benchmark(load_benchmark(p), tmp_path / "res", progress=False)


def test_white_box_cheats_are_impossible_or_caught(tmp_path, victims):
    log = tmp_path / "found.log"
    params = {"log": str(log), "folder": str(tmp_path / "res")}
    specs = (
        ["fgsm"]
        + [{"name": n, "params": params} for n in WHITE_BOX_CHEATS]
        + [{"name": "fgsm", "id": "fgsm-after"}]
    )
    store = run_with(tmp_path, victims[:1], WHITE_BOX_CHEATS, specs)
    cells = store.cells().set_index("attack")
    frame = store.frame()
    status = cells["status"].to_dict()
    err = cells["error"].to_dict()
    # impossible by construction: the tampering hit the worker's copy; the pristine victim scored
    for name in ("cheat-hook", "cheat-forward", "cheat-buffers", "cheat-store"):
        rows = frame[frame["attack"] == name]
        assert status[name] == "ok", (name, err[name])
        assert rows["eligible"].any() and not rows["success"].any(), name
        assert (rows["adv_pred"] == rows["clean_pred"]).all(), name
    # caught: invalid with the reason
    assert (
        status["cheat-patch-check"] == "invalid"
        and "left the threat model" in err["cheat-patch-check"]
    )
    assert "linf norm 0.1" in err["cheat-patch-check"]
    assert status["cheat-mutate-threat"] == "invalid" and "eps 0.01" in err["cheat-mutate-threat"]
    assert status["cheat-subclass"] == "invalid" and "plain tensors" in err["cheat-subclass"]
    assert (
        status["cheat-override-call"] == "invalid"
        and "Attack.__call__" in err["cheat-override-call"]
    )
    assert status["cheat-nondeterministic"] == "invalid"
    assert "randomized=False" in err["cheat-nondeterministic"]
    # a worker that exits is an error cell, never a silent pass
    assert status["cheat-exit"] == "error" and "SystemExit" in err["cheat-exit"]
    assert status["cheat-os-exit"] == "error" and "exited with code 0" in err["cheat-os-exit"]
    # the store: nothing in the worker's memory or working folder, and locked on disk
    found = notes(log)  # the main run and the two determinism spot-check runs
    assert len(found) == 3
    assert all(f["connections"] == 0 and f["found_in_cwd"] == [] for f in found)
    assert all("locked" in f["wrote"] for f in found)
    # later cells of the same victim are unaffected: the honest FGSM before and after agree
    before = frame[frame["attack"] == "fgsm"].reset_index(drop=True)
    after = frame[frame["attack"] == "fgsm-after"].reset_index(drop=True)
    assert before["adv_pred"].tolist() == after["adv_pred"].tolist()
    assert before["linf"].tolist() == after["linf"].tolist()
    assert (cells.loc[["fgsm", "fgsm-after"], "eps"] == 0.01).all()
    assert before["success"].any()
    store.close()


# ---------------------------------------------------------------------- transfer cheats
class _TR(Attack):
    knowledge = Knowledge.TRANSFER
    Config = LogCfg


class GcHunter(_TR):
    """Collects every nn.Module it can find in its process and attacks them all white-box."""

    def run(self, access, x, y, threat, generator, target):
        roots = [
            o for o in gc.get_objects() if isinstance(o, torch.nn.Module) and hasattr(o, "logits")
        ]
        frames = [
            v
            for fr in inspect.stack()
            for v in fr.frame.f_locals.values()
            if isinstance(v, torch.nn.Module) and all(v is not s for s in access.surrogates)
        ]
        note(
            self.config,
            models=len(roots),
            foreign_in_frames=len(frames),
            ids=list(access.surrogate_ids),
        )
        x_adv = x.clone()
        for m in roots:
            x_adv = fgsm_step(m, x_adv, y, threat)
        return x_adv


class CopiesWhiteBox(_TR):
    """Found the results folder on disk: copies the white-box FGSM examples made on the *other*
    model (those that differ from FGSM on its own surrogate)."""

    def run(self, access, x, y, threat, generator, target):
        own = fgsm_step(access.surrogates[0], x, y, threat)
        out = own.clone()
        for p in sorted((Path(self.config.folder) / "cache").glob("adv-*.pt")):
            d = torch.load(p, weights_only=True)
            # the ids of this batch are not given to attacks: match the clips by content
            for xa in d["x_adv"]:
                hit = ((x - xa[None]).abs().flatten(1).amax(1) <= threat.eps * 1.0001).nonzero()
                if hit.numel() and not torch.equal(own[hit[0, 0]], xa):
                    out[hit[0, 0]] = xa
        return out


def test_transfer_cheats_reach_only_the_surrogate_or_are_caught(tmp_path, victims):
    log = tmp_path / "found.log"
    params = {"log": str(log), "folder": str(tmp_path / "res")}
    cheats = {"cheat-gc": GcHunter, "cheat-copy": CopiesWhiteBox}
    specs = [
        "fgsm",
        {"name": "cheat-gc", "params": params},
        {"name": "cheat-copy", "params": params},
    ]
    store = run_with(tmp_path, victims, cheats, specs)
    cells = store.cells()
    gcs = cells[cells["attack"] == "cheat-gc"]
    assert set(gcs["status"]) == {"ok"}
    found = notes(log)
    # one generation per surrogate (and two spot-check runs each): only that surrogate was reachable
    assert {tuple(f["ids"]) for f in found} == {("v0",), ("v1",)}
    assert all(f["models"] == 1 and f["foreign_in_frames"] == 0 for f in found)
    copy = cells[(cells["attack"] == "cheat-copy") & (cells["surrogate"] != cells["victim"])]
    assert set(copy["status"]) == {"invalid"}
    assert copy["error"].str.contains("identical to a white-box cell's example").all()
    store.close()


# ---------------------------------------------------------------------- query and no-box cheats
class QueryHunter(Attack):
    """Looks for the model behind its oracle and tries to turn a label oracle into a score one."""

    knowledge = Knowledge.QUERY
    Config = LogCfg

    def run(self, access, x, y, threat, generator, target):
        o = access.oracle
        models = [m for m in gc.get_objects() if isinstance(m, torch.nn.Module)]
        tries = {}
        for attr, value in (("mode", "score"), ("budget", 10**9), ("_model", None)):
            try:
                setattr(o, attr, value)
                tries[attr] = "set"
            except AttributeError:
                tries[attr] = "refused"
        answer = o(x)
        note(
            self.config, models=len(models), tries=tries, dtype=str(answer.dtype), dim=answer.dim()
        )
        return x.clone()


class IndexLiar(Attack):
    """Spends five times the budget, attributing every query to sample 0."""

    knowledge = Knowledge.QUERY
    Config = LogCfg

    def run(self, access, x, y, threat, generator, target):
        zero = torch.zeros(x.shape[0], dtype=torch.int64)
        for _ in range(5 * access.oracle.budget):
            access.oracle(x, zero)
        return x.clone()


class NoBoxHunter(Attack):
    """Looks for labels and labelled training data in its process."""

    knowledge = Knowledge.NO_BOX
    Config = LogCfg

    def run(self, access, x, y, threat, generator, target):
        ints = [
            o for o in gc.get_objects()
            if isinstance(o, torch.Tensor) and o.dtype == torch.int64 and o.numel() > 1 and bool((o >= 0).all())
        ]  # fmt: skip
        note(
            self.config,
            labels=sorted(set(y.tolist())),
            data=list(access.data.shape),
            int_tensors=len(ints),
        )
        return x.clone()


def nobox_dataset(path: Path) -> Path:
    """The tiny synthetic set with its test split renamed ``nobox`` (unlabelled attacker data)."""
    d = open_dataset(DATA["name"], **{k: v for k, v in DATA.items() if k != "name"})
    split = tuple("nobox" if s == "test" else s for s in d.split)
    SkeletonSet(
        x=d.x, y=d.y, ids=d.ids, class_names=d.class_names, topology=d.topology, unit=d.unit,
        name="tiny-nobox", split=split,
    ).save(path)  # fmt: skip
    return path


def test_query_and_no_box_cheats_reach_nothing_more(tmp_path, victims):
    log = tmp_path / "found.log"
    params = {"log": str(log)}
    cheats = {"cheat-query": QueryHunter, "cheat-index": IndexLiar, "cheat-nobox": NoBoxHunter}
    specs = [
        {"name": "cheat-query", "params": params, "budget": 10},
        {"name": "cheat-index", "params": params, "budget": 10},
        {"name": "cheat-nobox", "params": params},
    ]
    data = nobox_dataset(tmp_path / "nobox.npz")
    store = run_with(tmp_path, victims[:1], cheats, specs, dataset={"path": str(data)})
    cells = store.cells().set_index("attack")
    found = notes(log)  # main runs and the determinism spot-check runs
    q = next(f for f in found if "models" in f)
    nb = next(f for f in found if "labels" in f)
    assert all(f == q for f in found if "models" in f) and all(
        f == nb for f in found if "labels" in f
    )
    assert q["models"] == 0  # the oracle's model lives in the harness process
    assert q["tries"] == {"mode": "refused", "budget": "refused", "_model": "set"}  # its own proxy
    assert q["dtype"] == "torch.int64" and q["dim"] == 1  # still labels only
    assert cells.loc["cheat-query", "status"] == "ok"
    f = store.frame()
    assert (f.loc[(f["attack"] == "cheat-query") & f["eligible"], "queries"] == 1).all()
    assert cells.loc["cheat-index", "status"] == "invalid"
    assert "budget" in cells.loc["cheat-index", "error"]
    assert nb["labels"] == [-1] and nb["int_tensors"] == 0
    n_nobox = sum(s == "nobox" for s in SkeletonSet.load(data).split)
    assert nb["data"][0] == n_nobox
    assert cells.loc["cheat-nobox", "status"] == "ok"
    store.close()


def test_no_box_on_a_file_without_a_disjoint_split_is_refused(tmp_path, victims):
    """A data set file without a ``nobox`` split has no attacker data: refused before the attack
    runs. A built-in world has its generator's no-box clips (performers no victim saw)."""
    log = tmp_path / "found.log"
    d = open_dataset(DATA["name"], **{k: v for k, v in DATA.items() if k != "name"})
    d.save(tmp_path / "plain.npz")
    spec = [{"name": "cheat-nobox", "params": {"log": str(log)}}]
    store = run_with(tmp_path, victims[:1], {"cheat-nobox": NoBoxHunter}, spec,
                     dataset={"path": str(tmp_path / "plain.npz")})  # fmt: skip
    c = store.cells().iloc[0]
    assert c["status"] == "invalid" and "'nobox' split" in c["error"]
    assert not log.exists()  # the attack never ran
    store.close()
    (tmp_path / "b").mkdir()
    store = run_with(tmp_path / "b", victims[:1], {"cheat-nobox": NoBoxHunter}, spec)
    assert store.cells().iloc[0]["status"] == "ok"
    assert notes(log)[0]["data"][0] == 2000 and notes(log)[0]["labels"] == [-1]
    store.close()


def test_a_replaced_judging_function_in_the_harness_process_stops_every_cell(
    tmp_path, victims, monkeypatch
):
    """As a plugin's import-time code could: the threat check replaced in the harness process."""
    import robench.threat

    store = run_with(tmp_path, victims[:1], {}, ["fgsm"])  # honest baseline: ok
    assert set(store.cells()["status"]) == {"ok"}
    store.close()
    monkeypatch.setattr(robench.threat.ThreatModel, "check", lambda self, a, b: [])
    (tmp_path / "b").mkdir()
    store = run_with(tmp_path / "b", victims[:1], {}, ["fgsm"])
    c = store.cells().iloc[0]
    assert c["status"] == "error" and "ThreatModel.check" in c["error"] and "replaced" in c["error"]
    assert len(store.frame(None)) == 0  # nothing was scored
    store.close()
