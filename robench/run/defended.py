"""Defended victims in the harness: building one, its random stream, the attacker's copy (BPDA).

A victim entry naming a defense is built as ``defense(victim)``: the defense is part of the model
(every attack and every score goes through it; the threat model is still checked against the
undefended clean input). A randomized defense draws from its own stream (``reseed``): the harness
starts it at seed 0 for the clean predictions and reseeds it per cell for scoring and for each attack
job, so a cell's rows do not depend on which cells ran before.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from robench.errors import ConfigError
from robench.run.spec import VictimSpec


def defend_victim(
    net: torch.nn.Module, spec: VictimSpec, probe: torch.Tensor, data: Any = None
) -> torch.nn.Module:
    """``spec``'s defense applied to the loaded victim ``net`` (checked on ``probe``), its random
    stream at seed 0. A heads defense (BEAT) is post-trained on the train split of ``data`` (the
    defender's data: what the victim was trained on), or loads its cached heads."""
    from robench.defense import DefenseKind, create_defense

    defense = create_defense(str(spec.defense), **dict(spec.defense_params))
    train = None
    if defense.kind is DefenseKind.HEADS and data is not None:
        if "train" not in set(data.split or ()):
            raise ConfigError(
                f"expected a 'train' split to post-train defense {spec.defense!r} on, got none in "
                f"data set {data.name!r} (the heads must not see the clips under attack)"
            )
        train = data.get_split("train")
    out = defense(net, probe, train, generator=torch.Generator().manual_seed(0))
    reseed(out, 0)
    return out


def reseed(model: torch.nn.Module, seed: int) -> None:
    """Restart a randomized defended model's stream (a model without one is left alone)."""
    if callable(getattr(model, "reseed", None)):
        model.reseed(seed)


def attacker_copy(model: torch.nn.Module, seed: int, bpda: bool) -> torch.nn.Module:
    """What an attack job gets of ``model``: the model itself, or, for a defended model with its own
    random stream or a BPDA cell, a copy with the stream at ``seed`` (the harness derives it from
    the cell, not from the attack's own seed: a deterministic attack stays deterministic) and, with ``bpda``,
    every non-differentiable defense step straight-through (BPDA, Athalye, Carlini and Wagner, ICML
    2018). The harness's own copy is never switched or advanced."""
    if not bpda and not callable(getattr(model, "reseed", None)):
        return model
    out = copy.deepcopy(model)
    reseed(out, seed)
    for mod in out.modules():
        if bpda and hasattr(mod, "bpda"):
            mod.bpda = True
    return out


def zero_gradients(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    batch_size: int,
    bpda: bool = False,
) -> torch.Tensor:
    """(n,) bool: the input gradient of CE(f(x), y) is exactly zero, for the ``correct`` samples
    (False elsewhere); through the BPDA pass of a copy when ``bpda`` (what a BPDA attack sees); a
    randomized model draws from its stream at seed 0."""
    net = attacker_copy(model, 0, bpda)
    reseed(net, 0)
    idx_all = correct.nonzero().flatten()
    out = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for i in range(0, idx_all.numel(), batch_size):
        idx = idx_all[i : i + batch_size]
        xb = x[idx].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(net(xb), y[idx], reduction="sum")
            (g,) = torch.autograd.grad(loss, xb)
        out[idx] = g.flatten(1).eq(0).all(1)
    return out
