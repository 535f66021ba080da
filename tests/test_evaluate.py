"""The Python API: ``import robench`` exports, and ``robench.evaluate`` equals the harness."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
import yaml
from torch import nn

import robench
from robench.access import Knowledge
from robench.attack import Attack, AttackConfig
from robench.errors import ConfigError, DataError, RobenchError
from robench.run.benchmark import load_benchmark
from robench.run.cells import derive_seed
from robench.run.evaluate import DEFAULT_ATTACKS, parse_threat
from robench.run.executor import run_benchmark
from robench.run.harness import prepare
from robench.threat import ThreatModel


def test_top_level_exports_resolve_to_their_definitions():
    import robench.access
    import robench.attack
    import robench.victim
    import robench.zoo

    for name in robench.__all__:
        assert getattr(robench, name) is not None, name
    assert robench.register_victim is robench.victim.register_victim
    assert robench.register_attack is robench.attack.register_attack
    assert robench.create_victim is robench.zoo.create_victim
    assert robench.WhiteBox is robench.access.WhiteBox
    assert {"evaluate", "create_victim", "load_victim", "create_attack", "ThreatModel",
            "open_dataset", "WhiteBox", "Transfer", "Query", "NoBox", "register_victim",
            "register_attack", "register_defense"} <= set(robench.__all__)  # fmt: skip
    assert "evaluate" in dir(robench)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        robench.nope  # noqa: B018


def test_import_robench_is_cheap():
    code = "import sys, robench; print('torch' in sys.modules, 'robench.victims' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_evaluate_equals_the_harness_for_the_same_attacks_and_subset(tmp_path):
    doc = {
        "id": "api", "dataset": {"name": "synth-ntu25", "seed": 0}, "split": "test",
        "subset": {"n": 24, "seed": 0}, "victims": ["stgcn.synth_ntu25"],
        "attacks": ["fgsm", {"name": "pgd", "params": {"steps": 3}}],
        "threats": [{"norm": "linf", "eps": 0.01}], "batch_size": 12,
    }  # fmt: skip
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump(doc))
    bench = load_benchmark(path)
    store = run_benchmark(bench, tmp_path / "r", progress=False)
    frame = store.frame()
    store.close()
    plan = prepare(bench, tmp_path / "r")
    victim = robench.create_victim("stgcn.synth_ntu25")
    for cell in plan.cells:
        params = dict(cell.attack.params) if hasattr(cell.attack, "params") else {}
        res = robench.evaluate(
            victim, plan.x, plan.y, attacks=[(cell.attack.name, params)],
            threat=cell.threat, batch_size=12, seed=derive_seed(cell.seed, cell.key),
        )  # fmt: skip
        rows = frame[frame["cell_key"] == cell.key].set_index("sample_id").loc[plan.ids]
        got = res.samples
        assert got["adv_pred"].tolist() == rows["adv_pred"].tolist(), cell.attack.id
        assert (
            got["robust"].tolist()
            == (rows["clean_correct"] & (rows["adv_pred"] == rows["label"])).tolist()
        )
        assert res.robust_accuracy == pytest.approx(got["robust"].mean())
        assert res.clean_accuracy == pytest.approx(rows["clean_correct"].mean())


K = 3


def _tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 25 * 1, K)).eval()
    x = torch.randn(12, 3, 4, 25, 1) * 0.2
    with torch.no_grad():
        y = model(x).argmax(1)
    y[0] = (y[0] + 1) % K  # one clean error
    return model, x, y


@dataclass(frozen=True)
class _OddConfig(AttackConfig):
    parity: int = 0


class _FoolParity(Attack):
    """Pushes the clips at even (parity 0) or odd (parity 1) batch positions out of their class by
    flipping the model's top logit, inside the ball: the two attacks fool disjoint clips."""

    Config = _OddConfig
    knowledge = Knowledge.WHITE_BOX
    norms = ("linf", "l2")

    def run(self, access, x, y, threat, generator, target=None):  # noqa: ANN001, ANN201
        x_adv = x.clone().requires_grad_(True)
        logits = access.victim(x_adv)
        loss = logits.gather(1, y[:, None]).sum()
        (g,) = torch.autograd.grad(loss, x_adv)
        step = -threat.eps * g.sign()
        keep = (torch.arange(len(x)) % 2 == self.config.parity).float()[:, None, None, None, None]
        return (x + step * keep).detach()


