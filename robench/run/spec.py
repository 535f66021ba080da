"""Benchmark definitions as frozen dataclasses: what one matrix of cells depends on.

:mod:`robench.run.benchmark` parses and validates the YAML form into these; the harness and the
boards read only these. ``Benchmark.to_dict`` is the canonical JSON form written beside the results
and into cell configs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch

from robench.access import Knowledge
from robench.data import DEFAULT_WORLD
from robench.errors import ConfigError
from robench.threat import ThreatModel

FORMAT = "robench.benchmark/1"


FORMAT = "robench.benchmark/1"


def freeze(value: Any) -> Any:
    """YAML value -> hashable value (lists become tuples; mappings become sorted item tuples)."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    return value


def _thaw(value: Any) -> Any:
    """Inverse of the list part of :func:`freeze` for JSON: tuples become lists."""
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class DatasetSpec:
    """Either a built-in generated set (``name``, ``seed`` and generator ``options``) or a ``path``."""

    name: str = DEFAULT_WORLD
    path: str | None = None
    seed: int = 0
    options: tuple[tuple[str, int], ...] = ()

    def open(self) -> Any:
        """The :class:`~robench.data.dataset.SkeletonSet` (generated sets are cached in-process)."""
        from robench.data import open_dataset

        if self.path is not None:
            return open_dataset(self.path)
        return open_dataset(self.name, seed=self.seed, **dict(self.options))

    def to_dict(self) -> dict[str, Any]:
        if self.path is not None:
            return {"path": self.path}
        return {"name": self.name, "seed": self.seed, **dict(self.options)}


@dataclass(frozen=True)
class SubsetSpec:
    """``n`` samples (None = the whole split) chosen by a permutation seeded with ``seed``."""

    n: int | None = None
    seed: int = 0

    def select(self, ids: tuple[str, ...] | list[str], field: str = "subset") -> list[str]:
        """First ``n`` ids of ``torch.randperm(len(ids))`` under a generator seeded with ``seed``."""
        n = len(ids) if self.n is None else self.n
        if n > len(ids):
            raise ConfigError(
                f"expected {field} n <= {len(ids)} (the split's size), got {n} in field '{field}.n'"
            )
        perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(self.seed))
        return [ids[i] for i in perm[:n].tolist()]


def subset_hash(ids: list[str] | tuple[str, ...]) -> str:
    """sha256 of the subset's sample ids joined by newlines (order matters)."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


@dataclass(frozen=True)
class VictimSpec:
    """A victim: ``source`` is a zoo name or an absolute ``.pt`` path; ``id`` is its display name."""

    id: str
    source: str
    defense: str | None = None
    defense_params: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        """Row name in the store and the board: ``id`` or ``id+defense``."""
        return self.id if self.defense is None else f"{self.id}+{self.defense}"


@dataclass(frozen=True)
class AttackSpec:
    """An attack entry: registered ``name``, unique ``id``, Config overrides, optional eps sweep."""

    id: str
    name: str
    params: tuple[tuple[str, Any], ...] = ()
    eps: tuple[float, ...] | None = None
    budget: int = 1000
    oracle: str | None = None
    bpda: bool = False  # white-box: the attacker's copy of a defended victim runs its BPDA pass

    @property
    def cls(self) -> type:
        from robench.attack import attack_class

        return attack_class(self.name)

    @property
    def knowledge(self) -> Knowledge:
        return self.cls.knowledge

    def build(self) -> Any:
        """A fresh attack instance with the overrides applied."""
        from robench.attack import create_attack

        return create_attack(self.name, **dict(self.params))

    def config_dict(self) -> dict[str, Any]:
        """The attack's full Config (defaults filled in), JSON-ready."""
        attack = self.build()
        return json.loads(
            json.dumps(dataclasses.asdict(attack.config), default=_json_default, sort_keys=True)
        )


def _json_default(o: Any) -> Any:
    if isinstance(o, tuple | set | frozenset):
        return list(o)
    if isinstance(o, Knowledge):
        return o.value
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return repr(o)


@dataclass(frozen=True)
class Benchmark:
    """A validated benchmark definition (see the module docstring for the YAML form)."""

    id: str
    version: int
    dataset: DatasetSpec
    victims: tuple[VictimSpec, ...]
    attacks: tuple[AttackSpec, ...]
    threats: tuple[ThreatModel, ...]
    subset: SubsetSpec = SubsetSpec()
    split: str = "test"
    surrogates: tuple[VictimSpec, ...] = ()
    attacker_data: SubsetSpec = SubsetSpec()
    seeds: tuple[int, ...] = (0,)
    batch_size: int = 64
    description: str = ""
    source: str = ""
    comparisons: tuple[tuple[str, str], ...] = ()  # declared (attack, reference) transfer pairs

    def threats_for(self, attack: AttackSpec) -> tuple[ThreatModel, ...]:
        """The threat models ``attack`` runs under: the primary ones, or its eps sweep over them."""
        if attack.eps is None:
            return self.threats
        out: list[ThreatModel] = []
        for t in self.threats:
            for e in attack.eps:
                tm = dataclasses.replace(t, eps=e)
                if tm not in out:
                    out.append(tm)
        return tuple(out)

    def victim(self, key: str) -> VictimSpec:
        for v in (*self.victims, *self.surrogates):
            if v.key == key or v.id == key:
                return v
        raise ConfigError(f"expected a victim of benchmark {self.id!r}, got {key!r}")

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-ready form (written beside the results and into cell configs)."""
        return {
            "format": FORMAT,
            "id": self.id,
            "version": self.version,
            "description": self.description,
            "dataset": self.dataset.to_dict(),
            "split": self.split,
            "subset": {"n": self.subset.n, "seed": self.subset.seed},
            "victims": [
                {
                    "id": v.id,
                    "source": v.source,
                    "defense": v.defense,
                    "defense_params": dict(v.defense_params),
                }
                for v in self.victims
            ],
            "attacks": [
                {
                    "id": a.id,
                    "name": a.name,
                    "params": {k: _thaw(v) for k, v in a.params},
                    "eps": list(a.eps) if a.eps is not None else None,
                    "budget": a.budget,
                    "oracle": a.oracle,
                    **({"bpda": True} if a.bpda else {}),
                }
                for a in self.attacks
            ],
            "threats": [t.to_dict() for t in self.threats],
            "surrogates": [v.id for v in self.surrogates],
            "attacker_data": {"n": self.attacker_data.n, "seed": self.attacker_data.seed},
            "seeds": list(self.seeds),
            "batch_size": self.batch_size,
            **({"comparisons": [list(p) for p in self.comparisons]} if self.comparisons else {}),
        }
