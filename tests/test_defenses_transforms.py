"""The input-transform defenses (defenses/transforms.py), EOT in the gradient attacks, and defended
victims in the harness: each transform's formula, the vote and its BPDA pass, per-cell reseeding,
BPDA cells and their keys."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_set
from robench.defenses.transforms import realign_bones, resample, temporal_lowpass
from test_harness import make_victims, registered, rows, write_bench
from torch import nn

from robench.access import Knowledge
from robench.attack import Attack, AttackConfig
from robench.data.skeleton import BUILTIN_TOPOLOGIES, presence_mask
from robench.defense import create_defense
from robench.errors import ConfigError
from robench.run.benchmark import load_benchmark
from robench.run.executor import run_benchmark

NTU = BUILTIN_TOPOLOGIES["ntu25"]


def bench_with(directory, victims: list, attacks: list, name: str = "tiny.yaml"):
    """write_bench with victim entries that may be mappings (a defense and its params)."""
    import yaml

    p = write_bench(directory, [], attacks, name=name)
    doc = yaml.safe_load(p.read_text())
    doc["victims"] = [v if isinstance(v, dict) else str(v) for v in victims]
    p.write_text(yaml.safe_dump(doc))
    return p


@pytest.fixture(scope="module")
def victims(tmp_path_factory):
    return make_victims(tmp_path_factory.mktemp("victims"))


class Linear(nn.Module):
    def __init__(self, x: torch.Tensor, classes: int = 3, seed: int = 1) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(x[0].numel(), classes, generator=g) * 0.05)
        self.topology = NTU

    def forward(self, x):
        return x.flatten(1) @ self.w


# ---------------------------------------------------------------------------- temporal smoothing
def test_lowpass_is_a_normalised_gaussian_over_present_frames():
    x = torch.zeros(1, 3, 20, 25, 2)
    x[0, :, :12, :, 0] = 1.0  # body 0 present in frames 0..11, constant; body 1 absent
    out = temporal_lowpass(x, 1.0)
    # a constant signal stays constant up to the clip's last frame (ends not pulled to zero)
    assert torch.allclose(out[0, :, :12, :, 0], torch.ones(3, 12, 25))
    assert (out[0, :, 12:] == 0).all() and (out[..., 1] == 0).all()
    # an impulse in the middle of a present clip becomes the Gaussian kernel (σ = 1, ±3 frames)
    x[0, :, :, :, 0] = 1.0  # now present in all 20 frames
    base = temporal_lowpass(x, 1.0)
    y = x.clone()
    y[0, 0, 10, 0, 0] = 2.0
    d = temporal_lowpass(y, 1.0)[0, 0, :, 0, 0] - base[0, 0, :, 0, 0]
    k = torch.exp(-0.5 * torch.arange(-3.0, 4.0) ** 2)
    assert torch.allclose(d[7:14], k / k.sum(), atol=1e-6)
    assert d[:7].abs().max() < 1e-7 and d[14:].abs().max() < 1e-7
    # a wider kernel spreads further
    wide = temporal_lowpass(y, 2.0)[0, 0, :, 0, 0] - temporal_lowpass(x, 2.0)[0, 0, :, 0, 0]
    assert wide[10] < d[10] and wide[6] > 1e-3


def test_smoothing_defense_feeds_the_victim_the_smoothed_clip():
    x = make_tiny_set().x[:4]
    v = Linear(x)
    d = create_defense("temporal-smoothing", sigma=1.5)(v, x)
    with torch.inference_mode():
        assert torch.allclose(d(x), v(temporal_lowpass(x, 1.5)))
    with pytest.raises(ConfigError, match="sigma"):
        create_defense("temporal-smoothing", sigma=0.0)


# ---------------------------------------------------------------------------- noise smoothing
class Threshold(nn.Module):
    """Class 1 where the first coordinate exceeds ``t``, else class 0 (logits ±10)."""

    def __init__(self, t: float) -> None:
        super().__init__()
        self.t = t
        self.topology = NTU

    def forward(self, x):
        s = (x[:, 0, 0, 0, 0] - self.t) * 1000
        return torch.stack([-s, s], 1).clamp(-10, 10)


def test_noise_smoothing_logits_are_log_vote_frequencies_of_noisy_copies():
    x = torch.zeros(2, 3, 4, 25, 1)
    x[..., 0] = 0.5
    x[1, 0, 0, 0, 0] = 0.9
    cfg = {"sigma": 0.1, "samples": 200}
    d = create_defense("noise-smoothing", **cfg)(Threshold(0.5), x)
    with torch.inference_mode():
        out = d(x)
    freq = out.exp() * (200 + 0.5 * 2) - 0.5  # invert log((votes + 1/2) / (S + K/2))
    assert torch.allclose(freq.sum(1), torch.full((2,), 200.0), atol=1e-3)
    # at the threshold the vote splits about evenly; 4σ above it it is unanimous
    assert 70 < float(freq[0, 1]) < 130
    assert float(freq[1, 1]) == pytest.approx(200, abs=1e-3)
    # the noise is N(0, σ²): the class-1 share at the threshold + σ is Φ(1) ≈ 0.84
    x2 = x.clone()
    x2[0, 0, 0, 0, 0] = 0.6
    with torch.inference_mode():
        f2 = d(x2).exp()[0, 1] * 201 - 0.5
    assert abs(float(f2) / 200 - 0.841) < 0.08


def test_the_vote_has_zero_gradient_and_bpda_is_the_mean_softmax():
    data = make_tiny_set()
    x = data.x[:3]
    v = Linear(x)
    d = create_defense("noise-smoothing", sigma=0.05, samples=5)(v, x)
    xg = x.clone().requires_grad_(True)
    d.reseed(7)
    out = d(xg)
    (g,) = torch.autograd.grad(out[:, 0].sum(), xg)
    assert (g == 0).all()
    d.bpda = True
    d.reseed(7)
    xg = x.clone().requires_grad_(True)
    out_b = d(xg)
    assert torch.allclose(out_b, out.detach())  # BPDA changes the backward pass only
    (gb,) = torch.autograd.grad(out_b[:, 0].sum(), xg)
    # expected: the gradient of log(mean softmax) over the same five draws
    gen = torch.Generator().manual_seed(7)
    mask = presence_mask(x).float()
    xe = x.clone().requires_grad_(True)
    p = sum(v(xe + 0.05 * torch.randn(x.shape, generator=gen) * mask).softmax(1) for _ in range(5))
    (ge,) = torch.autograd.grad(torch.log(p / 5)[:, 0].sum(), xe)
    assert torch.allclose(gb, ge, atol=1e-6) and gb.abs().sum() > 0


# ---------------------------------------------------------------------------- resampling
def test_resample_interpolates_present_frames_and_keeps_padding_empty():
    x = torch.zeros(1, 3, 6, 25, 2)
    t = torch.arange(4.0)
    x[0, :, :4, :, 0] = (t + 1).view(1, 4, 1)  # body 0: value t + 1 in frames 0..3
    x[0, :, 1:3, :, 1] = 5.0  # body 1 present in frames 1, 2 only
    pos = torch.tensor([[0.0, 1.5, 3.0, 0.25, -1.0, -1.0]])
    out = resample(x, pos)
    assert out[0, 0, :4, 0, 0].tolist() == pytest.approx([1.0, 2.5, 4.0, 1.25])
    assert (out[0, :, 4:] == 0).all()
    # body 1: frame 1.5 lies between two present frames; frame 0 and 3 are absent (nearest absent)
    assert out[0, 0, :4, 0, 1].tolist() == pytest.approx([0.0, 5.0, 0.0, 0.0])
    # identity positions give the clip back
    same = resample(x, torch.tensor([[0.0, 1, 2, 3, -1, -1]]))
    assert torch.equal(same, x)


def test_resampling_defense_draws_speed_and_offset_per_forward():
    x = make_tiny_set().x[:4]
    v = Linear(x)
    ident = create_defense("temporal-resampling", min_speed=1.0, max_speed=1.0, max_offset=0.0)
    d = ident(v, x)
    with torch.inference_mode():
        assert torch.allclose(d(x), v(x), atol=1e-6)  # speed 1, offset 0: the clip itself
    d = create_defense("temporal-resampling")(v, x)
    d.reseed(3)
    with torch.inference_mode():
        a = d(x)
        d.reseed(3)
        b = d(x)
        c = d(x)
    assert torch.equal(a, b) and not torch.equal(b, c)
    # the start offset alone (speed fixed at 1) moves the clip
    shift = create_defense("temporal-resampling", min_speed=1.0, max_speed=1.0, max_offset=0.5)
    with torch.inference_mode():
        assert not torch.allclose(shift(v, x)(x), v(x), atol=1e-6)
    # speed 2 from frame 0: frame t of the output is frame 2t of the clip, held at the last frame
    fast = create_defense("temporal-resampling", min_speed=2.0, max_speed=2.0, max_offset=0.0)
    one = torch.zeros(1, 3, 8, 25, 1)
    one[0, :, :6] = torch.arange(1.0, 7.0).view(1, 6, 1, 1)
    seen = []

    class Spy(nn.Module):
        topology = NTU

        def forward(self, z):
            seen.append(z)
            return z.flatten(1)[:, :2]

    fast(Spy(), one)
    seen.clear()
    fast(Spy(), one)  # the base class's probe calls are done; look at one forward of the result
    dm = fast(Spy(), one)
    seen.clear()
    dm(one)
    assert seen[0][0, 0, :, 0, 0].tolist() == [1, 3, 5, 6, 6, 6, 0, 0]
    with pytest.raises(ConfigError, match="max_speed"):
        create_defense("temporal-resampling", min_speed=1.2, max_speed=1.0)


# ---------------------------------------------------------------------------- bone realignment
def test_realignment_gives_each_bone_its_mean_length_and_keeps_directions():
    data = make_tiny_set()
    x = data.x[:4]
    out = realign_bones(x, NTU)
    mask = presence_mask(x)[:, 0, :, 0, :]  # (N, T, M)
    before, after = NTU.bone_lengths(x), NTU.bone_lengths(out)  # (N, T, B, M)
    m = mask[:, :, None, :].expand_as(after)
    mean = (before * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1)
    assert torch.allclose(after[m], mean.expand_as(after)[m], atol=1e-5)
    root = NTU.parents.index(-1)
    assert torch.equal(out[:, :, :, root], x[:, :, :, root])
    vb, va = NTU.bone_vectors(x), NTU.bone_vectors(out)
    present = presence_mask(x)[:, 0].expand(-1, -1, 25, -1).clone()
    present[:, :, root] = False  # no bone ends at the root
    cos = F.cosine_similarity(vb, va, dim=1)[present]
    assert cos.numel() > 0 and cos.min() > 0.9999  # each bone keeps its direction
    assert (out[~presence_mask(x).expand_as(x)] == 0).all()
    # a clip whose bones already have constant lengths is a fixed point
    assert torch.allclose(realign_bones(out, NTU), out, atol=1e-5)


def test_realignment_needs_a_victim_with_a_topology():
    x = make_tiny_set().x[:2]

    class Bare(nn.Module):
        def forward(self, z):
            return z.flatten(1)[:, :3]

    with pytest.raises(ConfigError, match="'topology' attribute"):
        create_defense("bone-realignment")(Bare(), x)


# ---------------------------------------------------------------------------- EOT
class Noisy(nn.Module):
    """A randomized victim: logits of x scaled by a random factor per forward."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.lin = Linear(x)
        self.gen = torch.Generator().manual_seed(0)

    def forward(self, x):
        s = 1 + torch.rand(x.shape[0], 1, 1, 1, 1, generator=self.gen)
        return self.lin(x * s * s)


