"""Hard no-box attacks (attacks/nobox.py), the motion manifold (robench/manifold/) and what the
harness grants a no-box cell (robench/run/nobox.py): the loss, the centroids, the four update
rules, the pretraining pieces, the no-box data, the access object and the disjointness refusal."""

from __future__ import annotations

import dataclasses

import pytest
import robench.attacks.nobox as nb
import torch
import torch.nn.functional as F
from conftest import make_tiny_set
from test_harness import DATA, make_victims, registered, write_bench
from torch import nn

from robench.access import Knowledge, NoBox
from robench.attack import Attack, AttackConfig, create_attack
from robench.data import open_dataset
from robench.data.skeleton import presence_mask
from robench.data.synth import generate_nobox
from robench.errors import AccessError, ConfigError
from robench.manifold import check_disjoint, clip_sha256
from robench.manifold.encoders import SequenceEncoder, graph_encoder
from robench.manifold.pretrain import (
    PretrainConfig,
    augment,
    info_nce,
    isc_loss,
    knn_accuracy,
    momentum_update,
    pretrain,
)
from robench.ops.motion import fit_tvar
from robench.run.benchmark import load_benchmark
from robench.run.executor import run_benchmark
from robench.threat import ThreatModel
from robench.zoo.checkpoint import save_victim


class LinearEncoder(nn.Module):
    """E(x) = W·flatten(x): every feature moves with every coordinate."""

    def __init__(self, x: torch.Tensor, dim: int = 6, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(x[0].numel(), dim, generator=g), requires_grad=False)

    def forward(self, x):
        return x.flatten(1) @ self.w


def unit(v):
    return F.normalize(v, dim=-1)


# ---------------------------------------------------------------------------- loss and centroids
def test_infonce_positive_batch_negatives_and_far_centroids():
    g = torch.Generator().manual_seed(0)
    z, z0, c = (
        unit(torch.randn(4, 5, generator=g)),
        unit(torch.randn(4, 5, generator=g)),
        unit(torch.randn(7, 5, generator=g)),
    )
    keep = nb.far_centroid_mask(z0, c, 2)
    got = nb.nobox_infonce(z, z0, c, keep)
    for i in range(4):
        others = [float(z[i] @ z0[j]) for j in range(4) if j != i]
        cents = [float(z[i] @ c[k]) for k in range(7) if keep[i, k]]
        logits = torch.tensor([float(z[i] @ z0[i]), *others, *cents])
        assert torch.allclose(got[i], -logits.log_softmax(0)[0], atol=1e-6)
    # the mask drops exactly the 2 centroids most similar to each clean feature
    sim = z0 @ c.t()
    for i in range(4):
        dropped = set((~keep[i]).nonzero().flatten().tolist())
        assert dropped == set(sim[i].topk(2).indices.tolist())
    assert nb.far_centroid_mask(z0, c, 0).all()


def test_kmeans_finds_separated_clusters_and_caps_k():
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    f = torch.cat([m + 0.1 * torch.randn(30, 2, generator=g) for m in means])
    c = nb.kmeans(f, 3, torch.Generator().manual_seed(1))
    for m in means:
        assert (c - m).norm(dim=1).min() < 0.1
    assert nb.kmeans(f[:4], 120, torch.Generator().manual_seed(0)).shape == (4, 2)


# ---------------------------------------------------------------------------- update rules
def _setup(n: int = 4):
    data = make_tiny_set()
    x = data.x[:n]
    enc = LinearEncoder(x)
    access = NoBox(data.x[6:], enc, data.x[:10])
    return data, x, enc, access


def _manual(name: str, x, enc, access, steps: int, alpha_rel: float, threat):
    """The update rules written out (module docstring of attacks/nobox.py)."""
    cfg = nb.NoBoxConfig(steps=steps, alpha_rel=alpha_rel, clusters=5, drop_nearest=1)
    with torch.no_grad():
        z0 = unit(enc(x))
        pool = unit(enc(access.attack_set))
        cents = unit(nb.kmeans(pool, 5, torch.Generator().manual_seed(0)))
        keep = nb.far_centroid_mask(z0, cents, 1)
    allowed = threat.allowed_mask(x)
    fit = fit_tvar(x)
    xa, m = x.clone(), torch.zeros_like(x)
    alpha = alpha_rel * threat.eps
    for _ in range(steps):
        v = xa.clone().requires_grad_(True)
        nb.nobox_infonce(unit(enc(v)), z0, cents, keep).sum().backward()
        g = v.grad * allowed
        if name == "nobox-ifgsm":
            d = g
        elif name == "nobox-mifgsm":
            m = m + g / g.abs().flatten(1).sum(1).view(-1, 1, 1, 1, 1)
            d = m
        elif name == "s2i-fgsm":
            d = fit.motion_gradient(g)
        else:
            m = m + fit.motion_gradient(g)
            d = m
        xa = threat.project(x, xa + alpha * d.sign()).detach()
    return cfg, xa