def test_worst_case_is_per_sample_over_every_attack():
    model, x, y = _tiny()
    res = robench.evaluate(
        model, x, y, attacks=[_FoolParity(parity=0), ("fgsm", {})], threat=50.0, batch_size=12
    )
    even = res.samples[res.samples["attack"] == "_FoolParity"]
    fgsm = res.samples[res.samples["attack"] == "fgsm"]
    per_sample = even["robust"].to_numpy() & fgsm["robust"].to_numpy()
    assert res.robust.tolist() == per_sample.tolist()
    assert res.robust_accuracy == pytest.approx(per_sample.mean())
    assert res.robust_accuracy <= min(res.per_attack.values())
    assert not res.samples.loc[
        res.samples["index"] == 0, "robust"
    ].any()  # clean error never robust
    assert torch.equal(res.x_adv["fgsm"][0], x[0])  # not attacked (a clean error): its clean clip
    assert not torch.equal(res.x_adv["fgsm"][1], x[1])
    assert res.clean_accuracy == pytest.approx(11 / 12)
    text = res.summary()
    assert "worst case" in text and "clean" in text and "fgsm" in text


def test_disjoint_attacks_leave_worst_case_below_each():
    model, x, y = _tiny()
    res = robench.evaluate(
        model, x, y, attacks={"even": _FoolParity(parity=0), "odd": _FoolParity(parity=1)},
        threat=50.0,
    )  # fmt: skip
    assert set(res.per_attack) == {"even", "odd"}
    assert 0 < min(res.per_attack.values()) and res.robust_accuracy < min(res.per_attack.values())
    assert res.robust_accuracy == 0


def test_threat_forms_and_errors():
    model, _, _ = _tiny()
    assert parse_threat("linf:0.01", model) == ThreatModel(norm="linf", eps=0.01)
    assert parse_threat("l2:0.5", model).norm == "l2"
    assert parse_threat(0.02, model).eps == 0.02
    assert parse_threat({"norm": "l2", "eps": 1.0}, model).eps == 1.0
    tm = ThreatModel(norm="linf", eps=0.3)
    assert parse_threat(tm, model) is tm
    for bad in ("linf", "linf:x", True, [1]):
        with pytest.raises(ConfigError):
            parse_threat(bad, model)


def test_evaluate_refuses_bad_input():
    model, x, y = _tiny()
    with pytest.raises(ConfigError, match="white-box"):
        robench.evaluate(model, x, y, attacks=["transfer-ifgsm"])
    with pytest.raises(ConfigError, match="twice"):
        robench.evaluate(model, x, y, attacks=["fgsm", "fgsm"])
    with pytest.raises(ConfigError, match="at least one"):
        robench.evaluate(model, x, y, attacks=[])
    with pytest.raises(ConfigError, match="'attacks'"):
        robench.evaluate(model, x, y, attacks=[3])
    with pytest.raises(DataError):
        robench.evaluate(model, x[0], y)
    with pytest.raises(ConfigError, match="batch_size"):
        robench.evaluate(model, x, y, attacks=["fgsm"], batch_size=0)
    assert DEFAULT_ATTACKS == ("fgsm", "pgd", "apgd-ce")


class _Escape(Attack):
    """Returns a perturbation twice the radius while claiming nothing: the check must catch it."""

    knowledge = Knowledge.WHITE_BOX
    norms = ("linf",)

    def run(self, access, x, y, threat, generator, target=None):  # noqa: ANN001, ANN201
        return x + 2 * threat.eps


def test_evaluate_checks_every_batch_against_the_threat_model():
    model, x, y = _tiny()
    with pytest.raises(RobenchError, match="threat model"):
        robench.evaluate(model, x, y, attacks=[_Escape()], threat=0.01)