def test_eot_averages_the_gradient_and_logits_over_draws():
    from robench.attacks.gradient import _gradient

    x = make_tiny_set().x[:3]
    y = torch.tensor([0, 1, 2])
    mask = torch.ones_like(x)
    m = Noisy(x)
    m.gen.manual_seed(5)
    g, logits = _gradient(m, x, y, False, mask, eot=3)
    m.gen.manual_seed(5)
    gs = [_gradient(m, x, y, False, mask) for _ in range(3)]
    assert torch.allclose(g, sum(a for a, _ in gs) / 3, atol=1e-6)
    assert torch.allclose(logits, sum(b for _, b in gs) / 3, atol=1e-6)
    assert not torch.allclose(g, gs[0][0])
    with pytest.raises(ConfigError, match="eot"):
        create_attack_pgd(eot=0)


def test_pgd_spends_eot_passes_per_step():
    x = make_tiny_set().x[:2]
    m = Noisy(x)
    calls = []
    m.register_forward_hook(lambda *a: calls.append(1))
    from robench.access import WhiteBox
    from robench.threat import ThreatModel

    threat = ThreatModel(norm="linf", eps=0.01)
    for eot, want in ((1, 3), (2, 6)):
        calls.clear()
        attack = create_attack_pgd(steps=3, eot=eot)
        attack.run(WhiteBox(m), x, torch.tensor([0, 1]), threat, torch.Generator(), None)
        assert len(calls) == want