@pytest.mark.parametrize("name", ["nobox-ifgsm", "nobox-mifgsm", "s2i-fgsm", "s2mi-fgsm"])
def test_update_rules_match_the_paper(name):
    data, x, enc, access = _setup()
    threat = ThreatModel(norm="linf", eps=0.01)
    cfg, want = _manual(name, x, enc, access, 3, 0.3, threat)
    attack = create_attack(name, **{k: getattr(cfg, k) for k in ("steps", "alpha_rel", "clusters",
                                                                  "drop_nearest")})  # fmt: skip
    got = attack(access, x, torch.full((len(x),), -1), threat, torch.Generator())
    assert torch.allclose(got, want, atol=1e-6)


def test_smi_and_momentum_change_the_iterates_and_the_loss_rises():
    data, x, enc, access = _setup()
    threat = ThreatModel(norm="linf", eps=0.01)
    outs = {
        n: create_attack(n, steps=6, alpha_rel=0.3, clusters=5)(
            access, x, torch.full((len(x),), -1), threat, torch.Generator()
        )
        for n in ("nobox-ifgsm", "nobox-mifgsm", "s2i-fgsm", "s2mi-fgsm")
    }
    for a in outs:
        for b in outs:
            if a < b:
                assert not torch.equal(outs[a], outs[b]), (a, b)
    with torch.no_grad():
        z0 = unit(enc(x))
        cents = unit(nb.kmeans(unit(enc(access.attack_set)), 5, torch.Generator().manual_seed(0)))
        keep = nb.far_centroid_mask(z0, cents, 10)
        clean = nb.nobox_infonce(z0, z0, cents, keep).mean()
        for out in outs.values():
            assert nb.nobox_infonce(unit(enc(out)), z0, cents, keep).mean() > clean + 0.1
            assert (out - x).abs().max() <= 0.01 + 1e-7


def test_paper_defaults_and_a_missing_manifold():
    cfg = nb.NoBoxConfig()
    assert (cfg.steps, cfg.alpha_rel * 0.01, cfg.clusters, cfg.drop_nearest, cfg.decay) == (
        400, pytest.approx(1e-4), 120, 10, 1.0)  # fmt: skip
    data = make_tiny_set()
    with pytest.raises(AccessError, match="motion manifold"):
        create_attack("s2mi-fgsm", steps=1)(
            NoBox(data.x), data.x[:2], torch.full((2,), -1), ThreatModel(eps=0.01),
            torch.Generator(),
        )  # fmt: skip
    with pytest.raises(ConfigError, match="manifold"):
        create_attack("s2mi-fgsm", manifold=3)


# ---------------------------------------------------------------------------- the manifold
def test_info_nce_and_momentum_update():
    g = torch.Generator().manual_seed(0)
    q, k, queue = (
        unit(torch.randn(3, 4, generator=g)),
        unit(torch.randn(3, 4, generator=g)),
        unit(torch.randn(5, 4, generator=g)),
    )
    want = torch.stack(
        [
            -torch.cat([(q[i] @ k[i]).view(1), queue @ q[i]]).div(0.07).log_softmax(0)[0]
            for i in range(3)
        ]
    ).mean()
    assert torch.allclose(info_nce(q, k, queue, 0.07), want, atol=1e-5)
    a, b = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        a.weight.fill_(1.0), b.weight.fill_(3.0), a.running_mean.fill_(5.0)
    momentum_update(a, b, 0.9)
    assert torch.allclose(b.weight, torch.full((2,), 0.9 * 3 + 0.1 * 1))
    assert torch.equal(b.running_mean, a.running_mean)


