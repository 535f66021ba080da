"""Benchmark YAML validation: every user error is a one-line ConfigError naming file and field."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from robench.access import Knowledge
from robench.errors import ConfigError
from robench.run.benchmark import builtin_benchmarks, load_benchmark
from robench.run.spec import Benchmark, SubsetSpec, subset_hash
from robench.victim import build_victim
from robench.zoo.checkpoint import save_victim


@pytest.fixture(scope="module")
def victim_pt(tmp_path_factory):
    d = tmp_path_factory.mktemp("victims")
    save_victim(build_victim("stgcn", num_classes=16, width=4, depth=1), d / "tiny.pt")
    return d / "tiny.pt"


def write(tmp_path, victim_pt, name="b.yaml", **fields):
    doc = {
        "id": "t",
        "dataset": {"name": "synth-ntu25", "seed": 0, "n_train": 8, "n_test": 8, "num_frames": 16},
        "victims": [str(victim_pt)],
        "attacks": ["fgsm"],
    }
    doc.update(fields)
    doc = {k: v for k, v in doc.items() if v is not _DROP}
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


_DROP = object()


def test_valid_file_round_trip(tmp_path, victim_pt):
    p = write(
        tmp_path,
        victim_pt,
        attacks=[
            "fgsm",
            {"name": "pgd", "params": {"steps": 3}, "eps": [0.005, 0.02]},
            "transfer-ifgsm",
        ],
        threats=[{"norm": "linf", "eps": [0.01, 0.03]}],
        subset={"n": 4, "seed": 3},
        seeds=[0, 1],
    )
    b = load_benchmark(p)
    assert isinstance(b, Benchmark) and b.id == "t" and b.split == "test"
    assert [t.eps for t in b.threats] == [0.01, 0.03]
    pgd = b.attacks[1]
    assert pgd.params == (("steps", 3),) and pgd.knowledge is Knowledge.WHITE_BOX
    # the eps sweep replaces the eps of every primary threat model
    assert sorted(t.eps for t in b.threats_for(pgd)) == [0.005, 0.02]
    assert b.attacks[2].knowledge is Knowledge.TRANSFER
    assert [s.id for s in b.surrogates] == ["tiny"]  # default: every victim
    assert b.victims[0].source == str(victim_pt.resolve())
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.id = "x"  # type: ignore[misc]
    assert b.to_dict()["attacks"][1]["params"] == {"steps": 3}
    assert b.comparisons == () and "comparisons" not in b.to_dict()
    p = write(tmp_path, victim_pt, attacks=["transfer-ifgsm", "transfer-mifgsm"],
              comparisons=[["transfer-mifgsm", "transfer-ifgsm"]])  # fmt: skip
    b = load_benchmark(p)
    assert b.comparisons == (("transfer-mifgsm", "transfer-ifgsm"),)
    assert b.to_dict()["comparisons"] == [["transfer-mifgsm", "transfer-ifgsm"]]


def test_relative_victim_path_resolves_against_the_yaml_file(tmp_path, victim_pt):
    p = write(victim_pt.parent, victim_pt, victims=["tiny.pt"])
    assert load_benchmark(p).victims[0].source == str(victim_pt.resolve())


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"victims": 3}, "expected a list of victim names, got int in b.yaml field 'victims'"),
        ({"victims": [7]}, "got int in b.yaml field 'victims[0]'"),
        ({"victims": ["stgcn.synth_ntu26"]}, "in b.yaml field 'victims[0]'"),
        ({"victims": ["nope.pt"]}, "no file at 'nope.pt' in b.yaml field 'victims[0]'"),
        ({"attacks": "fgsm"}, "expected a list of attacks, got str in b.yaml field 'attacks'"),
        ({"attacks": ["pgdd"]}, "did you mean 'pgd'"),
        (
            {"attacks": [{"name": "pgd", "params": {"stepz": 3}}]},
            "unknown field 'stepz' in b.yaml field 'attacks[0].params'",
        ),
        ({"attacks": [{"name": "pgd", "eps": "big"}]}, "got str in b.yaml field 'attacks[0].eps'"),
        ({"attacks": ["fgsm", "fgsm"]}, "expected distinct attack ids"),
        ({"attacks": [{"name": "fgsm", "colour": 1}]}, "unknown key 'colour'"),
        ({"threats": [{"norm": "l3", "eps": 0.01}]}, "b.yaml field 'threats[0]'"),
        ({"threats": [{"norm": "linf", "eps": "x"}]}, "b.yaml field 'threats[0]'"),
        ({"seeds": "0"}, "got str in b.yaml field 'seeds'"),
        ({"seeds": [0, -1]}, "b.yaml field 'seeds[1]'"),
        ({"batch_size": 0}, "b.yaml field 'batch_size'"),
        ({"subset": {"n": "all"}}, "got str in b.yaml field 'subset.n'"),
        ({"attacker_data": {"n": 0}}, "got 0 in b.yaml field 'attacker_data.n'"),
        ({"dataset": {"name": "synth-ntu52"}}, "did you mean 'synth-ntu25'"),
        ({"dataset": {"name": "synth-ntu25", "n_trian": 3}}, "unknown key 'n_trian'"),
        ({"dataset": {"path": "missing.npz"}}, "b.yaml field 'dataset.path'"),
        ({"victims": [{"name": "x.pt", "defense": "jpeg"}]}, "b.yaml field 'victims[0]"),
        ({"surrogates": 5}, "got int in b.yaml field 'surrogates'"),
        ({"colour": 1}, "unknown key 'colour'"),
        ({"id": _DROP}, "expected field 'id', got none in b.yaml"),
        ({"version": "one"}, "got str in b.yaml field 'version'"),
        ({"comparisons": "tasar>ba"}, "got str in b.yaml field 'comparisons'"),
        ({"comparisons": [["fgsm"]]}, "got a list of 1 in b.yaml field 'comparisons[0]'"),
        ({"comparisons": ["fgsm"]}, "got str in b.yaml field 'comparisons[0]'"),
        (
            {"comparisons": [["fgsm", "transfer-ifgsm"]]},
            "expected the id of a transfer attack of this benchmark (transfer-ifgsm, mi), "
            "got 'fgsm' (did you mean 'transfer-ifgsm'?) in b.yaml field 'comparisons[0][0]'",
        ),
        ({"comparisons": [["mi", "transfer-ifgsn"]]}, "(did you mean 'transfer-ifgsm'?)"),
        ({"comparisons": [["mi", 3]]}, "got int in b.yaml field 'comparisons[0][1]'"),
        ({"comparisons": [["mi", "mi"]]}, "two different attacks, got 'mi' twice"),
        (
            {"comparisons": [["mi", "transfer-ifgsm"], ["mi", "transfer-ifgsm"]]},
            "each pair once, got a repeat of ['mi', 'transfer-ifgsm'] in b.yaml field 'comparisons[1]'",
        ),
    ],
)
def test_errors_name_file_and_field(tmp_path, victim_pt, fields, expected):
    if "comparisons" in fields:  # two transfer attacks and a white-box one to compare
        fields = {"attacks": ["fgsm", "transfer-ifgsm", {"name": "transfer-mifgsm", "id": "mi"}],
                  **fields}  # fmt: skip
    p = write(tmp_path, victim_pt, **fields)
    with pytest.raises(ConfigError) as e:
        load_benchmark(p)
    msg = str(e.value)
    assert expected in msg
    assert "\n" not in msg and "b.yaml" in msg


def test_unregistered_defense_is_rejected(tmp_path, victim_pt):
    p = write(tmp_path, victim_pt, victims=[{"name": str(victim_pt), "defense": "no-such-defense"}])
    with pytest.raises(ConfigError, match="field 'victims\\[0\\].defense'"):
        load_benchmark(p)


def test_malformed_yaml_names_the_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("id: x\nvictims: [a\n")
    with pytest.raises(ConfigError, match="expected valid YAML, got .* at line .* in bad.yaml"):
        load_benchmark(p)


def test_unknown_builtin_suggests():
    with pytest.raises(ConfigError, match="did you mean 'quick'"):
        load_benchmark("quik")


def test_builtins_are_shipped():
    assert {"smoke", "quick"} <= set(builtin_benchmarks())


def test_subset_is_first_n_of_a_seeded_permutation():
    ids = tuple(f"s{i}" for i in range(10))
    a = SubsetSpec(n=4, seed=1).select(ids)
    assert a == SubsetSpec(n=4, seed=1).select(ids)
    assert a == SubsetSpec(n=10, seed=1).select(ids)[:4]
    assert sorted(SubsetSpec(n=None, seed=2).select(ids)) == sorted(ids)
    assert subset_hash(a) != subset_hash(SubsetSpec(n=4, seed=2).select(ids))
    with pytest.raises(ConfigError, match="subset.n"):
        SubsetSpec(n=11).select(ids)


def test_the_world_is_the_dataset_name_not_an_option(tmp_path):
    doc = {
        "id": "w",
        "dataset": {"name": "synth-ntu25", "world": "synth-ntu60"},
        "victims": ["stgcn"],
        "attacks": ["fgsm"],
        "threats": [{"norm": "linf", "eps": 0.01}],
    }
    p = tmp_path / "w.yaml"
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="unknown key 'world'"):
        load_benchmark(p)


def _chain_topology(v: int):
    from robench.data.skeleton import Topology

    names = tuple(f"j{i}" for i in range(v))
    return Topology(name=f"chain{v}", joint_names=names, parents=(-1, *range(v - 1)), center=0)


def test_threat_topology_and_unit_default_to_the_data_sets(tmp_path, victim_pt):
    """A 20-joint set in cm: threat models without a topology or unit take the data's; an explicit
    one still wins; a relative topology .json resolves from the YAML file's folder."""
    import torch

    from robench.data.dataset import SkeletonSet

    topo = _chain_topology(20)
    ds = SkeletonSet(x=torch.ones(4, 3, 8, 20, 1), y=torch.tensor([0, 1, 0, 1]),
                     ids=("a", "b", "c", "d"), class_names=("p", "q"), topology=topo, unit="cm",
                     name="chain", split=("train", "train", "test", "test"))  # fmt: skip
    sub = tmp_path / "bench"
    sub.mkdir()
    ds.save(sub / "chain.npz")
    p = write(sub, victim_pt, dataset={"path": "chain.npz"}, threats=[{"norm": "linf", "eps": 1.0}])
    (t,) = load_benchmark(p).threats
    assert t.topology_obj == topo and t.unit == "cm"
    (sub / "topo.json").write_text(_chain_topology(20).to_json())
    p = write(sub, victim_pt, dataset={"path": "chain.npz"},
              threats=[{"norm": "linf", "eps": 1.0, "topology": "topo.json", "unit": "mm"}])  # fmt: skip
    (t,) = load_benchmark(p).threats
    assert t.topology_obj.num_joints == 20 and t.unit == "mm"
    p = write(sub, victim_pt, threats=[{"norm": "linf", "eps": 0.01}])  # a built-in world
    (t,) = load_benchmark(p).threats
    assert t.topology_obj.name == "ntu25" and t.unit == "m"


@pytest.mark.parametrize("name", builtin_benchmarks())
def test_every_builtin_benchmark_loads_or_waits_only_for_a_planned_checkpoint(name):
    """A built-in definition is valid; the only error allowed is a zoo victim the zoo plan lists
    but that is not trained yet (the `transfer` benchmark's same-architecture surrogate)."""
    from robench.zoo import PLAN, names

    try:
        b = load_benchmark(name)
    except ConfigError as e:
        planned = [n for n in PLAN if n not in names()]
        assert planned and any(f"got {n!r}" in str(e) for n in planned), str(e)
        return
    assert b.id == name and b.victims and b.attacks


def test_the_default_world_is_synth_ntu60(tmp_path, victim_pt):
    b = load_benchmark(write(tmp_path, victim_pt, dataset=_DROP))
    assert b.dataset.name == "synth-ntu60" and b.dataset.path is None
    b = load_benchmark(write(tmp_path, victim_pt, dataset={"seed": 3}))
    assert (b.dataset.name, b.dataset.seed) == ("synth-ntu60", 3)
