"""The defense contract: the base class's checks on a hand-written defense, and contract tests
parametrised over the registry (so a new defense is covered the moment it registers)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from conftest import make_tiny_set
from torch import nn

from robench.defense import DEFENSES, Defense, DefenseConfig, DefenseKind, create_defense
from robench.errors import ConfigError, DataError, UnknownNameError
from robench.victim import build_victim

TINY = {"num_classes": 3, "width": 4, "depth": 1}


def tiny_victim() -> nn.Module:
    return build_victim("stgcn", **TINY).eval()


@dataclass(frozen=True)
class ShiftConfig(DefenseConfig):
    scale: float = 0.5


class Shrink(Defense):
    """Transform defense for the tests: scales the input by ``scale`` before the victim."""

    kind = DefenseKind.TRANSFORM
    Config = ShiftConfig

    def defend(self, victim, train, generator):
        scale = self.config.scale

        class Wrapped(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.victim = victim

            def forward(self, x):
                return self.victim(x * scale)

        return Wrapped()


def test_defended_model_is_returned_checked_and_in_eval_mode():
    data = make_tiny_set()
    victim = tiny_victim()
    out = Shrink(scale=0.25)(victim, data.x[:4])
    assert not out.training
    with torch.inference_mode():
        assert torch.equal(out(data.x[:4]), victim(data.x[:4] * 0.25))


def test_defense_config_defaults_overrides_and_unknown_fields():
    assert Shrink().config.scale == 0.5
    assert Shrink(scale=2.0).config.scale == 2.0
    with pytest.raises(ConfigError, match="unknown field 'scael'"):
        Shrink(scael=1.0)


def test_capabilities_are_declared():
    class NoKind(Defense):
        def defend(self, victim, train, generator):
            return victim

    with pytest.raises(ConfigError, match="'kind'"):
        NoKind()

    class BadFlag(Shrink):
        randomized = "yes"

    with pytest.raises(ConfigError, match="'randomized' to be a bool"):
        BadFlag()


def test_defense_that_edits_the_given_victim_is_refused():
    class InPlace(Shrink):
        def defend(self, victim, train, generator):
            with torch.no_grad():
                next(victim.parameters()).add_(1.0)
            return victim

    with pytest.raises(ConfigError, match="victim unchanged.*weight"):
        InPlace()(tiny_victim(), make_tiny_set().x[:2])

    class LeavesTraining(Shrink):
        def defend(self, victim, train, generator):
            victim.train()
            return copy.deepcopy(victim)

    with pytest.raises(ConfigError, match="training mode"):
        LeavesTraining()(tiny_victim(), make_tiny_set().x[:2])


def test_wrong_output_and_undeclared_randomness_are_refused():
    class WrongShape(Shrink):
        def defend(self, victim, train, generator):
            return nn.Sequential(nn.Flatten(), nn.LazyLinear(7))

    with pytest.raises(ConfigError, match="logits of shape"):
        WrongShape()(tiny_victim(), make_tiny_set().x[:2])

    class NotAModule(Shrink):
        def defend(self, victim, train, generator):
            return lambda x: victim(x)

    with pytest.raises(ConfigError, match="return an nn.Module"):
        NotAModule()(tiny_victim(), make_tiny_set().x[:2])

    class Noisy(Shrink):
        def defend(self, victim, train, generator):
            class N(nn.Module):
                def forward(self, x):
                    return victim(x + 0.1 * torch.randn_like(x))

            return N()

    with pytest.raises(ConfigError, match="declared randomized=False"):
        Noisy()(tiny_victim(), make_tiny_set().x[:2])

    class DeclaredNoisy(Noisy):
        randomized = True

    assert DeclaredNoisy()(tiny_victim(), make_tiny_set().x[:2]) is not None


def test_bad_probe_and_victim():
    with pytest.raises(DataError, match="probe batch"):
        Shrink()(tiny_victim(), torch.zeros(2, 3, 8, 25))
    with pytest.raises(ConfigError, match="victim nn.Module"):
        Shrink()("stgcn", make_tiny_set().x[:2])


def test_unknown_defense_suggests_and_says_how_to_register():
    with pytest.raises(UnknownNameError, match="register_defense"):
        create_defense("no-such-defense")


@pytest.mark.parametrize("name", DEFENSES.names())
def test_registered_defense_contract(name):
    """Every registered defense: capabilities declared, a docstring, every config field has a
    default, and the defended model passes the base class's checks on tiny data."""
    cls = DEFENSES.get(name)
    assert isinstance(cls.kind, DefenseKind)
    assert (cls.__doc__ or "").strip(), f"defense {name!r} has no docstring"
    data = make_tiny_set(n=12, classes=3)
    train = data.get_split("train")
    defended = create_defense(name)(tiny_victim(), data.x[:4], train)
    with torch.inference_mode():
        assert defended(data.x[:4]).shape == (4, 3)


SEEN: list[torch.Tensor] = []  # module-level: a defense may hold a copy of the recorder


class Recorder(nn.Module):
    """A victim that records every input it is handed (what the defense made of the clip)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_victim()
        self.topology = self.inner.topology

    def forward(self, x):
        SEEN.append(x.detach().clone())
        return self.inner(x)


class Linear(nn.Module):
    """A victim whose every logit moves with every coordinate (an untrained GCN's barely do)."""

    def __init__(self, x: torch.Tensor, classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = nn.Parameter(torch.randn(x[0].numel(), classes, generator=g))
        self.topology = tiny_victim().topology

    def forward(self, x):
        return x.flatten(1) @ self.w


# split the vote of the probe victim so that two draws show (at 2 cm it is often unanimous)
PROBE_PARAMS = {"noise-smoothing": {"sigma": 0.5, "samples": 4}}


@pytest.mark.parametrize("name", DEFENSES.names())
def test_declared_capabilities_match_behaviour(name):
    """randomized: two forwards differ, else they are identical; differentiable: non-zero input
    gradients, else exactly zero naively and non-zero through BPDA; padding and absent bodies of
    the input stay zero in what the victim sees."""
    cls = DEFENSES.get(name)
    data = make_tiny_set(n=12, classes=3)
    x = data.x[:6]
    victim = Linear(x)
    params = PROBE_PARAMS.get(name, {})
    defended = create_defense(name, **params)(victim, x, data.get_split("train"))
    with torch.inference_mode():
        a, b = defended(x), defended(x)
    assert (not torch.equal(a, b)) == cls.randomized, name
    xg = x.clone().requires_grad_(True)
    defended(xg).logsumexp(1).sum().backward()
    nonzero = bool(xg.grad.abs().sum() > 0)
    assert torch.isfinite(xg.grad).all()
    assert nonzero == cls.differentiable, name
    if cls.kind is DefenseKind.TRANSFORM and not cls.differentiable:
        assert hasattr(defended, "bpda"), (
            f"{name}: a non-differentiable transform needs a BPDA pass"
        )
        defended.bpda = True
        xg = x.clone().requires_grad_(True)
        defended(xg).logsumexp(1).sum().backward()
        assert xg.grad.abs().sum() > 0, f"{name}: BPDA gives no gradient"
    if cls.kind is DefenseKind.TRANSFORM:
        d = create_defense(name, **params)(Recorder(), x, data.get_split("train"))
        SEEN.clear()
        with torch.inference_mode():
            d(x)
        absent = (x == 0).all(1, keepdim=True).all(3, keepdim=True).expand_as(x)
        assert SEEN, name
        for seen in SEEN:
            assert seen.shape == x.shape
            assert bool((seen[absent] == 0).all()), f"{name}: padding or an absent body moved"
            assert bool((seen[~absent] != 0).any())
