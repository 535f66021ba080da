"""The shipped synthetic zoo: trained checkpoints inside the package (``robench/zoo/*.pt``).

Names are ``arch.weights``: ``stgcn.synth_ntu25`` is ST-GCN trained on synth-ntu25. Every
checkpoint is verified by sha256 against its metadata when loaded. ``robench train`` reproduces
them (the metadata records the exact command's settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robench.errors import ConfigError
from robench.victim import VICTIMS, Victim, build_victim
from robench.zoo.checkpoint import load_victim, read_metadata


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


def recipe(arch: str) -> dict[str, Any]:
    """The synthetic-zoo recipe of ``arch``; architectures without one get paper defaults."""
    VICTIMS.get(arch, extra_names=names())
    return RECIPES.get(arch, {"config": {}, "train": {}})
