"""Any torchattacks attack on skeletons, made exact by an affine map into [0, 1].

torchattacks (Kim, arXiv 2010.01950, v3.5.1) clamps every iterate to the image range [0, 1] inside each
attack's ``forward``, with no switch, and assumes 4-D (N, C, H, W) inputs. Skeleton coordinates are
neither. The adapter maps the batch affinely into the unit cube so that the clamp never binds:

- one scalar scale ``s`` for the batch, chosen so that every coordinate of ``x ± ε`` lies strictly
  inside (0, 1) with a margin ``m = 0.05``: ``lo = min x``, ``hi = max x``,
  ``s = (hi − lo + 2ε)/(1 − 2m)``, ``u = (x − lo)/s + offset`` with ``offset = m + ε/s``;
- ``u`` is reshaped to 4-D ``(N, 3, T, V·M)``; the attack gets the wrapped model
  ``u ↦ f(x₀ + mask·s·(u − u₀))`` (row by row, see below), i.e. ``f(lo + s·(u − offset))`` on the
  coordinates that may move, with padding, absent bodies and frozen joints/frames held at their clean
  values exactly as :class:`~robench.threat.ThreatModel` requires;
- data-unit hyper-parameters are divided by ``s``: ``eps`` (always ``threat.eps/s``; l2 attacks too,
  since ‖·‖₂ scales by 1/s as well), ``alpha``, ``std`` (noise scale) and ``delta`` (finite
  differences), given in data units. One of these left at torchattacks' default keeps that default's
  ratio to torchattacks' default ``eps`` (PGD: α = ε/4, FFGSM: α = 1.25ε), since the absolute
  defaults are 8-bit image steps; ``norm`` is set from the threat model; ``n_classes`` from the
  model's output (APGD-T, FAB, AutoAttack otherwise assume 10 classes);
- the result maps back as ``x' = x + s·(u' − u)`` and goes through ``threat.project`` (padding,
  masks, bones, float rounding).

For ε-bounded attacks (PGD, BIM, FGSM, MI/NI-FGSM, APGD, Square, ...) the clamp never binds, so the
attack equals the unbounded one in data units (up to float rounding, ≈1e-7 of the data range). For
minimum-norm attacks (CW, DeepFool, FAB without a bound) iterates may leave the cube and be clamped;
their result is still projected into the threat model, but it is no longer exact.

torchattacks may call the model on a subset of the batch (APGD on the still-correct samples, Square,
FAB); the wrapper then identifies each row by its nearest clean row in L∞ (every iterate stays within
ε/s of its own row), which is exact unless two clean samples are within 2ε of each other everywhere.

Randomness: torchattacks draws from torch's global RNG. The adapter draws one integer from the call's
generator, seeds the global RNG with it inside ``torch.random.fork_rng`` (the caller's global state is
restored afterwards) and passes it as ``seed`` to attacks that take one (APGD, APGD-T, FAB, Square).
Native ``pgd`` draws its random start from a sub-generator seeded with the same integer, so the two
PGDs start from the same point (see :func:`robench.attacks.gradient._random_start`).

torchattacks is imported lazily (it is not a hard dependency; it must be installed with
``pip install --no-deps torchattacks==3.5.1`` because its metadata pulls torchvision, which robench
never imports); a missing package raises a :class:`~robench.errors.ConfigError` saying so.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robench.access import Knowledge, WhiteBox
from robench.attack import ATTACKS, Attack, AttackConfig, register_attack
from robench.errors import ConfigError, UnknownNameError
from robench.registry import suggest

MARGIN = 0.05
DATA_UNIT_KWARGS = ("alpha", "std", "delta")
L2_ONLY = ("PGDL2", "PGDRSL2", "CW", "DeepFool", "EADEN")
_SEEDED = "seed"
_NOT_ATTACKS = ("Attack", "MultiAttack", "LGV")


def _torchattacks():
    try:
        import torchattacks
    except ImportError as e:
        raise ConfigError(
            "expected the optional package torchattacks for 'torchattacks:' attacks, got "
            f"ImportError ({e}); install it with `pip install --no-deps torchattacks==3.5.1`"
        ) from None
    return torchattacks


def _attack_class(name: str) -> type:
    ta = _torchattacks()
    names = [n for n in getattr(ta, "__all__", dir(ta)) if n not in _NOT_ATTACKS]
    exact = {n.lower(): n for n in names}
    if name.lower() not in exact:
        close = suggest(name, names)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"unknown torchattacks attack {name!r}{hint} (available: {', '.join(sorted(names))})"
        )
    return getattr(ta, exact[name.lower()])


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _norms_of(cls: type) -> tuple[str, ...]:
    params = inspect.signature(cls.__init__).parameters
    if "norm" in params:
        return ("linf", "l2")
    if cls.__name__ in L2_ONLY:
        return ("l2",)
    return ("linf",)


class _AffineVictim(nn.Module):
    """The victim seen from the unit cube: ``u (k, 3, T, V·M) ↦ f(x₀ + mask·s·(u − u₀))``.

    The victim is held outside the module tree, so torchattacks' ``model.eval()``/``model.train()``
    calls on this wrapper never reach it. ``parameters()`` yields one empty tensor on the data's
    device (torchattacks reads its device from there).
    """

    def __init__(
        self, victim: nn.Module, x: Tensor, u: Tensor, mask: Tensor, s: float, bound: float
    ) -> None:
        super().__init__()
        object.__setattr__(self, "victim", victim)
        self.shape5 = tuple(x.shape[1:])
        self.x0 = x
        self.u0 = u.reshape(x.shape[0], -1)
        self.mask = mask.expand_as(x).to(x.dtype)
        self.s = s
        self.bound = bound
        self._anchor = torch.empty(0, device=x.device)
        self.train(False)

    def parameters(self, recurse: bool = True) -> Iterator[Tensor]:
        yield self._anchor

    def rows(self, u: Tensor) -> Tensor:
        """Index of the clean row each row of ``u`` belongs to."""
        flat = u.reshape(u.shape[0], -1)
        if flat.shape[0] == self.u0.shape[0]:
            if bool(((flat - self.u0).abs().amax(1) <= self.bound).all()):
                return torch.arange(flat.shape[0], device=u.device)
        return torch.cdist(flat.detach().double(), self.u0.double(), p=float("inf")).argmin(1)

    def to_data(self, u: Tensor) -> Tensor:
        idx = self.rows(u)
        d = (u.reshape(u.shape[0], -1) - self.u0[idx]).reshape(-1, *self.shape5)
        return self.x0[idx] + self.mask[idx] * (self.s * d)

    def forward(self, u: Tensor) -> Tensor:
        return self.victim(self.to_data(u))


@dataclass(frozen=True)
class TorchAttacksConfig(AttackConfig):
    """``attack``: torchattacks class name; ``kwargs``: its keyword arguments as sorted pairs.

    Data-unit keyword arguments (``alpha``, ``std``, ``delta``) are given in the data's units and
    divided by the batch scale; ``eps`` and ``norm`` come from the threat model and may not be given.
    """

    attack: str = "PGD"
    kwargs: tuple[tuple[str, Any], ...] = ()


@ATTACKS.register_family("torchattacks")
class TorchAttacksAttack(Attack):
    """``TorchAttacksAttack("PGD", steps=10, alpha=0.0025)``: torchattacks' PGD, exact on skeletons.

    See the module docstring for the affine map. Built by ``create_attack("torchattacks:NAME", ...)``.
    The attack's own algorithm, defaults and departures are torchattacks'; robench only changes the
    coordinates, the seeding and the final projection.
    """

    knowledge = Knowledge.WHITE_BOX
    norms = ("linf", "l2")
    randomized = True
    supports_targeted = True
    Config = TorchAttacksConfig

    def __init__(
        self, attack_name: str | None = None, config: AttackConfig | None = None, **kwargs: Any
    ) -> None:
        if config is None:
            targeted = bool(kwargs.pop("targeted", False))
            config = self.Config(**self._config_fields(attack_name, kwargs), targeted=targeted)
        super().__init__(config)
        name, kw = self._spec()
        cls = _attack_class(name)
        params = inspect.signature(cls.__init__).parameters
        for key in kw:
            if key in ("eps", "norm", "model"):
                raise ConfigError(
                    f"expected {key!r} to come from the threat model, got {key}={kw[key]!r} in "
                    f"torchattacks:{name} kwargs"
                )
            if key not in params:
                allowed = sorted(p for p in params if p not in ("self", "model", "eps", "norm"))
                raise ConfigError(
                    f"expected one of {allowed}, got unknown field {key!r} in torchattacks:{name} kwargs"
                )
        self._cls = cls
        self.norms = _norms_of(cls)

    def _config_fields(self, attack_name: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        if not attack_name or not isinstance(attack_name, str):
            raise ConfigError(
                f"expected a torchattacks attack name, got {attack_name!r} in TorchAttacksAttack"
            )
        return {"attack": attack_name, "kwargs": tuple(sorted(kwargs.items()))}

    def _spec(self) -> tuple[str, dict[str, Any]]:
        """(torchattacks class name, keyword arguments in data units)."""
        return self.config.attack, dict(self.config.kwargs)

    @property
    def name(self) -> str:
        return type(self).registry_name or f"torchattacks:{self._spec()[0]}"

    def run(self, access: WhiteBox, x, y, threat, generator, target):
        c = self.config
        model = access.victim
        name, kw = self._spec()
        params = inspect.signature(self._cls.__init__).parameters
        eps = threat.eps
        lo, hi = float(x.min()), float(x.max())
        s = (hi - lo + 2 * eps) / (1 - 2 * MARGIN)
        if not s > 0:
            s = 1.0
        offset = MARGIN + eps / s
        u = ((x - lo) / s + offset).reshape(x.shape[0], 3, x.shape[2], -1)
        mask = threat.allowed_mask(x)
        wrapped = _AffineVictim(model, x, u, mask, s, bound=(eps / s) * (1 + 1e-3) + 1e-6)
        default_eps = params["eps"].default if "eps" in params else None
        for key in DATA_UNIT_KWARGS:
            if key in kw:
                kw[key] = kw[key] / s
            elif (
                key in params
                and _number(params[key].default)
                and _number(default_eps)
                and default_eps > 0
            ):
                # torchattacks' defaults are image-scaled: keep their ratio to eps instead
                kw[key] = params[key].default / default_eps * eps / s
        if "eps" in params:
            kw["eps"] = eps / s
        if "norm" in params:
            kw["norm"] = {"linf": "Linf", "l2": "L2"}[threat.norm]
        if "n_classes" in params and "n_classes" not in kw:
            with torch.no_grad():
                kw["n_classes"] = int(model(x[:1]).shape[1])
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        if _SEEDED in params and _SEEDED not in kw:
            kw[_SEEDED] = seed
        cuda = x.device.type == "cuda"
        index = (
            (x.device.index if x.device.index is not None else torch.cuda.current_device())
            if cuda
            else None
        )
        # fork (and later restore) the CPU RNG and, on a GPU, the RNG of x's device only
        with torch.random.fork_rng(devices=[index] if cuda else []):
            torch.default_generator.manual_seed(seed)
            if cuda:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
            atk = self._cls(wrapped, **kw)
            atk.set_device(x.device)
            label = y
            if c.targeted:
                if "targeted" not in getattr(atk, "supported_mode", ()):
                    raise ConfigError(
                        f"expected an attack with a targeted mode, got torchattacks:{name} (untargeted only)"
                    )
                atk.set_mode_targeted_by_label(quiet=True)
                label = target
            with torch.enable_grad():
                u_adv = atk(u.detach(), label)
        x_adv = x + (s * (u_adv.detach() - u)).reshape(x.shape)
        return threat.project(x, x_adv)


# ------------------------------------------------------------------------------ first-class APGD
@dataclass(frozen=True)
class APGDConfig(AttackConfig):
    """AutoAttack's APGD settings: 100 steps, 1 restart, ρ = 0.75, 1 EOT iteration."""

    steps: int = 100
    restarts: int = 1
    rho: float = 0.75
    eot_iter: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "restarts", "eot_iter"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(
                    f"expected an integer >= 1, got {v!r} in apgd config field {name!r}"
                )
        if (
            isinstance(self.rho, bool)
            or not isinstance(self.rho, (int, float))
            or not 0 < self.rho < 1
        ):
            raise ConfigError(
                f"expected a number in (0, 1), got {self.rho!r} in apgd config field 'rho'"
            )


