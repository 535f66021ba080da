"""The motion manifold of the hard no-box attack: a self-supervised skeleton encoder, shipped in the
zoo, and the check that its recorded data is none of the benchmark's.

A manifold is an ST-GCN graph encoder (:mod:`.encoders`) pretrained without labels
(:mod:`.pretrain`) on the attacker's own clips, saved as a verified checkpoint under
``robench/zoo/manifolds/NAME.pt`` (``smi.synth_ntu60``: pretrained on
:func:`robench.data.synth.generate_nobox` clips of synth-ntu60, performers no victim saw). Its
metadata (``role: manifold``) records the recipe, the pretraining data's fingerprint and one sha256
per clip (``clip_sha256``), the k-NN probe accuracy and the CPU time; ``robench prepare smi``
rebuilds it.

Disjointness (:func:`check_disjoint`): before a no-box cell runs, the harness refuses a manifold
whose recorded pretraining clips include a clip of the benchmark's data set (every split but
``nobox``: the victims' training clips and the clips under attack; identical clips) or
whose data fingerprint is a victim's recorded training-set fingerprint (:mod:`robench.run.nobox`
adds: its weights are no benchmark model's). The check reads what the manifold's metadata records;
a shipped manifold's record is written by ``robench prepare smi`` from the data it pretrained on.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robench.errors import ConfigError, DataError
from robench.zoo.checkpoint import load_victim, read_metadata, save_victim

# built-in worlds -> the zoo manifold of their no-box attacks
DEFAULT_MANIFOLDS = {"synth-ntu60": "smi.synth_ntu60", "synth-ntu25": "smi.synth_ntu25"}

# The zoo recipe (``robench prepare smi``): the paper's losses, cut for a 2-core CPU (see
# :mod:`.pretrain`); 2,000 no-box clips (31 steps of 64 per epoch, 620 steps in all), probe against
# the world's test split. Key-encoder momentum 0.99, not MoCo's 0.999: over 620 steps a 0.999 key
# encoder would stay within e^-0.62 of its random init. lr 0.03: MoCo's (He et al., CVPR 2020).
RECIPE: dict[str, Any] = {
    "epochs": 20,
    "queue": 1024,
    "batch_size": 64,
    "momentum": 0.99,
    "lr": 0.03,
}
NOBOX_CLIPS = 2000


def manifold_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "zoo" / "manifolds"


def manifold_names() -> list[str]:
    """Names of the shipped manifolds."""
    return sorted(p.stem for p in manifold_dir().glob("*.pt"))


def manifold_path(name: str) -> Path:
    """The ``.pt`` of a shipped manifold name or a path."""
    if name.endswith(".pt"):
        return Path(name)
    path = manifold_dir() / f"{name}.pt"
    if not path.exists():
        raise ConfigError(
            f"expected a shipped manifold {manifold_names()} or a .pt path, got {name!r} "
            f"(build it with `robench prepare smi`)"
        )
    return path


def default_manifold(dataset: str) -> str:
    """The zoo manifold for a built-in data set name."""
    if dataset not in DEFAULT_MANIFOLDS:
        raise ConfigError(
            f"expected a data set with a shipped manifold {sorted(DEFAULT_MANIFOLDS)}, got "
            f"{dataset!r} (name one in the attack's 'manifold' field)"
        )
    return DEFAULT_MANIFOLDS[dataset]


def load_manifold(name: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The encoder (eval mode, frozen; verified by sha256) and its metadata."""
    path = manifold_path(name)
    meta = read_metadata(path)
    if meta.get("role") != "manifold":
        raise ConfigError(
            f"expected a manifold checkpoint (metadata role 'manifold'), got role "
            f"{meta.get('role')!r} in {path.name}"
        )
    enc = load_victim(path).eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc, meta


CLIP_HASH = "sha256-float32"  # the recorded per-clip fingerprint: sha256 of the float32 bytes


def clip_sha256(x: Tensor) -> list[str]:
    """One sha256 (hex, first 32 digits) per clip of ``x`` (N, ...), over its coordinates cast to
    float32 (a clip stored in float64 keeps its hash). Identical clips only: a near-duplicate (a
    clip nudged by noise) has another hash."""
    arr = np.ascontiguousarray(x.detach().cpu().float().numpy())
    return [hashlib.sha256(c.tobytes()).hexdigest()[:32] for c in arr]


