"""Nearest-centroid baselines: the accuracy a trained victim has to beat on a set.

Both features translate each clip so that body 1's root joint (the topology's root), averaged over
its present frames, is the origin, and use the coordinate channels only:

- ``pose``: the time-averaged pose of each body over its present frames (3·V·M numbers), blind to
  the order of the motion;
- ``sequence``: the frames where any body is present, resampled to ``frames`` evenly spaced ones
  (nearest frame; 3·frames·V·M numbers), which sees the motion in order but not its speed.

Class centroids are the training means of the feature; a test clip is predicted as the class of
the nearest centroid (Euclidean distance). No other alignment, no learning.
"""

from __future__ import annotations

import torch

from robench.data.dataset import SkeletonSet
from robench.data.skeleton import Topology, presence_mask
from robench.errors import ConfigError, DataError

KINDS = ("pose", "sequence")


def clip_features(
    ds: SkeletonSet, kind: str = "pose", frames: int = 16, chunk: int = 512
) -> torch.Tensor:
    """(N, D) float64 features of ``kind`` (module docstring), computed ``chunk`` clips at a time."""
    if kind not in KINDS:
        raise ConfigError(f"expected a baseline feature in {list(KINDS)}, got {kind!r} in 'kind'")
    if frames < 1:
        raise ConfigError(f"expected frames >= 1, got {frames} in 'frames'")
    parts = [
        _features(ds.topology, ds.x[i : i + chunk], kind, frames)
        for i in range(0, ds.x.shape[0], chunk)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, 0, dtype=torch.float64)


def _features(topo: Topology, x_raw: torch.Tensor, kind: str, frames: int) -> torch.Tensor:
    x = x_raw.double().index_select(1, torch.tensor(topo.coordinate_channels))
    pres = presence_mask(x_raw)  # (N, 1, T, 1, M)
    p1 = pres[:, 0, :, 0, 0].double()  # (N, T)
    root = x[:, :, :, topo.root, 0]  # (N, C, T)
    centre = (root * p1[:, None]).sum(-1) / p1.sum(-1).clamp(min=1)[:, None]  # (N, C)
    xc = (x - centre[:, :, None, None, None]) * pres
    if kind == "pose":
        return (xc.sum(2) / pres.sum(2).clamp(min=1)).flatten(1)
    any_body = pres[:, 0, :, 0, :].any(-1)  # (N, T)
    count = any_body.sum(-1)  # present frames per clip
    # present frames first, in their order: a stable sort on "absent"
    order = torch.sort((~any_body).to(torch.int8), dim=1, stable=True).indices
    pos = (
        torch.linspace(0, 1, frames, dtype=torch.float64)[None] * (count - 1).clamp(min=0)[:, None]
    )
    idx = order.gather(1, pos.round().long())  # (N, frames) frame indices
    take = idx[:, None, :, None, None].expand(-1, x.shape[1], -1, x.shape[3], x.shape[4])
    return xc.gather(2, take).flatten(1)


def centroid_predict(
    train: SkeletonSet, test: SkeletonSet, kind: str = "pose", frames: int = 16
) -> torch.Tensor:
    """(len(test),) class predicted for each ``test`` clip by the nearest-centroid classifier
    fitted on ``train``."""
    if train.class_names != test.class_names:
        raise DataError(
            f"expected the training class names, got {test.class_names[:3]}... in {test.source}"
        )
    if train.x.shape[1:2] + train.x.shape[3:] != test.x.shape[1:2] + test.x.shape[3:]:
        raise DataError(
            f"expected (C, V, M) = {(train.x.shape[1], *train.x.shape[3:])} like the training set, "
            f"got {(test.x.shape[1], *test.x.shape[3:])} in {test.source} field 'x'"
        )
    ftr, fte = clip_features(train, kind, frames), clip_features(test, kind, frames)
    k = train.num_classes
    counts = torch.bincount(train.y, minlength=k).double()
    cent = (
        torch.zeros(k, ftr.shape[1], dtype=torch.float64).index_add_(0, train.y, ftr)
        / counts.clamp(min=1)[:, None]
    )
    dist = torch.cdist(fte, cent)
    dist[:, counts == 0] = float("inf")
    return dist.argmin(1)


def centroid_baseline(
    train: SkeletonSet, test: SkeletonSet, kind: str = "pose", frames: int = 16
) -> float:
    """Accuracy on ``test`` of the nearest-centroid classifier fitted on ``train`` (NaN when
    ``test`` is empty)."""
    pred = centroid_predict(train, test, kind, frames)
    return float((pred == test.y).double().mean()) if len(test) else float("nan")
