"""The defense protocol: one base class, one method to write, a final ``__call__``.

A defense turns a victim into a *defended victim*: a module with the victim's input and output
contract, (N, 3, T, V, M) skeletons to (N, K) differentiable logits. Its capabilities are declared as
class attributes, checked when it is built, never guessed from its behaviour:

- ``kind``: what it changes. ``weights`` (new weights, e.g. adversarial training), ``heads``
  (post-trained on a frozen victim), ``transform`` (inference-time input processing);
- ``randomized``: whether the defended forward pass draws random numbers (an adaptive evaluation
  then needs expectation over transformation);
- ``differentiable``: whether gradients flow through the defense (an adaptive evaluation otherwise
  needs BPDA).

Its hyper-parameters are a frozen dataclass ``Config`` carrying the paper's defaults. Subclasses write
only ``defend``::

    @register_defense("temporal-smoothing")
    class TemporalSmoothing(Defense):
        kind = DefenseKind.TRANSFORM
        randomized = False
        differentiable = True
        Config = SmoothingConfig

        def defend(self, victim, train, generator): ...

``Defense.__call__`` (final) does the shared work the same way for every defense: it runs ``defend``
on the caller's victim, verifies that victim was left as it was (weights and buffers, eval mode),
checks the defended model maps a probe batch to logits of the victim's shape, and that a defense
declared deterministic gives identical logits on two forwards of the probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, final

import torch
from torch import nn

from robench.config import Plugin
from robench.errors import ConfigError, DataError
from robench.registry import Registry

DEFENSES: Registry[type[Defense]] = Registry(
    "defense",
    "robench.defenses",
    "robench.defenses",
    "register one with @robench.defense.register_defense('name') on a Defense subclass",
)
register_defense = DEFENSES.register


class DefenseKind(str, Enum):
    """What a defense changes: the weights, post-trained heads, or the input at inference time."""

    WEIGHTS = "weights"
    HEADS = "heads"
    TRANSFORM = "transform"


@dataclass(frozen=True)
class DefenseConfig:
    """Fields every defense config has (none yet); subclasses add theirs with paper defaults."""


class Defense(Plugin):
    """Base of every defense. Subclasses set the class attributes and implement :meth:`defend`."""

    kind: ClassVar[DefenseKind]
    randomized: ClassVar[bool] = False
    differentiable: ClassVar[bool] = True
    Config: ClassVar[type[DefenseConfig]] = DefenseConfig

    def __init__(self, config: DefenseConfig | None = None, **overrides: Any) -> None:
        cls = type(self)
        if not isinstance(getattr(cls, "kind", None), DefenseKind):
            raise ConfigError(
                f"expected class attribute 'kind' (a DefenseKind), got none in {cls.__name__}"
            )
        for flag in ("randomized", "differentiable"):
            if not isinstance(getattr(cls, flag), bool):
                raise ConfigError(
                    f"expected class attribute {flag!r} to be a bool, got {getattr(cls, flag)!r} in {cls.__name__}"
                )
        self._set_config(config, overrides, "defense")

    @final
    def __call__(
        self,
        victim: nn.Module,
        probe: torch.Tensor,
        train: Any = None,
        generator: torch.Generator | None = None,
    ) -> nn.Module:
        """The defended victim (eval mode). ``probe`` is a (n, 3, T, V, M) batch the result is
        checked on; ``train`` is the defender's training data (a SkeletonSet, or None for defenses
        that need none)."""
        if not isinstance(victim, nn.Module):
            raise ConfigError(
                f"expected a victim nn.Module, got {type(victim).__name__} for defense {self.name!r}"
            )
        if probe.dim() != 5 or probe.shape[1] != 3 or probe.shape[0] == 0:
            raise DataError(
                f"expected a probe batch of shape (n>0, 3, T, V, M), got {tuple(probe.shape)} for defense {self.name!r}"
            )
        if generator is None:
            generator = torch.Generator(device=probe.device).manual_seed(0)
        state = {k: v.detach().clone() for k, v in victim.state_dict().items()}
        training = victim.training
        with torch.inference_mode():
            clean = victim(probe)
        defended = self.defend(victim, train, generator)
        after = victim.state_dict()
        changed = [k for k, v in state.items() if k not in after or not torch.equal(after[k], v)]
        if changed or victim.training != training:
            what = f"weight {changed[0]!r}" if changed else "training mode"
            raise ConfigError(
                f"expected the given victim unchanged (train a copy), got its {what} modified by defense {self.name!r}"
            )
        if not isinstance(defended, nn.Module):
            raise ConfigError(
                f"expected defend() to return an nn.Module, got {type(defended).__name__} from defense {self.name!r}"
            )
        defended.eval()
        with torch.inference_mode():
            a, b = defended(probe), defended(probe)
        if not isinstance(a, torch.Tensor) or a.shape != clean.shape:
            raise ConfigError(
                f"expected logits of shape {tuple(clean.shape)}, got {getattr(a, 'shape', type(a))} from defense {self.name!r}"
            )
        if not self.randomized and not torch.equal(a, b):
            raise ConfigError(
                f"expected identical logits on two forwards (declared randomized=False), got different ones from defense {self.name!r}"
            )
        return defended

    def defend(
        self, victim: nn.Module, train: Any, generator: torch.Generator
    ) -> nn.Module:  # pragma: no cover - abstract
        """Return the defended model; must not modify ``victim`` (copy it before training)."""
        raise NotImplementedError


def create_defense(name: str, **config: Any) -> Defense:
    """A defense by registered name with hyper-parameter overrides."""
    return DEFENSES.get(name)(**config)
