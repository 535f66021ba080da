"""Raw NTU RGB+D / NTU RGB+D 120 ``.skeleton`` files (Shahroudy et al., CVPR 2016; Liu et al., TPAMI
2019) read into a :class:`~robench.data.dataset.SkeletonSet`.

The file layout (Kinect v2 SDK output, LF or CRLF line ends): line 1 the frame count; per frame a
body count; per body one info line of 10 values (body id first), a joint-count line (25), then 25
joint lines of 12 values ``x y z depthX depthY colorX colorY orientW orientX orientY orientZ
trackingState``. Only ``x y z`` (camera space, metres) are kept.

Conventions, as the field's preprocessing applies them (the body tracking, the 11-frame noise rule
and the summed-variance motion measure of SGN / CTR-GCN's ``get_raw_denoised_data``):

- a body is identified by its body id across frames; a body present in at most 11 frames is noise
  and dropped (``min_frames`` = 12);
- at most two bodies are kept: the two with the most motion (the sum over joints and coordinates of
  the variance over the body's present frames) by default, or the first two to appear
  (``bodies="first"``); the first kept body fills slot 0;
- frames keep their order; a frame where a kept body is absent is zero for it; clips shorter than
  ``num_frames`` (300) are zero padded, longer ones refused unless ``truncate`` (then cut);
- labels come from the name ``SsssCcccPpppRrrrAaaa``: action ``Aaaa`` is class ``aaa - 1`` (NTU-60:
  A001-A060, NTU-120: up to A120); the performer ``Pppp`` is the subject;
- splits as the NTU papers define them: ``xsub`` (cross-subject: the 20 NTU-60 training performers,
  or the 53 NTU-120 ones when any action is above 60), ``xview`` (cameras 2 and 3 train, camera 1
  tests), ``xset`` (NTU-120 cross-setup: even setup numbers train);
- a missing-skeleton list (one sample name per line, as published with the data sets) skips those.

Errors name the file and the line (``S001C001P001R001A001.skeleton line 7: expected 12 values ...``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from robench.data.dataset import SkeletonSet
from robench.data.skeleton import BUILTIN_TOPOLOGIES
from robench.errors import DataError

NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")
JOINTS = 25
# the cross-subject training performers (NTU-60: Shahroudy et al. 2016; NTU-120: Liu et al. 2019)
XSUB60_TRAIN = frozenset((1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38))
XSUB120_TRAIN = XSUB60_TRAIN | frozenset(
    (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89,
     91, 92, 93, 94, 95, 97, 98, 100, 103)
)  # fmt: skip
XVIEW_TRAIN_CAMERAS = frozenset((2, 3))
SPLITS = ("xsub", "xview", "xset")


def parse_name(name: str) -> dict[str, int]:
    """``SsssCcccPpppRrrrAaaa`` -> {setup, camera, performer, replication, action}."""
    m = NAME_RE.match(name)
    if not m:
        raise DataError(
            f"expected an NTU sample name SsssCcccPpppRrrrAaaa, got {name!r} in {name}.skeleton"
        )
    keys = ("setup", "camera", "performer", "replication", "action")
    return dict(zip(keys, (int(g) for g in m.groups()), strict=True))


def read_skeleton(path: str | Path) -> dict[str, np.ndarray]:
    """One ``.skeleton`` file -> {body id: (F, 25, 3) float32 array, NaN where absent} with the
    frame count F of the file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"expected a readable NTU .skeleton text file, got {e} in {path}") from None
    pos = 0

    def take(expect: str) -> list[str]:
        nonlocal pos
        if pos >= len(lines):
            raise DataError(
                f"expected {expect}, got the end of the file in {path.name} line {pos + 1}"
            )
        pos += 1
        return lines[pos - 1].split()

    def count(expect: str, limit: int) -> int:
        vals = take(expect)
        if len(vals) != 1 or not vals[0].isdigit() or int(vals[0]) > limit:
            raise DataError(
                f"expected {expect} (an integer <= {limit}), got {' '.join(vals)!r} in {path.name} line {pos}"
            )
        return int(vals[0])

    frames = count("the frame count", 100_000)
    bodies: dict[str, np.ndarray] = {}
    for f in range(frames):
        for _ in range(count("a body count", 8)):
            info = take("a body info line")
            if len(info) != 10:
                raise DataError(
                    f"expected a body info line of 10 values, got {len(info)} in {path.name} line {pos}"
                )
            n = count("the joint count", 100)
            if n != JOINTS:
                raise DataError(f"expected {JOINTS} joints, got {n} in {path.name} line {pos}")
            arr = bodies.setdefault(info[0], np.full((frames, JOINTS, 3), np.nan, np.float32))
            for j in range(JOINTS):
                vals = take("a joint line")
                if len(vals) != 12:
                    raise DataError(
                        f"expected 12 values on a joint line, got {len(vals)} in {path.name} line {pos}"
                    )
                try:
                    xyz = [float(v) for v in vals[:3]]
                except ValueError:
                    raise DataError(
                        f"expected numbers, got {' '.join(vals[:3])!r} in {path.name} line {pos}"
                    ) from None
                if not all(np.isfinite(xyz)):
                    raise DataError(
                        f"expected finite coordinates, got NaN/inf in {path.name} line {pos}"
                    )
                arr[f, j] = xyz
    if any(line.strip() for line in lines[pos:]):
        raise DataError(
            f"expected the end of the file after {frames} frames, got more in {path.name} line {pos + 1}"
        )
    return bodies


