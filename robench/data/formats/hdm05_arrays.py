"""The HDM05 arrays of BEAT (Wang et al., AAAI 2023) and the TASAR benchmark (Diao et al., ICLR
2025): ``classTrain.npz`` / ``classTest.npz``, each with ``clips`` float (N, T, 75) and ``classes``
int (N,), read into a SkeletonSet.

Conventions (their code's): a frame is 25 joints × xyz of one person, joint order of the
``hdm05-25`` topology (:data:`robench.data.skeleton.HDM05_NAMES`: CMU/ASF bone names, root 10); the
coordinates are BEAT's normalised ones (unit ``normalized``: ε in a benchmark is in those units, and
no centimetre statistic is claimed); clips all have T frames (60 in the released files), no padding.
A frame vector is read as their ``reshape(T, 25, 3)``, giving robench's (N, 3, T, 25, 1). Labels are
the ``classes`` integers (65 classes in the released split), class names ``class_000``... (the files
carry no names). Splits come from the file names: one containing ``train`` (any case) is the train
split, ``test`` the test split. Ids are ``train-000000`` / ``test-000000`` in file order, no
performer (subject -1). Files are opened with ``allow_pickle=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from robench.data.dataset import SkeletonSet
from robench.data.skeleton import BUILTIN_TOPOLOGIES
from robench.errors import DataError


def _split_of(path: Path) -> str:
    stem = path.stem.lower()
    parts = [s for s in ("train", "test") if s in stem]
    if len(parts) != 1:
        raise DataError(
            f"expected a file name containing 'train' or 'test' (it gives the split), got "
            f"{path.name!r}"
        )
    return parts[0]


def import_hdm05_arrays(paths: Sequence[str | Path], name: str | None = None) -> SkeletonSet:
    """One or both split files (module docstring) as one set."""
    files = [Path(p) for p in paths]
    splits = [_split_of(p) for p in files]
    if len(set(splits)) != len(splits):
        raise DataError(f"expected at most one file per split, got {[p.name for p in files]}")
    xs, ys, ids, split = [], [], [], []
    for path, part in sorted(zip(files, splits, strict=True), key=lambda t: t[1] != "train"):
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError) as e:
            raise DataError(
                f"expected an .npz with 'clips' and 'classes', got {e} in {path}"
            ) from None
        for key in ("clips", "classes"):
            if key not in arrays:
                raise DataError(
                    f"expected a field {key!r}, got fields {sorted(arrays)} in {path.name}"
                )
        x, y = arrays["clips"], arrays["classes"]
        if x.ndim != 3 or x.shape[2] != 75:
            raise DataError(
                f"expected shape (N, T, 75), got {x.shape} in {path.name} field 'clips'"
            )
        if not np.isfinite(x).all():
            bad = int(np.nonzero(~np.isfinite(x).reshape(len(x), -1).all(1))[0][0])
            raise DataError(
                f"expected finite coordinates, got NaN/inf in clip {bad} of {path.name} field 'clips'"
            )
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
            raise DataError(
                f"expected {len(x)} non-negative integer labels, got {len(y)} of {y.dtype} in "
                f"{path.name} field 'classes'"
            )
        n, t = x.shape[:2]
        xs.append(x.reshape(n, t, 25, 3, 1).transpose(0, 3, 1, 2, 4).astype(np.float32))
        ys.append(y.astype(np.int64))
        ids += [f"{part}-{i:06d}" for i in range(n)]
        split += [part] * n
    if len({a.shape[2] for a in xs}) != 1:
        raise DataError(
            f"expected one clip length in both files, got {sorted({a.shape[2] for a in xs})} frames"
        )
    y_all = np.concatenate(ys)
    k = int(y_all.max()) + 1
    return SkeletonSet(
        x=torch.from_numpy(np.concatenate(xs)),
        y=torch.from_numpy(y_all),
        ids=tuple(ids),
        class_names=tuple(f"class_{i:03d}" for i in range(k)),
        topology=BUILTIN_TOPOLOGIES["hdm05-25"],
        unit="normalized",
        name=name or "hdm05",
        split=tuple(split),
        source=", ".join(str(p) for p in files),
    )
