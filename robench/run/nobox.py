"""What the harness grants a no-box cell, and the checks that it leaks nothing.

A no-box attack (Lu et al., ICCV 2023, "hard no-box") gets a :class:`~robench.access.NoBox`
holding three things and nothing else: the attacker's own unlabelled clips (the data set's
``nobox`` split, or for a built-in world its :func:`~robench.data.synth.generate_nobox` clips: the
ones its shipped manifold was pretrained on), the motion manifold named by the attack's
``manifold`` config field (empty: the zoo manifold of the benchmark's data set), and the unlabelled
clips under attack. Before any of it is handed over (every no-box cell, also one whose generation
is cached), the manifold's recorded fingerprints are checked: no pretraining clip may be a clip of
the benchmark's data set (outside its ``nobox`` split; identical clips) nor its data a victim's
recorded training set, and its weights may be no victim's or surrogate's. A cell that would leak is
refused with a one-line message. What is checked is what the manifold's metadata records: a
hand-made manifold can lie about its data; the shipped ones are rebuilt by ``robench prepare smi``.
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


def _benchmark_clips(plan: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the data set's clips outside its ``nobox`` split, the ``nobox`` split or None)."""
    split = plan.data.split or ()
    if "nobox" not in set(split):
        return plan.data.x, None
    own = torch.tensor([s == "nobox" for s in split])
    return plan.data.x[~own], plan.data.x[own]


def attacker_clips(plan: Any) -> torch.Tensor:
    """The attacker's unlabelled clips: the ``nobox`` split (refused if it shares a clip with the
    other splits), else a built-in world's no-box clips."""
    if plan.nobox_x is not None:
        from robench.manifold import clip_sha256

        others, own = _benchmark_clips(plan)
        if own is not None and set(clip_sha256(own)) & set(clip_sha256(others)):
            raise ConfigError(
                f"expected a 'nobox' split disjoint from the other splits, got clips shared with "
                f"them in data set {plan.data.name!r}: refusing the no-box cell"
            )
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


def generation_code(knowledge: Any, attack_cls: type) -> str:
    """The code version a cached generation is valid for: the attack's module (and robench.ops);
    for no-box also what decides its grant: the no-box clip generator, this module, the worker."""
    import sys

    from robench.access import Knowledge
    from robench.ops.artifacts import code_version

    if knowledge is not Knowledge.NO_BOX:
        return code_version(attack_cls)
    import robench.data.synth as synth
    import robench.run.worker as worker

    return code_version(attack_cls, synth, sys.modules[__name__], worker)


def uses_manifold(attack_config: Any) -> bool:
    """A no-box attack uses a manifold when its config declares a ``manifold`` field."""
    return hasattr(attack_config, "manifold")


def _recorded(source: str, field: str) -> str:
    from robench.zoo import source_metadata

    try:
        return str(source_metadata(source).get(field) or "")
    except RobenchError:
        return ""


def manifold_for(plan: Any, cell: Any, attack: Any) -> torch.nn.Module | None:
    """The cell's manifold (loaded once per plan, on the plan's device) once its recorded
    fingerprints pass :func:`robench.manifold.check_disjoint` against the benchmark's clips (all
    splits but ``nobox``) and the cell's victim, its weights are no victim's or surrogate's, and
    they are the ones the cell key names; None for a no-box attack without a ``manifold`` field.
    Called for every no-box cell, also when its generation is cached."""
    from robench.manifold import check_disjoint, load_manifold

    if not uses_manifold(attack.config):
        return None
    name = manifold_name(plan.bench, attack.config)
    cache = plan.__dict__.setdefault("_manifolds", {})
    if name not in cache:
        encoder, meta = load_manifold(name)
        check_disjoint({**meta, "name": name}, _benchmark_clips(plan)[0], plan.data.name, {})
        models = {m.id: _recorded(m.source, "weights_sha256") for m in
                  (*plan.bench.victims, *plan.bench.surrogates)}  # fmt: skip
        for mid, sha in models.items():
            if sha and sha == meta["weights_sha256"]:
                raise ConfigError(
                    f"expected a manifold that is no benchmark model, got the weights of {mid!r} "
                    f"as manifold {name!r}: refusing the no-box cell"
                )
        cache[name] = (encoder.to(plan.device), meta)
    encoder, meta = cache[name]
    victim = {cell.victim.id: _recorded(cell.victim.source, "dataset_sha256")}
    check_disjoint({**meta, "name": name}, plan.data.x[:0], plan.data.name, victim)
    keyed = (cell.config.get("manifold") or {}).get("weights_sha256")
    if keyed != meta["weights_sha256"]:
        raise ConfigError(
            f"expected manifold {name!r} with the weights the cell key names ({str(keyed)[:12]}), "
            f"got {meta['weights_sha256'][:12]} (it changed since the run was planned): rerun"
        )
    return encoder
