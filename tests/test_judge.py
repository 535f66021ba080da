"""The harness's judge, unit by unit: each check fails on exactly what it is documented to catch."""

from __future__ import annotations

import pytest
import torch
import yaml
from test_harness import Crash, make_victims, registered, write_bench
from torch import nn

from robench.cli import main
from robench.errors import ConfigError, ThreatViolation
from robench.registry import Registry
from robench.run.judge import check_stored_norms, compare_spot, fingerprint, judge_batch
from robench.threat import ThreatModel


def test_stored_norms_must_lie_within_eps_with_the_checks_tolerance():
    t = ThreatModel(eps=0.01)
    attacked = torch.tensor([0, 2])
    ok = {"linf": torch.tensor([0.01 * (1 + 1e-7), 5.0, 0.005])}  # sample 1 not attacked
    check_stored_norms(t, ok, attacked)
    bad = {"linf": torch.tensor([0.0, 0.0, 0.0101])}
    with pytest.raises(ThreatViolation, match="stored linf <= eps 0.01, got 0.0101"):
        check_stored_norms(t, bad, attacked)
    l2 = ThreatModel(norm="l2", eps=0.5)
    with pytest.raises(ThreatViolation, match="stored l2"):
        check_stored_norms(
            l2, {"l2": torch.tensor([0.6]), "linf": torch.tensor([0.0])}, attacked[:1]
        )


def test_judge_batch_accepts_only_plain_tensors_inside_the_threat_model():
    x = torch.ones(2, 3, 4, 25, 1)
    t = ThreatModel(eps=0.01)
    assert judge_batch(t, x, x + 0.005, "a") is not None

    class Sub(torch.Tensor):
        pass

    with pytest.raises(ThreatViolation, match="plain torch.Tensor"):
        judge_batch(t, x, (x + 0.0).as_subclass(Sub), "a")
    with pytest.raises(ThreatViolation, match="dtype"):
        judge_batch(t, x, x.double(), "a")
    with pytest.raises(ThreatViolation, match="left the threat model"):
        judge_batch(t, x, x + 0.02, "a")


def test_spot_check_requires_bit_identical_runs():
    a = torch.zeros(2, 3)
    compare_spot(a, a.clone(), "a")
    with pytest.raises(ThreatViolation, match="max difference of 1e-07"):
        compare_spot(a, a + torch.tensor(1e-7), "a")


def test_fingerprint_sees_hooks_replaced_forward_and_non_persistent_buffers():
    def net() -> nn.Module:
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(3, 2))
        m.register_buffer("adj", torch.ones(2), persistent=False)
        return m.eval()

    # the same object over time (object identities are part of it: a replaced attribute shows)
    m = net()
    ref = fingerprint(m)
    assert fingerprint(m) == ref
    for tamper in (
        lambda m: m.register_forward_hook(lambda *a: None),
        lambda m: setattr(m, "forward", lambda x: x),
        lambda m: m.adj.mul_(2),
        lambda m: m[0].weight.data.add_(1e-6),
        lambda m: m.train(),
    ):
        m = net()
        before = fingerprint(m)
        tamper(m)
        assert fingerprint(m) != before


def test_registry_families_resolve_and_refuse_duplicates():
    reg = Registry("widget", "robench.defenses", "robench.test-widgets", "how")

    @reg.register_family("fam")
    class F:
        pass

    assert reg.family("fam:MEMBER") == (F, "MEMBER") and reg.family("other:X") is None
    assert reg.family("plain") is None
    with pytest.raises(ConfigError, match="already registered"):

        @reg.register_family("fam")
        class G:
            pass

    with pytest.raises(ConfigError, match="identifier"):
        reg.register_family("not a prefix")


def test_robench_run_exits_1_when_a_cell_ends_in_error(tmp_path):
    victims = make_victims(tmp_path)
    with registered("test-crash", Crash):
        p = write_bench(tmp_path, victims[:1], ["fgsm", "test-crash"])
        rc = main(["run", str(p), "--out", str(tmp_path / "r"), "--board-out",
                   str(tmp_path / "b"), "--quiet"])  # fmt: skip
    assert rc == 1
    assert (tmp_path / "b" / "board.json").exists()  # the board is still written
    ok = write_bench(tmp_path, victims[:1], ["fgsm"], name="ok.yaml")
    assert yaml.safe_load(ok.read_text())["attacks"] == ["fgsm"]
    rc = main(["run", str(ok), "--out", str(tmp_path / "r2"), "--board-out",
               str(tmp_path / "b2"), "--quiet"])  # fmt: skip
    assert rc == 0
