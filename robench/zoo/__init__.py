"""The shipped synthetic zoo: trained checkpoints inside the package (``robench/zoo/*.pt``).

Names are ``arch.weights``: ``stgcn.synth_ntu25`` is ST-GCN trained on synth-ntu25. Every
checkpoint is verified by sha256 against its metadata when loaded. ``robench train`` reproduces
them (the metadata records the exact command's settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robench.errors import ConfigError, RobenchError
from robench.victim import VICTIMS, Victim, build_victim
from robench.zoo.checkpoint import load_victim, read_metadata
from robench.zoo.external import external_metadata, is_external, load_external, parse_external


def zoo_dir() -> Path:
    return Path(__file__).parent


def names() -> list[str]:
    """Names of the shipped checkpoints, e.g. ``['agcn.synth_ntu25', ...]``."""
    return sorted(p.stem for p in zoo_dir().glob("*.pt"))


def load(name: str) -> Victim:
    """Load a shipped checkpoint by name (verified by sha256)."""
    path = zoo_dir() / f"{name}.pt"
    if not path.exists():
        raise VICTIMS.unknown(name, extra_names=names())
    return load_victim(path)


def create_victim(name: str, **config: Any) -> Victim:
    """``arch`` -> untrained model; ``arch.weights`` -> shipped checkpoint (verified by sha256).

    A path to a ``.pt`` file with its ``.json`` metadata beside it loads that checkpoint. Unknown
    names suggest the closest architectures and shipped checkpoints.
    """
    if is_external(name):
        if config:
            raise ConfigError(
                f"expected no config overrides for an external model, got {sorted(config)} for {name!r}"
            )
        return load_external(name)  # type: ignore[return-value]
    if name.endswith(".pt"):
        return load_victim(name)
    if "." in name:
        if config:
            raise ConfigError(
                f"expected no config overrides for a trained checkpoint, got {sorted(config)} for {name!r}"
            )
        return load(name)
    if name not in VICTIMS:
        raise VICTIMS.unknown(name, extra_names=names())
    return build_victim(name, **config)


def checkpoint_path(source: str) -> Path:
    """The ``.pt`` file of a zoo name or a ``.pt`` path (an external model's file)."""
    if is_external(source):
        return parse_external(source)[2]
    return Path(source) if source.endswith(".pt") else zoo_dir() / f"{source}.pt"


def source_metadata(source: str) -> dict[str, Any]:
    """The metadata of any victim source: the checkpoint's ``.json``, or for an external model
    (:mod:`robench.zoo.external`) its declared architecture and sha256."""
    if is_external(source):
        return external_metadata(source)
    return read_metadata(checkpoint_path(source))


def provenance(source: str) -> dict[str, Any]:
    """Model-info fields of a trained victim (zoo name or ``.pt`` path), in the spirit of
    RobustBench's model cards: architecture and its paper, parameter count, weights sha256 and what
    it was trained on (data set name and fingerprint, the command and the training recipe, clean
    accuracy as recorded). Read from the checkpoint's metadata."""
    path = checkpoint_path(source)
    meta = source_metadata(source)
    arch = str(meta["arch"])
    cls = VICTIMS.get(arch) if arch in VICTIMS else None
    return {
        "source": path.name if source.endswith(".pt") or is_external(source) else source,
        "architecture": arch,
        "paper": (getattr(cls, "paper", "") or None) if cls is not None else None,
        "num_parameters": meta.get("num_parameters"),
        "weights_sha256": meta["weights_sha256"],
        "config": meta["config"],
        "training": {
            "dataset": meta.get("dataset"),
            "dataset_sha256": meta.get("dataset_sha256"),
            "command": meta.get("command"),
            "recipe": meta.get("train"),
            "clean_accuracy": meta.get("clean_accuracy"),
            "clean_accuracy_split": meta.get("clean_accuracy_split"),
        },
        # a weights defense the checkpoint was trained with (robench defend): name, config, base
        "defense_training": meta.get("defense"),
    }


def victim_provenance(source: str, defense: str | None = None) -> dict[str, Any]:
    """:func:`provenance` plus the defense: the entry's run-time one, else the weights defense the
    checkpoint records; ``{"source", "error"}`` when the metadata is unreadable (the victim's cells
    say why; a board still shows the rest)."""
    try:
        prov = provenance(source)
        recorded = (prov["defense_training"] or {}).get("name")  # trained in: pgd-at, trades
        return {**prov, "defense": defense or recorded}
    except RobenchError as e:
        return {"source": Path(source).name, "error": str(e).splitlines()[0], "defense": defense}


def entries() -> list[dict[str, Any]]:
    """Metadata of every shipped checkpoint, for ``robench zoo list``."""
    out = []
    for name in names():
        meta = read_metadata(zoo_dir() / f"{name}.pt")
        out.append({"name": name, **meta})
    return out


# The recipes that produced the shipped checkpoints (``robench zoo build``); small widths so that the
# zoo trains on a 2-core CPU. Paper-size configs are the Config defaults of each architecture.
RECIPES: dict[str, dict[str, Any]] = {
    "stgcn": {
        "config": {"width": 16, "depth": 6, "dropout": 0.1},
        "train": {"epochs": 24, "augment": False},
    },
    "agcn": {"config": {"width": 16, "depth": 6}, "train": {"epochs": 16}},
    "ctrgcn": {"config": {"width": 16, "depth": 6}, "train": {"epochs": 16}},
}


# Every shipped checkpoint: name -> (architecture, data set, training seed). ``robench zoo build``
# retrains them from this table. The synth-ntu60 zoo (the NTU-60 regime, the `transfer` benchmark's
# world) adds a second ST-GCN trained from another seed: the same-architecture surrogate.
PLAN: dict[str, tuple[str, str, int]] = {
    **{f"{a}.synth_ntu25": (a, "synth-ntu25", 0) for a in ("stgcn", "agcn", "ctrgcn")},
    **{f"{a}.synth_ntu60": (a, "synth-ntu60", 0) for a in ("stgcn", "agcn", "ctrgcn")},
    "stgcn.synth_ntu60_seed1": ("stgcn", "synth-ntu60", 1),
}


# Shipped defended checkpoints (``robench defend``): name -> (base zoo name, weights defense, config
# overrides). PGD-AT fine-tunes the clean victim for 2 epochs here (1 for CTR-GCN; the defense's
# default is 5; the papers train from scratch for 100+), about 26 / 13 minutes on a 2-core CPU.
DEFENDED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "stgcn.synth_ntu60.pgd-at": ("stgcn.synth_ntu60", "pgd-at", {"epochs": 2}),
    "ctrgcn.synth_ntu60.pgd-at": ("ctrgcn.synth_ntu60", "pgd-at", {"epochs": 1}),
    "stgcn.synth_ntu60.trades": ("stgcn.synth_ntu60", "trades", {"epochs": 2}),
}


def recipe(arch: str) -> dict[str, Any]:
    """The synthetic-zoo recipe of ``arch``; architectures without one get paper defaults."""
    VICTIMS.get(arch, extra_names=names())
    return RECIPES.get(arch, {"config": {}, "train": {}})