def create_attack_pgd(**kw):
    from robench.attack import create_attack

    return create_attack("pgd", **kw)


# ---------------------------------------------------------------------------- harness
@dataclass(frozen=True)
class _SpyCfg(AttackConfig):
    log: str = ""


class BpdaSpy(Attack):
    """Records whether the model it was handed runs BPDA, and returns the clean input."""

    knowledge = Knowledge.WHITE_BOX
    Config = _SpyCfg

    def run(self, access, x, y, threat, generator, target):
        flags = [getattr(m, "bpda", None) for m in access.victim.modules() if hasattr(m, "bpda")]
        with open(self.config.log, "a") as f:
            f.write(f"{flags}\n")
        return x.clone()


def test_defended_victims_run_with_naive_eot_and_bpda_cells(tmp_path, victims):
    log = tmp_path / "spy.log"
    defended = {"name": str(victims[0]), "id": "v0d", "defense": "noise-smoothing",
                "defense_params": {"samples": 4}}  # fmt: skip
    attacks = [
        {"name": "pgd", "params": {"steps": 2}},
        {"name": "pgd", "id": "pgd-eot", "params": {"steps": 2, "eot": 2}},
        {"name": "pgd", "id": "pgd-bpda", "params": {"steps": 2}, "bpda": True},
        {"name": "test-bpda-spy", "params": {"log": str(log)}},
        {"name": "test-bpda-spy", "id": "spy-bpda", "params": {"log": str(log)}, "bpda": True},
    ]
    with registered("test-bpda-spy", BpdaSpy):
        b = load_benchmark(bench_with(tmp_path, [victims[0], defended], attacks))
        store = run_benchmark(b, tmp_path / "r", progress=False)
        first = rows(tmp_path / "r")
        store.close()
        # the attacker's copy runs BPDA only in BPDA cells; the harness's copy never switches
        # (each cell runs the spy 3 times: once, then twice for the determinism spot check)
        got = sorted(log.read_text().split("\n")[:-1])
        assert got == ["[False]"] * 3 + ["[True]"] * 3 + ["[]"] * 6
        store = run_benchmark(b, tmp_path / "again", progress=False)
        assert rows(tmp_path / "again") == first  # a randomized defense: rows still reproducible
        cells = store.cells().set_index(["victim", "attack"])
        store.close()
        # a cell's rows do not depend on the cells before it: the BPDA cell alone gives the same
        alone = load_benchmark(bench_with(tmp_path, [defended], attacks[2:3], name="one.yaml"))
        run_benchmark(alone, tmp_path / "one", progress=False).close()
        one = rows(tmp_path / "one")
        assert one[0][0] in first[0] and set(one[1]) <= set(first[1])
    assert set(cells["status"]) == {"ok"}, cells[["status", "error"]].to_string()
    d = cells[cells["defense"] == "noise-smoothing"]
    assert len(d) == 5 and (d["forward_random"] == 1).all()
    # the vote's gradient is zero: the naive attack sees it on every eligible clip
    assert d.loc[("v0d", "pgd"), "zero_grad_frac"] == 1.0
    assert d.loc[("v0d", "pgd-bpda"), "zero_grad_frac"] < 1.0  # BPDA cells see the BPDA gradient
    u = cells[cells["defense"].isna()]
    assert (u["zero_grad_frac"].dropna() < 1).all() and (u["forward_random"] == 0).all()
    assert len(cells) == 10 and cells["cell_key"].nunique() == 10