def test_evaluate_unit_override_changes_only_the_statistics():
    model, x, y = _tiny()
    m = robench.evaluate(model, x, y, attacks=["fgsm"], threat=0.01)
    cm = robench.evaluate(model, x, y, attacks=["fgsm"], threat=0.01, unit="cm")
    assert m.threat.unit == "m" and cm.threat.unit == "cm"
    assert m.samples["adv_pred"].tolist() == cm.samples["adv_pred"].tolist()
    a, b = m.samples["joint_disp_cm"].to_numpy(), cm.samples["joint_disp_cm"].to_numpy()
    assert (abs(a - 100 * b) < 1e-6).all()


def test_the_torchattacks_clamping_trap_and_the_adapter():
    """What the README warns of: torchattacks called directly on skeletons clamps metres into
    [0, 1] and moves joints far beyond eps; the adapter keeps the declared threat model."""
    torchattacks = pytest.importorskip("torchattacks")
    victim = robench.create_victim("stgcn.synth_ntu25")
    test = robench.open_dataset("synth-ntu25").get_split("test")
    x, y = test.x[:8], test.y[:8]
    shape = x.shape[1:]

    class Flat(nn.Module):  # torchattacks wants (N, C, H, W)
        def __init__(self) -> None:
            super().__init__()
            self.m = victim

        def forward(self, u: torch.Tensor) -> torch.Tensor:
            return self.m(u.reshape(-1, *shape))

    direct = torchattacks.PGD(Flat(), eps=0.01, alpha=0.0025, steps=2)
    x_adv = direct(x.reshape(len(x), 3, shape[1], -1), y).reshape(x.shape)
    assert float((x_adv - x).abs().max()) > 0.5  # metres, against eps = 1 cm
    res = robench.evaluate(victim, x, y, attacks={"ta-pgd": ("torchattacks:PGD", {"steps": 2})})
    assert res.samples["linf"].max() <= 0.01 + 1e-6


def test_evaluate_takes_a_zoo_name_and_a_skeleton_set():
    test = robench.open_dataset("synth-ntu25").get_split("test").select(range(6))
    a = robench.evaluate("stgcn.synth_ntu25", test, attacks=["fgsm"])
    b = robench.evaluate(
        robench.create_victim("stgcn.synth_ntu25"), test.x, test.y, attacks=["fgsm"]
    )
    assert a.samples["adv_pred"].tolist() == b.samples["adv_pred"].tolist()
    assert a.threat.unit == test.unit and a.threat.topology == test.topology
    with pytest.raises(DataError, match="y = None"):
        robench.evaluate("stgcn.synth_ntu25", test, test.y)


def test_evaluate_review_edges():
    test = robench.open_dataset("synth-ntu25").get_split("test").select(range(4))
    with pytest.raises(ConfigError, match="data's unit 'm'"):
        robench.evaluate("stgcn.synth_ntu25", test, attacks=["fgsm"], threat=ThreatModel(unit="cm"))
    with pytest.raises(DataError, match="N >= 1"):
        robench.evaluate("stgcn.synth_ntu25", test.x[:0], test.y[:0], attacks=["fgsm"])
    with pytest.raises(ConfigError, match="nrom"):
        robench.evaluate("stgcn.synth_ntu25", test, attacks=["fgsm"], threat={"nrom": "l2"})


def test_a_skeleton_set_gives_its_unit_to_a_threat_given_as_text():
    import dataclasses as dc

    test = robench.open_dataset("synth-ntu25").get_split("test").select(range(2))
    in_cm = dc.replace(test, x=test.x * 100, unit="cm")
    res = robench.evaluate("stgcn.synth_ntu25", in_cm, attacks=["fgsm"], threat="linf:1.0")
    assert res.threat.unit == "cm" and res.threat.eps == 1.0
    assert res.samples["joint_disp_cm"].max() <= 3**0.5 + 1e-6  # 1 cm per coordinate, in cm
