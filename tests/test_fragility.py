"""BIM's and PGD's early stop, and the fragility measurement (``robench fragility``)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_set
from test_attacks_whitebox import trained  # noqa: F401, F811  (a fixture)
from torch import nn

from robench.access import WhiteBox
from robench.attack import create_attack
from robench.cli import main
from robench.errors import ConfigError, DataError
from robench.run import fragility
from robench.threat import ThreatModel

EPS_SOME = 0.004  # fools some of the trained MLP's clips within 12 steps, not all


class Counting(nn.Module):
    """Wraps a model and counts the samples of every forward pass."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return self.inner(x)


@pytest.mark.parametrize("name", ["bim", "pgd", "tasar-fgsm", "tasar-mifgsm"])
def test_early_stop_keeps_the_first_fooling_iterate_and_spends_no_more_gradients(name, trained):  # noqa: F811
    net, x, y = trained
    model = Counting(net)
    threat = ThreatModel(eps=EPS_SOME)
    steps = 12
    kw = {"random_start": False} if name == "pgd" else {}
    count = "iterations" if name.startswith("tasar") else "steps"
    plain = create_attack(name, **{count: steps}, **kw)
    early = create_attack(name, **{count: steps}, early_stop=True, **kw)
    assert plain.config.early_stop is False  # the default judges the final iterate
    got = early(WhiteBox(model), x, y, threat, torch.Generator().manual_seed(0))
    spent = model.seen
    model.seen = 0
    # reference: run the plain attack step by step, freezing each sample at its first fooling iterate
    alpha = {"bim": 1.25 / steps, "pgd": 2.5 / steps}.get(name, 1.0) * threat.eps
    mu = 0.1 if name == "tasar-mifgsm" else 0.0  # the benchmark MI-FGSM's raw-gradient momentum
    ref, frozen = x.clone(), torch.zeros(len(y), dtype=torch.bool)
    mom = torch.zeros_like(x)
    grads = 0
    for _ in range(steps):
        xr = ref.clone().requires_grad_(True)
        logits = model.inner(xr)
        frozen |= logits.argmax(1) != y
        grads += int((~frozen).sum())
        (g,) = torch.autograd.grad(
            torch.nn.functional.cross_entropy(logits, y, reduction="sum"), xr
        )
        allowed = threat.allowed_mask(x).expand_as(g)
        g = g * allowed
        if name.startswith("tasar"):  # N(m) = m / mean|m| over the coordinates that move
            mom = torch.where(frozen.view(-1, 1, 1, 1, 1), mom, mu * mom + g)
            mean = mom.abs().flatten(1).sum(1) / allowed.flatten(1).sum(1)
            d = mom / mean.clamp_min(1e-12).view(-1, 1, 1, 1, 1)
        else:
            d = g.sign()
        step = threat.project(x, ref + alpha * d)
        ref = torch.where(frozen.view(-1, 1, 1, 1, 1), ref, step)
    torch.testing.assert_close(got, ref)
    assert 0 < frozen.sum() < len(y)  # some samples stop early, others run to the end
    fooled_early = model.inner(got).argmax(1) != y
    assert bool(fooled_early[frozen].all())
    # gradients: every sample in the first pass, then only the active ones
    assert spent < steps * len(y)
    final = plain(WhiteBox(model), x, y, threat, torch.Generator().manual_seed(0))
    assert model.seen == steps * len(y)
    assert (model.inner(final).argmax(1) != y).sum() <= fooled_early.sum()


def _victim(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25 * 2, 3)).eval()


def _data():
    ds = make_tiny_set(n=60, t=8, classes=3, seed=1)
    return ds


def _trained() -> tuple[nn.Module, object]:
    """A linear model fitted to the tiny set (least squares on one-hot labels) so that most clips
    are classified correctly."""
    ds = _data()
    model = _victim()
    xf = ds.x.flatten(1)
    noise = torch.randn(len(xf), 3, generator=torch.Generator().manual_seed(0))
    target = torch.nn.functional.one_hot(ds.y, 3).float() * 10 + 2 * noise  # varied margins
    sol = torch.linalg.lstsq(torch.cat([xf, torch.ones(len(xf), 1)], 1), target).solution
    with torch.no_grad():
        model[1].weight.copy_(sol[:-1].T)
        model[1].bias.copy_(sol[-1])
    return model, ds


