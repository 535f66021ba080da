"""Skeleton data: topologies (:mod:`.skeleton`), the ``SkeletonSet`` container and its ``.npz`` format
(:mod:`.dataset`), and the embedded procedural data sets ``synth-ntu25`` and ``synth-ntu60``
(:mod:`.synth`, :mod:`.synth_motion`, :mod:`.synth_gestures`). :func:`open_dataset` opens any of them by name or path."""

from __future__ import annotations

from pathlib import Path

from robench.data.dataset import SkeletonSet
from robench.errors import DataError
from robench.registry import suggest

BUILTIN_DATASETS = ("synth-ntu25", "synth-ntu60")
DEFAULT_WORLD = "synth-ntu60"  # the world of a benchmark that names none, and of robench train


def open_dataset(name_or_path: str | Path, **options: int) -> SkeletonSet:
    """A data set by built-in name (generated, deterministic per ``seed``) or a robench ``.npz`` path.

    ``options`` go to the generator of a built-in (``seed``, ``n_train``, ``n_test``, ``num_frames``).
    """
    name = str(name_or_path)
    if name in BUILTIN_DATASETS:
        from robench.data import synth

        return _generate_cached(tuple(sorted({**options, "world": name}.items())), synth.generate)
    if name.endswith(".npz"):
        if options:
            raise DataError(
                f"expected no generator options for a file, got {sorted(options)} for {name}"
            )
        return SkeletonSet.load(name)
    close = suggest(name, BUILTIN_DATASETS)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(
        f"expected a built-in data set {BUILTIN_DATASETS} or a .npz path, got {name!r}{hint}"
    )


_CACHE: dict[tuple, SkeletonSet] = {}


def _generate_cached(key: tuple, generate) -> SkeletonSet:  # noqa: ANN001
    if key not in _CACHE:
        _CACHE.clear()  # keep at most one generated set in memory
        _CACHE[key] = generate(**dict(key))
    return _CACHE[key]