def test_views_keep_padding_and_differ():
    data = make_tiny_set()
    x = data.x[:6]
    cfg = PretrainConfig()
    gen = torch.Generator().manual_seed(0)
    v1, v2 = augment(x, cfg, gen), augment(x, cfg, gen)
    absent = ~presence_mask(x).expand_as(x)
    assert (v1[absent] == 0).all() and (v2[absent] == 0).all()
    assert not torch.allclose(v1, v2)
    assert not torch.allclose(v1, x)


def test_pretraining_lowers_the_contrastive_loss_and_guards_the_queue():
    data = make_tiny_set(n=48)
    cfg = PretrainConfig(dim=8, width=4, depth=1, gru_hidden=8, queue=16, epochs=6,
                         batch_size=16, lr=0.05, momentum=0.9)  # fmt: skip
    enc, record = pretrain(data.x, cfg)
    assert record["loss"][-1] < record["loss"][0]
    assert not enc.training
    with pytest.raises(ConfigError, match="queue shorter than the data"):
        pretrain(data.x, dataclasses.replace(cfg, queue=48))
    seq = SequenceEncoder(25, 2, 8, 4)
    assert seq(data.x[:3]).shape == (3, 8)


def test_knn_probe_is_a_majority_vote_of_the_nearest():
    ref = unit(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]))
    ref_y = torch.tensor([0, 0, 1, 1])
    query = unit(torch.tensor([[1.0, 0.05], [0.05, 1.0]]))
    assert knn_accuracy(ref, ref_y, query, torch.tensor([0, 1]), k=2) == 1.0
    assert knn_accuracy(ref, ref_y, query, torch.tensor([1, 0]), k=2) == 0.0


def test_nobox_clips_come_from_unseen_performers_and_share_no_clip():
    world = open_dataset("synth-ntu25", seed=0, n_train=40, n_test=20, num_frames=16)
    nobox = generate_nobox(0, n=30, num_frames=16)
    assert set(nobox.split) == {"nobox"} and len(nobox) == 30
    assert int(nobox.subject.min()) > int(world.subject.max())
    assert not set(clip_sha256(nobox.x)) & set(clip_sha256(world.x))
    assert torch.equal(generate_nobox(0, n=30, num_frames=16).x, nobox.x)  # deterministic
    assert not torch.equal(generate_nobox(1, n=30, num_frames=16).x, nobox.x)


def test_disjointness_check_refuses_shared_clips_and_a_victim_trained_on_the_data():
    data = make_tiny_set()
    meta = {"name": "m", "clip_sha256": clip_sha256(data.x[8:]), "dataset_sha256": "abc",
            "clip_hash": "sha256-float32"}  # fmt: skip
    check_disjoint(meta, data.x[:8], "tiny", {"v": "def"})
    with pytest.raises(ConfigError, match="got 2 clips of tiny"):
        check_disjoint(meta, data.x[:10], "tiny", {})
    # a clip stored in float64 is the same clip
    with pytest.raises(ConfigError, match="got 2 clips of tiny"):
        check_disjoint(meta, data.x[:10].double(), "tiny", {})
    with pytest.raises(ConfigError, match="clip_hash"):
        check_disjoint({**meta, "clip_hash": None}, data.x[:8], "tiny", {})
    with pytest.raises(ConfigError, match="victim 'v' trained on its pretraining data"):
        check_disjoint(meta, data.x[:8], "tiny", {"v": "abc"})
    with pytest.raises(ConfigError, match="clip_sha256"):
        check_disjoint({"name": "m", "clip_hash": "sha256-float32"}, data.x[:8], "tiny", {})


# ---------------------------------------------------------------------------- in the harness
@dataclasses.dataclass(frozen=True)
class _SpyCfg(AttackConfig):
    log: str = ""
    manifold: str = ""


SEEN: list = []


class AccessSpy(Attack):
    """Records what a no-box attack is handed, and returns the clean input."""

    knowledge = Knowledge.NO_BOX
    Config = _SpyCfg

    def run(self, access, x, y, threat, generator, target):
        torch.save(
            {
                "type": type(access).__name__,
                "attrs": sorted(vars(access)),
                "y": y.clone(),
                "x": x.clone(),
                "attack_set": access.attack_set.clone(),
                "data": access.data.clone(),
                "manifold_state": {k: v.clone() for k, v in access.manifold.state_dict().items()},
                "victim_error": _refused(access, "victim"),
                "oracle_error": _refused(access, "oracle"),
            },
            self.config.log,
        )
        return x.clone()