class _APGD(TorchAttacksAttack):
    """APGD (Croce, Hein, ICML 2020) through torchattacks, exact on skeletons via the adapter.

    Step-size free PGD with momentum 0.75 and a step halving on checkpoints
    (0.22·steps, then shrinking by 0.06·steps, min 0.03·steps); starts at a random point of the ball
    (seeded from the call's generator); returns, per sample, its best adversarial point (APGD's own
    rule), whose success is judged as returned. Defaults as AutoAttack: 100 steps, 1 restart.
    """

    supports_targeted = False
    Config = APGDConfig
    loss: str = "ce"

    def __init__(self, config: AttackConfig | None = None, **overrides: Any) -> None:
        Attack.__init__(self, config, **overrides)
        self._cls = _attack_class("APGD")
        self.norms = ("linf", "l2")

    def _spec(self) -> tuple[str, dict[str, Any]]:
        c = self.config
        return "APGD", {
            "steps": c.steps, "n_restarts": c.restarts, "rho": c.rho, "eot_iter": c.eot_iter, "loss": self.loss,
        }  # fmt: skip


@register_attack("apgd-ce")
class APGDCE(_APGD):
    """APGD on the cross-entropy loss (AutoAttack's first attack)."""

    loss = "ce"


@register_attack("apgd-dlr")
class APGDDLR(_APGD):
    """APGD on the Difference-of-Logits-Ratio loss (needs at least 3 classes)."""

    loss = "dlr"
