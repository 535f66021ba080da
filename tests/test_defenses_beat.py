"""BEAT (defenses/beat.py): the motion distance, the two SGLD samplers, the loss terms, the heads'
mean, the replay buffer, the cache, and a defended entry in a benchmark."""

from __future__ import annotations

import pytest
import robench.defenses.beat as beat
import torch
import torch.nn.functional as F
from conftest import make_tiny_set
from test_defenses_transforms import Linear
from test_harness import DATA, make_victims, rows, write_bench

from robench.data.skeleton import BUILTIN_TOPOLOGIES, presence_mask
from robench.defense import create_defense
from robench.errors import ConfigError
from robench.ops.posterior import head_logits, init_heads
from robench.run.benchmark import load_benchmark
from robench.run.executor import run_benchmark
from robench.victim import build_victim

NTU = BUILTIN_TOPOLOGIES["ntu25"]
FAST = {"epochs": 1, "sgld_steps": 1, "heads": 2, "inner_steps": 2}


def test_motion_distance_is_three_temporal_differences_and_bone_lengths():
    data = make_tiny_set()
    x = data.x[:4]
    g = torch.Generator().manual_seed(2)
    xt = x + 0.01 * torch.randn(x.shape, generator=g)
    want = sum(
        (torch.diff(x, k, dim=2) - torch.diff(xt, k, dim=2)).pow(2).flatten(1).mean(1)
        for k in (1, 2, 3)
    )
    bones = (NTU.bone_lengths(x) - NTU.bone_lengths(xt)).pow(2).flatten(1).mean(1)
    assert torch.allclose(beat.motion_distance(x, xt, NTU), want + bones, rtol=1e-5)
    assert torch.allclose(beat.motion_distance(x, xt, None), want, rtol=1e-5)
    assert (beat.motion_distance(x, x, NTU) == 0).all()
    # a rigid shift of the whole clip changes nothing
    assert beat.motion_distance(x, x + 0.3, NTU).abs().max() < 1e-9


def test_tilde_log_density_is_minus_ce_minus_beta_distance():
    data = make_tiny_set()
    x, y = data.x[:4], data.y[:4]
    xt = x + 0.02
    xt[:, 0, 3] += 0.05
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    d = beat.motion_distance(x, xt, NTU)
    assert (d > 0).all()
    ce = F.cross_entropy(logits, y, reduction="none")
    got = beat.tilde_log_density(logits, y, x, xt, 2.5, NTU)
    assert torch.allclose(got, -ce - 2.5 * d)


def test_beat_loss_weights_the_energy_perturbed_and_clean_terms():
    g = torch.Generator().manual_seed(0)
    theta = init_heads(3, 4, g)
    r_x, r_neg, r_t = (torch.rand(5, 4, generator=g) * 2 for _ in range(3))
    y = torch.tensor([0, 1, 2, 3, 0])
    cfg = beat.BeatConfig(w_x=2.0, w_xtilde=3.0, w_clf=5.0)
    total, (lx, lt, lc) = beat.beat_loss(theta, r_x, r_neg, r_t, y, cfg)
    for k in range(3):
        hx = head_logits(theta[k : k + 1], r_x)[0]
        hn = head_logits(theta[k : k + 1], r_neg)[0]
        ht = head_logits(theta[k : k + 1], r_t)[0]
        want_x = -(hx.logsumexp(1).mean() - hn.logsumexp(1).mean())
        assert torch.allclose(lx[k], want_x)
        assert torch.allclose(lt[k], F.cross_entropy(ht, y))
        assert torch.allclose(lc[k], F.cross_entropy(hx, y))
        assert torch.allclose(total[k], 2 * want_x + 3 * F.cross_entropy(ht, y) + 5 * lc[k])


def test_sgld_steps_along_the_gradient_with_scaled_noise_on_present_joints():
    data = make_tiny_set()
    x = data.x[:6]
    mask = presence_mask(x).to(x.dtype)
    w = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(1))

    def energy(z):
        return (z * w).flatten(1).sum(1)

    gen = torch.Generator().manual_seed(0)
    out = beat._sgld(energy, x, mask, 4, 0.01, 0.0, gen)
    assert torch.allclose(out, x + 4 * 0.01 * w * mask, atol=1e-6)
    noisy = beat._sgld(energy, x, mask, 4, 0.01, 0.5, gen)
    resid = (noisy - out)[mask.expand_as(x).bool()]
    assert abs(float(resid.std()) / (0.5 * (4 * 2 * 0.01) ** 0.5) - 1) < 0.05
    assert (noisy[~mask.expand_as(x).bool()] == 0).all()