def _refused(access, name):
    try:
        getattr(access, name)
    except AccessError as e:
        return str(e)
    return None


def _manifold(tmp_path, clips: torch.Tensor, name: str = "m"):
    enc = graph_encoder(dim=8, width=4, depth=1, init_seed=3)
    meta = {"role": "manifold", "clip_sha256": clip_sha256(clips), "dataset_sha256": "nobox-sha",
            "clip_hash": "sha256-float32"}  # fmt: skip
    save_victim(enc, tmp_path / name, meta)
    return tmp_path / f"{name}.pt", enc


def test_a_nobox_cell_gets_only_unlabelled_clips_and_the_manifold(tmp_path):
    victims = make_victims(tmp_path / "v")
    nobox = generate_nobox(0, n=2000, num_frames=DATA["num_frames"])
    path, enc = _manifold(tmp_path, nobox.x)
    log = tmp_path / "spy.pt"
    attacks = [{"name": "test-nobox-spy", "params": {"log": str(log), "manifold": str(path)}},
               {"name": "s2mi-fgsm", "params": {"steps": 2, "manifold": str(path)}}]  # fmt: skip
    with registered("test-nobox-spy", AccessSpy):
        b = load_benchmark(write_bench(tmp_path, victims[:1], attacks))
        store = run_benchmark(b, tmp_path / "r", progress=False)
        cells = store.cells().set_index("attack")
        store.close()
    assert set(cells["status"]) == {"ok"}, cells[["status", "error"]].to_string()
    seen = torch.load(log)
    assert seen["type"] == "NoBox" and seen["attrs"] == ["attack_set", "data", "manifold"]
    assert (seen["y"] == -1).all()  # no labels
    assert "white-box" in seen["victim_error"] and "query" in seen["oracle_error"]
    assert torch.equal(seen["data"], nobox.x)  # the attacker's own clips
    # the clips under attack: all 16 of the subset, also in the spot check's 2-clip job (the last)
    assert len(seen["attack_set"]) == 16 and len(seen["x"]) < 16
    flat = seen["attack_set"].flatten(1)
    assert all(bool((flat == r).all(1).any()) for r in seen["x"].flatten(1))
    for k, v in enc.state_dict().items():  # the manifold, not the victim
        assert torch.equal(seen["manifold_state"][k], v)
    assert cells.loc["s2mi-fgsm", "knowledge"] == "no-box"


def test_a_manifold_that_saw_the_benchmark_data_is_refused(tmp_path):
    victims = make_victims(tmp_path / "v")
    world = load_benchmark(write_bench(tmp_path, victims[:1], ["fgsm"])).dataset.open()
    path, _ = _manifold(tmp_path, world.x[:5], "leaky")
    p = write_bench(tmp_path, victims[:1], [{"name": "nobox-ifgsm",
                                             "params": {"steps": 1, "manifold": str(path)}}])  # fmt: skip
    store = run_benchmark(load_benchmark(p), tmp_path / "r", progress=False)
    cells = store.cells()
    store.close()
    assert list(cells["status"]) == ["invalid"]
    err = cells["error"].iloc[0]
    assert "got 5 clips of" in err and "refusing the no-box cell" in err and "\n" not in err


