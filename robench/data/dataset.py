"""``SkeletonSet``: the data container, and its one-file ``.npz`` format.

npz keys (format version 1):

=============  ==============================================================================
``x``          float32 (N, 3, T, V, M) joint coordinates in ``unit``; padding/absent bodies = 0
``y``          int64 (N,) class index in [0, len(class_names))
``ids``        str (N,) stable, unique sample ids (e.g. ``S003C001P008R001A012`` style)
``split``      str (N,) split of each sample, e.g. ``train`` / ``test``
``subject``    int64 (N,) performer id (cross-subject splits never share one); -1 if unknown
``class_names``str (K,)
``topology``   str: a built-in topology name or the topology as JSON
``unit``       str: ``m`` (metres), ``cm``, ``mm``, ``px`` (pixels) or ``normalized``
``name``       str: data set name, e.g. ``synth-ntu25``
``format``     str: ``robench.skeletonset/1``
=============  ==============================================================================
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from robench.data.skeleton import (  # noqa: F401  (METRES_PER_UNIT: re-exported)
    BUILTIN_TOPOLOGIES,
    METRES_PER_UNIT,
    UNITS,
    Topology,
    get_topology,
)
from robench.errors import DataError
from robench.io import atomic_write

FORMAT = "robench.skeletonset/1"


@dataclass(frozen=True, eq=False)
class SkeletonSet:
    """Skeleton clips with labels, ids, class names, topology and unit. Validated on construction."""

    x: torch.Tensor
    y: torch.Tensor
    ids: tuple[str, ...]
    class_names: tuple[str, ...]
    topology: Topology
    unit: str = "m"
    name: str = "unnamed"
    split: tuple[str, ...] = field(default=())
    subject: torch.Tensor | None = None
    source: str = "SkeletonSet"

    def __post_init__(self) -> None:
        src = self.source
        x, y = self.x, self.y
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
            raise DataError(
                f"expected float32 tensor, got {getattr(x, 'dtype', type(x))} in {src} field 'x'"
            )
        if x.dim() != 5 or x.shape[1] != 3:
            raise DataError(
                f"expected shape (N, 3, T, V, M), got {tuple(x.shape)} in {src} field 'x'"
            )
        n = x.shape[0]
        if x.shape[2] < 1:
            raise DataError(f"expected clips of at least one frame, got T = 0 in {src} field 'x'")
        if x.shape[3] != self.topology.num_joints:
            raise DataError(
                f"expected V = {self.topology.num_joints} joints for topology {self.topology.name!r}, "
                f"got {x.shape[3]} in {src} field 'x'"
            )
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).flatten(1).any(1).nonzero()[0, 0])
            raise DataError(
                f"expected finite coordinates, got NaN/inf in sample {bad} of {src} field 'x'"
            )
        empty = (
            torch.cat([~x[i : i + 256].flatten(1).ne(0).any(1) for i in range(0, n, 256)])
            if n
            else None
        )
        if n and bool(empty.any()):
            bad = int(empty.nonzero()[0, 0])
            raise DataError(
                f"expected every clip to have a non-zero frame, got an empty clip (all frames zero) "
                f"at sample {bad} ({self.ids[bad] if bad < len(self.ids) else '?'}) in {src} field 'x'"
            )
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (n,):
            raise DataError(
                f"expected int64 labels of shape ({n},), got {getattr(y, 'dtype', type(y))} "
                f"{tuple(getattr(y, 'shape', ()))} in {src} field 'y'"
            )
        k = len(self.class_names)
        if n and (int(y.min()) < 0 or int(y.max()) >= k):
            bad = int(((y < 0) | (y >= k)).nonzero()[0, 0])
            raise DataError(
                f"expected labels in [0, {k}), got {int(y[bad])} at sample {bad} in {src} field 'y'"
            )
        if len(self.ids) != n:
            raise DataError(f"expected {n} ids, got {len(self.ids)} in {src} field 'ids'")
        if len(set(self.ids)) != n:
            raise DataError(f"expected unique sample ids, got duplicates in {src} field 'ids'")
        if self.split and len(self.split) != n:
            raise DataError(
                f"expected {n} split entries, got {len(self.split)} in {src} field 'split'"
            )
        if self.subject is not None and tuple(self.subject.shape) != (n,):
            raise DataError(
                f"expected {n} subjects, got {tuple(self.subject.shape)} in {src} field 'subject'"
            )
        if self.unit not in UNITS:
            raise DataError(f"expected unit in {UNITS}, got {self.unit!r} in {src} field 'unit'")

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape)

    def select(self, index: torch.Tensor | list[int] | np.ndarray) -> SkeletonSet:
        """A new set holding the samples at ``index`` (positions or a bool mask)."""
        idx = torch.as_tensor(index)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        pos = idx.tolist()
        return replace(
            self,
            x=self.x[idx],
            y=self.y[idx],
            ids=tuple(self.ids[i] for i in pos),
            split=tuple(self.split[i] for i in pos) if self.split else (),
            subject=self.subject[idx] if self.subject is not None else None,
        )

    def get_split(self, name: str) -> SkeletonSet:
        """The samples of split ``name`` (e.g. ``"test"``)."""
        if not self.split:
            raise DataError(f"expected a 'split' field, got none in {self.source}")
        mask = [s == name for s in self.split]
        if not any(mask):
            raise DataError(
                f"expected split {name!r}, got only {sorted(set(self.split))} in {self.source} field 'split'"
            )
        return self.select(torch.tensor(mask))

    def by_ids(self, ids: list[str] | tuple[str, ...]) -> SkeletonSet:
        """The samples with the given ids, in that order."""
        pos = {s: i for i, s in enumerate(self.ids)}
        missing = [s for s in ids if s not in pos]
        if missing:
            raise DataError(f"expected sample ids of {self.name}, got unknown id {missing[0]!r}")
        return self.select([pos[s] for s in ids])

    def fingerprint(self) -> str:
        """sha256 over coordinates, labels, ids, class names, topology and unit."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.x.numpy()).tobytes())
        h.update(np.ascontiguousarray(self.y.numpy()).tobytes())
        h.update("\n".join(self.ids).encode())
        h.update("\n".join(self.class_names).encode())
        h.update(self.topology.to_json().encode())
        h.update(self.unit.encode())
        return h.hexdigest()

    # ------------------------------------------------------------------ npz
    def save(self, path: str | Path) -> Path:
        """Write the set to one ``.npz`` (atomically; see the module docstring for the keys)."""
        topo = (
            self.topology.name
            if BUILTIN_TOPOLOGIES.get(self.topology.name) == self.topology
            else self.topology.to_json()
        )
        arrays = {
            "x": self.x.numpy(),
            "y": self.y.numpy(),
            "ids": np.array(self.ids, dtype=str),
            "split": np.array(self.split if self.split else ("",) * len(self), dtype=str),
            "subject": (self.subject if self.subject is not None else torch.full((len(self),), -1))
            .numpy()
            .astype(np.int64),
            "class_names": np.array(self.class_names, dtype=str),
            "topology": np.array(topo),
            "unit": np.array(self.unit),
            "name": np.array(self.name),
            "format": np.array(FORMAT),
        }

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> SkeletonSet:
        """Read a robench ``.npz``; any malformation raises a one-line DataError naming the field."""
        path = Path(path)
        src = str(path)
        if not path.exists():
            raise DataError(f"expected a .npz file, got no file at {src}")
        with path.open("rb") as f:
            magic = f.read(6)
        if magic[:4] != b"PK\x03\x04" and magic != b"\x93NUMPY":
            raise DataError(
                f"expected a robench .npz archive (a zip of arrays), got a file of another format "
                f"at {src} (robench reads its own .npz; see `robench data build` and the README)"
            )
        try:
            z = np.load(path, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise DataError(
                    f"expected a robench .npz archive (x, y, ids, ...), got a single {type(z).__name__} "
                    f"(a .npy file) at {src}"
                )
            with z:
                data = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise DataError(
                f"expected a readable .npz archive, got {type(e).__name__}: {e} in {src}"
            ) from None
        for key in ("x", "y", "ids", "class_names", "topology"):
            if key not in data:
                raise DataError(f"expected key {key!r}, got keys {sorted(data)} in {src}")
        fmt = str(data.get("format", FORMAT))
        if fmt != FORMAT:
            raise DataError(f"expected format {FORMAT!r}, got {fmt!r} in {src} field 'format'")
        x = data["x"]
        if x.ndim >= 1 and x.shape[0] == 0:
            raise DataError(f"expected at least one clip, got none in {src} field 'x'")
        if x.dtype.kind != "f":
            raise DataError(
                f"expected floating-point coordinates, got dtype {x.dtype} in {src} field 'x'"
            )
        y = data["y"]
        if y.dtype.kind not in "iu":
            raise DataError(f"expected integer labels, got dtype {y.dtype} in {src} field 'y'")
        topo_s = str(data["topology"])
        if topo_s.lstrip().startswith("{"):
            try:
                topology = Topology.from_dict(json.loads(topo_s), source=f"{src} field 'topology'")
            except json.JSONDecodeError as e:
                raise DataError(
                    f"expected topology JSON, got {e.msg} in {src} field 'topology'"
                ) from None
        else:
            topology = get_topology(topo_s)
        split = tuple(str(s) for s in data["split"]) if "split" in data else ()
        if split and all(s == "" for s in split):
            split = ()
        subject = None
        if "subject" in data:
            if data["subject"].dtype.kind not in "iu":
                raise DataError(
                    f"expected integer performer ids, got dtype {data['subject'].dtype} in {src} field 'subject'"
                )
            subject = torch.from_numpy(data["subject"].astype(np.int64))
        return cls(
            x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            y=torch.from_numpy(y.astype(np.int64)),
            ids=tuple(str(s) for s in data["ids"]),
            class_names=tuple(str(s) for s in data["class_names"]),
            topology=topology,
            unit=str(data.get("unit", "m")),
            name=str(data.get("name", path.stem)),
            split=split,
            subject=subject,
            source=src,
        )