def test_bpda_is_in_the_cell_key_only_when_set(tmp_path, victims):
    from robench.run.harness import prepare

    p = write_bench(tmp_path, victims[:1], [{"name": "fgsm"}, {"name": "fgsm", "id": "b",
                                                               "bpda": True}])  # fmt: skip
    plan = prepare(load_benchmark(p), tmp_path / "k")
    a, b = plan.cells
    assert "bpda" not in a.config["attack"] and b.config["attack"]["bpda"] is True
    assert a.key != b.key
    for bad, msg in (("yes", "true or false"), (True, "bpda only on white-box")):
        name = "noise-transfer" if msg.startswith("bpda only") else "fgsm"
        spec = {"name": "transfer-ifgsm" if bad is True else name, "bpda": bad}
        with pytest.raises(ConfigError, match=msg):
            load_benchmark(write_bench(tmp_path, victims[:1], [spec], name="bad.yaml"))


def test_clean_accuracy_of_a_randomized_defense_is_one_seeded_draw(tmp_path, victims):
    """Loading a defended victim twice gives the same clean predictions (stream at seed 0)."""
    from robench.run.harness import prepare

    spec = [{"name": str(victims[0]), "id": "v0", "defense": "temporal-resampling"},
            {"name": str(victims[0]), "id": "v0b", "defense": "temporal-resampling",
             "defense_params": {"min_speed": 0.5}}]  # fmt: skip
    p = bench_with(tmp_path, spec, ["fgsm"])
    vs = load_benchmark(p).victims
    plan = prepare(load_benchmark(p), tmp_path / "a")
    a, other = plan.model(vs[0]), plan.model(vs[1])
    b = prepare(load_benchmark(p), tmp_path / "b").model(vs[0])
    assert torch.equal(a.clean_logits, b.clean_logits) and a.forward_random == 1
    assert not torch.equal(a.clean_logits, other.clean_logits)  # its own params, its own model
    assert math.isfinite(float(a.clean_logits.sum()))


