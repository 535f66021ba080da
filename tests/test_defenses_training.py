"""Adversarial training defenses (defenses/adversarial.py): the inner maximisation stays in the
ε-ball and off the padding, each outer loss is its paper's, and defend() fine-tunes a copy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_set

from robench.defense import create_defense
from robench.errors import ConfigError
from robench.victim import build_victim


def tiny():
    return build_victim("stgcn", num_classes=3, width=4, depth=1).eval()


def lin():
    """A model whose logits move with the input (an untrained tiny GCN's are all about 0)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 25 * 2, 3)).eval()


@pytest.mark.parametrize("name", ["pgd-at", "trades"])
def test_inner_maximisation_stays_in_the_ball_and_raises_its_objective(name):
    data = make_tiny_set()
    x, y = data.x[:6], data.y[:6]
    d = create_defense(name, eps=0.05, steps=5)
    m = lin()
    x_adv = d.inner(m, x, y, torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 0.05 + 1e-7
    absent = (x == 0).all(1, keepdim=True).all(3, keepdim=True).expand_as(x)
    assert (x_adv[absent] == 0).all()
    assert (x_adv - x).abs().max() > 0.04  # sign steps reach the boundary
    # ascent beats a random point of the same ball on the defense's own objective
    rand = x + (torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) * 2 - 1) * 0.05
    rand = rand * (x != 0).any(1, keepdim=True).any(3, keepdim=True)
    with torch.no_grad():
        if name == "pgd-at":
            assert F.cross_entropy(m(x_adv), y) > F.cross_entropy(m(rand), y)
        else:
            p = m(x).softmax(1)
            kl = [F.kl_div(m(z).log_softmax(1), p, reduction="sum") for z in (x_adv, rand)]
            assert kl[0] > kl[1]


def test_pgd_at_minimises_ce_on_the_adversarial_clips():
    data = make_tiny_set()
    x, y = data.x[:4], data.y[:4]
    m = tiny()
    x_adv = x + 0.01
    d = create_defense("pgd-at")
    assert torch.allclose(d.outer(m, x, x_adv, y), F.cross_entropy(m(x_adv), y))


def test_trades_loss_is_ce_plus_beta_kl_clean_to_adversarial():
    data = make_tiny_set()
    x, y = data.x[:4], data.y[:4]
    m = tiny()
    x_adv = x * 1.2
    p, q = m(x).softmax(1), m(x_adv).softmax(1)
    kl = (p * (p.log() - q.log())).sum(1).mean()  # KL(f(x) || f(x')), batch mean
    for beta in (0.0, 6.0):
        d = create_defense("trades", beta=beta)
        want = F.cross_entropy(m(x), y) + beta * kl
        assert torch.allclose(d.outer(m, x, x_adv, y), want, atol=1e-6)
    assert create_defense("trades").config.beta == 6.0


def test_defend_fine_tunes_a_copy_on_the_training_data():
    data = make_tiny_set(n=24)
    train = data.get_split("train")
    victim = tiny()
    before = {k: v.clone() for k, v in victim.state_dict().items()}
    d = create_defense("pgd-at", epochs=2, steps=2)
    out = d(victim, data.x[:4], train)
    assert all(torch.equal(before[k], v) for k, v in victim.state_dict().items())
    assert not out.training and d.seconds > 0
    changed = [k for k, v in out.state_dict().items() if not torch.equal(before[k], v)]
    assert any("weight" in k for k in changed)
    with pytest.raises(ConfigError, match="defender's training data"):
        create_defense("trades")(victim, data.x[:4], None)
    with pytest.raises(ConfigError, match="eps"):
        create_defense("pgd-at", eps=0)


def test_the_inner_attack_leaves_batch_norm_statistics_alone():
    """The inner maximisation runs in eval mode: only the outer forward updates running stats."""
    data = make_tiny_set(n=24)
    train = data.get_split("train")
    seen = []
    d = create_defense("pgd-at", epochs=1, steps=3, batch_size=64)
    inner = d.inner

    def spy(m, x, y, gen):
        seen.append(m.training)
        return inner(m, x, y, gen)

    d.inner = spy
    d(tiny(), data.x[:4], train)
    assert seen == [False]


def test_defend_command_writes_a_checkpoint_with_its_recipe(tmp_path, capsys):
    import json

    from robench.cli import main
    from robench.zoo.checkpoint import load_victim, save_victim

    data = make_tiny_set(n=24)
    npz = tmp_path / "tiny.npz"
    data.save(npz)
    base = save_victim(tiny(), tmp_path / "base")
    args = ["defend", str(tmp_path / "base.pt"), "trades", "--dataset", str(npz), "--param",
            "epochs=1", "--param", "steps=2", "-o", str(tmp_path / "out" / "d"), "-q"]  # fmt: skip
    assert main(args) == 0
    meta = json.loads((tmp_path / "out" / "d.json").read_text())
    assert meta["defense"]["name"] == "trades" and meta["defense"]["config"]["beta"] == 6.0
    assert meta["defense"]["config"]["epochs"] == 1 and meta["defense"]["config"]["steps"] == 2
    assert meta["defense"]["base_weights_sha256"] == base["weights_sha256"]
    assert meta["dataset_sha256"] == data.fingerprint() and 0 <= meta["clean_accuracy"] <= 1
    assert meta["weights_sha256"] != base["weights_sha256"]
    load_victim(tmp_path / "out" / "d.pt")  # a regular, loadable checkpoint
    assert "clean accuracy" in capsys.readouterr().out
    for bad, msg in ((["temporal-smoothing"], "expected a weights or heads defense"),
                     (["pgd-at", "--param", "steps"], "expected NAME=VALUE"),
                     (["pgd-at", "--param", "eps=-1"], "eps")):  # fmt: skip
        argv = ["defend", str(tmp_path / "base.pt"), *bad, "--dataset", str(npz), "-o",
                str(tmp_path / "bad" / "x"), "-q"]  # fmt: skip
        assert main(argv) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_inner_starts_pgd_at_uniform_in_the_ball_and_trades_near_x():
    """With a negligible step, the inner iterate is its start: PGD-AT's uniform random start spreads
    over the ε-ball, TRADES's ``x + 0.001·N(0, 1)`` stays within millimetres."""
    data = make_tiny_set()
    x, y = data.x[:6], data.y[:6]
    present = (x != 0).any(1, keepdim=True).any(3, keepdim=True).expand_as(x)
    gen = torch.Generator().manual_seed(0)
    at = create_defense("pgd-at", eps=0.05, steps=1, alpha_rel=1e-9).inner(lin(), x, y, gen)
    assert 0.02 < float((at - x)[present].abs().mean()) < 0.03  # uniform on [-ε, ε]: mean ε/2
    tr = create_defense("trades", eps=0.05, steps=1, alpha_rel=1e-9).inner(lin(), x, y, gen)
    assert 5e-4 < float((tr - x)[present].abs().mean()) < 1.2e-3  # 0.001·E|N(0,1)| ≈ 8e-4


def test_defend_params_read_numbers_booleans_and_exponents():
    from robench.commands.defend import parse_params

    assert parse_params(("eps=1e-3", "steps=4", "beta=6.0", "x=abc")) == {
        "eps": 0.001, "steps": 4, "beta": 6.0, "x": "abc"}  # fmt: skip