def test_smi_momentum_accumulates_the_smi_gradient_unnormalised(monkeypatch):
    """``m ← m + g̃`` for S²MI-FGSM (g̃ is normalised by the SMI transform itself), ``g/‖g‖₁`` for
    the plain variants; the iterate helper honours the flag."""
    from robench.ops import transfer as ops

    threat = ThreatModel(norm="linf", eps=1.0)
    x = torch.ones(1, 3, 4, 25, 1)
    a = torch.zeros_like(x)
    a[0, 0, 0, 0, 0], a[0, 0, 0, 1, 0] = 1.0, -3.0
    b = torch.zeros_like(x)
    b[0, 0, 0, 0, 0], b[0, 0, 0, 1, 0] = -2.0, -100.0
    grads = [a, b]
    run = {n: ops.momentum_iterate(x, threat, lambda z, t: grads[t], 2, 0.1, 1.0, normalize=n)
           for n in (True, False)}  # fmt: skip
    # coordinate 0, second step: normalised m = 1/4 - 2/102 > 0, raw m = 1 - 2 < 0
    assert float(run[True][0, 0, 0, 0, 0]) == pytest.approx(1.2)
    assert float(run[False][0, 0, 0, 0, 0]) == pytest.approx(1.0)
    seen = {}
    real = ops.momentum_iterate

    def spy(*args, **kwargs):
        seen[name] = kwargs.get("normalize", True)
        return real(*args, **kwargs)

    monkeypatch.setattr(ops, "momentum_iterate", spy)
    data, xs, enc, access = _setup()
    for name in ("nobox-ifgsm", "nobox-mifgsm", "s2i-fgsm", "s2mi-fgsm"):
        create_attack(name, steps=1, clusters=5)(
            access, xs, torch.full((len(xs),), -1), ThreatModel(eps=0.01), torch.Generator()
        )
    assert seen == {"nobox-ifgsm": True, "nobox-mifgsm": True, "s2i-fgsm": False,
                    "s2mi-fgsm": False}  # fmt: skip


def test_each_view_transform_acts_and_all_off_is_the_identity():
    data = make_tiny_set()
    x = data.x[:6]
    off = PretrainConfig(crop_min=1.0, shear=0.0, corrupt=0.0)
    assert torch.allclose(augment(x, off, torch.Generator().manual_seed(0)), x, atol=1e-6)
    for knob in ({"crop_min": 0.5}, {"shear": 0.5}, {"corrupt": 0.5}):
        v = augment(x, dataclasses.replace(off, **knob), torch.Generator().manual_seed(0))
        assert not torch.allclose(v, x, atol=1e-4), knob


def test_isc_loss_averages_the_four_within_and_across_encoder_pairings():
    g = torch.Generator().manual_seed(0)
    q, k, qu = ({n: unit(torch.randn(3, 4, generator=g)) for n in "gs"} for _ in range(3))
    want = sum(info_nce(q[a], k[b], qu[b], 0.07) for a, b in ("gg", "gs", "sg", "ss")) / 4
    assert torch.allclose(isc_loss(q, k, qu, 0.07), want)
    within = (info_nce(q["g"], k["g"], qu["g"], 0.07) + info_nce(q["s"], k["s"], qu["s"], 0.07)) / 2
    assert not torch.allclose(isc_loss(q, k, qu, 0.07), within)


# ---------------------------------------------------------------------------- SMI in transfer
@pytest.mark.parametrize("name", ["transfer-smi-ifgsm", "transfer-smi-mifgsm"])
def test_smi_transfer_steps_on_the_motion_gradient_of_the_surrogate(name):
    from robench.access import Transfer

    data = make_tiny_set()
    x, y = data.x[:4], data.y[:4]
    sur = LinearEncoder(x, dim=3, seed=2)
    threat = ThreatModel(norm="linf", eps=0.01)
    steps = 3
    alpha = 0.01 / steps
    allowed = threat.allowed_mask(x)
    fit = fit_tvar(x)
    xa, m = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        v = xa.clone().requires_grad_(True)
        F.cross_entropy(sur(v), y, reduction="sum").backward()
        gt = fit.motion_gradient(v.grad * allowed)
        m = (m + gt) if name.endswith("mifgsm") else gt
        xa = threat.project(x, xa + alpha * m.sign()).detach()
    got = create_attack(name, steps=steps)(Transfer([sur]), x, y, threat, torch.Generator())
    assert torch.allclose(got, xa, atol=1e-6)
    plain = create_attack(name.replace("smi-", ""), steps=steps)(
        Transfer([sur]), x, y, threat, torch.Generator()
    )
    assert not torch.equal(got, plain)


@dataclasses.dataclass(frozen=True)
class _LogCfg(AttackConfig):
    log: str = ""  # no 'manifold' field: the harness grants none


class CountingNoBox(Attack):
    """Appends the size of every batch it attacks to a log, returns a small move."""

    knowledge = Knowledge.NO_BOX
    Config = _LogCfg

    def run(self, access, x, y, threat, generator, target):
        with open(self.config.log, "a") as f:
            f.write(f"{len(x)}\n")
        return threat.project(x, x + 0.5 * threat.eps)