class ScoreSeeded(Attack):
    """A deterministic query attack whose output hangs on every bit of the oracle's scores (so
    the determinism spot check reruns it and compares)."""

    knowledge = Knowledge.QUERY
    randomized = False

    def run(self, access, x, y, threat, generator, target):
        import hashlib

        s = access.oracle(x)
        bits = hashlib.sha256(s.detach().cpu().numpy().tobytes()).hexdigest()
        g = torch.Generator().manual_seed(int(bits[:15], 16))
        noise = torch.empty_like(x).uniform_(-threat.eps, threat.eps, generator=g)
        return threat.project(x, x + noise)


def test_a_query_cell_on_a_randomized_defense_does_not_depend_on_the_cells_before(
    tmp_path, victims
):
    spec = [{"name": str(victims[0]), "id": "v0", "defense": "temporal-resampling"}]
    q = {"name": "test-score-seeded", "budget": 2, "oracle": "score"}
    with registered("test-score-seeded", ScoreSeeded):
        both = load_benchmark(bench_with(tmp_path, spec, ["fgsm", q], name="both.yaml"))
        alone = load_benchmark(bench_with(tmp_path, spec, [q], name="alone.yaml"))
        run_benchmark(both, tmp_path / "both", progress=False).close()
        run_benchmark(alone, tmp_path / "alone", progress=False).close()
    a, b = rows(tmp_path / "both"), rows(tmp_path / "alone")
    assert b[0][0] in a[0] and set(b[1]) <= set(a[1])
    # a deterministic attack on a randomized defense passes the determinism spot check: the
    # attacker's copy draws from the cell's stream, not from the attack's seed
    assert {r[15] for r in a[0]} == {"ok"}
