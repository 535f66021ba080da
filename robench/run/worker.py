"""Attack workers: plugin code runs in a process of its own that holds only its grant.

The trust boundary of robench. The harness process keeps the pristine victims, the threat models,
the query oracles and the store; an attack runs in a *worker*: a process forked from a clean
``forkserver`` (which imported torch and the plugins, and never saw a victim, a results folder or
the harness's objects), in a fresh temporary working folder, with its global random number
generators freshly seeded. The worker receives, pickled, exactly its access object's contents:

- white-box: a copy of the victim module;
- transfer: copies of the surrogate modules the cell declares and the attacker's labelled data;
- no-box: the attacker's unlabelled data;
- query: a :class:`RemoteOracle`, a proxy whose every call is a message to the harness, where the
  real :class:`~robench.access.QueryOracle` (model, mode, budget, counters) lives.

It runs the attack through the base class's ``Attack.__call__`` (the class's own ``__call__`` is
never used) and sends each batch's adversarial examples back as a ``torch.save`` blob that the
harness loads with ``weights_only=True``: plain tensors and containers only, no code, no Tensor
subclasses. Whatever the plugin does to its copies (hooks, patched ``forward``, edited buffers,
patched threat checks, mutated threat models, ``sys.exit``) stays in the worker; the harness judges
the returned tensors with its own objects (:mod:`robench.run.harness`).

Messages (worker -> harness): ``{"kind": "batch", "i", "x_adv"}``, ``{"kind": "query", "i", "x",
"index"}``, ``{"kind": "remaining", "i"}``, ``{"kind": "done"}``, ``{"kind": "invalid" | "error",
"message"}``. A worker that exits without ``done`` makes the cell an ``error``.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

import torch

from robench.errors import QueryBudgetExceeded, RobenchError

_CTX: Any = None


class WorkerError(Exception):
    """The attack crashed or its worker died: the cell is an ``error`` (``str`` is the reason)."""


class PluginRefused(RobenchError):
    """The attack raised a RobenchError in its worker (access, threat, config): the cell is invalid."""


@dataclass
class AttackJob:
    """Everything a worker receives. ``batches`` are ``(x, y, target | None)``; ``query`` per batch
    ``(budget, mode)`` for query attacks (the oracles stay in the harness)."""

    attack_cls: type
    attack_config: Any
    knowledge: str
    threat: Any
    seed: int
    device: str
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
    models: list[torch.nn.Module] = field(default_factory=list)
    surrogate_ids: tuple[str, ...] = ()
    train_x: torch.Tensor | None = None
    train_y: torch.Tensor | None = None
    data: torch.Tensor | None = None
    manifold: torch.nn.Module | None = None
    attack_set: torch.Tensor | None = None  # no-box: every clip of the cell, unlabelled
    query: list[tuple[int, str]] = field(default_factory=list)
    threads: int = 1


# glibc malloc settings: keep freed memory in the heap instead of returning it to the kernel after
# every tensor, so neither the harness nor a short-lived worker pays page faults for its activations
# on every iteration (measured on ST-GCN, 29 clips: the first forward+backward of a fresh process
# 0.61 s with glibc's defaults, 0.39 s with these; later ones 0.33-0.36 s either way).
_MALLOPT = {
    -1: (1 << 31) - 1,
    -2: 512 << 20,
    -3: 32 << 20,
}  # M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD
_WORKER_MALLOC = {
    "MALLOC_TRIM_THRESHOLD_": str(_MALLOPT[-1]),
    "MALLOC_TOP_PAD_": str(_MALLOPT[-2]),
    "MALLOC_MMAP_THRESHOLD_": str(_MALLOPT[-3]),
}


def tune_malloc() -> bool:
    """Apply the settings above to this process (glibc only; a no-op elsewhere). True if applied."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(name)
        return all(libc.mallopt(k, v) == 1 for k, v in _MALLOPT.items())
    except (OSError, AttributeError):
        return False


def _context() -> Any:
    global _CTX
    if _CTX is None:
        from multiprocessing import forkserver

        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["robench.run._preload"])
        saved = {k: os.environ.get(k) for k in _WORKER_MALLOC}
        os.environ.update({k: saved[k] or v for k, v in _WORKER_MALLOC.items()})
        try:
            forkserver.ensure_running()  # started now, with these variables, once per process
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        _CTX = ctx
    return _CTX


