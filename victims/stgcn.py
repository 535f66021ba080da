"""ST-GCN: spatial-temporal graph convolutional network (Yan, Xiong and Lin, AAAI 2018).

Input (N, 3, T, V, M) -> logits (N, num_classes). The network:

- ``data_bn``: BatchNorm1d over the V*C coordinates of each body (the released code; set
  ``data_bn="MVC"`` for one statistic per body slot, M*V*C channels, as in 2s-AGCN);
- ``depth`` st-gcn blocks (paper: 10, channels 64x4, 128x3, 256x3, temporal stride 2 where the
  channels double); block i computes, with the K = 3 "spatial configuration" partitions
  A_k = ``topology.spatial_partition()`` (root / centrifugal / centripetal, A D^-1 normalised) and a
  learnable edge-importance mask M_i (init ones, one per block),

      g = sum_k (W_k h) (A_k * M_ik)          # 1x1 conv to K*C_out channels, then einsum with A
      h' = ReLU( Dropout(BN(TConv_9(ReLU(BN(g))))) + res(h) )

  with a 9x1 temporal convolution, ``res`` = 0 in the first block, identity when the shape is kept,
  else a strided 1x1 conv + BN;
- global average pooling over (T, V), the mean over the M bodies, a 1x1 conv classifier ``fcn``.

State-dict keys follow the released code (``data_bn``, ``st_gcn_networks.{i}.gcn.conv``,
``.tcn.{0,2,3}``, ``.residual.{0,1}``, ``edge_importance.{i}``, ``fcn``).
Departures from the paper/released code: (1) the partition is ``Topology.spatial_partition()``,
whose subset order (root, centrifugal incl. equidistant neighbours, centripetal) is the released
graph code's, so official checkpoints' ``gcn.conv`` chunks line up; (2) weights are initialised as the released training code does
(conv N(0, 0.02), BN weight N(1, 0.02)) but from a generator seeded with ``init_seed``; (3) inputs
with fewer than ``num_persons`` bodies are padded with absent (all-zero) bodies, which the mean over
bodies then includes, as on the zero-padded NTU arrays the paper trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robench.errors import ConfigError
from robench.victim import Victim, VictimConfig, register_victim

from ._layers import (
    channel_plan,
    check_config,
    normalize_input,
    pad_persons,
    pool,
    seeded,
)


@dataclass(frozen=True)
class STGCNConfig(VictimConfig):
    """ST-GCN hyper-parameters; defaults are the paper's (NTU RGB+D setting)."""

    width: int = 64  # channels of the first block (doubled twice)
    depth: int = 10  # number of st-gcn blocks
    temporal_kernel: int = 9  # temporal convolution length (odd)
    dropout: float = 0.5  # after each block's temporal conv (not in the first block)
    edge_importance: bool = True  # learnable per-block mask on the adjacency
    data_bn: str = "VC"  # "VC" (released ST-GCN) or "MVC" (one statistic per body slot)
    init_seed: int = 0

    def __post_init__(self) -> None:
        check_config(self, self.width, self.depth, self.temporal_kernel, self.dropout)
        if self.data_bn not in ("VC", "MVC"):
            raise ConfigError(
                f"expected 'VC' or 'MVC', got {self.data_bn!r} in STGCNConfig.data_bn"
            )


class ConvTemporalGraphical(nn.Module):
    """Spatial graph conv: 1x1 conv to K*C_out channels, then sum_k over A_k (einsum)."""

    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.conv = nn.Conv2d(c_in, c_out * k, kernel_size=1)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, T, V), a (K, V, W) with a[k, source, target] -> (B, C_out, T, W)."""
        y = self.conv(x)
        b, kc, t, v = y.shape
        return torch.einsum("bkctv,kvw->bctw", y.view(b, self.k, kc // self.k, t, v), a)


class STGCNBlock(nn.Module):
    """One st-gcn unit: graph conv, BN-ReLU-TConv-BN-Dropout, residual, ReLU."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        k: int,
        kernel: int,
        stride: int,
        dropout: float,
        residual: bool,
    ) -> None:
        super().__init__()
        self.gcn = ConvTemporalGraphical(c_in, c_out, k)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, (kernel, 1), (stride, 1), ((kernel - 1) // 2, 0)),
            nn.BatchNorm2d(c_out),
            nn.Dropout(dropout, inplace=True),
        )
        if not residual:
            self.residual = None
            self._identity = False
        elif c_in == c_out and stride == 1:
            self.residual = None
            self._identity = True
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=(stride, 1)), nn.BatchNorm2d(c_out)
            )
            self._identity = False

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x, a))
        if self.residual is not None:
            y = y + self.residual(x)
        elif self._identity:
            y = y + x
        return torch.relu(y)


@register_victim("stgcn")
class STGCN(Victim):
    """ST-GCN (Yan et al., AAAI 2018) with the spatial-configuration partition; see the module doc."""

    paper = 'Yan, Xiong and Lin, "Spatial Temporal Graph Convolutional Networks for Skeleton-Based Action Recognition", AAAI 2018'

    Config = STGCNConfig

    def __init__(self, config: STGCNConfig) -> None:
        super().__init__(config)
        cfg = config
        a = torch.from_numpy(self.topology.spatial_partition())
        self.register_buffer("A", a)
        k, v = a.shape[0], a.shape[1]
        persons = cfg.num_persons if cfg.data_bn == "MVC" else 1
        self.data_bn = nn.BatchNorm1d(persons * cfg.in_channels * v)
        plan = channel_plan(cfg.in_channels, cfg.width, cfg.depth)
        self.st_gcn_networks = nn.ModuleList(
            STGCNBlock(
                c_in,
                c_out,
                k,
                cfg.temporal_kernel,
                stride,
                dropout=0.0 if i == 0 else cfg.dropout,
                residual=i != 0,
            )
            for i, (c_in, c_out, stride) in enumerate(plan)
        )
        if cfg.edge_importance:
            self.edge_importance = nn.ParameterList(
                nn.Parameter(torch.ones(k, v, v)) for _ in self.st_gcn_networks
            )
        else:
            self.edge_importance = None
        self.fcn = nn.Conv2d(plan[-1][1], cfg.num_classes, kernel_size=1)
        self._init_weights(seeded(cfg.init_seed))

    def _init_weights(self, g: torch.Generator) -> None:
        """The released training code's init: conv N(0, 0.02), bias 0; BN weight N(1, 0.02), bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02, generator=g)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02, generator=g)
                nn.init.zeros_(m.bias)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = pad_persons(x, self.config.num_persons)
        h = normalize_input(self.data_bn, x, per_person=self.config.data_bn == "MVC")
        for i, block in enumerate(self.st_gcn_networks):
            a = self.A if self.edge_importance is None else self.A * self.edge_importance[i]
            h = block(h, a)
        feat = pool(h, n)  # (N, C)
        return self.fcn(feat[:, :, None, None]).flatten(1)