def test_negative_starts_come_from_the_buffer_or_fresh_noise_at_the_data_scale():
    data = make_tiny_set()
    xb = data.x[:6]
    gen = torch.Generator().manual_seed(0)
    buffer = torch.randn(10, *xb.shape[1:], generator=gen) * 0.01
    mask = presence_mask(xb).to(xb.dtype)
    pick, start = beat.negative_starts(buffer, xb, 0.0, gen)
    assert torch.equal(start, buffer[pick] * mask)
    pick, fresh = beat.negative_starts(buffer, xb, 1.0, gen)
    s = float(xb.abs().max())
    present = mask.expand_as(xb).bool()
    assert fresh.abs().max() <= s and fresh[present].abs().max() > 0.9 * s  # U(-s, s)
    assert (fresh[~present] == 0).all()


def test_defended_logits_are_the_mean_of_the_heads():
    data = make_tiny_set()
    x = data.x[:4]
    v = Linear(x)
    theta = init_heads(3, 3, torch.Generator().manual_seed(0))
    d = beat.BeatDefended(v, theta)
    with torch.no_grad():
        r = F.relu(v(x))
        want = sum(head_logits(theta[k : k + 1], r)[0] for k in range(3)) / 3
        assert torch.allclose(d(x), want, atol=1e-6)


def test_training_lowers_the_clean_loss_and_refills_the_replay_buffer(monkeypatch):
    data = make_tiny_set(n=24)
    train = data.get_split("train")
    v = Linear(train.x)
    seen = []
    real = beat.negative_starts

    def spy(buffer, xb, reinit, gen):
        seen.append(buffer.clone())
        pick, start = real(buffer, xb, reinit, gen)
        seen.append(pick)
        return pick, start

    monkeypatch.setattr(beat, "negative_starts", spy)
    cfg = beat.BeatConfig(epochs=4, heads=2, batch_size=8, sgld_steps=2, reinit=0.0)
    art = beat.train_heads(v, train.x, train.y, cfg)
    assert art["theta"].shape == (2, 2 * 9 + 2 * 3)
    assert art["loss_clf"][-1] < art["loss_clf"][0]
    assert 0 <= float(art["train_acc"]) <= 1
    assert (art["distance"] > 0).all()
    # the chains of the first minibatch are written back: the second minibatch sees them moved
    first_buffer, first_pick, second_buffer = seen[0], seen[1], seen[2]
    assert not torch.equal(first_buffer[first_pick], second_buffer[first_pick])
    untouched = torch.ones(len(first_buffer), dtype=torch.bool)
    untouched[first_pick] = False
    assert torch.equal(first_buffer[untouched], second_buffer[untouched])


def test_heads_are_cached_and_reloaded_without_training(monkeypatch):
    data = make_tiny_set(n=24)
    train = data.get_split("train")
    v = Linear(train.x)
    a = create_defense("beat", **FAST)(v, data.x[:4], train)

    def boom(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(beat, "train_heads", boom)
    from robench.ops.artifacts import clear_memory_cache

    clear_memory_cache()  # the second call reads the cache file
    b = create_defense("beat", **FAST)(v, data.x[:4], train)
    with torch.no_grad():
        assert torch.equal(a(data.x[:4]), b(data.x[:4]))
    with pytest.raises(AssertionError, match="trained again"):  # another config: another key
        create_defense("beat", **{**FAST, "beta": 2.0})(v, data.x[:4], train)
    with pytest.raises(ConfigError, match="defender's training data"):
        create_defense("beat", **FAST)(v, data.x[:4])
    with pytest.raises(ConfigError, match="reinit"):
        create_defense("beat", reinit=1.5)


def test_a_benchmark_entry_post_trains_heads_and_a_weights_defense_is_refused(
    tmp_path, monkeypatch
):
    import yaml

    trained = []
    real = beat.train_heads

    def spy(victim, x, y, cfg, progress=False):
        trained.append(len(x))
        return real(victim, x, y, cfg, progress)

    monkeypatch.setattr(beat, "train_heads", spy)

    victims = make_victims(tmp_path / "v")
    entry = {"name": str(victims[0]), "id": "v0b", "defense": "beat", "defense_params": FAST}
    p = write_bench(tmp_path, [], [{"name": "fgsm"}])
    doc = yaml.safe_load(p.read_text())
    doc["victims"] = [str(victims[0]), entry]
    p.write_text(yaml.safe_dump(doc))
    store = run_benchmark(load_benchmark(p), tmp_path / "r", progress=False)
    cells = store.cells().set_index("victim")
    store.close()
    assert set(cells["status"]) == {"ok"}
    assert cells.loc["v0b", "defense"] == "beat" and cells.loc["v0b", "forward_random"] == 0
    assert len(rows(tmp_path / "r")[1]) > 0
    # the heads were post-trained on the data set's whole train split (the defender's data)
    assert trained == [len(load_benchmark(p).dataset.open().get_split("train"))]
    # a data set without a train split: the heads would see the clips under attack
    from robench.data import open_dataset

    d = open_dataset(DATA["name"], **{k: v for k, v in DATA.items() if k != "name"})
    test = d.get_split("test")
    test.save(tmp_path / "test_only.npz")
    doc2 = {**doc, "dataset": {"path": str(tmp_path / "test_only.npz")}, "split": None}
    doc2.pop("split")
    p.with_name("t.yaml").write_text(yaml.safe_dump(doc2))
    with pytest.raises(ConfigError, match="expected a 'train' split to post-train defense 'beat'"):
        run_benchmark(load_benchmark(p.with_name("t.yaml")), tmp_path / "t", progress=False)
    doc["victims"] = [{"name": str(victims[0]), "id": "at", "defense": "pgd-at"}]
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="weights defense 'pgd-at'.*robench defend"):
        load_benchmark(p)


