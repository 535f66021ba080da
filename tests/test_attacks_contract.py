"""Attacks: the contract checks of :mod:`robench.testing` on every registered attack (one test per
attack and check, so a new attack is covered the moment it registers): threat model respected for
each declared norm, input unchanged, padding and absent bodies exactly zero, deterministic per
seed, randomness declared honestly, every config field has a default; and the checks catching what
they promise on deliberately broken attacks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from robench.access import Knowledge
from robench.attack import ATTACKS, Attack, AttackConfig
from robench.data.skeleton import presence_mask
from robench.errors import ConfigError, UnknownNameError
from robench.testing import ATTACK_CHECKS, ContractError, check_attack, run_attack_check

NAMES = ATTACKS.names()
CHECKS = [name for name, _ in ATTACK_CHECKS]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("name", NAMES)
def test_attack_contract(name: str, check: str) -> None:
    run_attack_check(name, check)


# ------------------------------------------------------------------ the checks catch broken attacks
@dataclass(frozen=True)
class StepConfig(AttackConfig):
    alpha_rel: float = 1.0


class Step(Attack):
    """Unregistered and meeting the contract: one gradient step from a seeded random start."""

    knowledge = Knowledge.WHITE_BOX
    norms = ("linf", "l2")
    randomized = True
    supports_targeted = True
    Config = StepConfig

    def noise(self, x, generator):
        return torch.rand(x.shape, generator=generator) * 2 - 1

    def gradient(self, model, x0, label):
        with torch.enable_grad():
            (g,) = torch.autograd.grad(F.cross_entropy(model(x0), label), x0)
        return g

    def run(self, access, x, y, threat, generator, target):
        mask = threat.allowed_mask(x).to(x.dtype)
        x0 = threat.project(x, x + self.noise(x, generator) * threat.eps * mask)
        x0 = x0.detach().requires_grad_(True)
        t = self.config.targeted
        g = self.gradient(access.victim, x0, target if t else y) * mask
        if threat.norm == "linf":
            d = g.sign()
        else:
            d = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1, 1)
        step = (-1 if t else 1) * self.config.alpha_rel * threat.eps * d
        return threat.project(x, x0.detach() + step)


class InPlace(Step):
    def run(self, access, x, y, threat, generator, target):
        out = super().run(access, x, y, threat, generator, target)
        return x.copy_(out)


class Unprojected(Step):
    def run(self, access, x, y, threat, generator, target):
        return x + 3 * threat.eps * presence_mask(x)


class TrainsVictim(Step):
    def run(self, access, x, y, threat, generator, target):
        access.victim.train()
        return super().run(access, x, y, threat, generator, target)


class Backward(Step):
    def gradient(self, model, x0, label):
        with torch.enable_grad():
            F.cross_entropy(model(x0), label).backward()
        return x0.grad


class GlobalRNG(Step):
    def noise(self, x, generator):
        return torch.rand(x.shape) * 2 - 1


class FalselyDeterministic(Step):
    randomized = False


class FalselyRandom(Step):
    def noise(self, x, generator):
        return torch.zeros_like(x)


class BrokenTargeted(Step):
    def run(self, access, x, y, threat, generator, target):
        out = super().run(access, x, y, threat, generator, target)
        return out * 2 if self.config.targeted else out


class IgnoresMasks(Step):
    norms = ("linf",)
    randomized = False

    def run(self, access, x, y, threat, generator, target):
        g = self.gradient(access.victim, x.clone().requires_grad_(True), y)
        return x + 0.9 * threat.eps * g.sign() * presence_mask(x)  # in the ball, no other rule


class OwnCall(Step):
    def __call__(self, *args, **kwargs):
        return super().__call__(*args, **kwargs)


@dataclass(frozen=True, kw_only=True)
class NoDefaultConfig(AttackConfig):
    alpha_rel: float  # no default: create_attack("name") could not build it


class NoDefault(Step):
    Config = NoDefaultConfig


class NoKnowledge(Attack):
    Config = StepConfig

    def run(self, access, x, y, threat, generator, target):
        return x.clone()


BROKEN = [
    (OwnCall, "declaration"),
    (NoDefault, "declaration"),
    (NoKnowledge, "declaration"),
    (InPlace, "threat_model"),
    (Unprojected, "threat_model"),
    (TrainsVictim, "threat_model"),
    (Backward, "threat_model"),
    (GlobalRNG, "determinism"),
    (FalselyDeterministic, "determinism"),
    (FalselyRandom, "determinism"),
    (BrokenTargeted, "targeted"),
    (IgnoresMasks, "constrained_threat"),
]


def test_a_plain_unregistered_attack_passes_every_check() -> None:
    assert check_attack(Step) == CHECKS
    assert "step" not in ATTACKS.names()


@pytest.mark.parametrize("cls, check", BROKEN, ids=[f"{c.__name__}-{k}" for c, k in BROKEN])
def test_each_check_catches_its_broken_attack(cls: type, check: str) -> None:
    with pytest.raises(ContractError, match=f"failed contract check '{check}'") as info:
        run_attack_check(cls, check)
    assert "to fix:" in str(info.value)
    with pytest.raises(ContractError, match=f"'{check}'"):
        check_attack(cls)  # check_attack stops at the same check


def test_check_attack_resolves_names_and_refuses_the_rest() -> None:
    assert check_attack("fgsm", checks=["declaration", "threat_model"]) == [
        "declaration",
        "threat_model",
    ]
    with pytest.raises(ContractError, match="Attack subclass"):
        check_attack(torch.nn.Linear)
    with pytest.raises(ConfigError, match="attack check"):
        run_attack_check(Step, "no_such_check")
    with pytest.raises(UnknownNameError, match="fgsm"):
        check_attack("fgms")


def test_check_attack_runs_a_family_member() -> None:
    pytest.importorskip("torchattacks")
    assert check_attack("torchattacks:FGSM", checks=["declaration", "threat_model"])
