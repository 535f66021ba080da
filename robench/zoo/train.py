"""Training victims on a SkeletonSet: deterministic per seed, with a progress bar.

Recipe (the common one of ST-GCN / 2s-AGCN / CTR-GCN): SGD with Nesterov momentum 0.9, weight decay
4e-4 (5e-4 in ST-GCN; one value for all), batch 32, base learning rate 0.05 with a 2-epoch linear
warm-up and cosine decay, cross-entropy with label smoothing 0 — departures from the papers' step
schedules and 50-65 epochs are for CPU budgets and are recorded in the metadata. Random yaw rotation
of ±45° about the vertical axis and random global scaling (0.9-1.1) are applied on the fly as the
augmentation (the papers train on raw/ normalised coordinates; augmentation only helps the small
synthetic zoo generalise across the simulated camera views).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from robench.data.dataset import SkeletonSet
from robench.data.skeleton import BUILTIN_TOPOLOGIES, Topology, presence_mask
from robench.errors import ConfigError
from robench.victim import Victim, build_victim
from robench.zoo.checkpoint import save_victim


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-4
    warmup_epochs: int = 2
    augment: bool = True
    seed: int = 0
    val_fraction: float = 0.0
    patience: int = 5

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(
                f"expected a fraction in [0, 1), got {self.val_fraction} in train option 'val_fraction'"
            )
        for f in ("epochs", "batch_size", "patience"):
            if getattr(self, f) < 1:
                raise ConfigError(
                    f"expected a positive integer, got {getattr(self, f)} in train option '{f}'"
                )
        if self.lr <= 0:
            raise ConfigError(
                f"expected a positive learning rate, got {self.lr} in train option 'lr'"
            )


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random yaw rotation (±45°, about y) and scaling (0.9-1.1) per sample; padding stays zero."""
    n = x.shape[0]
    theta = (torch.rand(n, generator=generator) * 2 - 1) * math.pi / 4
    scale = 0.9 + 0.2 * torch.rand(n, generator=generator)
    c, s = torch.cos(theta) * scale, torch.sin(theta) * scale
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0], rot[:, 0, 2], rot[:, 2, 0], rot[:, 2, 2] = c, s, -s, c
    rot[:, 1, 1] = scale
    out = torch.einsum("nij,njtvm->nitvm", rot, x)
    return out * presence_mask(x)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, data: SkeletonSet, batch_size: int = 128) -> float:
    """Top-1 accuracy of ``model`` on ``data``."""
    model.eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        logits = model(data.x[i : i + batch_size])
        correct += int((logits.argmax(1) == data.y[i : i + batch_size]).sum())
    return correct / max(len(data), 1)


def validation_split(
    train: SkeletonSet, fraction: float, seed: int
) -> tuple[SkeletonSet, SkeletonSet]:
    """(train, validation): a seeded ``fraction`` of the training performers (at least one) held out
    whole, so validation clips come from people the model never trained on; never the test split.
    A set without performers holds out a seeded fraction of clips instead."""
    g = torch.Generator().manual_seed(seed)
    if train.subject is not None and (train.subject >= 0).all():
        people = sorted(set(train.subject.tolist()))
        k = max(1, round(fraction * len(people)))
        if k >= len(people):
            raise ConfigError(
                f"expected at least two training performers to hold some out, got {len(people)} in train option 'val_fraction'"
            )
        held = {people[i] for i in torch.randperm(len(people), generator=g)[:k].tolist()}
        is_val = torch.tensor([int(s) in held for s in train.subject.tolist()])
    else:
        k = max(1, round(fraction * len(train)))
        is_val = torch.zeros(len(train), dtype=torch.bool)
        is_val[torch.randperm(len(train), generator=g)[:k]] = True
    keep = (~is_val).nonzero().flatten().tolist()
    return train.select(keep), train.select(is_val.nonzero().flatten().tolist())


def topology_ref(topology: Topology) -> str:
    """What a victim config keeps of the data's topology: its name when built in, else its JSON."""
    return (
        topology.name if BUILTIN_TOPOLOGIES.get(topology.name) == topology else topology.to_json()
    )


