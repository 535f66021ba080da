"""A data set with its own topology (20 joints, one body): a victim trains on it, its checkpoint
carries the topology JSON (no other file needed), loads alone and is attacked end to end."""

from __future__ import annotations

import json

import torch

from robench.data.dataset import SkeletonSet
from robench.data.skeleton import Topology, get_topology


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
    if correct:  # attacked end to end on 20 joints and one body
        assert rc == 0 and "success" in out
    else:
        assert rc == 2 and "expected at least one correctly classified" in err
