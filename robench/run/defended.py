"""Defended victims in the harness: building one, its random stream, the attacker's copy (BPDA).

A victim entry naming a defense is built as ``defense(victim)``: the defense is part of the model
(every attack and every score goes through it; the threat model is still checked against the
undefended clean input). A randomized defense draws from its own stream (``reseed``): the harness
starts it at seed 0 for the clean predictions and reseeds it per cell for scoring and for each attack
job, so a cell's rows do not depend on which cells ran before.
"""

from __future__ import annotations

import copy

import torch

from robench.run.spec import VictimSpec


def defend_victim(net: torch.nn.Module, spec: VictimSpec, probe: torch.Tensor) -> torch.nn.Module:
    """``spec``'s defense applied to the loaded victim ``net`` (checked on ``probe``), its random
    stream at seed 0."""
    from robench.defense import create_defense

    defense = create_defense(str(spec.defense), **dict(spec.defense_params))
    out = defense(net, probe, generator=torch.Generator().manual_seed(0))
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