def train_victim(
    arch: str,
    data: SkeletonSet,
    config: TrainConfig = TrainConfig(),
    victim_config: dict[str, Any] | None = None,
    progress: bool = True,
) -> tuple[Victim, dict[str, Any]]:
    """Train ``arch`` on ``data``'s train split; returns the model (eval mode) and its metadata."""
    train, test = data.get_split("train"), data.get_split("test")
    torch.manual_seed(config.seed)
    vc = {
        "num_classes": data.num_classes,
        "topology": topology_ref(data.topology),
        "num_persons": data.x.shape[4],
    }
    vc.update(victim_config or {})
    model = build_victim(arch, **vc)
    gen = torch.Generator().manual_seed(config.seed)
    val_meta: dict[str, Any] = {}
    on_epoch = None
    if config.val_fraction > 0:
        train, val = validation_split(train, config.val_fraction, config.seed)
        best = {"acc": -1.0, "epoch": 0, "state": None}

        def on_epoch(epoch: int) -> bool:
            acc = evaluate(model, val)
            if acc > best["acc"]:
                best.update(acc=acc, epoch=epoch + 1, state=copy.deepcopy(model.state_dict()))
            return epoch + 1 - best["epoch"] >= config.patience

    def ce(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(m(x), y)

    seconds = fit(model, train, config, ce, gen, f"train {arch}", progress, on_epoch)
    if on_epoch is not None:
        model.load_state_dict(best["state"])
        val_meta = {"validation": {"n": len(val), "accuracy": best["acc"], "best_epoch": best["epoch"],
                                   "subjects": sorted(set(val.subject.tolist())) if val.subject is not None else []}}  # fmt: skip
    acc = evaluate(model, test)
    meta = {
        "dataset": data.name,
        "dataset_sha256": data.fingerprint(),
        "clean_accuracy": acc,
        "clean_accuracy_split": "test",
        "n_test": len(test),
        "seed": config.seed,
        "epochs": config.epochs,
        "train": asdict(config),
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        **val_meta,
    }
    return model, meta


def fit(
    model: torch.nn.Module,
    train: SkeletonSet,
    config: TrainConfig,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    gen: torch.Generator,
    desc: str,
    progress: bool = True,
    on_epoch: Callable[[int], bool] | None = None,
) -> float:
    """The recipe's SGD loop (module docstring) on ``model`` in place: ``loss_fn(model, x, y)`` on
    each (augmented) batch; returns the seconds it took. ``loss_fn`` finds the model in train mode
    and may switch it (an inner attack runs in eval mode) but must hand it back in train mode.
    ``on_epoch(epoch)`` runs after each epoch (model in eval mode); True stops the loop."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.dim() <= 1 or "bn" in name else decay).append(p)
    opt = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=True,
    )
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warm = steps_per_epoch * config.warmup_epochs

    def lr_at(step: int) -> float:
        if step < warm:
            return config.lr * (step + 1) / warm
        return 0.5 * config.lr * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))

    start = time.perf_counter()
    step = 0
    bar = tqdm(total=total, desc=desc, disable=not progress, unit="step")
    for epoch in range(config.epochs):
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        for i in range(0, len(train), config.batch_size):
            idx = perm[i : i + config.batch_size]
            x, y = train.x[idx], train.y[idx]
            if config.augment:
                x = augment(x, gen)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            loss = loss_fn(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        if on_epoch is not None:
            model.eval()
            if on_epoch(epoch):
                break
    bar.close()
    model.eval()
    return time.perf_counter() - start


def train_and_save(
    arch: str,
    data: SkeletonSet,
    out: str | Path,
    config: TrainConfig,
    victim_config: dict[str, Any] | None = None,
    progress: bool = True,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and write ``out.pt`` + ``out.json``; returns the metadata."""
    model, meta = train_victim(arch, data, config, victim_config, progress)
    meta.update(extra_meta or {})
    return save_victim(model, out, meta)
