"""The temporal-band analysis of transfer perturbations (robench.run.spectrum, robench spectrum)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robench.cli import main
from robench.errors import ConfigError, DataError
from robench.run.spectrum import (
    PROBES,
    band_transfer,
    generations,
    probes,
    sign_probe,
    surrogate_label,
    temporal_bands,
)
from robench.threat import ThreatModel, Violation

N, C, T, V, M = 4, 3, 16, 25, 1
EPS = 0.01


def clips(n: int = N) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 0.5 + 0.1 * torch.rand(n, C, T, V, M, generator=g)


def alternating(shape) -> torch.Tensor:
    sign = torch.tensor([(-1.0) ** t for t in range(shape[2])]).view(1, 1, -1, 1, 1)
    return torch.ones(shape) * sign


def test_a_constant_offset_is_low_and_frame_to_frame_jitter_is_high():
    x = clips()
    const = torch.full_like(x, 0.003)
    low, high = temporal_bands(const, x, cutoff=1)
    assert torch.allclose(low, const, atol=1e-7) and high.abs().max() < 1e-7
    jitter = 0.002 * alternating(x.shape)
    low, high = temporal_bands(jitter, x, cutoff=T // 2)  # the Nyquist bin is the last one
    assert low.abs().max() < 1e-7 and torch.allclose(high, jitter, atol=1e-7)
    mixed = const + jitter
    low, high = temporal_bands(mixed, x, cutoff=3)
    assert torch.allclose(low + high, mixed, atol=1e-9)
    assert torch.allclose(low, const, atol=1e-7) and torch.allclose(high, jitter, atol=1e-7)


def test_padding_and_absent_bodies_stay_zero_in_both_bands():
    x = clips()
    x[:, :, 10:] = 0  # padding frames
    delta = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)) * 1e-3
    delta[:, :, 10:] = 0
    low, high = temporal_bands(delta, x, cutoff=2)
    assert (low[:, :, 10:] == 0).all() and (high[:, :, 10:] == 0).all()
    assert low[:, :, :10].abs().max() > 0
    assert torch.allclose(low + high, delta, atol=1e-9)


@pytest.mark.parametrize("cutoff", [0, T // 2 + 1, True, 2.0])
def test_a_cutoff_outside_the_bins_is_refused(cutoff):
    x = clips()
    with pytest.raises(ConfigError, match="'--cutoff'"):
        temporal_bands(torch.zeros_like(x), x, cutoff)


def test_a_perturbation_of_another_shape_is_refused():
    x = clips()
    with pytest.raises(ConfigError, match="shaped like"):
        temporal_bands(torch.zeros(N, C, T, V), x, 2)


def test_sign_probe_moves_every_moved_coordinate_by_exactly_eps():
    x = clips()
    part = torch.zeros_like(x)
    part[0, 0, 0, 0, 0], part[1, 2, 3, 4, 0] = 0.2, -1e-9
    out = sign_probe(x, part, EPS)
    d = out - x
    assert torch.isclose(d[0, 0, 0, 0, 0], torch.tensor(EPS))
    assert torch.isclose(d[1, 2, 3, 4, 0], torch.tensor(-EPS))
    assert (d != 0).sum() == 2


def test_probes_share_and_random_signs_on_the_moved_coordinates():
    x = clips()
    delta = torch.full_like(x, 0.003)
    delta[0] = 0  # a clip the attack left alone
    ps, share = probes(x, x + delta, EPS, cutoff=1, seed=0)
    assert tuple(ps) == PROBES
    assert share == pytest.approx(1.0, abs=1e-6)
    rnd = ps["random-sign"] - x
    assert (rnd[0] == 0).all()
    assert torch.allclose(rnd[1:].abs(), torch.full_like(rnd[1:], EPS), atol=1e-7)
    assert 0.4 < float((rnd[1:] > 0).double().mean()) < 0.6
    again, _ = probes(x, x + delta, EPS, cutoff=1, seed=0)
    other, _ = probes(x, x + delta, EPS, cutoff=1, seed=1)
    assert torch.equal(again["random-sign"], ps["random-sign"])
    assert not torch.equal(other["random-sign"], ps["random-sign"])
    _, share = probes(x, x + 0.003 * alternating(x.shape), EPS, cutoff=1)
    assert share == pytest.approx(0.0, abs=1e-6)


class MeanModel(nn.Module):
    """Two classes decided by the sign of (mean coordinate - 0.55): only the clip's offset counts."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s = z.flatten(1).mean(1) - 0.55
        return torch.stack([s, -s], dim=1) * 100


def test_band_transfer_counts_the_correct_clips_fooled_by_each_probe():
    x = torch.full((5, C, T, V, M), 0.555)  # class 0 by a margin of half an eps
    x[4] = 0.5  # already wrong: not counted
    y = torch.zeros(5, dtype=torch.long)
    delta = -0.6 * EPS + 0.4 * EPS * alternating(x.shape)
    x_adv = ThreatModel(eps=EPS).project(x, x + delta)
    row = band_transfer(MeanModel(), x, y, x_adv, ThreatModel(eps=EPS), cutoff=2)
    assert row["n"] == 4
    f = row["fooled"]
    assert f["perturbation"] == 1.0 and f["sign"] == 1.0 and f["low-sign"] == 1.0
    assert f["high-sign"] == 0.0 and f["random-sign"] == 0.0
    assert row["low_share"] == pytest.approx(0.6 / (0.6**2 + 0.4**2) ** 0.5, abs=1e-4)


