"""Victim models: the base class, their configs and the registry.

A victim maps skeletons (N, 3, T, V, M) to differentiable logits (N, K): never softmax, never NumPy.
Architectures register with ``@register_victim("stgcn")`` and declare a ``Config`` dataclass
(immutable, passed at construction). Names follow ``arch.weights`` (timm style): ``stgcn`` builds an
untrained ST-GCN, ``stgcn.synth_ntu25`` loads the shipped checkpoint trained on synth-ntu25
(:func:`robench.zoo.create_victim` resolves all three kinds of name: architecture, zoo checkpoint,
``.pt`` path).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robench.config import make_config
from robench.data.skeleton import Topology, get_topology
from robench.errors import ConfigError, DataError
from robench.registry import Registry

VICTIMS: Registry[type[Victim]] = Registry(
    "victim",
    "robench.victims",
    "robench.victims",
    "register an architecture with @robench.register_victim('name') on a Victim subclass",
)
register_victim = VICTIMS.register


@dataclass(frozen=True)
class VictimConfig:
    """Fields every victim config has. Subclasses add architecture fields with paper defaults."""

    num_classes: int = 12
    topology: str = "ntu25"
    num_persons: int = 2
    in_channels: int = 3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Victim(nn.Module):
    """Base of every victim: write ``logits(x)``; ``forward`` validates the input shape first."""

    Config: ClassVar[type[VictimConfig]] = VictimConfig
    registry_name: ClassVar[str] = ""
    paper: ClassVar[str] = ""  # the architecture's paper, shown in a board's victim provenance

    def __init__(self, config: VictimConfig) -> None:
        super().__init__()
        if not isinstance(config, self.Config):
            raise ConfigError(
                f"expected {self.Config.__name__}, got {type(config).__name__} in {type(self).__name__}"
            )
        self.config = config
        self.topology: Topology = get_topology(config.topology)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.topology.num_joints
        if (
            x.dim() != 5
            or x.shape[1] != self.config.in_channels
            or x.shape[3] != v
            or x.shape[4] > self.config.num_persons
        ):
            raise DataError(
                f"expected input (N, {self.config.in_channels}, T, {v}, <= {self.config.num_persons}), "
                f"got {tuple(x.shape)} in {type(self).__name__}.forward"
            )
        return self.logits(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_victim(arch: str, **config: Any) -> Victim:
    """An untrained victim of architecture ``arch`` with config overrides."""
    cls = VICTIMS.get(arch)
    cfg = make_config(cls.Config, config, source=f"victim {arch!r} config")
    return cls(cfg)