def write_skeleton(path: str | Path, bodies: dict[str, np.ndarray], crlf: bool = False) -> Path:
    """Write {body id: (F, 25, 3) metres, NaN where absent} as a ``.skeleton`` file that
    :func:`read_skeleton` reads back to the same arrays (to 6 decimals). Fields the reader ignores
    (body info after the id, depth/colour pixels, orientation) are written as the SDK's neutral
    values and tracking state 2. Used by ``robench bench`` to time the reader on files of the real
    layout."""
    arrays = list(bodies.values())
    frames = arrays[0].shape[0] if arrays else 0
    lines = [str(frames)]
    for f in range(frames):
        here = [(bid, a[f]) for bid, a in bodies.items() if not np.isnan(a[f]).any()]
        lines.append(str(len(here)))
        for bid, xyz in here:
            lines += [f"{bid} 0 1 1 1 1 0 0 0 2", str(JOINTS)]
            lines += [f"{x:.6f} {y:.6f} {z:.6f} 0 0 0 0 1 0 0 0 2" for x, y, z in xyz]
    sep = "\r\n" if crlf else "\n"
    Path(path).write_bytes((sep.join(lines) + sep).encode("ascii"))
    return Path(path)


def select_bodies(
    bodies: dict[str, np.ndarray], mode: str = "motion", min_frames: int = 12, keep: int = 2
) -> list[np.ndarray]:
    """The kept bodies (at most ``keep``), each (F, 25, 3) with NaN where absent; see the module
    docstring for the rules."""
    if mode not in ("motion", "first"):
        raise DataError(f"expected bodies 'motion' or 'first', got {mode!r} in option '--bodies'")
    present = {b: ~np.isnan(a[:, 0, 0]) for b, a in bodies.items()}
    real = [b for b in bodies if present[b].sum() >= min_frames]  # insertion order = first seen
    if mode == "motion":

        def motion(b: str) -> float:
            a = bodies[b][present[b]]
            return float(a.var(axis=0).sum())

        real = sorted(real, key=motion, reverse=True)
    return [bodies[b] for b in real[:keep]]


def clip_array(kept: list[np.ndarray], num_frames: int, truncate: bool, name: str) -> np.ndarray:
    """(3, num_frames, 25, 2) float32, zero where a body is absent or beyond the clip."""
    out = np.zeros((3, num_frames, JOINTS, 2), np.float32)
    for m, a in enumerate(kept):
        f = a.shape[0]
        if f > num_frames and not truncate:
            raise DataError(
                f"expected at most {num_frames} frames, got {f} in {name}.skeleton (pass --frames or --truncate)"
            )
        a = np.nan_to_num(a[:num_frames], nan=0.0)
        out[:, : a.shape[0], :, m] = a.transpose(2, 0, 1)
    return out


def split_of(meta: dict[str, int], protocol: str, ntu120: bool) -> str:
    """ "train" or "test" under ``protocol`` (module docstring)."""
    if protocol == "xsub":
        train = XSUB120_TRAIN if ntu120 else XSUB60_TRAIN
        return "train" if meta["performer"] in train else "test"
    if protocol == "xview":
        return "train" if meta["camera"] in XVIEW_TRAIN_CAMERAS else "test"
    if protocol == "xset":
        return "train" if meta["setup"] % 2 == 0 else "test"
    raise DataError(f"expected a split in {list(SPLITS)}, got {protocol!r} in option '--split'")


def class_names(k: int) -> tuple[str, ...]:
    """NTU-60's action names for A001-A060 (as robench's synth-ntu60 spells them), ``A061``... after."""
    from robench.data.synth_gestures import ACTIONS60

    return tuple(ACTIONS60[i].name if i < 60 else f"A{i + 1:03d}" for i in range(k))


def import_ntu(
    paths: Iterable[str | Path],
    split: str = "xsub",
    bodies: str = "motion",
    num_frames: int = 300,
    truncate: bool = False,
    missing: Iterable[str] = (),
    name: str = "ntu",
    progress: Callable[[Iterable], Iterable] | None = None,
) -> SkeletonSet:
    """``.skeleton`` files (or folders of them) -> one SkeletonSet in metres (module docstring)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.skeleton"))
        elif p.exists():
            files.append(p)
        else:
            raise DataError(f"expected a .skeleton file or a folder of them, got no such path {p}")
    skip = {s.strip() for s in missing if s.strip()}
    files = [f for f in files if f.stem not in skip]
    if not files:
        raise DataError(
            f"expected at least one .skeleton file, got none in {', '.join(map(str, paths))}"
        )
    metas = [parse_name(f.stem) for f in files]
    ntu120 = any(m["action"] > 60 or m["setup"] > 17 for m in metas)
    k = 120 if ntu120 else 60
    xs = []
    for f in progress(files) if progress else files:
        kept = select_bodies(read_skeleton(f), bodies)
        if not kept:
            raise DataError(f"expected a body present in at least 12 frames, got none in {f.name}")
        xs.append(clip_array(kept, num_frames, truncate, f.stem))
    return SkeletonSet(
        x=torch.from_numpy(np.stack(xs)),
        y=torch.tensor([m["action"] - 1 for m in metas], dtype=torch.int64),
        ids=tuple(f.stem for f in files),
        class_names=class_names(k),
        topology=BUILTIN_TOPOLOGIES["ntu25"],
        unit="m",
        name=name,
        split=tuple(split_of(m, split, ntu120) for m in metas),
        subject=torch.tensor([m["performer"] for m in metas], dtype=torch.int64),
        source=f"NTU .skeleton import ({len(files)} files)",
    )