def check_disjoint(
    meta: dict[str, Any], data_x: Tensor, data_name: str, victim_datasets: dict[str, str]
) -> None:
    """Refuse (ConfigError, one line) a manifold that saw any clip of ``data_x`` (the benchmark's
    whole data set) or whose pretraining fingerprint is a victim's training-set fingerprint
    (``victim_datasets``: victim id -> recorded ``dataset_sha256``)."""
    name = meta.get("name", "manifold")
    ours = set(meta.get("clip_sha256") or ())
    if meta.get("clip_hash") != CLIP_HASH:
        raise ConfigError(
            f"expected clip fingerprints of kind {CLIP_HASH!r} ('clip_hash') in the metadata of "
            f"manifold {name!r}, got {meta.get('clip_hash')!r}: rebuild it with `robench prepare smi`"
        )
    if not ours:
        raise ConfigError(
            f"expected per-clip fingerprints ('clip_sha256') in the metadata of manifold {name!r}, "
            "got none: cannot check it never saw the victims' data"
        )
    shared = ours.intersection(clip_sha256(data_x))
    if shared:
        raise ConfigError(
            f"expected a manifold pretrained on data disjoint from the victims', got {len(shared)} "
            f"clips of {data_name} in the pretraining data of {name!r}: refusing the no-box cell"
        )
    for vid, sha in victim_datasets.items():
        if sha and sha == meta.get("dataset_sha256"):
            raise ConfigError(
                f"expected a manifold pretrained on data disjoint from the victims', got victim "
                f"{vid!r} trained on its pretraining data ({sha[:12]}): refusing the no-box cell"
            )


def build_manifold(
    world: str, out: str | Path, seed: int = 0, overrides: dict[str, Any] | None = None,
    progress: bool = False, clips: int = NOBOX_CLIPS,
) -> dict[str, Any]:  # fmt: skip
    """Pretrain the manifold of built-in ``world`` on ``clips`` of its no-box clips and write
    ``out.pt/.json``; returns the metadata (probe accuracies, seconds)."""
    from robench.data import open_dataset
    from robench.data.synth import generate_nobox
    from robench.manifold.encoders import graph_encoder
    from robench.manifold.pretrain import (
        PretrainConfig,
        config_dict,
        features,
        knn_accuracy,
        pretrain,
    )

    cfg = PretrainConfig(**{**RECIPE, **(overrides or {})})
    nobox = generate_nobox(seed, n=clips, world=world, progress=progress)
    world_data = open_dataset(world, seed=seed)
    shared = set(clip_sha256(nobox.x)).intersection(clip_sha256(world_data.x))
    if shared:  # pragma: no cover - the generator's streams are independent
        raise DataError(f"expected no-box clips disjoint from {world}, got {len(shared)} shared")
    t0 = time.perf_counter()
    encoder, record = pretrain(nobox.x, cfg, nobox.topology.name, progress)
    seconds = time.perf_counter() - t0
    test = world_data.get_split("test")
    probe = {}
    for label, enc in (
        ("pretrained", encoder),
        (
            "random_init",
            graph_encoder(cfg.dim, cfg.width, cfg.depth, nobox.topology.name, cfg.seed),
        ),
    ):
        ref, query = features(enc, nobox.x), features(enc, test.x)
        probe[label] = round(knn_accuracy(ref, nobox.y, query, test.y), 4)
    name = Path(out).name  # "smi.synth_ntu60" (a stem would drop ".synth_ntu60")
    meta = {
        "role": "manifold",
        "name": name,
        "dataset": nobox.name,
        "dataset_sha256": nobox.fingerprint(),
        "clip_sha256": clip_sha256(nobox.x),
        "clip_hash": CLIP_HASH,
        "world": world,
        "world_seed": seed,
        "clips": clips,
        "num_frames": int(nobox.x.shape[2]),
        "world_sha256": world_data.fingerprint(),
        "pretrain": config_dict(cfg),
        "loss": record["loss"],
        "knn_accuracy": probe["pretrained"],
        "knn_accuracy_random_init": probe["random_init"],
        "knn_probe": f"k = 20 cosine k-NN of {world} test ({len(test)} clips) against the "
        f"{len(nobox)} labelled no-box clips",
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "command": f"robench prepare smi --world {world} --seed {seed}"
        + (f" --clips {clips}" if clips != NOBOX_CLIPS else "")
        + "".join(f" --set {k}={v}" for k, v in sorted((overrides or {}).items())),
    }
    return save_victim(encoder, out, meta)
