"""The harness's verdict on what an attack worker returned: the last judge of every cell.

Runs in the harness process with the harness's own objects (its threat model, its clean batch),
which no plugin can reach (:mod:`robench.run.worker`). A returned batch is accepted only if

- it is a plain ``torch.Tensor`` (no subclass) of the clean batch's shape and dtype, finite;
- the harness's :meth:`~robench.threat.ThreatModel.check` finds no violation;
- and, after scoring, the stored per-sample L∞ / L2 of the threat's norm is within ε (with the
  check's tolerance): a second, independent reading of the same bound from the stored numbers.

The harness's own models are fingerprinted when loaded (:func:`fingerprint`) and verified before
every scoring. Every cell is also refused when one of the functions the verdict depends on (the threat check, the
scoring, the store writer, ``torch.equal``/``torch.load``...) was replaced in the harness process
since the harness was imported (:func:`verify_guards`). An attack class that overrides the final ``Attack.__call__`` is refused before it runs, and an
attack that declares ``randomized = False`` is spot-checked: the first samples of its first batch
are attacked twice, in two fresh single-threaded workers, under two different generator seeds, and
must come back bit for bit identical. Single-threaded because a thread-parallel CPU reduction may
round differently from one worker process to the next: FGSM on the CTR-GCN of the zoo, two clips,
came back with 3 of 19,200 signs flipped in 2 of 8 two-thread workers and in none of 12
one-thread ones.
"""

from __future__ import annotations

from typing import Any

import torch

from robench.errors import ThreatViolation
from robench.threat import ABS_TOL, REL_TOL

SPOT_SAMPLES = 2  # samples of the determinism spot check
SPOT_THREADS = 1  # torch threads of each spot-check worker


class HarnessCompromised(RuntimeError):
    """A function the harness judges with was replaced in the harness process (for example by a
    plugin module's import-time code): nothing it scores can be trusted; the cell is an error."""


def _guarded(harness: dict[str, Any]) -> dict[str, Any]:
    """The functions the verdict depends on, looked up where the harness looks them up
    (``harness``: the harness module's globals)."""
    from robench.run.store import Store
    from robench.threat import ThreatModel

    out = {f"ThreatModel.{k}": getattr(ThreatModel, k) for k in ("check", "allowed_mask", "_norms")}
    out.update({f"harness.{k}": harness.get(k) for k in (
        "sample_metrics", "judge_batch", "check_stored_norms", "compare_spot", "fingerprint",
        "refuse_overridden_call", "run_job")})  # fmt: skip
    out["Store.write_cell"] = Store.write_cell
    out.update({f"torch.{k}": getattr(torch, k) for k in ("equal", "load", "isfinite")})
    out.update({f"judge.{k}": globals()[k] for k in ("judge_batch", "check_stored_norms")})
    return out


_SNAPSHOT: dict[str, Any] = {}


def snapshot_guards(harness: dict[str, Any]) -> None:
    """Record the guarded functions (the harness calls this when it is imported, before any
    plugin of the registries is loaded by a benchmark)."""
    if not _SNAPSHOT:
        _SNAPSHOT.update(_guarded(harness))


def verify_guards(harness: dict[str, Any]) -> None:
    """Raise :class:`HarnessCompromised` naming every guarded function replaced since the snapshot."""
    now = _guarded(harness)
    changed = sorted(k for k, v in _SNAPSHOT.items() if now.get(k) is not v)
    if changed:
        raise HarnessCompromised(
            f"expected the harness's own judging functions, got {', '.join(changed)} replaced "
            "in the harness process (a plugin's import-time code?); refusing to score"
        )


def refuse_overridden_call(cls: type) -> None:
    """``Attack.__call__`` is final: a class that overrides it is refused (the worker never calls a
    class's own ``__call__``, but the declaration is a lie about its checks)."""
    from robench.attack import Attack

    if cls.__call__ is not Attack.__call__:
        raise ThreatViolation(
            f"expected the final Attack.__call__, got it overridden by attack class {cls.__qualname__!r}"
        )


def judge_batch(threat: Any, x: torch.Tensor, x_adv: Any, name: str) -> torch.Tensor:
    """``x_adv`` if it is a plain tensor inside ``threat`` around ``x``; else ThreatViolation."""
    if type(x_adv) is not torch.Tensor:
        raise ThreatViolation(
            f"expected a plain torch.Tensor from attack {name!r}, got {type(x_adv).__name__}"
        )
    if x_adv.shape != x.shape or x_adv.dtype != x.dtype:
        raise ThreatViolation(
            f"expected x_adv of shape {tuple(x.shape)} and dtype {x.dtype}, got "
            f"{tuple(x_adv.shape)} {x_adv.dtype} from attack {name!r}"
        )
    violations = threat.check(x.detach().cpu(), x_adv)
    if violations:
        raise ThreatViolation(
            f"attack {name!r} left the threat model: " + "; ".join(str(v) for v in violations)
        )
    return x_adv


def check_stored_norms(threat: Any, cols: dict[str, torch.Tensor], attacked: torch.Tensor) -> None:
    """The stored per-sample norm of the threat's kind must be within ε (check's tolerance)."""
    if attacked.numel() == 0:
        return
    vals = cols[threat.norm][attacked.to(cols[threat.norm].device)]
    limit = threat.eps * (1 + REL_TOL) + ABS_TOL
    worst = float(vals.max())
    if not worst <= limit:
        raise ThreatViolation(
            f"expected stored {threat.norm} <= eps {threat.eps:.6g}, got {worst:.6g} in the cell's sample rows"
        )


def compare_spot(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    """Two runs of a deterministic attack under different generator seeds must agree bit for bit."""
    if not torch.equal(a, b):
        diff = float((a - b).abs().max())
        raise ThreatViolation(
            f"expected identical examples under another generator seed (attack {name!r} declares "
            f"randomized=False), got a max difference of {diff:.3g}"
        )


def fingerprint(model: torch.nn.Module) -> tuple:
    """Everything of a module an attack could tamper with to fake a prediction: its class, the
    instance attributes of every submodule (keys and object identities, hooks dicts included, so a
    replaced ``forward`` or a registered hook shows), and the bytes of every parameter and buffer."""
    mods = []
    for name, mod in model.named_modules():
        attrs = tuple(
            sorted(
                (k, id(v), len(v) if isinstance(v, dict) and "hook" in k else -1)
                for k, v in vars(mod).items()
                if k not in ("_parameters", "_buffers", "_modules", "training")
            )
        )
        mods.append((name, type(mod), mod.training, attrs))
    tensors = tuple(
        (n, t.dtype, tuple(t.shape), t.detach().cpu().clone())
        for n, t in (*model.named_parameters(), *model.named_buffers())
    )
    return tuple(mods), TensorTuple(tensors)


class TensorTuple(tuple):
    """A tuple of (name, dtype, shape, tensor) compared bit for bit."""

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, tuple)
            and len(self) == len(other)
            and all(
                a[:3] == b[:3] and torch.equal(a[3], b[3]) for a, b in zip(self, other, strict=True)
            )
        )

    __hash__ = tuple.__hash__
