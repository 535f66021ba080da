"""CTR-GCN's preprocessed NTU arrays (``NTU60_CS.npz``, ``NTU60_CV.npz``, ``NTU120_CSub.npz``, ...;
Chen et al., ICCV 2021, ``data/ntu/seq_transformation.py``) read into a SkeletonSet.

Layout: ``x_train`` / ``x_test`` float32 (N, T, 150) — per frame two bodies × 25 joints × xyz in
metres, zero padded (frames and an absent second body), already centred by CTR-GCN's preprocessing —
and ``y_train`` / ``y_test`` one-hot (N, K). The frame vector is read as CTR-GCN's feeder does:
``reshape(N, T, 2, 25, 3)``, then to robench's (N, 3, T, 25, 2). The file holds no sample names:
ids are ``train-000000`` / ``test-000000`` in file order, and no performer (subject -1). The file is
opened with ``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robench.data.dataset import SkeletonSet
from robench.data.skeleton import BUILTIN_TOPOLOGIES
from robench.errors import DataError


def _labels(y: np.ndarray, key: str, n: int, name: str) -> np.ndarray:
    if y.ndim != 2 or y.shape[0] != n:
        raise DataError(
            f"expected one-hot labels of shape ({n}, K), got {y.shape} in {name} field {key!r}"
        )
    if not np.isin(y, (0, 1)).all() or not (y.sum(1) == 1).all():
        bad = int(np.nonzero(~(np.isin(y, (0, 1)).all(1) & (y.sum(1) == 1)))[0][0])
        raise DataError(
            f"expected one-hot labels, got row {bad} not one-hot in {name} field {key!r}"
        )
    return y.argmax(1)


def import_ctrgcn_npz(path: str | Path, name: str | None = None) -> SkeletonSet:
    """Both splits of one CTR-GCN ``.npz`` (module docstring) as one set with train/test splits."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise DataError(
            f"expected a CTR-GCN .npz (x_train, y_train, x_test, y_test), got {e} in {path}"
        ) from None
    xs, ys, ids, split = [], [], [], []
    k = None
    for part in ("train", "test"):
        xk, yk = f"x_{part}", f"y_{part}"
        for key in (xk, yk):
            if key not in arrays:
                raise DataError(
                    f"expected a field {key!r}, got fields {sorted(arrays)} in {path.name}"
                )
        x = arrays[xk]
        if x.ndim != 3 or x.shape[2] != 150:
            raise DataError(
                f"expected shape (N, T, 150), got {x.shape} in {path.name} field {xk!r}"
            )
        if not np.isfinite(x).all():
            bad = int(np.nonzero(~np.isfinite(x).reshape(len(x), -1).all(1))[0][0])
            raise DataError(
                f"expected finite coordinates, got NaN/inf in sample {bad} of {path.name} field {xk!r}"
            )
        y = _labels(arrays[yk], yk, len(x), path.name)
        if k is not None and arrays[yk].shape[1] != k:
            raise DataError(
                f"expected {k} classes in both splits, got {arrays[yk].shape[1]} in {path.name} field {yk!r}"
            )
        k = arrays[yk].shape[1]
        n, t = x.shape[:2]
        xs.append(x.reshape(n, t, 2, 25, 3).transpose(0, 4, 1, 3, 2).astype(np.float32))
        ys.append(y)
        ids += [f"{part}-{i:06d}" for i in range(n)]
        split += [part] * n
    t = max(a.shape[2] for a in xs)
    xs = [np.pad(a, ((0, 0), (0, 0), (0, t - a.shape[2]), (0, 0), (0, 0))) for a in xs]
    from robench.data.formats.ntu_skeleton import class_names

    return SkeletonSet(
        x=torch.from_numpy(np.concatenate(xs)),
        y=torch.from_numpy(np.concatenate(ys).astype(np.int64)),
        ids=tuple(ids),
        class_names=class_names(int(k)),
        topology=BUILTIN_TOPOLOGIES["ntu25"],
        unit="m",
        name=name or path.stem,
        split=tuple(split),
        source=str(path),
    )