def test_the_samplers_climb_the_density_of_x_and_of_label_keeping_perturbations(monkeypatch):
    """The first minibatch (heads still at their seeded init): x⁻'s SGLD climbs LogSumExp over the
    classes of the heads' mean, x̃'s climbs ``-CE(h(x̃), y) - β·D(x, x̃)``."""
    data = make_tiny_set(n=24)
    train = data.get_split("train")
    v = Linear(train.x)
    cfg = beat.BeatConfig(epochs=1, heads=2, batch_size=8, sgld_steps=1, beta=3.0)
    batches, calls = [], []
    real_starts, real_sgld = beat.negative_starts, beat._sgld

    def starts(buffer, xb, reinit, gen):
        batches.append(xb)
        return real_starts(buffer, xb, reinit, gen)

    def sgld(energy, x0, mask, *args):
        with torch.no_grad():  # the heads move after each minibatch: evaluate now
            calls.append((energy(x0), x0))
        return real_sgld(energy, x0, mask, *args)

    monkeypatch.setattr(beat, "negative_starts", starts)
    monkeypatch.setattr(beat, "_sgld", sgld)
    beat.train_heads(v, train.x, train.y, cfg)
    theta = init_heads(2, 3, torch.Generator().manual_seed(cfg.seed))

    def ens(z):
        return head_logits(theta, F.relu(v(z))).mean(0)

    xb = batches[0]
    yb = train.y[[int((train.x == c).flatten(1).all(1).nonzero()) for c in xb]]
    with torch.no_grad():
        (e_neg, z_neg), (e_tilde, z_tilde) = calls[0], calls[1]
        assert torch.allclose(e_neg, ens(z_neg).logsumexp(1), atol=1e-5)
        want = beat.tilde_log_density(ens(z_tilde), yb, xb, z_tilde, 3.0, NTU)
        assert torch.allclose(e_tilde, want, atol=1e-5)


def test_defend_command_post_trains_beat_heads_into_the_cache(tmp_path, capsys, monkeypatch):
    """``robench defend VICTIM beat`` writes no checkpoint; a benchmark-style call with the same
    params then loads the cached heads without training."""
    from robench.cli import main
    from robench.ops.artifacts import clear_memory_cache
    from robench.zoo.checkpoint import load_victim, save_victim

    data = make_tiny_set(n=24)
    npz = tmp_path / "tiny.npz"
    data.save(npz)
    save_victim(build_victim("stgcn", num_classes=3, width=4, depth=1).eval(), tmp_path / "base")
    argv = ["defend", str(tmp_path / "base.pt"), "beat", "--dataset", str(npz), "-q",
            *[a for k, v in FAST.items() for a in ("--param", f"{k}={v}")],
            "-o", str(tmp_path / "out" / "b")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "heads cached" in out and "clean accuracy" in out
    assert not (tmp_path / "out" / "b.pt").exists()
    clear_memory_cache()
    monkeypatch.setattr(beat, "train_heads", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    victim = load_victim(tmp_path / "base.pt")
    create_defense("beat", **FAST)(victim, data.x[:4], data.get_split("train"))