def _dump(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _load_untrusted(raw: bytes) -> dict[str, Any]:
    """A worker's message: tensors, numbers, strings and containers only (``weights_only``)."""
    try:
        msg = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything unloadable is a refused message
        raise PluginRefused(
            f"expected plain tensors from the attack worker, got an unloadable message ({type(e).__name__})"
        ) from None
    if not isinstance(msg, dict) or not isinstance(msg.get("kind"), str):
        raise PluginRefused("expected a message dict with a 'kind' from the attack worker")
    return msg


# ---------------------------------------------------------------------- worker side
class RemoteOracle:
    """The worker's view of a query oracle: every call is answered by the harness, which counts the
    queries, enforces the budget and answers labels (``decision``) or scores (``score``) as the cell
    declares. ``mode`` and ``budget`` are read-only copies for the attack's information."""

    def __init__(self, conn: Any, batch: int, budget: int, mode: str) -> None:
        self._conn, self._batch = conn, batch
        self._budget, self._mode = budget, mode

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def budget(self) -> int:
        return self._budget

    def _ask(self, msg: dict[str, Any]) -> torch.Tensor:
        self._conn.send_bytes(_dump({**msg, "i": self._batch}))
        reply = torch.load(io.BytesIO(self._conn.recv_bytes()), weights_only=True)
        if reply["kind"] == "refused":
            raise QueryBudgetExceeded(reply["message"])
        return reply["out"]

    def __call__(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if index is None:
            index = torch.arange(x.shape[0])
        return self._ask(
            {"kind": "query", "x": x.detach().cpu().clone(), "index": index.detach().cpu().clone()}
        )

    def remaining(self) -> torch.Tensor:
        return self._ask({"kind": "remaining"})

    @property
    def queries(self) -> torch.Tensor:
        return self._budget - self.remaining()


def _access(job: AttackJob, conn: Any, i: int) -> Any:
    from robench.access import NoBox, Query, Transfer, WhiteBox

    if job.knowledge == "white-box":
        return WhiteBox(job.models[0])
    if job.knowledge == "transfer":
        return Transfer(job.models, job.train_x, job.train_y, surrogate_ids=job.surrogate_ids)
    if job.knowledge == "no-box":
        return NoBox(job.data, job.manifold, job.attack_set)
    budget, mode = job.query[i]
    return Query(RemoteOracle(conn, i, budget, mode))


def _reseed_globals() -> None:
    """Fresh global RNG state per worker: an attack that draws from torch's global generator instead
    of the one it is given is not reproducible, and the determinism spot check sees it."""
    seed = int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1)
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (1 << 32))
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass


def _worker_main(conn: Any) -> None:  # pragma: no cover - runs in the worker process
    from robench.attack import Attack

    def send(msg: dict[str, Any]) -> None:
        conn.send_bytes(_dump(msg))

    workdir = tempfile.mkdtemp(prefix="robench-attack-")
    try:
        job: AttackJob = torch.load(io.BytesIO(conn.recv_bytes()), weights_only=False)
        os.chdir(workdir)
        _reseed_globals()
        torch.set_num_threads(max(1, job.threads))
        attack = job.attack_cls(config=job.attack_config)
        gen = torch.Generator(device=job.device).manual_seed(job.seed)
        for i, (xb, yb, tb) in enumerate(job.batches):
            access = _access(job, conn, i)
            x_adv = Attack.__call__(attack, access, xb, yb, job.threat, gen, tb)
            send({"kind": "batch", "i": i, "x_adv": x_adv.detach().cpu()})
        send({"kind": "done"})
    except RobenchError as e:
        send({"kind": "invalid", "message": f"{type(e).__name__}: {e}"})
    except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
        send({"kind": "error", "message": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------- harness side
def run_job(job: AttackJob, oracles: list[Any] | None = None) -> list[torch.Tensor]:
    """Run ``job`` in a fresh worker; returns one x_adv per batch (plain CPU tensors).

    ``oracles`` (query attacks): one :class:`~robench.access.QueryOracle` per batch, owned by the
    caller, which reads their counters afterwards. Raises :class:`PluginRefused` (the cell is
    invalid) or :class:`WorkerError` (the cell is an error).
    """
    ctx = _context()
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
    proc.start()
    child.close()
    outs: dict[int, torch.Tensor] = {}
    done = False
    try:
        parent.send_bytes(_dump(job))
        while True:
            try:
                raw = parent.recv_bytes()
            except (EOFError, OSError):
                break
            msg = _load_untrusted(raw)
            kind = msg["kind"]
            if kind == "done":
                done = True
                break
            if kind == "invalid":
                raise PluginRefused(str(msg.get("message", "")).partition(": ")[2] or "refused")
            if kind == "error":
                raise WorkerError(str(msg.get("message", "attack error")))
            i = msg.get("i")
            if not isinstance(i, int) or not 0 <= i < len(job.batches) or i != len(outs):
                raise PluginRefused(f"expected batch {len(outs)} from the attack worker, got {i!r}")
            if kind == "batch":
                outs[i] = msg.get("x_adv")
            elif kind in ("query", "remaining") and oracles is not None:
                parent.send_bytes(_dump(_answer(oracles[i], msg)))
            else:
                raise PluginRefused(
                    f"expected a known message from the attack worker, got {kind!r}"
                )
    finally:
        parent.close()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if not done or len(outs) != len(job.batches):
        raise WorkerError(
            f"attack worker exited with code {proc.exitcode} after {len(outs)} of {len(job.batches)} batches"
        )
    return [outs[i] for i in range(len(job.batches))]


def _answer(oracle: Any, msg: dict[str, Any]) -> dict[str, Any]:
    """The harness's answer to a worker's oracle request."""
    if msg["kind"] == "remaining":
        return {"kind": "answer", "out": oracle.remaining()}
    x, index = msg.get("x"), msg.get("index")
    if not isinstance(x, torch.Tensor) or not isinstance(index, torch.Tensor):
        return {"kind": "refused", "message": "expected tensors x and index in a query"}
    try:
        return {"kind": "answer", "out": oracle(x, index).cpu()}
    except Exception as e:  # noqa: BLE001 - a malformed query is refused, the harness goes on
        return {"kind": "refused", "message": f"{type(e).__name__}: {e}"}