def test_a_nobox_generation_runs_once_on_every_clip_and_is_scored_per_victim(tmp_path):
    victims = make_victims(tmp_path / "v")
    log = tmp_path / "calls.log"
    with registered("test-nobox-count", CountingNoBox):
        p = write_bench(tmp_path, victims, [{"name": "test-nobox-count",
                                             "params": {"log": str(log)}}])  # fmt: skip
        store = run_benchmark(load_benchmark(p), tmp_path / "r", progress=False)
        frame = store.frame()
        cells = store.cells()
        store.close()
    assert set(cells["status"]) == {"ok"}, cells[["status", "error"]].to_string()
    sizes = [int(v) for v in log.read_text().split()]
    assert sizes[0] == 16 and len(sizes) == 3  # one generation on all 16 clips, + the spot check
    assert set(cells["status"]) == {"ok"} and len(cells) == 2
    for vid, f in frame.groupby("victim"):
        assert (f["eligible"] == f["clean_correct"]).all(), vid  # scored on its own correct clips
        assert (f["linf"] > 0).all()  # every clip was attacked


def test_the_checks_run_for_every_cell_even_with_a_cached_generation(tmp_path):
    """A rerun in the same folder adding a victim trained on the manifold's data is refused for
    that victim only, although the generation is on disk; a benchmark model's weights as the
    manifold are refused; a manifold rebuilt since the plan is refused."""
    victims = make_victims(tmp_path / "v")
    nobox = generate_nobox(0, n=2000, num_frames=DATA["num_frames"])
    path, enc = _manifold(tmp_path, nobox.x)
    spec = [{"name": "nobox-ifgsm", "params": {"steps": 1, "manifold": str(path)}}]
    run_benchmark(load_benchmark(write_bench(tmp_path, victims[:1], spec)), tmp_path / "r",
                  progress=False).close()  # fmt: skip
    assert list((tmp_path / "r" / "cache").glob("nobox-*.pt"))
    import json

    js = victims[1].with_suffix(".json")
    meta = json.loads(js.read_text())
    meta["dataset_sha256"] = "nobox-sha"  # the manifold's recorded data
    js.write_text(json.dumps(meta))
    store = run_benchmark(load_benchmark(write_bench(tmp_path, victims, spec)), tmp_path / "r",
                          progress=False)  # fmt: skip
    cells = store.cells().set_index("victim")
    store.close()
    assert cells.loc["v0", "status"] == "ok"
    assert cells.loc["v1", "status"] == "invalid" and "victim 'v1'" in cells.loc["v1", "error"]
    # a victim's own weights named as the manifold
    from robench.zoo.checkpoint import load_victim

    fake = {"role": "manifold", "clip_sha256": clip_sha256(nobox.x), "clip_hash": "sha256-float32"}
    save_victim(load_victim(victims[0]), tmp_path / "fake", fake)
    spec2 = [{"name": "nobox-ifgsm", "params": {"steps": 1, "manifold": str(tmp_path / "fake.pt")}}]
    store = run_benchmark(load_benchmark(write_bench(tmp_path, victims[:1], spec2, name="f.yaml")),
                          tmp_path / "f", progress=False)  # fmt: skip
    err = store.cells()["error"].iloc[0]
    store.close()
    assert "no benchmark model" in err and "'v0'" in err
    # the manifold changed after the cells were planned
    from robench.run.harness import prepare

    plan = prepare(load_benchmark(write_bench(tmp_path, victims[:1], spec, name="g.yaml")),
                   tmp_path / "g")  # fmt: skip
    save_victim(graph_encoder(dim=8, width=4, depth=1, init_seed=9), path.with_suffix(""),
                {"role": "manifold", "clip_sha256": clip_sha256(nobox.x), "clip_hash": "sha256-float32"})  # fmt: skip
    row = plan.run_cell(plan.cells[0])["cell"]
    assert row["status"] == "invalid" and "changed since the run was planned" in row["error"]


