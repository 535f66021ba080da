"""One-off white-box runs (robench.run.oneoff) and the ``robench attack`` command, on tiny data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robench import zoo as zoo_module
from robench.cli import main
from robench.data.dataset import SkeletonSet
from robench.data.skeleton import BUILTIN_TOPOLOGIES
from robench.errors import ConfigError
from robench.run.metrics import wilson_interval
from robench.run.oneoff import run_one_off

T, V, M, K = 8, 25, 2, 3


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * T * V * M, 16), nn.Tanh(), nn.Linear(16, K)
    ).eval()


def tiny_test_set(model: nn.Module, n: int = 10, wrong: int = 2) -> SkeletonSet:
    """Random clips labelled by the model itself, except the first ``wrong`` (so they are misclassified)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, T, V, M, generator=g) * 0.3
    x[:, :, T - 2 :] = 0  # padding
    x[1::2, :, :, :, 1] = 0  # absent second body
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:wrong] = (y[:wrong] + 1) % K
    return SkeletonSet(
        x=x, y=y, ids=tuple(f"s{i}" for i in range(n)), class_names=tuple(f"c{k}" for k in range(K)),
        topology=BUILTIN_TOPOLOGIES["ntu25"], unit="m", name="tiny", split=("test",) * n,
    )  # fmt: skip


class Bucket(nn.Module):
    """Class k when the first coordinate of the first joint lies in bucket k (of K)."""

    def forward(self, x):
        v = x[:, 0, 0, 0, 0]
        return torch.stack([-(v - k).abs() for k in range(K)], 1) * 10


def test_run_one_off_samples_a_class_sorted_file_across_classes():
    """A split sorted by class (10 clips each): the first 6 correct clips of the seeded order span
    several classes, where the file's first 6 are all class 0."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 3, T, V, M, generator=g) * 0.1 + 0.5
    y = torch.arange(30) // 10  # sorted by class
    x[:, 0, 0, 0, 0] = y.float()
    data = SkeletonSet(x=x, y=y, ids=tuple(f"s{i}" for i in range(30)),
                       class_names=tuple(f"c{k}" for k in range(K)),
                       topology=BUILTIN_TOPOLOGIES["ntu25"], unit="m", name="sorted",
                       split=("test",) * 30)  # fmt: skip
    r = run_one_off("b", "fgsm", n=6, progress=False, model=Bucket(), dataset=data, batch_size=2)
    assert r["n"] == 6 and r["n_scanned"] == 6 and r["clean_accuracy"] == 1.0
    assert len(set(r["per_sample"]["clean_pred"].tolist())) > 1


def test_run_one_off_attacks_the_first_correct_samples():
    model = tiny_model()
    data = tiny_test_set(model)
    r = run_one_off(
        "tiny",
        "pgd",
        eps=0.02,
        steps=5,
        n=5,
        seed=0,
        progress=False,
        model=model,
        dataset=data,
        batch_size=2,
    )
    # the clips are visited in a seeded permutation, in batches of 2, until 5 are correct
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0)).tolist()
    wrong_at = [order.index(0), order.index(1)]  # where the two mislabelled clips fall
    need = next(k for k in range(1, 11) if k - sum(w < k for w in wrong_at) >= 5)
    scanned = min(10, -(-need // 2) * 2)
    assert r["n"] == 5 and r["n_test"] == 10 and r["n_scanned"] == scanned
    assert r["clean_accuracy"] == pytest.approx(1 - sum(w < scanned for w in wrong_at) / scanned)
    assert r["threat"] == "linf-eps0.02m" and r["attack"] == "pgd"
    assert 0 <= r["successes"] <= 5 and r["success_rate"] == r["successes"] / 5
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson_interval(r["successes"], 5))
    assert r["linf"] <= 0.02 * (1 + 1e-6) and r["joint_disp_cm"] > 0
    assert r["per_sample"]["clean_correct"].all()  # only correctly classified samples are attacked
    assert r["per_sample"]["success"].sum() == r["successes"]
    # same seed, same numbers; the victim is left in eval mode
    r2 = run_one_off(
        "tiny",
        "pgd",
        eps=0.02,
        steps=5,
        n=5,
        seed=0,
        progress=False,
        model=model,
        dataset=data,
        batch_size=2,
    )
    assert torch.equal(r["per_sample"]["linf"], r2["per_sample"]["linf"]) and not model.training


def test_run_one_off_steps_mapping_and_errors():
    model = tiny_model()
    data = tiny_test_set(model)
    r = run_one_off(
        "tiny", "smart", eps=0.01, steps=2, n=3, progress=False, model=model, dataset=data
    )
    assert r["n"] == 3  # steps -> SMART's 'iterations'
    with pytest.raises(ConfigError, match="iteration count"):
        run_one_off("tiny", "fgsm", steps=3, progress=False, model=model, dataset=data)
    with pytest.raises(ConfigError, match="white-box"):
        run_one_off("tiny", "transfer-ifgsm", progress=False, model=model, dataset=data)


def test_attack_command_prints_a_summary(tmp_path, monkeypatch, capsys):
    model = tiny_model()
    path = tiny_test_set(model).save(tmp_path / "tiny.npz")
    monkeypatch.setattr(zoo_module, "create_victim", lambda name, **kw: model)
    rc = main(
        ["attack", "tiny", "fgsm", "--eps", "0.02", "--n", "4", "--dataset", str(path), "--quiet"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "success rate" in out and "95% CI" in out and "bone deviation" in out and "/4)" in out
    rc = main(["attack", "tiny", "fgsm", "--steps", "3", "--dataset", str(path), "--quiet"])
    assert rc == 2 and "iteration count" in capsys.readouterr().err
