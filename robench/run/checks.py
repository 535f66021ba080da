"""Checks of a benchmark against its data that run before any cell: a failure is a one-line
:class:`~robench.errors.ConfigError` naming the YAML field (exit 2), never a board of invalid cells."""

from __future__ import annotations

from typing import Any

from robench.errors import ConfigError, RobenchError
from robench.run.spec import Benchmark


def check_threats(bench: Benchmark, data: Any) -> None:
    """Refuse a threat model whose unit or joint count is not the data set's."""
    for a in bench.attacks:
        for t in bench.threats_for(a):
            if t.unit != data.unit:
                raise ConfigError(
                    f"expected threat unit {data.unit!r} (the data set's), got {t.unit!r} in {bench.source} field 'threats'"
                )
            if t.topology_obj.num_joints != data.topology.num_joints:
                raise ConfigError(
                    f"expected a threat topology with {data.topology.num_joints} joints, got {t.topology_obj.name!r} in {bench.source} field 'threats'"
                )


def check_classes(bench: Benchmark, data: Any) -> None:
    """Refuse, before any cell runs, a victim whose class count, joint count or body count (from
    its checkpoint metadata) is not the data set's."""
    from robench.data.skeleton import get_topology
    from robench.zoo import source_metadata

    for i, v in enumerate(bench.victims):
        try:
            cfg = source_metadata(v.source).get("config", {})
        except RobenchError:
            continue  # unreadable metadata: the victim's cells record why
        where = f"for victim {v.id!r} in {bench.source} field 'victims[{i}]'"
        k = cfg.get("num_classes")
        if isinstance(k, int) and k != data.num_classes:
            raise ConfigError(
                f"expected a victim with {data.num_classes} classes (the data set {data.name!r} has), "
                f"got {k} {where}"
            )
        try:
            joints = get_topology(cfg["topology"]).num_joints if "topology" in cfg else None
        except RobenchError:
            joints = None  # a topology the victim itself cannot resolve fails its cells
        if joints is not None and joints != data.topology.num_joints:
            raise ConfigError(
                f"expected a victim of {data.topology.num_joints} joints (the data set {data.name!r} "
                f"has), got {joints} {where}"
            )
        m = cfg.get("num_persons")
        if isinstance(m, int) and m != data.x.shape[4]:
            raise ConfigError(
                f"expected a victim of {data.x.shape[4]} bodies (the data set {data.name!r} has), "
                f"got {m} {where}"
            )
