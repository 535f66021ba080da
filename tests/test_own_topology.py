"""A data set with its own topology (20 joints, one body): a victim trains on it, its checkpoint
carries the topology JSON (no other file needed), loads alone and is attacked end to end."""

from __future__ import annotations

import json

import pytest
import torch

from robench.data.dataset import SkeletonSet
from robench.data.skeleton import Topology, get_topology
from robench.victim import VICTIMS


def chain_set(n: int = 24) -> SkeletonSet:
    topo = Topology(name="chain20", joint_names=tuple(f"j{i}" for i in range(20)),
                    parents=(-1, *range(19)), center=0)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 12, 20, 1, generator=g) * 0.05 + y.view(-1, 1, 1, 1, 1) * 0.3 + 0.1
    return SkeletonSet(x=x, y=y, ids=tuple(f"c{i}" for i in range(n)), class_names=("a", "b"),
                       topology=topo, unit="m", name="chain",
                       split=tuple("train" if i % 3 else "test" for i in range(n)))  # fmt: skip


def test_topology_json_text_is_a_topology():
    topo = chain_set().topology
    assert get_topology(topo.to_json()) == topo


def test_train_on_an_own_topology_and_attack_the_checkpoint(tmp_path, capsys):
    from robench.cli import main
    from robench.zoo.checkpoint import load_victim

    ds = chain_set()
    ds.save(tmp_path / "chain.npz")
    prefix = tmp_path / "out" / "stgcn.chain"
    args = ["train", "stgcn", "--dataset", str(tmp_path / "chain.npz"), "--epochs", "1",
            "--width", "4", "--depth", "1", "-o", str(prefix), "-q"]  # fmt: skip
    assert main(args) == 0
    pt, js = tmp_path / "out" / "stgcn.chain.pt", tmp_path / "out" / "stgcn.chain.json"
    meta = json.loads(js.read_text())
    assert json.loads(meta["config"]["topology"])["name"] == "chain20"
    assert meta["config"]["num_persons"] == 1
    model = load_victim(pt)
    assert model.topology == ds.topology
    with torch.inference_mode():
        assert model(ds.x[:3]).shape == (3, 2)
    test = ds.get_split("test")
    with torch.inference_mode():
        correct = int((model(test.x).argmax(1) == test.y).sum())
    capsys.readouterr()
    rc = main(
        ["attack", str(pt), "fgsm", "--dataset", str(tmp_path / "chain.npz"), "--n", "2", "-q"]
    )
    out, err = capsys.readouterr()
    assert correct > 0  # seeded: this tiny victim gets some test clips right
    assert rc == 0 and "success" in out, err  # attacked end to end on 20 joints and one body


def test_train_knobs_and_a_validation_split_of_held_out_performers(tmp_path):
    from robench.cli import main
    from robench.zoo.train import validation_split

    ds = chain_set(36)
    ds = SkeletonSet(**{**ds.__dict__, "subject": torch.arange(36) % 6})  # 6 performers
    train = ds.get_split("train")
    tr, val = validation_split(train, 0.5, seed=0)
    held = set(val.subject.tolist())
    assert len(held) == 2 and not held & set(tr.subject.tolist())  # whole performers held out
    assert len(tr) + len(val) == len(train) and not set(val.ids) & set(ds.get_split("test").ids)
    assert validation_split(train, 0.5, seed=0)[1].ids == val.ids  # seeded
    ds.save(tmp_path / "chain.npz")
    args = ["train", "stgcn", "--dataset", str(tmp_path / "chain.npz"), "--epochs", "6",
            "--width", "4", "--depth", "1", "--lr", "0.01", "--batch-size", "8", "--no-augment",
            "--val-fraction", "0.5", "--patience", "2", "-o", str(tmp_path / "m"), "-q"]  # fmt: skip
    assert main(args) == 0
    meta = json.loads((tmp_path / "m.json").read_text())
    t = meta["train"]
    assert (t["lr"], t["batch_size"], t["augment"], t["val_fraction"], t["patience"]) == (
        0.01, 8, False, 0.5, 2)  # fmt: skip
    v = meta["validation"]
    assert v["n"] == len(val) and sorted(v["subjects"]) == sorted(held)
    assert 1 <= v["best_epoch"] <= 6 and 0 <= v["accuracy"] <= 1
    assert "--lr 0.01" in meta["command"] and "--no-augment" in meta["command"]
    assert "--patience 2" in meta["command"] and meta["config"]["init_seed"] == 0
    args[args.index("-o") + 1] = str(tmp_path / "m7")
    assert main([*args, "--seed", "7"]) == 0  # another seed: other initial weights
    assert json.loads((tmp_path / "m7.json").read_text())["config"]["init_seed"] == 7
    bare = [a for a in args if a not in ("--val-fraction", "0.5")]
    assert main(bare) == 2  # --patience without --val-fraction is refused
    with pytest.raises(Exception, match="val_fraction"):
        from robench.zoo.train import TrainConfig

        TrainConfig(val_fraction=1.0)


