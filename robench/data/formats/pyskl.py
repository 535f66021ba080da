"""pyskl annotation pickles (Duan et al., ACM MM 2022 demo; e.g. ``ntu60_3danno.pkl``) read into a
SkeletonSet, without executing pickled code.

Layout: a dict ``{"split": {"xsub_train": [frame_dir, ...], "xsub_val": [...], ...},
"annotations": [{"frame_dir": str, "total_frames": int, "label": int, "keypoint": float array
(M, T, V, C)}, ...]}``. The 3-D NTU annotations (V = 25, C = 3, metres) are read; 2-D keypoints with
``keypoint_score`` need a topology with a score channel and are refused with a message.

The pickle is read by a restricted unpickler that builds only plain containers, numbers, strings
and numpy arrays (the globals numpy's pickles name); any other global — ``os.system`` in a
malicious ``__reduce__``, a class of some package — is refused before it is called. The split named
``PROTOCOL_train`` becomes "train" and ``PROTOCOL_val`` (or ``PROTOCOL_test``) "test"; clips in
neither are left out; at most two bodies (the first two, pyskl's order) are kept, clips are zero
padded to the longest.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robench.data.dataset import SkeletonSet
from robench.data.skeleton import BUILTIN_TOPOLOGIES
from robench.errors import DataError

# (module, name) pairs a numpy array pickle needs (numpy 1.x and 2.x spellings)
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocol 2 spells bytes through it (mmcv's dump default)
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("builtins", "slice"),
}


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def safe_load(path: Path) -> Any:
    """Unpickle ``path`` allowing only plain data and numpy arrays."""
    try:
        return _Restricted(io.BytesIO(path.read_bytes())).load()
    except (
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        ValueError,
        TypeError,
    ) as e:
        raise DataError(
            f"expected a pyskl annotation pickle of plain data, got {e} in {path}"
        ) from None
    except OSError as e:
        raise DataError(f"expected a readable file, got {e} in {path}") from None


def import_pyskl(path: str | Path, protocol: str = "xsub", name: str | None = None) -> SkeletonSet:
    """A pyskl 3-D annotation pickle under split ``protocol`` (module docstring)."""
    path = Path(path)
    doc = safe_load(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise DataError(
            f"expected a dict with 'split' and 'annotations', got {type(doc).__name__} in {path.name}"
        )
    splits = doc.get("split") or {}
    test_key = next(
        (f"{protocol}_{s}" for s in ("val", "test") if f"{protocol}_{s}" in splits), None
    )
    if f"{protocol}_train" not in splits or test_key is None:
        raise DataError(
            f"expected splits '{protocol}_train' and '{protocol}_val', got {sorted(splits)} in {path.name} field 'split'"
        )
    which = {d: "train" for d in splits[f"{protocol}_train"]}
    which.update({d: "test" for d in splits[test_key]})
    clips, labels, ids, split = [], [], [], []
    for i, a in enumerate(doc["annotations"]):
        where = f"{path.name} field 'annotations[{i}]'"
        if not isinstance(a, dict) or not {"frame_dir", "label", "keypoint"} <= set(a):
            raise DataError(
                f"expected frame_dir, label and keypoint, got {sorted(a) if isinstance(a, dict) else type(a).__name__} in {where}"
            )
        if a["frame_dir"] not in which:
            continue
        kp = np.asarray(a["keypoint"], dtype=np.float32)
        if kp.ndim != 4 or kp.shape[2] != 25 or kp.shape[3] != 3:
            hint = (
                " (2-D keypoints with scores need a score-channel topology: not supported yet)"
                if kp.ndim == 4 and kp.shape[3] == 2
                else ""
            )
            raise DataError(
                f"expected keypoint of shape (M, T, 25, 3), got {kp.shape}{hint} in {where}"
            )
        if not np.isfinite(kp).all():
            raise DataError(f"expected finite coordinates, got NaN/inf in {where}")
        label = a["label"]
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
            raise DataError(f"expected a label >= 0, got {label!r} in {where}")
        clips.append(kp[:2].transpose(3, 1, 2, 0))  # (C, T, V, M<=2)
        labels.append(int(label))
        ids.append(str(a["frame_dir"]))
        split.append(which[a["frame_dir"]])
    if not clips:
        raise DataError(f"expected clips in the {protocol} splits, got none in {path.name}")
    t = max(c.shape[1] for c in clips)
    x = np.zeros((len(clips), 3, t, 25, 2), np.float32)
    for i, c in enumerate(clips):
        x[i, :, : c.shape[1], :, : c.shape[3]] = c
    from robench.data.formats.ntu_skeleton import class_names

    k = 120 if max(labels) >= 60 else 60  # NTU-60 or NTU-120 (25 joints, 3-D)
    return SkeletonSet(
        x=torch.from_numpy(x),
        y=torch.tensor(labels, dtype=torch.int64),
        ids=tuple(ids),
        class_names=class_names(k),
        topology=BUILTIN_TOPOLOGIES["ntu25"],
        unit="m",
        name=name or path.stem,
        split=tuple(split),
        source=str(path),
    )
