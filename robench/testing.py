"""Contract checks for plugin authors: the checks robench's own test suite runs, on your class::

    from robench.testing import check_attack, check_victim

    check_victim(MyNet, width=8)   # a Victim subclass (registered or not) or a registered name
    check_attack(MyAttack)         # an Attack subclass, a registered name or "torchattacks:PGD"

Both run every check on the plugin and raise :class:`ContractError` (an ``AssertionError``, so
pytest reports it as a test failure) naming the check that failed, what it observed and what to fix;
on success they return the names of the checks run. Keyword arguments are config overrides (use
small ones: the checks build the victim several times). The data is made here: random ntu25-shaped
clips with zero-padded tails and absent (all-zero) second bodies; no download, seconds on a CPU.

Victim checks (:data:`VICTIM_CHECKS`), on a model in eval mode whose BatchNorm statistics were
fitted to a few random clips in train mode:

- ``config``: ``Config`` is a frozen dataclass subclassing :class:`~robench.victim.VictimConfig`,
  every field has a default, there is an integer ``init_seed`` field, an unknown field raises
  :class:`~robench.errors.ConfigError`, and each ``invalid={field: value}`` example raises a
  ConfigError whose message names the field;
- ``seeded_init``: the same config gives identical weights whatever the global RNG; another
  ``init_seed`` gives different weights;
- ``output``: (N, num_classes) float32 logits, finite, not all ~0, varying with the clip (by more
  than 1e-3: the invariance checks compare at 1e-5), not probabilities, the same twice;
- ``input_gradient``: the logits are differentiable w.r.t. the input: finite, non-zero on the
  present coordinates, and nothing accumulates in the parameters' ``.grad``;
- ``batch_independence``: a sample's logits do not depend on the other samples of the batch;
- ``absent_body``: an input with fewer than ``num_persons`` bodies gives the same logits as the
  same input with the missing bodies present as all-zero bodies;
- ``variable_length``: clip lengths T = 16, 20 and 9 all work;
- ``input_validation``: wrong shapes raise :class:`~robench.errors.DataError` ("expected input");
- ``serialization``: the config survives a JSON round trip (checkpoint metadata), the state dict
  loaded into a model built with another ``init_seed`` and a pickled copy (what attack workers
  receive) both reproduce the logits.

Attack checks (:data:`ATTACK_CHECKS`), against :class:`TinyNet` victims/surrogates and
:func:`tiny_batch` data, with iteration counts lowered by :func:`small_config`:

- ``declaration``: ``knowledge`` is a :class:`~robench.access.Knowledge`, ``norms`` a non-empty
  subset of ``("linf", "l2")``, ``randomized`` / ``supports_targeted`` / ``ensemble`` bools,
  ``Config`` a frozen dataclass subclassing :class:`~robench.attack.AttackConfig` with a default for
  every field, the attack buildable from defaults, ``run`` written and ``__call__`` not overridden;
- ``threat_model``: for every declared norm: the input is unchanged, the result has the input's
  shape and dtype, is finite, passes ``threat.check``, keeps padding and absent bodies exactly
  zero, leaves the victim in eval mode and accumulates no gradient in it;
- ``determinism``: the same generator seed gives the same result; other seeds change it when
  ``randomized`` is True and never change it when it is False;
- ``targeted``: when ``supports_targeted``, targeted mode (with ``target`` labels) is valid too;
- ``constrained_threat``: a threat model with a joint mask, a frame window and bone-length
  preservation is respected.

Single checks, so that pytest reports each separately: ``@pytest.mark.parametrize("check", [n for
n, _ in VICTIM_CHECKS])`` on a test calling ``run_victim_check(MyNet, check, width=8)``.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import pickle
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from robench.access import Knowledge, NoBox, Query, QueryOracle, Transfer, WhiteBox
from robench.attack import ATTACKS, Attack, AttackConfig
from robench.config import make_config
from robench.data.skeleton import get_topology, presence_mask
from robench.errors import ConfigError, DataError
from robench.threat import ThreatModel
from robench.victim import VICTIMS, Victim, VictimConfig

__all__ = [
    "ATTACK_CHECKS", "EPS", "SMALL", "VICTIM_CHECKS", "AttackCase", "ContractError", "TinyNet",
    "VictimCase", "check_attack", "check_victim", "make_access", "run_attack_check",
    "run_victim_check", "small_config", "tiny_batch",
]  # fmt: skip


class ContractError(AssertionError):
    """A plugin broke its contract; the message names the check, what was seen and what to fix."""


def _require(ok: object, what: str) -> None:
    if not ok:
        raise ContractError(what)


def _close(a: torch.Tensor, b: torch.Tensor, what: str, tol: float = 1e-5) -> None:
    try:
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    except AssertionError as e:
        raise ContractError(f"{what} ({str(e).splitlines()[0]})") from None


def _run(kind: str, label: str, checks: tuple, hints: Mapping[str, str], name: str, case) -> None:
    fns = dict(checks)
    if name not in fns:
        raise ConfigError(f"expected a {kind} check in {sorted(fns)}, got {name!r}")
    head, fix = f"{kind} {label} failed contract check {name!r}:", f"\n  to fix: {hints[name]}"
    with torch.random.fork_rng(devices=[]):  # checks are reproducible and leave the RNG alone
        torch.manual_seed(0)
        try:
            fns[name](case)
        except ContractError as e:
            raise ContractError(f"{head} {e}{fix}") from None
        except Exception as e:  # noqa: BLE001 - a crash in plugin code is a failed check
            raise ContractError(f"{head} it raised {type(e).__name__}: {e}{fix}") from e


def _frozen_config(owner: type, base: type) -> dict[str, dataclasses.Field]:
    """The fields of ``owner.Config``, checked: a frozen dataclass subclassing ``base``, defaults."""
    cfg = owner.Config
    _require(
        isinstance(cfg, type) and issubclass(cfg, base) and dataclasses.is_dataclass(cfg),
        f"expected {owner.__name__}.Config to be a dataclass subclassing {base.__name__}, got {cfg!r}",
    )
    _require(cfg.__dataclass_params__.frozen, f"expected @dataclass(frozen=True) on {cfg.__name__}")
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for f in fields.values():
        has = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        _require(has, f"expected a default for every config field, got none for {f.name!r}")
    return fields


# ========================================================================================== victims
class VictimCase:
    """One victim class under test: its config overrides and invalid-value examples."""

    def __init__(
        self, victim: str | type, config: Mapping[str, Any], invalid: Mapping[str, Any] | None
    ) -> None:
        cls = VICTIMS.get(victim) if isinstance(victim, str) else victim
        if not (isinstance(cls, type) and issubclass(cls, Victim)):
            raise ContractError(
                f"expected a robench.Victim subclass or a registered victim name, got {victim!r}"
            )
        self.cls = cls
        name = getattr(cls, "registry_name", "")
        self.label = f"{name!r} ({cls.__name__})" if name else cls.__name__
        self.config = dict(config)
        self.invalid = dict(invalid or {})

    def make_config(self, **over: Any) -> VictimConfig:
        return make_config(self.cls.Config, {**self.config, **over}, source=f"{self.label} config")

    def build(self, **over: Any) -> Victim:
        return self.cls(self.make_config(**over))

    def prepared(self, **over: Any) -> Victim:
        """A built model whose BatchNorm statistics were fitted to random clips, in eval mode."""
        model = self.build(**over)
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:  # cumulative averages: the statistics of the clips, not of the init
            m.reset_running_stats()
            m.momentum = None
        model.train()
        with torch.no_grad():
            for s in range(3):
                model(self.clip(n=6, seed=100 + s))
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        return model.eval()

    def clip(self, n: int = 3, t: int = 16, seed: int = 0, m: int | None = None) -> torch.Tensor:
        """Random clips: sample 0 has a zero-padded tail, sample 1 an absent last body."""
        cfg = self.make_config()
        v = get_topology(cfg.topology).num_joints
        m = cfg.num_persons if m is None else m
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, cfg.in_channels, t, v, m, generator=g) * 0.3
        x[0, :, t - 4 :] = 0
        if m > 1 and n > 1:
            x[1, ..., m - 1] = 0
        return x


def _v_config(case: VictimCase) -> None:
    fields = _frozen_config(case.cls, VictimConfig)
    seed = fields.get("init_seed")
    ok = seed is not None and type(seed.default) is int
    _require(ok, f"expected an integer field `init_seed: int = 0` in {case.cls.Config.__name__}")
    case.cls.Config()  # the defaults are a valid config
    try:
        case.make_config(not_a_field=1)
    except ConfigError as e:
        _require("unknown field" in str(e), f"expected 'unknown field' in the error, got {e}")
    else:
        raise ContractError("expected ConfigError for an unknown config field, got none")
    for key, value in case.invalid.items():
        _require(key in fields, f"expected invalid examples to name config fields, got {key!r}")
        try:
            case.make_config(**{key: value})
        except ConfigError as e:
            _require(key in str(e), f"expected the ConfigError for {key}={value!r} to name it: {e}")
        else:
            raise ContractError(f"expected ConfigError for {key}={value!r}, got a valid config")


def _v_seeded_init(case: VictimCase) -> None:
    torch.manual_seed(1)
    a = case.build().state_dict()
    torch.manual_seed(2)  # another global RNG state: the weights must not depend on it
    b = case.build().state_dict()
    c = case.build(init_seed=case.make_config().init_seed + 1).state_dict()
    _require(a.keys() == b.keys() == c.keys(), "expected the same state-dict keys for each build")
    diff = sorted(k for k in a if not torch.equal(a[k], b[k]))
    _require(not diff, f"expected identical weights for one config, got {diff[:3]} differing")
    _require(
        any(not torch.equal(a[k], c[k]) for k in a),
        "expected other weights for another init_seed, got identical weights",
    )


def _v_output(case: VictimCase) -> None:
    model = case.prepared()
    x = case.clip()
    out = model(x)
    k = case.make_config().num_classes
    _require(out.shape == (3, k), f"expected logits of shape (3, {k}), got {tuple(out.shape)}")
    _require(out.dtype == torch.float32, f"expected float32 logits, got {out.dtype}")
    _require(torch.isfinite(out).all(), "expected finite logits, got NaN/inf")
    _require(out.abs().max() > 1e-3, "expected non-degenerate logits, got all |logit| <= 1e-3")
    spread = float((out - out[0]).detach().abs().max())  # the invariance checks compare at 1e-5
    _require(
        spread > 1e-3, f"expected logits that depend on the clip, got a spread of {spread:.2g}"
    )
    probs = (out >= 0).all() and torch.allclose(out.sum(1), torch.ones(3), atol=1e-4)
    _require(not probs, "expected raw logits, got rows of probabilities (remove the softmax)")
    _require(torch.equal(out, model(x)), "expected identical logits on a second call in eval mode")


def _v_input_gradient(case: VictimCase) -> None:
    model = case.prepared()
    x = case.clip().requires_grad_(True)
    out = model(x)
    _require(out.requires_grad, "expected logits attached to the autograd graph of the input")
    (grad,) = torch.autograd.grad(out[:, 0].sum(), x)
    present = (x != 0).detach()
    _require(torch.isfinite(grad).all(), "expected a finite input gradient, got NaN/inf")
    _require(grad[present].abs().sum() > 0, "expected a non-zero input gradient, got all zeros")
    grads = all(p.grad is None for p in model.parameters())
    _require(grads, "expected no gradient accumulated in the parameters by autograd.grad")


def _v_batch_independence(case: VictimCase) -> None:
    model = case.prepared()
    x = case.clip(n=3)
    together = model(x)
    for i in range(3):
        _close(model(x[i : i + 1]), together[i : i + 1], f"expected sample {i} alone = in a batch")
    x2 = x.clone()
    x2[1:] = case.clip(n=2, seed=7)
    _close(model(x2)[0], together[0], "expected sample 0 unchanged when the others change")


def _v_absent_body(case: VictimCase) -> None:
    model = case.prepared()
    x = case.clip()
    if x.shape[4] < 2:
        return  # num_persons == 1: no body can be absent
    x[..., 1:] = 0  # every body but the first absent
    out_all = model(x)
    out_one = model(x[..., :1].contiguous())  # M = 1: the victim pads with absent bodies
    k = case.make_config().num_classes
    _require(out_one.shape == (3, k), f"expected ({3}, {k}) for M = 1, got {tuple(out_one.shape)}")
    _require(torch.isfinite(out_one).all(), "expected finite logits for M = 1, got NaN/inf")
    _close(out_one, out_all, "expected the same logits for M = 1 as with all-zero extra bodies")


def _v_variable_length(case: VictimCase) -> None:
    model = case.prepared()
    k = case.make_config().num_classes
    for t in (16, 20, 9):
        out = model(case.clip(t=t))
        _require(out.shape == (3, k), f"expected (3, {k}) for T = {t}, got {tuple(out.shape)}")
        _require(torch.isfinite(out).all(), f"expected finite logits for T = {t}, got NaN/inf")


def _v_input_validation(case: VictimCase) -> None:
    model = case.build()
    cfg = model.config
    c, v, m = cfg.in_channels, model.topology.num_joints, cfg.num_persons
    shapes = [(2, c, 16, v - 1, m), (2, c - 1, 16, v, m), (2, c, 16, v, m + 1), (2, c, 16, v)]
    for shape in shapes:
        try:
            model(torch.zeros(shape))
        except DataError as e:
            _require("expected input" in str(e), f"expected 'expected input' in the error: {e}")
        else:
            raise ContractError(f"expected DataError for input shape {shape}, got logits")


def _v_serialization(case: VictimCase) -> None:
    model = case.prepared()
    cfg = model.config
    text = json.dumps(cfg.to_dict())
    back = case.cls.Config(**json.loads(text))
    _require(back == cfg, f"expected the config to survive a JSON round trip, got {back} != {cfg}")
    x = case.clip()
    out = model(x)
    other = case.build(init_seed=cfg.init_seed + 1)
    other.load_state_dict(model.state_dict(), strict=True)
    _close(other.eval()(x), out, "expected the state dict to determine the logits")
    buf = io.BytesIO()
    pickle.dump(model, buf)
    _close(pickle.loads(buf.getvalue())(x), out, "expected a pickled copy to give the same logits")
    _close(copy.deepcopy(model)(x), out, "expected a deep copy to give the same logits")


VICTIM_CHECKS: tuple[tuple[str, Callable[[VictimCase], None]], ...] = (
    ("config", _v_config),
    ("seeded_init", _v_seeded_init),
    ("output", _v_output),
    ("input_gradient", _v_input_gradient),
    ("batch_independence", _v_batch_independence),
    ("absent_body", _v_absent_body),
    ("variable_length", _v_variable_length),
    ("input_validation", _v_input_validation),
    ("serialization", _v_serialization),
)

VICTIM_HINTS: dict[str, str] = {
    "config": "declare `Config`, a @dataclass(frozen=True) subclassing robench.VictimConfig with a "
    "default for every field and `init_seed: int = 0`; check values in `__post_init__` and raise "
    "robench.errors.ConfigError naming the field",
    "seeded_init": "draw every initial weight from `torch.Generator().manual_seed(config.init_seed)` "
    "(`nn.init.normal_(w, 0, 0.02, generator=g)`), never from the global RNG",
    "output": "return raw logits (N, num_classes) in float32 from `logits(x)`: no softmax, no NumPy, "
    "no randomness in eval mode",
    "input_gradient": "keep `logits` differentiable in x: no torch.no_grad, .detach(), .numpy(), "
    "argmax or rounding on the input path, no .backward() inside the model",
    "batch_independence": "never mix samples: in eval mode use BatchNorm's running statistics, "
    "no statistics over the batch dimension",
    "absent_body": "first pad x to config.num_persons bodies with all-zero bodies "
    "(torch.cat([x, x.new_zeros(*x.shape[:4], num_persons - M)], dim=4)) and treat them like "
    "any other body",
    "variable_length": "accept any clip length T >= 9: pool over time instead of flattening T",
    "input_validation": "do not override `forward`: Victim.forward checks the input shape "
    "(N, in_channels, T, V, <= num_persons) before calling your `logits`",
    "serialization": "keep config values JSON values (a tuple field turns the list JSON gives back "
    "into a tuple in __post_init__), every tensor that matters in parameters or persistent "
    "buffers, and the class importable at module top level (it is pickled to attack workers)",
}


def run_victim_check(
    victim: str | type, check: str, /, *, invalid: Mapping[str, Any] | None = None, **config: Any
) -> None:
    """Run one victim check by name (see :data:`VICTIM_CHECKS`); raises :class:`ContractError`."""
    case = VictimCase(victim, config, invalid)
    _run("victim", case.label, VICTIM_CHECKS, VICTIM_HINTS, check, case)


def check_victim(
    victim: str | type,
    /,
    *,
    invalid: Mapping[str, Any] | None = None,
    checks: Iterable[str] | None = None,
    **config: Any,
) -> list[str]:
    """Run every victim check (or those named in ``checks``) on ``victim``: a Victim subclass or a
    registered name. ``config`` overrides the Config defaults; ``invalid`` maps fields to values
    the Config must refuse. Raises :class:`ContractError` at the first failure; returns the names."""
    case = VictimCase(victim, config, invalid)
    names = [n for n, _ in VICTIM_CHECKS] if checks is None else list(checks)
    for name in names:
        _run("victim", case.label, VICTIM_CHECKS, VICTIM_HINTS, name, case)
    return names


# ========================================================================================== attacks
T, V, M, K = 8, 25, 2, 4
EPS = {"linf": 0.01, "l2": 0.1}
# Small values for iteration-count fields, applied only when the attack's Config has the field and
# only when they lower an integer default (so any attack runs fast here).
SMALL = {
    "steps": 3, "iterations": 3, "restarts": 1, "n_restarts": 1, "epochs": 1, "ig_steps": 3,
    "inner_steps": 2, "d_steps": 1, "samples": 2, "num_samples": 2, "n_samples": 2, "heads": 2,
    "snapshots": 3, "post_steps": 2, "pretrain_epochs": 1, "queries": 60, "max_queries": 60,
    "budget": 60, "max_iter": 3, "spherical_trials": 2, "eot_iter": 1, "clusters": 4,
    "n_clusters": 4, "kmeans_iters": 3, "projection_every": 2,
}  # fmt: skip


class TinyNet(nn.Module):
    """Victim-like: (N, 3, 8, 25, 2) -> (N, 4) logits through flatten, linear, tanh, linear.

    The tanh makes gradients depend on the point, so random starts matter (on a linear model an
    attack's first sign step lands on the same corner from any start).
    """

    def __init__(self, seed: int, hidden: int = 16) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc1 = nn.Linear(3 * T * V * M, hidden)
        self.fc2 = nn.Linear(hidden, K)
        with torch.no_grad():
            for fc, scale in ((self.fc1, 0.1), (self.fc2, 1.0)):
                fc.weight.copy_(torch.randn(fc.weight.shape, generator=g) * scale)
                fc.bias.zero_()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


def tiny_batch(n: int = 6, seed: int = 0, classes: int = K) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): clips (n, 3, 8, 25, 2) with zero-padded tails and, in even samples, an absent second
    body; labels ``i % classes``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, T, V, M, generator=g) * 0.3
    lengths = torch.tensor([T, T - 2, T - 3, T, T - 1, T - 4] * (n // 6 + 1))[:n]
    x = x * (torch.arange(T)[None, :] < lengths[:, None]).view(n, 1, T, 1, 1)
    x[0::2, :, :, :, 1] = 0
    return x, torch.arange(n) % classes


def small_config(cls: type) -> dict[str, Any]:
    """Overrides lowering the iteration-count fields of ``cls.Config`` to the :data:`SMALL` values."""
    out = {}
    for f in dataclasses.fields(cls.Config):
        if f.name in SMALL and type(f.default) is int and SMALL[f.name] < f.default:
            out[f.name] = SMALL[f.name]
    return out


def make_access(cls: type, model: nn.Module, x: torch.Tensor):
    """The access of ``cls.knowledge``: white-box ``model``; transfer two TinyNets and labelled data;
    query an oracle on ``model`` (``cls.oracle_mode``, default "decision"); no-box unlabelled data, a
    tiny untrained manifold and ``x`` as the attack set."""
    level = cls.knowledge
    if level is Knowledge.WHITE_BOX:
        return WhiteBox(model)
    if level is Knowledge.TRANSFER:
        tx, ty = tiny_batch(12, seed=5)
        return Transfer([TinyNet(seed=1), TinyNet(seed=2)], tx, ty)
    if level is Knowledge.QUERY:
        mode = getattr(cls, "oracle_mode", "decision")
        return Query(QueryOracle(model, x.shape[0], budget=10_000, mode=mode))
    if level is Knowledge.NO_BOX:
        from robench.manifold.encoders import graph_encoder  # an untrained tiny manifold

        return NoBox(tiny_batch(12, seed=7)[0], graph_encoder(dim=8, width=4, depth=1).eval(), x)
    raise ContractError(f"expected a Knowledge level, got {level!r}")


class AttackCase:
    """One attack under test: how to build it (class, registered name or family member)."""

    def __init__(self, attack: str | type, config: Mapping[str, Any]) -> None:
        member = None
        if isinstance(attack, str):
            fam = ATTACKS.family(attack)
            cls, member = fam if fam is not None else (ATTACKS.get(attack), None)
        else:
            cls = attack
        if not (isinstance(cls, type) and issubclass(cls, Attack)):
            raise ContractError(
                f"expected a robench.Attack subclass or a registered attack name, got {attack!r}"
            )
        self.cls, self.member = cls, member
        name = attack if isinstance(attack, str) else getattr(cls, "registry_name", "")
        self.label = f"{name!r} ({cls.__name__})" if name else cls.__name__
        self.config = dict(config)

    def make(self, **over: Any) -> Attack:
        """The attack with :func:`small_config`, then the case's config, then ``over`` applied."""
        kw = {**small_config(self.cls), **self.config, **over}
        return self.cls(**kw) if self.member is None else self.cls(self.member, **kw)

    def once(self, norm: str, seed: int, threat: ThreatModel | None = None, **over: Any):
        """(attack, model, threat, reference, x, x_adv) of one call on :func:`tiny_batch`."""
        attack = self.make(**over)
        model = TinyNet(seed=0)
        x, y = tiny_batch()
        reference = x.clone()
        threat = threat or ThreatModel(norm=norm, eps=EPS[norm])
        target = (y + 1) % K if attack.config.targeted else None
        g = torch.Generator().manual_seed(seed)
        x_adv = attack(make_access(self.cls, model, x), x, y, threat, g, target)
        return attack, model, threat, reference, x, x_adv


def _a_declaration(case: AttackCase) -> None:
    cls = case.cls
    _frozen_config(cls, AttackConfig)
    level = getattr(cls, "knowledge", None)
    _require(isinstance(level, Knowledge), f"expected knowledge = Knowledge.<LEVEL>, got {level!r}")
    for attr in ("randomized", "supports_targeted", "ensemble"):
        value = getattr(cls, attr, None)
        _require(isinstance(value, bool), f"expected a bool class attribute {attr}, got {value!r}")
    _require(cls.run is not Attack.run, f"expected {cls.__name__} to implement run(...)")
    _require(cls.__call__ is Attack.__call__, f"expected no __call__ override in {cls.__name__}")
    attack = case.make() if case.member is not None else cls()  # buildable with defaults only
    norms = attack.norms
    _require(
        isinstance(norms, tuple) and norms and set(norms) <= {"linf", "l2"},
        f"expected norms a non-empty tuple within ('linf', 'l2'), got {norms!r}",
    )


def _check_result(norm: str, result: tuple, tag: str = "") -> None:
    attack, model, threat, reference, x, x_adv = result
    at = f" ({norm}{tag})"
    _require(torch.equal(x, reference), f"expected the input batch unchanged{at}")
    _require(x_adv.shape == x.shape, f"expected shape {tuple(x.shape)}, got {tuple(x_adv.shape)}")
    _require(x_adv.dtype == x.dtype, f"expected dtype {x.dtype}, got {x_adv.dtype}{at}")
    _require(torch.isfinite(x_adv).all(), f"expected finite coordinates, got NaN/inf{at}")
    violations = threat.check(x, x_adv)
    _require(violations == [], f"expected no threat-model violation{at}, got {violations}")
    pad = (~presence_mask(x)).expand_as(x)
    _require((x_adv[pad] == 0).all(), f"expected padding / absent bodies exactly zero{at}")
    _require(not model.training, f"expected the victim left in eval mode{at}")
    grads = all(p.grad is None for p in model.parameters())
    _require(grads, f"expected no gradient accumulated in the victim's parameters{at}")


def _a_threat_model(case: AttackCase) -> None:
    for norm in case.make().norms:
        _check_result(norm, case.once(norm, seed=0))


def _a_determinism(case: AttackCase) -> None:
    norm = case.make().norms[0]
    attack, _, _, _, _, a = case.once(norm, seed=0)
    b = case.once(norm, seed=0)[-1]
    others = [case.once(norm, seed=s)[-1] for s in (1, 2)]
    _require(torch.equal(a, b), "expected the same result for the same generator seed")
    changed = any(not torch.equal(a, c) for c in others)
    if attack.randomized:
        _require(changed, "declared randomized = True, but seeds 0, 1, 2 give the same result")
    else:
        _require(not changed, "declared randomized = False, but the result depends on the seed")


def _a_targeted(case: AttackCase) -> None:
    if not case.cls.supports_targeted:
        return
    for norm in case.make().norms:
        _check_result(norm, case.once(norm, seed=0, targeted=True), ", targeted")


def _a_constrained_threat(case: AttackCase) -> None:
    for norm in case.make().norms:
        threat = ThreatModel(
            norm=norm, eps=EPS[norm], joints=tuple(range(0, V, 2)), frames=(1, T - 1)
        )
        _check_result(norm, case.once(norm, seed=0, threat=threat), ", joints+frames")
        bones = ThreatModel(norm=norm, eps=EPS[norm], preserve_bones=True, bone_tolerance=0.05)
        _check_result(norm, case.once(norm, seed=0, threat=bones), ", preserve_bones")


ATTACK_CHECKS: tuple[tuple[str, Callable[[AttackCase], None]], ...] = (
    ("declaration", _a_declaration),
    ("threat_model", _a_threat_model),
    ("determinism", _a_determinism),
    ("targeted", _a_targeted),
    ("constrained_threat", _a_constrained_threat),
)

ATTACK_HINTS: dict[str, str] = {
    "declaration": "set class attributes knowledge (robench.Knowledge), norms (within ('linf', "
    "'l2')), randomized / supports_targeted / ensemble (bools) and Config (a frozen dataclass "
    "subclassing robench.AttackConfig, a default for every field); write run(), never __call__",
    "threat_model": "build x_adv on new tensors (never edit x in place), end run() with "
    "threat.project(x, x_adv); use the victim as given (no .train()) and take gradients with "
    "torch.autograd.grad w.r.t. the input only (no .backward())",
    "determinism": "draw every random number from the `generator` argument (generator=...), never "
    "from the global RNG; declare randomized = True exactly when the result depends on it",
    "targeted": "with config.targeted, move towards `target` (flip the loss sign) and project as "
    "usual; declare supports_targeted = False if the attack cannot",
    "constrained_threat": "mask each step with threat.allowed_mask(x) and finish with "
    "threat.project(x, x_adv), which enforces joint/frame masks and bone lengths",
}


def run_attack_check(attack: str | type, check: str, /, **config: Any) -> None:
    """Run one attack check by name (see :data:`ATTACK_CHECKS`); raises :class:`ContractError`."""
    case = AttackCase(attack, config)
    _run("attack", case.label, ATTACK_CHECKS, ATTACK_HINTS, check, case)


def check_attack(
    attack: str | type, /, *, checks: Iterable[str] | None = None, **config: Any
) -> list[str]:
    """Run every attack check (or those named in ``checks``) on ``attack``: an Attack subclass, a
    registered name or ``family:MEMBER``. ``config`` overrides the Config (after
    :func:`small_config`). Raises :class:`ContractError` at the first failure; returns the names."""
    case = AttackCase(attack, config)
    names = [n for n, _ in ATTACK_CHECKS] if checks is None else list(checks)
    for name in names:
        _run("attack", case.label, ATTACK_CHECKS, ATTACK_HINTS, name, case)
    return names
