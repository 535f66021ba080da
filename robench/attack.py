"""The attack protocol: one base class, one method to write, a final ``__call__``.

An attack declares, as class attributes, its knowledge level, the norms it supports, whether it is
randomised (``randomized = False`` is a promise: the output does not depend on the generator, and the
harness spot-checks it), whether it supports targeted mode and, for transfer attacks, whether it is
an ``ensemble`` attack (it then receives every surrogate the benchmark declares in one generation;
otherwise one generation per surrogate); its hyper-parameters are a frozen dataclass ``Config``
carrying the paper's defaults. Subclasses write only ``run``::

    @register_attack("pgd")
    class PGD(Attack):
        knowledge = Knowledge.WHITE_BOX
        norms = ("linf", "l2")
        randomized = True
        Config = PGDConfig

        def run(self, access, x, y, threat, generator, target): ...

``Attack.__call__`` (final) does the shared work the same way for every attack: it checks the access
object matches the declared level, the norm is supported, targeted mode has targets; it runs the
attack on a private copy of the input, verifies the caller's tensor was not modified in place, and
checks the returned batch against the threat model, raising :class:`ThreatViolation` with every
violation named. No attack can skip it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, final

import torch

from robench.access import Access, Knowledge
from robench.config import Plugin
from robench.errors import AccessError, ConfigError, DataError, ThreatViolation
from robench.registry import Registry

ATTACKS: Registry[type[Attack]] = Registry(
    "attack",
    "robench.attacks",
    "robench.attacks",
    "register one with @robench.register_attack('name') on an Attack subclass",
)
register_attack = ATTACKS.register


@dataclass(frozen=True)
class AttackConfig:
    """Fields every attack config has."""

    targeted: bool = False


class Attack(Plugin):
    """Base of every attack. Subclasses set the class attributes and implement :meth:`run`."""

    knowledge: ClassVar[Knowledge]
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    randomized: ClassVar[bool] = False
    supports_targeted: ClassVar[bool] = False
    ensemble: ClassVar[bool] = False
    Config: ClassVar[type[AttackConfig]] = AttackConfig

    def __init__(self, config: AttackConfig | None = None, **overrides: Any) -> None:
        cls = type(self)
        if not isinstance(getattr(cls, "knowledge", None), Knowledge):
            raise ConfigError(
                f"expected class attribute 'knowledge' (a Knowledge), got none in {cls.__name__}"
            )
        if not cls.norms or any(n not in ("linf", "l2") for n in cls.norms):
            raise ConfigError(
                f"expected norms within ('linf', 'l2'), got {cls.norms} in {cls.__name__}"
            )
        self._set_config(config, overrides, "attack")

    @final
    def __call__(
        self,
        access: Access,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Any,
        generator: torch.Generator | None = None,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the attack on a batch; returns x_adv (detached) or raises a RobenchError."""
        if not isinstance(access, Access) or access.level is not self.knowledge:
            got = access.level.value if isinstance(access, Access) else type(access).__name__
            raise AccessError(
                f"expected {self.knowledge.value} access for attack {self.name!r}, got {got}"
            )
        if threat.norm not in self.norms:
            raise ConfigError(
                f"expected norm in {self.norms} for attack {self.name!r}, got {threat.norm!r}"
            )
        if x.dim() != 5 or x.shape[1] != 3:
            raise DataError(
                f"expected x of shape (N, 3, T, V, M), got {tuple(x.shape)} in attack input"
            )
        if not torch.isfinite(x).all():
            raise DataError("expected finite coordinates, got NaN/inf in attack input 'x'")
        if y.shape != (x.shape[0],):
            raise DataError(
                f"expected y of shape ({x.shape[0]},), got {tuple(y.shape)} in attack input"
            )
        if self.config.targeted and (target is None or target.shape != y.shape):
            raise ConfigError(
                f"expected target labels of shape {tuple(y.shape)} for a targeted attack, got {None if target is None else tuple(target.shape)}"
            )
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(0)
        reference = x.detach().clone()
        x_run = reference.clone()  # private copy: an in-place edit cannot reach the caller's batch
        x_adv = self.run(access, x_run, y, threat, generator, target)
        if not torch.equal(x_run, reference):
            raise ThreatViolation(
                f"expected the input batch unchanged, got it modified in place by attack {self.name!r}"
            )
        if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
            raise ThreatViolation(
                f"expected x_adv of shape {tuple(x.shape)}, got {getattr(x_adv, 'shape', type(x_adv))} from attack {self.name!r}"
            )
        x_adv = x_adv.detach()
        violations = threat.check(reference, x_adv)
        if violations:
            raise ThreatViolation(
                f"attack {self.name!r} left the threat model: "
                + "; ".join(str(v) for v in violations)
            )
        return x_adv

    def run(
        self,
        access: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Any,
        generator: torch.Generator,
        target: torch.Tensor | None,
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """Return adversarial examples for the batch; must not modify ``x``."""
        raise NotImplementedError


def attack_class(name: str) -> type[Attack]:
    """The class of the attack ``name``: a registered name, or ``family:MEMBER`` of a registered
    family (``torchattacks:PGD``); unknown names raise with the closest registered names."""
    fam = ATTACKS.family(name)
    return fam[0] if fam is not None else ATTACKS.get(name)


def is_family_member(name: str) -> bool:
    """Whether ``name`` is ``family:MEMBER`` (its hyper-parameters are checked by the family)."""
    return ATTACKS.family(name) is not None


def create_attack(name: str, **config: Any) -> Attack:
    """An attack by registered name with hyper-parameter overrides.

    ``torchattacks:NAME`` wraps any torchattacks attack through the exact affine adapter (the
    ``torchattacks`` family).
    """
    fam = ATTACKS.family(name)
    if fam is not None:
        return fam[0](fam[1], **config)
    return ATTACKS.get(name)(**config)