def test_a_nobox_split_is_the_attackers_and_must_not_overlap_the_others(tmp_path):
    from robench.data.dataset import SkeletonSet

    victims = make_victims(tmp_path / "v")
    d = open_dataset(DATA["name"], **{k: v for k, v in DATA.items() if k != "name"})
    extra = generate_nobox(0, n=8, num_frames=DATA["num_frames"])

    def save(x_extra, name):
        SkeletonSet(
            x=torch.cat([d.x, x_extra]), y=torch.cat([d.y, extra.y]),
            ids=d.ids + tuple(f"nb{i}" for i in range(8)), class_names=d.class_names,
            topology=d.topology, unit=d.unit, name=name, split=d.split + ("nobox",) * 8,
        ).save(tmp_path / f"{name}.npz")  # fmt: skip
        return str(tmp_path / f"{name}.npz")

    path, _ = _manifold(tmp_path, extra.x)  # pretrained on the set's own nobox split: allowed
    spec = [{"name": "nobox-ifgsm", "params": {"steps": 1, "manifold": str(path)}}]
    good = write_bench(
        tmp_path, victims[:1], spec, name="a.yaml", dataset={"path": save(extra.x, "own")}
    )
    store = run_benchmark(load_benchmark(good), tmp_path / "a", progress=False)
    assert list(store.cells()["status"]) == ["ok"], store.cells()["error"].tolist()
    store.close()
    leaky = write_bench(tmp_path, victims[:1], spec, name="b.yaml",
                        dataset={"path": save(d.x[:8], "leaky")})  # fmt: skip
    store = run_benchmark(load_benchmark(leaky), tmp_path / "b", progress=False)
    cells = store.cells()
    store.close()
    assert list(cells["status"]) == ["invalid"]
    assert "shared with them" in cells["error"].iloc[0] or "clips of" in cells["error"].iloc[0]


def test_a_single_clip_batch_keeps_a_centroid_negative():
    g = torch.Generator().manual_seed(0)
    z0, c = unit(torch.randn(1, 4, generator=g)), unit(torch.randn(3, 4, generator=g))
    keep = nb.far_centroid_mask(z0, c, 10)
    assert int(keep.sum()) == 1
    z = z0.clone().requires_grad_(True)
    nb.nobox_infonce(unit(z), z0, c, keep).sum().backward()
    assert z.grad.abs().sum() > 0


@pytest.mark.parametrize("world", ["synth-ntu60", "synth-ntu25"])
def test_the_shipped_manifold_is_listed_verified_and_disjoint_from_its_world(capsys, world):
    """Each zoo manifold: listed by ``robench zoo list``, loads with its sha256 verified, and its
    recorded clips are the world's no-box clips, none of them a clip of the world."""
    from robench.cli import main
    from robench.manifold import check_disjoint, load_manifold, manifold_names

    name = "smi." + world.replace("-", "_")
    assert name in manifold_names()  # shipped in robench/zoo/manifolds (robench prepare smi)
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert name in out and "manifold" in out
    enc, meta = load_manifold(name)
    assert meta["clips"] == 2000 and meta["world"] == world
    data = open_dataset(world)
    check_disjoint(meta, data.x, data.name, {})
    nobox = generate_nobox(0, n=2000, world=world)
    assert nobox.fingerprint() == meta["dataset_sha256"]


def test_prepare_smi_writes_a_verified_manifold_with_its_record(tmp_path, capsys):
    from robench.cli import main
    from robench.manifold import load_manifold

    argv = ["prepare", "smi", "--world", "synth-ntu25", "--clips", "32", "-q", "-o",
            str(tmp_path / "m"), *[a for kv in ("epochs=1", "queue=8", "batch_size=16", "dim=8",
                                                "width=4", "depth=1", "gru_hidden=4")
                                   for a in ("--set", kv)]]  # fmt: skip
    assert main(argv) == 0
    assert "k-NN accuracy" in capsys.readouterr().out
    enc, meta = load_manifold(str(tmp_path / "m.pt"))
    nobox = generate_nobox(0, n=32, world="synth-ntu25")
    assert (
        meta["clip_sha256"] == clip_sha256(nobox.x)
        and meta["dataset_sha256"] == nobox.fingerprint()
    )
    assert meta["clips"] == 32 and meta["world"] == "synth-ntu25" and meta["pretrain"]["queue"] == 8
    assert 0 <= meta["knn_accuracy"] <= 1 and "--clips 32" in meta["command"]
    world = open_dataset("synth-ntu25")
    check_disjoint(meta, world.x, world.name, {})
    assert main(["prepare", "smi", "--set", "queue=-1", "-o", str(tmp_path / "x")]) == 2
