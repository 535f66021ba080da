"""A generic folder of per-clip arrays plus a labels CSV and a topology JSON: the way in for any
skeleton data set nobody wrote a reader for.

Layout::

    clips/                 one file per clip, named by its id: ID.npy or ID.csv
      a01_s01.npy          (T, V, C) or (M, T, V, C) float array, C = 3 coordinates
      a01_s02.csv          one row per frame, V·C numbers (x1, y1, z1, x2, ...); comma separated
    labels.csv             header row ``id,label`` (optional columns ``split``, ``subject``)
    topology.json          {"name", "joint_names", "parents", "center"}

Conventions: ``label`` is a class name (classes are the sorted distinct names) or, when every
label is an integer, the class index itself (names ``class_000``...). ``split`` names the split of
each clip (e.g. train / test; empty or absent: no split), ``subject`` an integer performer id
(-1 when absent). Every clip listed in the CSV must exist, and every clip file must be listed.
Clips of different lengths are zero padded at the end to the longest (a frame of all zeros is
padding). The unit is given (``--unit``: m, cm, mm, px, normalized). C is 3: x, y, z, or x, y and
a confidence score when the topology JSON declares ``"score_channels": [2]`` (the threat model then
never moves it); four channels (x, y, z and a score) do not fit robench's 3-channel layout.
Errors name the file and, for the CSVs, the line.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from robench.data.dataset import SkeletonSet
from robench.data.skeleton import Topology
from robench.errors import DataError


def _read_csv_clip(path: Path, v: int) -> np.ndarray:
    rows = []
    with path.open(newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            try:
                values = [float(c) for c in row]
            except ValueError:
                if line_no == 1:  # a header row
                    continue
                raise DataError(
                    f"expected numbers, got {row[:3]}... at line {line_no} of {path}"
                ) from None
            if len(values) != 3 * v:
                raise DataError(
                    f"expected {3 * v} numbers (V = {v} joints × xyz), got {len(values)} at line "
                    f"{line_no} of {path}"
                )
            rows.append(values)
    if not rows:
        raise DataError(f"expected at least one frame, got none in {path}")
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), v, 3)


def _read_clip(path: Path, v: int) -> np.ndarray:
    """(M, T, V, 3) float32."""
    if path.suffix == ".csv":
        a = _read_csv_clip(path, v)[None]
    else:
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"expected a .npy array, got {e} in {path}") from None
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4:
            raise DataError(f"expected shape (T, V, C) or (M, T, V, C), got {a.shape} in {path}")
    if a.shape[2] != v:
        raise DataError(f"expected {v} joints (the topology's), got {a.shape[2]} in {path}")
    if a.shape[3] != 3:
        raise DataError(
            f"expected C = 3 channels (x, y, z, or x, y and a score named by the topology's "
            f"score_channels), got {a.shape[3]} in {path}"
        )
    if not np.isfinite(a).all():
        raise DataError(f"expected finite coordinates, got NaN/inf in {path}")
    return a.astype(np.float32)


def _read_labels(path: Path) -> list[dict[str, str]]:
    try:
        f = path.open(newline="")
    except OSError as e:
        raise DataError(f"expected a labels CSV, got {e.strerror} for {path}") from None
    with f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        for need in ("id", "label"):
            if need not in cols:
                raise DataError(
                    f"expected a column {need!r}, got columns {cols} at line 1 of {path}"
                )
        rows = []
        seen: dict[str, int] = {}
        for line_no, row in enumerate(reader, start=2):
            cid = (row.get("id") or "").strip()
            if not cid or not (row.get("label") or "").strip():
                raise DataError(
                    f"expected an id and a label, got {row} at line {line_no} of {path}"
                )
            if cid in seen:
                raise DataError(
                    f"expected each id once, got {cid!r} again at line {line_no} of {path} "
                    f"(first at line {seen[cid]})"
                )
            seen[cid] = line_no
            rows.append({**row, "_line": str(line_no)})
    if not rows:
        raise DataError(f"expected at least one clip, got none in {path}")
    return rows


def import_folder(
    clips: str | Path,
    labels: str | Path,
    topology: str | Path,
    unit: str = "m",
    name: str | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> SkeletonSet:
    """The folder ``clips`` with ``labels`` (CSV) and ``topology`` (JSON) as a set (module doc)."""
    folder, labels = Path(clips), Path(labels)
    topo = Topology.from_json_file(topology)
    if not folder.is_dir():
        raise DataError(f"expected a folder of clip files, got no folder at {folder}")
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in (".npy", ".csv")}
    rows = _read_labels(labels)
    listed = {r["id"].strip() for r in rows}
    extra = sorted(set(files) - listed)
    if extra:
        raise DataError(
            f"expected every clip file listed in {labels.name}, got {extra[0]!r} not listed"
        )
    raw = [r["label"].strip() for r in rows]
    numeric = all(s.lstrip("-").isdigit() for s in raw)
    if numeric and any(int(s) < 0 for s in raw):
        bad = next(r for r in rows if int(r["label"]) < 0)
        raise DataError(
            f"expected a non-negative class index, got {bad['label']} at line {bad['_line']} of {labels}"
        )
    names = (tuple(f"class_{i:03d}" for i in range(max(int(s) for s in raw) + 1))
             if numeric else tuple(sorted(set(raw))))  # fmt: skip
    arrays = []
    it = progress(rows) if progress else rows
    for r in it:
        cid = r["id"].strip()
        if cid not in files:
            raise DataError(
                f"expected a clip file {cid}.npy or {cid}.csv in {folder}, got none (line {r['_line']} of {labels})"
            )
        arrays.append(_read_clip(files[cid], topo.num_joints))
    m = max(a.shape[0] for a in arrays)
    t = max(a.shape[1] for a in arrays)
    x = np.zeros((len(arrays), m, t, topo.num_joints, 3), dtype=np.float32)
    for i, a in enumerate(arrays):
        x[i, : a.shape[0], : a.shape[1]] = a
    y = [int(s) if numeric else names.index(s) for s in raw]
    split_col = [(r.get("split") or "").strip() for r in rows]
    if any(split_col) and not all(split_col):
        bad = next(r for r, s in zip(rows, split_col, strict=True) if not s)
        raise DataError(
            f"expected a split for every clip or none, got none at line {bad['_line']} of {labels}"
        )
    split = tuple(split_col) if all(split_col) else ()
    subj = []
    for r in rows:
        s = (r.get("subject") or "").strip()
        try:
            subj.append(int(s) if s else -1)
        except ValueError:
            raise DataError(
                f"expected an integer subject, got {s!r} at line {r['_line']} of {labels}"
            ) from None
    return SkeletonSet(
        x=torch.from_numpy(x.transpose(0, 4, 2, 3, 1).copy()),
        y=torch.tensor(y, dtype=torch.int64),
        ids=tuple(r["id"].strip() for r in rows),
        class_names=names,
        topology=topo,
        unit=unit,
        name=name or folder.name,
        split=split,
        subject=torch.tensor(subj, dtype=torch.int64),
        source=str(folder),
    )
