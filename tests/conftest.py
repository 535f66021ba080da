"""Shared fixtures: tiny skeleton data made by the tests themselves."""

from __future__ import annotations

import pytest
import torch

from robench.data.dataset import SkeletonSet
from robench.data.skeleton import BUILTIN_TOPOLOGIES

torch.set_num_threads(1)


def make_tiny_set(n: int = 12, t: int = 16, classes: int = 3, seed: int = 0) -> SkeletonSet:
    """Random ntu25 clips in metres with zero-padded tails and an absent second body in half."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, t, 25, 2, generator=g) * 0.3
    lengths = torch.randint(t // 2, t + 1, (n,), generator=g)
    frame = torch.arange(t)[None, :] < lengths[:, None]
    x = x * frame[:, None, :, None, None]
    x[: n // 2, :, :, :, 1] = 0
    y = torch.arange(n) % classes
    return SkeletonSet(
        x=x,
        y=y,
        ids=tuple(f"s{i:03d}" for i in range(n)),
        class_names=tuple(f"c{k}" for k in range(classes)),
        topology=BUILTIN_TOPOLOGIES["ntu25"],
        unit="m",
        name="tiny",
        split=tuple("train" if i % 3 else "test" for i in range(n)),
    )


@pytest.fixture
def tiny_set() -> SkeletonSet:
    return make_tiny_set()


@pytest.fixture(autouse=True, scope="session")
def _isolated_artifact_cache(tmp_path_factory):
    """Post-training artefacts (robench.ops.posterior) go to a per-session folder, never ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ROBENCH_CACHE", str(tmp_path_factory.mktemp("robench-cache")))
    yield
    mp.undo()