def test_band_transfer_refuses_l2_and_a_probe_outside_the_threat(monkeypatch):
    x = clips()
    y = torch.zeros(N, dtype=torch.long)
    with pytest.raises(ConfigError, match="linf"):
        band_transfer(MeanModel(), x, y, x, ThreatModel(norm="l2", eps=0.5))
    monkeypatch.setattr(ThreatModel, "check", lambda self, a, b: [Violation("linf", 0.02, EPS, 1)])
    with pytest.raises(DataError, match="probe 'perturbation' leaves the threat model"):
        band_transfer(MeanModel(), x, y, x, ThreatModel(eps=EPS))


def _save(path, sur, attack, n=2):
    cfg = {"surrogate": sur, "attack": {"id": attack}}
    torch.save(
        {"x_adv": torch.zeros(n, C, T, V, M), "ids": [f"c{i}" for i in range(n)],
         "config": json.dumps(cfg)},
        path,
    )  # fmt: skip


def test_generations_are_read_sorted_and_a_bad_file_is_named(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    _save(cache / "transfer-b.pt", {"id": "z"}, "mifgsm")
    _save(cache / "transfer-a.pt", [{"id": "a"}, {"id": "b"}], "ensemble")
    _save(cache / "transfer-c.pt", {"id": "z"}, "ifgsm")
    _save(cache / "nobox-d.pt", {"id": "y"}, "ifgsm")  # not a transfer generation: skipped
    got = generations(tmp_path)
    assert [(surrogate_label(g["config"]), g["config"]["attack"]["id"]) for g in got] == [
        ("a+b", "ensemble"), ("z", "ifgsm"), ("z", "mifgsm")
    ]  # fmt: skip
    (cache / "transfer-e.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="transfer-e.pt: not a transfer generation"):
        generations(tmp_path)


def test_the_command_names_a_folder_without_generations(tmp_path, capsys):
    assert main(["spectrum", str(tmp_path), "--victim", "stgcn.synth_ntu60"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no transfer generations" in err and str(tmp_path) in err and "\n" not in err


def test_a_clip_set_the_victim_gets_all_wrong_counts_none():
    x = torch.full((3, C, T, V, M), 0.5)  # class 1 for MeanModel
    row = band_transfer(MeanModel(), x, torch.zeros(3, dtype=torch.long), x, ThreatModel(eps=EPS))
    assert row["n"] == 0
    assert all(v != v for v in row["fooled"].values())  # NaN, not 0%: nothing was there to fool


def test_the_sign_probes_are_projected_before_the_threat_check():
    g = torch.Generator().manual_seed(0)
    x = (
        3 * torch.rand(N, C, T, V, M, generator=g) - 1.5
    )  # float32 values where x ± eps rounds past eps
    x_adv = ThreatModel(eps=EPS).project(x, x + 0.004 * torch.randn(x.shape, generator=g))
    raw = sign_probe(x, x_adv - x, EPS)
    assert ThreatModel(eps=EPS).check(x, raw)  # unprojected, the probe would be refused
    y = torch.zeros(N, dtype=torch.long)
    row = band_transfer(MeanModel(), x, y, x_adv, ThreatModel(eps=EPS), cutoff=2)
    assert set(row["fooled"]) == set(PROBES)


def test_a_generation_whose_ids_and_examples_differ_in_length_is_named(tmp_path):
    (tmp_path / "cache").mkdir()
    torch.save(
        {"x_adv": torch.zeros(2, C, T, V, M), "ids": ["c0"], "config": json.dumps({})},
        tmp_path / "cache" / "transfer-x.pt",
    )
    with pytest.raises(DataError, match="transfer-x.pt: .*ids and x_adv differ in length"):
        generations(tmp_path)


def test_the_command_prints_each_generation_against_each_victim(tmp_path, capsys):
    from conftest import make_tiny_set

    from robench.victim import build_victim
    from robench.zoo.checkpoint import load_victim, save_victim

    ds = make_tiny_set(n=24, t=16)
    npz = ds.save(tmp_path / "tiny.npz")
    save_victim(build_victim("stgcn", num_classes=3, width=4, depth=1), tmp_path / "v.pt")
    test = ds.get_split("test")
    threat = ThreatModel(eps=EPS)
    g = torch.Generator().manual_seed(3)
    x_adv = threat.project(test.x, test.x + EPS * torch.randn(test.x.shape, generator=g))
    cfg = {
        "dataset": {"name": str(npz), "split": "test", "fingerprint": ds.fingerprint()},
        "threat": threat.to_dict(),
        "surrogate": {"id": "sur"},
        "attack": {"id": "atk"},
    }
    (tmp_path / "run" / "cache").mkdir(parents=True)
    path = tmp_path / "run" / "cache" / "transfer-k.pt"
    torch.save({"x_adv": x_adv, "ids": list(test.ids), "config": json.dumps(cfg)}, path)
    argv = ["spectrum", str(tmp_path / "run"), "--victim", str(tmp_path / "v.pt"), "--cutoff", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    row = band_transfer(load_victim(tmp_path / "v.pt").eval(), test.x, test.y, x_adv, threat, 3)
    cells = " | ".join(f"{100 * row['fooled'][p]:.1f}%" for p in PROBES)
    assert out[0] == "| surrogate | attack | victim | n | low share | " + " | ".join(PROBES) + " |"
    assert out[2] == (
        f"| sur | atk | {tmp_path / 'v.pt'} | {row['n']} | {row['low_share']:.2f} | {cells} |"
    )
    cfg["dataset"]["fingerprint"] = "0" * 64  # made on another build of the set
    torch.save({"x_adv": x_adv, "ids": list(test.ids), "config": json.dumps(cfg)}, path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "transfer-k.pt: made on another build" in err and err.count("\n") == 1