def test_early_stopping_keeps_the_best_validation_epoch(monkeypatch):
    """Validation accuracies 0.2, 0.6, 0.4, 0.3 with patience 2: training stops after epoch 4 and
    the weights are epoch 2's."""
    import robench.zoo.train as tr

    accs = iter([0.2, 0.6, 0.4, 0.3, 0.9, 0.9])
    states = []
    real = tr.evaluate

    def fake(model, data, batch_size=128):
        if len(data) < 12:  # the validation set
            states.append({k: v.clone() for k, v in model.state_dict().items()})
            return next(accs)
        return real(model, data, batch_size)

    monkeypatch.setattr(tr, "evaluate", fake)
    ds = chain_set(36)
    ds = SkeletonSet(**{**ds.__dict__, "subject": torch.arange(36) % 6})
    model, meta = tr.train_victim(
        "stgcn", ds, tr.TrainConfig(epochs=6, batch_size=8, val_fraction=0.34, patience=2),
        {"width": 4, "depth": 1}, progress=False,
    )  # fmt: skip
    assert len(states) == 4 and meta["validation"]["best_epoch"] == 2
    assert meta["validation"]["accuracy"] == 0.6
    assert all(torch.equal(v, states[1][k]) for k, v in model.state_dict().items())


def score_set(n: int = 24) -> SkeletonSet:
    """18 OpenPose joints as x, y and a confidence score (channel 2), two bodies, the second absent
    in every other clip: the Kinetics-skeleton layout."""
    from robench.data.skeleton import BUILTIN_TOPOLOGIES

    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 12, 18, 2, generator=g) * 0.05 + y.view(-1, 1, 1, 1, 1) * 0.2
    x[:, 2] = torch.rand(n, 12, 18, 2, generator=g) * 0.9 + 0.1  # scores in (0.1, 1]
    x[::2, :, :, :, 1] = 0
    return SkeletonSet(x=x, y=y, ids=tuple(f"k{i}" for i in range(n)), class_names=("a", "b"),
                       topology=BUILTIN_TOPOLOGIES["openpose18-score"], unit="normalized",
                       name="kin", split=tuple("train" if i % 3 else "test" for i in range(n)))  # fmt: skip


@pytest.mark.parametrize("kind", ["chain20-one-body", "openpose18-score-two-bodies"])
@pytest.mark.parametrize("arch", VICTIMS.names())
def test_every_architecture_trains_and_is_attacked_on_other_skeletons(tmp_path, capsys, arch, kind):
    from robench.attack import create_attack
    from robench.cli import main
    from robench.threat import ThreatModel
    from robench.zoo.checkpoint import load_victim

    ds = chain_set() if kind.startswith("chain") else score_set()
    path = ds.save(tmp_path / "set.npz")
    prefix = tmp_path / f"{arch}.set"
    args = ["train", arch, "--dataset", str(path), "--epochs", "1", "--width", "4", "--depth", "1",
            "-o", str(prefix), "-q"]  # fmt: skip
    assert main(args) == 0
    model = load_victim(f"{prefix}.pt")
    assert model.topology == ds.topology
    capsys.readouterr()
    rc = main(["attack", f"{prefix}.pt", "pgd", "--dataset", str(path), "--n", "2", "--steps", "3",
               "--eps", "0.02", "-q"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0 and "success" in out, err  # every batch verified against the data's threat model
    x, yy = ds.x[:6], ds.y[:6]
    threat = ThreatModel(eps=0.02, unit=ds.unit, topology=ds.topology)
    adv = create_attack("pgd", steps=3)(__import__("robench").WhiteBox(model), x, yy, threat,
                                        torch.Generator().manual_seed(0))  # fmt: skip
    assert threat.check(x, adv) == [] and not torch.equal(adv, x)
    if ds.topology.score_channels:
        assert torch.equal(adv[:, 2], x[:, 2])  # the confidence scores are exactly the clean ones
    assert (adv[(x == 0)] == 0).all()  # absent bodies and padding stay zero
