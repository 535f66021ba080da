"""The two skeleton encoders of the motion manifold's inter-skeleton contrastive pretraining.

- Graph encoder: an ST-GCN (:mod:`robench.victims.stgcn`) whose final 1×1 convolution outputs a
  ``dim``-dimensional embedding instead of class logits (``num_classes = dim``), so it is saved,
  verified and loaded like any victim checkpoint. It is the only encoder a no-box attack uses:
  the manifold's feature is its L2-normalised output (:func:`embed`).
- Sequence encoder (:class:`SequenceEncoder`): a bidirectional GRU over the frames, each frame the
  flattened 3·V·M coordinates, mean-pooled over the present frames, then a linear map to ``dim``
  (the BiGRU branch of Thoker, Doughty and Snoek, "Skeleton-Contrastive 3D Action Representation
  Learning", ACM MM 2021, which the hard no-box attack of Lu et al., ICCV 2023 pretrains with). Used
  only during pretraining, as the other view of the contrast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robench.data.skeleton import presence_mask
from robench.victim import Victim, build_victim


def graph_encoder(
    dim: int, width: int, depth: int, topology: str = "ntu25", init_seed: int = 0
) -> Victim:
    """An ST-GCN mapping (N, 3, T, V, M) clips to (N, dim) embeddings (no dropout)."""
    return build_victim(
        "stgcn",
        num_classes=dim,
        width=width,
        depth=depth,
        dropout=0.0,
        topology=topology,
        init_seed=init_seed,
    )


def embed(encoder: nn.Module, x: Tensor) -> Tensor:
    """The manifold feature: the encoder's output, L2-normalised per clip, (N, dim)."""
    return F.normalize(encoder(x), dim=1)


class SequenceEncoder(nn.Module):
    """BiGRU over frames (module docstring): (N, 3, T, V, M) -> (N, dim)."""

    def __init__(self, joints: int, persons: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(3 * joints * persons, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, v, m = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(n, t, c * v * m)
        h, _ = self.gru(frames)  # (N, T, 2·hidden)
        present = presence_mask(x).any(dim=4).view(n, t, 1).to(h.dtype)
        pooled = (h * present).sum(1) / present.sum(1).clamp_min(1.0)
        return self.out(pooled)


def sequence_encoder(joints: int, persons: int, dim: int, hidden: int, seed: int) -> nn.Module:
    """A :class:`SequenceEncoder` with weights drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SequenceEncoder(joints, persons, dim, hidden)
