"""Kinetics-skeleton / OpenPose JSON (one file per video, as released with ST-GCN: Yan, Xiong and
Lin, AAAI 2018) read into a SkeletonSet on the ``openpose18-score`` topology.

A file is ``{"data": [{"frame_index": i, "skeleton": [{"pose": [x0, y0, ..., x17, y17],
"score": [s0, ..., s17]}, ...]}, ...], "label": NAME, "label_index": K}``. Conventions (ST-GCN's
``feeder_kinetics.py``):

- channels ``x, y, score``; coordinates are OpenPose's, normalised by the image size to [0, 1],
  then centred by subtracting 0.5 (unit ``normalized``); a joint of score 0 has its coordinates set
  to 0; the score is a data channel no threat model may change (the topology's ``score_channels``);
- at most 5 people per frame are read (in file order), then per frame the people are ranked by
  their summed joint scores and the two highest kept, in that order (so body 0 of a frame is its
  most confident person, not necessarily the same person as in the previous frame: the feeder's
  rule);
- ``frame_index`` places a frame; indices starting at 1 are shifted to start at 0 (the feeder
  leaves its frame 0 empty); clips are zero padded to ``num_frames`` (300) and a longer one is
  refused unless ``truncate``;
- a video whose every frame is empty is skipped (the feeder's ``ignore_empty_sample``), and
  counted in the set's ``source``;
- the label is ``label_index``; class names come from the files' ``label`` strings (an index no
  file names is ``class_###``); the split is ``train`` for files in a folder whose name contains
  ``train``, ``test`` for ``val`` or ``test``, none otherwise; the id is the file's stem.

Errors name the file (and the frame) of a malformed entry; nothing is written until every file reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from robench.data.dataset import SkeletonSet
from robench.data.skeleton import BUILTIN_TOPOLOGIES
from robench.errors import DataError

V, PEOPLE_IN, PEOPLE_OUT = 18, 5, 2


def _files(paths: Sequence[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix == ".json")
        elif p.exists():
            out.append(p)
        else:
            raise DataError(f"expected a .json file or a folder of them, got no such path: {p}")
    if not out:
        raise DataError(
            f"expected Kinetics-skeleton .json files, got none in {[str(p) for p in paths]}"
        )
    return out


def _split(path: Path) -> str:
    folder = path.parent.name.lower()
    if "train" in folder:
        return "train"
    return "test" if ("val" in folder or "test" in folder) else ""


def read_video(path: Path, num_frames: int, truncate: bool) -> tuple[np.ndarray, int, str]:
    """(x (3, T, 18, 2) float32, label index, label name) of one file (module docstring)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"expected a readable UTF-8 file, got {e} for {path}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"expected valid JSON, got {e.msg} at line {e.lineno} in {path}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"expected an object with a 'data' list, got none in {path}")
    label = doc.get("label_index")
    if isinstance(label, bool) or not isinstance(label, int) or label < 0:
        raise DataError(f"expected a non-negative integer 'label_index', got {label!r} in {path}")
    frames = doc["data"]
    idx = []
    for k, f in enumerate(frames):
        i = f.get("frame_index") if isinstance(f, dict) else None
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise DataError(
                f"expected an integer 'frame_index' >= 0, got {i!r} in frame {k} of {path}"
            )
        idx.append(i)
    shift = 1 if idx and min(idx) >= 1 else 0
    t_len = (max(idx) - shift + 1) if idx else 0
    if t_len > num_frames and not truncate:
        raise DataError(
            f"expected at most {num_frames} frames, got {t_len} in {path} (pass --truncate to cut, "
            "or --frames to pad to more)"
        )
    data = np.zeros((3, num_frames, V, PEOPLE_IN), dtype=np.float32)
    for k, (f, i) in enumerate(zip(frames, idx, strict=True)):
        t = i - shift
        if t >= num_frames:
            continue
        people = f.get("skeleton", [])
        if not isinstance(people, list):
            raise DataError(
                f"expected a 'skeleton' list, got {type(people).__name__} in frame {k} of {path}"
            )
        for m, person in enumerate(people[:PEOPLE_IN]):
            pose, score = person.get("pose"), person.get("score")
            if (
                not isinstance(pose, list)
                or not isinstance(score, list)
                or len(pose) != 2 * V
                or len(score) != V
            ):
                raise DataError(
                    f"expected 'pose' of {2 * V} and 'score' of {V} numbers, got "
                    f"{len(pose) if isinstance(pose, list) else pose!r} and "
                    f"{len(score) if isinstance(score, list) else score!r} in frame {k} of {path}"
                )
            try:
                p = np.asarray(pose, dtype=np.float32)
                data[0, t, :, m], data[1, t, :, m] = p[0::2], p[1::2]
                data[2, t, :, m] = np.asarray(score, dtype=np.float32)
            except (TypeError, ValueError):
                raise DataError(
                    f"expected numbers in 'pose' and 'score', got others in frame {k} of {path}"
                ) from None
    if not np.isfinite(data).all():
        raise DataError(f"expected finite coordinates and scores, got NaN/inf in {path}")
    data[0:2] -= 0.5
    data[0][data[2] == 0] = 0
    data[1][data[2] == 0] = 0
    order = (-data[2].sum(axis=1)).argsort(axis=1, kind="stable")  # (T, PEOPLE_IN)
    data = np.take_along_axis(data, order[None, :, None, :], axis=3)[..., :PEOPLE_OUT]
    name = doc.get("label")
    return data, label, name if isinstance(name, str) else ""


def import_kinetics(
    paths: Sequence[str | Path],
    num_frames: int = 300,
    truncate: bool = False,
    name: str = "kinetics",
    progress: Callable[[Iterable], Iterable] | None = None,
) -> SkeletonSet:
    """Every Kinetics-skeleton file of ``paths`` (files or folders) as one set (module docstring)."""
    files = _files(paths)
    xs, ys, ids, split = [], [], [], []
    names: dict[int, str] = {}
    empty = 0
    for path in progress(files) if progress else files:
        x, label, label_name = read_video(path, num_frames, truncate)
        if not x.any():
            empty += 1
            continue
        if label_name:
            if names.get(label, label_name) != label_name:
                raise DataError(
                    f"expected one name per label index, got {label_name!r} for {label} in {path} "
                    f"(elsewhere {names[label]!r})"
                )
            names[label] = label_name
        xs.append(x)
        ys.append(label)
        ids.append(path.stem)
        split.append(_split(path))
    if not xs:
        raise DataError(f"expected at least one video with a skeleton, got {empty} empty ones")
    k = max(ys) + 1
    parts = set(split)
    return SkeletonSet(
        x=torch.from_numpy(np.stack(xs)),
        y=torch.tensor(ys, dtype=torch.int64),
        ids=tuple(ids),
        class_names=tuple(names.get(i, f"class_{i:03d}") for i in range(k)),
        topology=BUILTIN_TOPOLOGIES["openpose18-score"],
        unit="normalized",
        name=name,
        split=tuple(split) if "" not in parts else (),
        source=f"{len(files)} Kinetics-skeleton files ({empty} without a skeleton skipped)",
    )