def test_measure_rows_margins_and_resume(tmp_path):
    model, ds = _trained()
    out = tmp_path / "f.json"
    calls = []
    doc = fragility.measure({"lin": model}, ds, eps=(0.05, 0.1), steps=(2, 5), attacks=("bim",),
                            n=20, out=out, progress=calls.append, batch_size=8)  # fmt: skip
    assert len(doc["rows"]) == 4 and len(calls) == 4
    rows = {(r["steps"], r["eps"]): r for r in doc["rows"]}
    # success grows with the radius, and every row carries its interval and key fields
    assert rows[(5, 0.1)]["success_rate"] > rows[(5, 0.05)]["success_rate"]
    for r in doc["rows"]:
        assert r["ci_low"] <= r["success_rate"] <= r["ci_high"]
        assert r["n"] == 20 and r["early_stop"] is True and r["data"] == ds.fingerprint()
    # the same result as a direct attack on the first 20 correctly classified clips
    logits = model(ds.x)
    pick = (logits.argmax(1) == ds.y).nonzero().flatten()[:20]
    x, y = ds.x[pick], ds.y[pick]
    att = create_attack("bim", steps=5, early_stop=True)
    threat = ThreatModel(eps=0.1, unit="m", topology=ds.topology)
    adv = torch.cat([att(WhiteBox(model), x[i : i + 8], y[i : i + 8], threat,
                         torch.Generator().manual_seed(0)) for i in range(0, 20, 8)])  # fmt: skip
    assert rows[(5, 0.1)]["successes"] == int((model(adv).argmax(1) != y).sum()) > 0
    # margins: z_y - max other, quantiles ordered, all positive on correctly classified clips
    top2 = model(x).detach().topk(2, dim=1).values
    m = doc["victims"]["lin"]["margin"]
    gap = (top2[:, 0] - top2[:, 1]).double()
    assert m["q50"] == pytest.approx(float(gap.quantile(0.5)), rel=1e-4)  # interpolated median
    assert m["mean"] == pytest.approx(float(gap.mean()), rel=1e-4)
    assert 0 < m["q10"] <= m["q25"] <= m["q50"] <= m["q75"] <= m["q90"]
    # resume: the file holds the rows; a second call with one more radius runs only the new rows
    calls.clear()
    again = fragility.measure({"lin": model}, ds, eps=(0.05, 0.1, 0.3), steps=(2, 5),
                              attacks=("bim",), n=20, out=out, progress=calls.append, batch_size=8)  # fmt: skip
    assert len(calls) == 2 and len(again["rows"]) == 6
    assert json.loads(out.read_text())["rows"][:4] == doc["rows"]
    text = fragility.table(again)
    assert "| lin | bim | 5 |" in text and "ε = 30 cm" in text and "margin q10" in text


def test_measure_refuses_bad_input(tmp_path):
    model, ds = _trained()
    with pytest.raises(DataError, match="correctly classified"):
        fragility.measure({"lin": model}, ds, n=10_000, steps=(1,), eps=(0.01,))
    with pytest.raises(ConfigError, match="'eps'"):
        fragility.measure({"lin": model}, ds, eps=(), steps=(1,))
    with pytest.raises(ConfigError, match="'steps'"):
        fragility.measure({"lin": model}, ds, eps=(0.01,), steps=(0,))
    bad = tmp_path / "other.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(DataError, match="format"):
        fragility.measure({"lin": model}, ds, n=5, steps=(1,), eps=(0.01,), out=bad)
    assert bad.read_text() == '{"format": "something else"}'  # not overwritten


def test_margin_quantiles_are_the_quantiles():
    q = fragility.margin_quantiles(torch.arange(1, 102, dtype=torch.float32))
    assert (q["q10"], q["q25"], q["q50"], q["q75"], q["q90"], q["mean"]) == (11, 26, 51, 76, 91, 51)


def test_cli_refuses_a_non_number_list(capsys):
    assert main(["fragility", "stgcn.synth_ntu25", "--eps", "one"]) == 2
    err = capsys.readouterr().err
    assert "option 'eps'" in err and len(err.strip().splitlines()) == 1


def test_attacks_without_early_stop_judge_their_final_iterate():
    model, ds = _trained()
    doc = fragility.measure({"lin": model}, ds, eps=(0.1,), steps=(3,), attacks=("mifgsm", "bim"),
                            n=10, batch_size=10)  # fmt: skip
    applied = {r["attack"]: r["early_stop_applied"] for r in doc["rows"]}
    assert applied == {"mifgsm": False, "bim": True}


def test_a_file_holds_one_setup_and_one_set_of_weights_per_victim(tmp_path):
    model, ds = _trained()
    out = tmp_path / "f.json"
    kw = dict(eps=(0.1,), steps=(2,), attacks=("bim",), batch_size=10, out=out)
    fragility.measure({"lin": model}, ds, n=10, weights={"lin": "aaa"}, **kw)
    before = out.read_text()
    with pytest.raises(DataError, match="setup.n"):
        fragility.measure({"lin": model}, ds, n=12, weights={"lin": "aaa"}, **kw)
    with pytest.raises(DataError, match="setup.data"):
        other = make_tiny_set(n=60, t=8, classes=3, seed=2)
        fragility.measure({"lin": model}, other, n=10, weights={"lin": "aaa"}, **kw)
    with pytest.raises(DataError, match="victims.lin.weights"):
        fragility.measure({"lin": model}, ds, n=10, weights={"lin": "bbb"}, **kw)
    assert out.read_text() == before  # nothing rewritten by a refused call


