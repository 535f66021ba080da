"""Content-addressed cache of post-training artefacts (TASAR heads, BA posteriors).

Cache (:func:`cached_artifacts`)
    Post-training artefacts are stored under ``cache_dir()`` (``$ROBENCH_CACHE`` or
    ``~/.cache/robench``, overridable per call) in ``posterior/<kind>-<key>.pt`` (tensors only, loaded
    with ``weights_only=True``) plus a ``.json`` with the key's inputs; the key is the sha256 of the
    surrogate's weights (:func:`module_sha256`), the data fingerprint (:func:`tensor_fingerprint`),
    the build config, the code version (:func:`code_version`) and a format version. Post-training seeds its own generator from the config, so
    an artefact does not depend on the cell seed and is shared by every cell and batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robench.io import atomic_write, atomic_write_text

FORMAT = 1


MEMO_SIZE = 4


_MEMO: dict[str, dict[str, Tensor]] = {}


def module_sha256(module: nn.Module) -> str:
    """sha256 over the class name and every state-dict entry (name, dtype, shape, bytes), sorted."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tensor_fingerprint(*tensors: Tensor) -> str:
    """sha256 over the dtype, shape and bytes of each tensor (the attacker's data x, y)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def code_version(*objs: Any) -> str:
    """sha256 of the source files that define ``objs`` (classes, functions or modules) and of every
    module of :mod:`robench.ops` (the building blocks they share), so a changed attack, sampler or
    motion model never reuses an artefact or a cached generation made by the old code."""
    import inspect

    import robench.ops as ops_pkg

    files = {Path(inspect.getfile(o)).resolve() for o in objs}
    files |= {p.resolve() for p in Path(ops_pkg.__file__).parent.glob("*.py")}
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The artefact cache folder: ``override``, else ``$ROBENCH_CACHE``, else ``~/.cache/robench``."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("ROBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "robench"


def artifact_key(kind: str, parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``{kind, format, **parts}``."""
    blob = json.dumps(
        {"kind": kind, "format": FORMAT, **parts}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def artifact_path(
    kind: str, parts: dict[str, Any], directory: str | os.PathLike | None = None
) -> Path:
    return cache_dir(directory) / "posterior" / f"{kind}-{artifact_key(kind, parts)[:32]}.pt"


def clear_memory_cache() -> None:
    """Forget the artefacts kept in memory (the files on disk stay)."""
    _MEMO.clear()


def cached_artifacts(
    kind: str,
    parts: dict[str, Any],
    build: Callable[[], dict[str, Tensor]],
    directory: str | os.PathLike | None = None,
    use_cache: bool = True,
    required: Iterable[str] = (),
) -> dict[str, Tensor]:
    """The artefacts of ``(kind, parts)``: from memory, else from the cache file, else ``build()``.

    A built artefact is written atomically (``.pt`` of tensors + ``.json`` metadata). An unreadable
    cache file, or one without every ``required`` key, is rebuilt and overwritten. ``use_cache=False``
    always builds and writes nothing. The last ``MEMO_SIZE`` artefacts are also kept in memory.
    """
    required = tuple(required)
    if not use_cache:
        return build()
    path = artifact_path(kind, parts, directory)
    key = str(path)
    if key in _MEMO:
        return _MEMO[key]
    out: dict[str, Tensor] | None = None
    if path.exists():
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            ok = isinstance(loaded, dict) and all(isinstance(v, Tensor) for v in loaded.values())
            if ok and all(k in loaded for k in required):
                out = loaded
        except (OSError, RuntimeError, EOFError, ValueError):
            out = None
    if out is None:
        t0 = time.perf_counter()
        out = {k: v.detach().cpu() for k, v in build().items()}
        atomic_write(path, lambda p: torch.save(out, p))
        meta = {
            "kind": kind,
            "format": FORMAT,
            "seconds": round(time.perf_counter() - t0, 3),
            **parts,
        }
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1, sort_keys=True))
    _MEMO[key] = out
    while len(_MEMO) > MEMO_SIZE:
        _MEMO.pop(next(iter(_MEMO)))
    return out
