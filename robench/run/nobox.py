"""What the harness grants a no-box cell, and the proof that it leaks nothing.

A no-box attack (Lu et al., ICCV 2023, "hard no-box") gets a :class:`~robench.access.NoBox`
holding three things and nothing else: the attacker's own unlabelled clips (the data set's
``nobox`` split, or for a built-in world its :func:`~robench.data.synth.generate_nobox` clips: the
ones its shipped manifold was pretrained on), the motion manifold named by the attack's
``manifold`` config field (empty: the zoo manifold of the benchmark's data set), and the unlabelled
clips under attack. Before any of it is handed over, :func:`robench.manifold.check_disjoint`
proves the manifold's pretraining data shares no clip with the benchmark's data set and is no
victim's training set; a cell that would leak is refused with a one-line message.
"""

from __future__ import annotations

from typing import Any

import torch

from robench.errors import ConfigError, RobenchError


def manifold_name(bench: Any, attack_config: Any) -> str:
    """The manifold a no-box attack uses: its ``manifold`` field, else the data set's default."""
    from robench.manifold import default_manifold

    name = str(getattr(attack_config, "manifold", "") or "")
    ds = bench.dataset
    return name or default_manifold(ds.name if ds.path is None else str(ds.path))


def manifold_key(bench: Any, attack_config: Any) -> dict[str, Any]:
    """The cell-key part of a no-box cell: the manifold's name and weights sha256 (None when it
    cannot be read: the cell then fails with the reason)."""
    from robench.manifold import manifold_path
    from robench.zoo.checkpoint import read_metadata

    try:
        name = manifold_name(bench, attack_config)
        return {
            "name": name,
            "weights_sha256": read_metadata(manifold_path(name))["weights_sha256"],
        }
    except RobenchError:
        return {"name": str(getattr(attack_config, "manifold", "") or ""), "weights_sha256": None}


def attacker_clips(plan: Any) -> torch.Tensor:
    """The attacker's unlabelled clips: the ``nobox`` split, else a built-in world's no-box clips."""
    if plan.nobox_x is not None:
        return plan.nobox_x
    from robench.data import BUILTIN_DATASETS
    from robench.manifold import NOBOX_CLIPS

    ds = plan.bench.dataset
    if ds.path is not None or ds.name not in BUILTIN_DATASETS:
        raise ConfigError(
            "expected a 'nobox' split (unlabelled clips disjoint from every victim's training "
            f"data) for a no-box attack, got none in data set {ds.path or ds.name!r}"
        )
    from robench.data.synth import generate_nobox

    frames = dict(ds.options).get("num_frames", 64)
    clips = generate_nobox(ds.seed, n=NOBOX_CLIPS, num_frames=frames, world=ds.name)
    plan.nobox_x = clips.x.to(plan.device)
    return plan.nobox_x


def uses_manifold(attack_config: Any) -> bool:
    """A no-box attack uses a manifold when its config declares a ``manifold`` field."""
    return hasattr(attack_config, "manifold")


def manifold_for(plan: Any, cell: Any, attack: Any) -> torch.nn.Module | None:
    """The cell's manifold (loaded once per plan, on the plan's device), after the disjointness
    check against the plan's whole data set and every victim's recorded training set; None for
    a no-box attack that declares no ``manifold`` field."""
    from robench.manifold import check_disjoint, load_manifold
    from robench.zoo import checkpoint_path
    from robench.zoo.checkpoint import read_metadata

    if not uses_manifold(attack.config):
        return None
    name = manifold_name(plan.bench, attack.config)
    cache = plan.__dict__.setdefault("_manifolds", {})
    if name not in cache:
        encoder, meta = load_manifold(name)
        victims = {}
        for v in plan.bench.victims:
            try:
                victims[v.id] = read_metadata(checkpoint_path(v.source)).get("dataset_sha256", "")
            except RobenchError:
                victims[v.id] = ""
        check_disjoint({**meta, "name": name}, plan.data.x, plan.data.name, victims)
        cache[name] = encoder.to(plan.device)
    return cache[name]