def test_pgd_early_stop_from_a_random_start_with_restarts_still_fools_what_it_returns(trained):  # noqa: F811
    net, x, y = trained
    threat = ThreatModel(eps=EPS_SOME)
    att = create_attack("pgd", steps=8, restarts=2, early_stop=True)
    adv = att(WhiteBox(net), x, y, threat, torch.Generator().manual_seed(3))
    assert threat.check(x, adv) == []
    plain = create_attack("pgd", steps=8, restarts=2)
    ref = plain(WhiteBox(net), x, y, threat, torch.Generator().manual_seed(3))
    fooled = (net(adv).argmax(1) != y).sum()
    assert fooled >= (net(ref).argmax(1) != y).sum() and fooled > 0


def test_linear_radius_is_the_margin_over_the_l1_norm_of_its_gradient():
    model, ds = _trained()
    x, y = ds.x[:12], ds.y[:12]
    margins, radii = fragility.linear_radius(model, x, y, batch_size=5)
    z = model(x).detach()
    w = model[1].weight.detach()
    for i in range(12):
        other = int(z[i].scatter(0, y[i : i + 1], float("-inf")).argmax())
        mu = z[i, y[i]] - z[i, other]
        assert margins[i] == pytest.approx(float(mu), rel=1e-5)
        assert radii[i] == pytest.approx(float(mu / (w[y[i]] - w[other]).abs().sum()), rel=1e-4)
        # stepping that radius (a little more) along -sign(∇μ) flips a linear model's margin
        step = -(w[y[i]] - w[other]).sign().view_as(x[i]) * float(radii[i]) * 1.01
        z2 = model((x[i] + step)[None]).detach()[0]
        assert z2[y[i]] < z2[other]
    doc = fragility.measure({"lin": model}, ds, eps=(0.1,), steps=(1,), attacks=(), n=10)
    assert doc["victims"]["lin"]["linear_radius"]["q50"] > 0
    assert "linear flip radius" in fragility.table(doc)


def test_table_groups_rows_by_victim_then_attack_then_steps():
    """Rows land in the order measurements finish; the table sorts them: victims in the file's
    order, then attack and iteration count ascending, one column per radius."""

    def row(victim, attack, steps, eps, k):
        return {"victim": victim, "attack": attack, "steps": steps, "eps": eps,
                "success_rate": k / 10, "ci_low": 0.0, "ci_high": 1.0}  # fmt: skip

    margin = {q: 1.0 for q in ("q10", "q25", "q50", "q75", "q90", "mean")}
    doc = {
        "victims": {v: {"clean_accuracy": 0.9, "margin": margin} for v in ("zz", "aa")},
        "rows": [row("aa", "pgd", 10, 0.01, 1), row("zz", "pgd", 200, 0.01, 2),
                 row("aa", "bim", 200, 0.02, 3), row("zz", "pgd", 10, 0.01, 4),
                 row("zz", "bim", 200, 0.01, 5), row("aa", "bim", 200, 0.01, 6)],
    }  # fmt: skip
    lines = [ln for ln in fragility.table(doc).splitlines() if ln.startswith("| zz |")
             or ln.startswith("| aa |")][:5]  # fmt: skip
    assert lines == [
        "| zz | bim | 200 | 50.0 [0, 100] | — |",
        "| zz | pgd | 10 | 40.0 [0, 100] | — |",
        "| zz | pgd | 200 | 20.0 [0, 100] | — |",
        "| aa | bim | 200 | 60.0 [0, 100] | 30.0 [0, 100] |",
        "| aa | pgd | 10 | 10.0 [0, 100] | — |",
    ]


def test_two_measurements_into_one_file_keep_each_others_rows(tmp_path):
    model, ds = _trained()
    out = tmp_path / "f.json"
    kw = dict(eps=(0.1,), steps=(2,), attacks=("bim",), batch_size=10, n=10)
    first = fragility.measure({"a": model}, ds, out=out, **kw)
    # a second process that loaded the file before the first one wrote: simulated by an empty file
    out2 = tmp_path / "g.json"
    second = fragility.measure({"b": model}, ds, out=out2, **kw)
    n_first, n_second = len(first["rows"]), len(second["rows"])
    fragility._save(out, second)
    merged = json.loads(out.read_text())
    assert {r["victim"] for r in merged["rows"]} == {"a", "b"}
    assert set(merged["victims"]) == {"a", "b"}
    assert len(merged["rows"]) == n_first + n_second == 2


def test_flags_take_only_booleans():
    """make_config: a YAML string "false" or a 0 must not switch a bool field on (or off)."""
    for bad in ("false", 0, 1, None):
        with pytest.raises(ConfigError, match="expected true or false"):
            create_attack("bim", early_stop=bad)
    with pytest.raises(ConfigError, match="field 'bayes_accumulate'"):
        create_attack("tasar", bayes_accumulate="yes")
    assert create_attack("bim", early_stop=True).config.early_stop is True
