"""Your own model as a victim (robench/zoo/external.py): a TorchScript file or a factory plus a
state dict, pinned by sha256, in a benchmark and in ``robench attack``."""

from __future__ import annotations

import pytest
import torch
import yaml
from test_harness import DATA, write_bench
from torch import nn

from robench.cli import main
from robench.data import open_dataset
from robench.errors import CheckpointError, ConfigError
from robench.io import sha256_file
from robench.run.benchmark import load_benchmark
from robench.run.executor import run_benchmark
from robench.zoo import create_victim
from robench.zoo.external import external_source, parse_external

K = 16  # synth-ntu25's classes


class Small(nn.Module):
    """A small model that is not a robench victim: per-joint MLP, mean over time, bodies, joints."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x.permute(0, 2, 3, 4, 1))  # (N, T, V, M, K)
        return h.mean(dim=(1, 2, 3))


def make_small() -> nn.Module:
    return Small()


def fitted(tmp_path) -> Small:
    data = open_dataset(DATA["name"], **{k: v for k, v in DATA.items() if k != "name"})
    train = data.get_split("train")
    m = Small()
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(m(train.x), train.y).backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("ext")
    m = fitted(d)
    torch.save(m.state_dict(), d / "small.pt")
    torch.jit.trace(m, torch.zeros(2, 3, DATA["num_frames"], 25, 2)).save(str(d / "small.ts"))
    return d, m


def test_both_kinds_load_verified_and_answer_like_the_model(models):
    d, m = models
    x = torch.randn(3, 3, DATA["num_frames"], 25, 2) * 0.3
    ts = external_source("torchscript", str(d / "small.ts"), sha256_file(d / "small.ts"))
    mod = external_source("module", str(d / "small.pt"), sha256_file(d / "small.pt"),
                          "test_external_victims:make_small")  # fmt: skip
    with torch.no_grad():
        for src in (ts, mod):
            assert torch.allclose(create_victim(src)(x), m(x), atol=1e-5)
    assert parse_external(mod)[:2] == ("module", "test_external_victims:make_small")
    wrong = mod[:-64] + "0" * 64
    with pytest.raises(CheckpointError, match="refusing to load"):
        create_victim(wrong)
    with pytest.raises(ConfigError, match="64 hex digits"):
        external_source("torchscript", "x.ts", "abc")
    with pytest.raises(ConfigError, match="package.module:factory"):
        external_source("module", "x.pt", "0" * 64, "nofactory")


def test_a_benchmark_attacks_external_models_and_checks_them(models, tmp_path):
    d, m = models
    p = write_bench(tmp_path, [], [{"name": "fgsm"}, {"name": "pgd", "params": {"steps": 3}}])
    doc = yaml.safe_load(p.read_text())
    doc["victims"] = [
        {"torchscript": str(d / "small.ts"), "sha256": sha256_file(d / "small.ts")},
        {"module": "test_external_victims:make_small", "checkpoint": str(d / "small.pt"),
         "sha256": sha256_file(d / "small.pt"), "id": "mine"},
    ]  # fmt: skip
    p.write_text(yaml.safe_dump(doc))
    store = run_benchmark(load_benchmark(p), tmp_path / "r", progress=False)
    cells = store.cells()
    frame = store.frame()
    store.close()
    assert set(cells["status"]) == {"ok"}, cells[["victim", "status", "error"]].to_string()
    assert set(cells["victim"]) == {"small", "mine"}
    assert set(cells["weights_sha256"]) == {
        sha256_file(d / "small.ts"),
        sha256_file(d / "small.pt"),
    }
    assert frame["eligible"].any() and frame.loc[frame["eligible"], "success"].any()
    # bad entries are refused before any cell runs, naming the field
    for entry, msg in (
        ({"torchscript": str(d / "small.ts")}, "'sha256'"),
        ({"module": "test_external_victims:make_small", "sha256": "0" * 64}, "'checkpoint'"),
        ({"torchscript": str(d / "nope.ts"), "sha256": "0" * 64}, "no file at"),
        ({"torchscript": str(d / "small.ts"), "sha256": "0" * 64, "name": "x"}, "no 'name'"),
    ):
        doc["victims"] = [entry]
        p.write_text(yaml.safe_dump(doc))
        with pytest.raises(ConfigError, match=msg):
            load_benchmark(p)
    # the class count is checked on the first forward
    doc["victims"] = [{"torchscript": str(d / "small.ts"), "sha256": sha256_file(d / "small.ts")}]
    doc["dataset"] = {**DATA, "name": "synth-ntu60"}
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="expected a victim with 60 classes"):
        run_benchmark(load_benchmark(p), tmp_path / "k", progress=False)


def test_robench_attack_takes_an_external_source(models, capsys):
    d, _ = models
    src = external_source("torchscript", str(d / "small.ts"), sha256_file(d / "small.ts"))
    opts = {k: v for k, v in DATA.items() if k != "name"}
    npz = d / "tiny.npz"
    open_dataset(DATA["name"], **opts).save(npz)
    assert main(["attack", src, "fgsm", "--dataset", str(npz), "--n", "4", "-q"]) == 0
    assert "fgsm" in capsys.readouterr().out
    assert main(["attack", src, "fgsm", "--n", "4", "-q"]) == 2
    assert "expected --dataset for an external model" in capsys.readouterr().err


def test_a_state_dict_that_does_not_fit_the_factory_is_refused(models, tmp_path):
    d, m = models
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("net.2")}  # a key short
    torch.save(state, tmp_path / "short.pt")
    src = external_source("module", str(tmp_path / "short.pt"), sha256_file(tmp_path / "short.pt"),
                          "test_external_victims:make_small")  # fmt: skip
    with pytest.raises(CheckpointError, match="state dict of"):
        create_victim(src)
    bad = external_source("module", str(d / "small.pt"), sha256_file(d / "small.pt"),
                          "test_external_victims:no_such_factory")  # fmt: skip
    with pytest.raises(ConfigError, match="importable factory"):
        create_victim(bad)
