"""2s-AGCN: two-stream adaptive graph convolutional network (Shi, Zhang, Cheng and Lu, CVPR 2019).

Input (N, 3, T, V, M) -> logits (N, num_classes). One victim holds both streams of the paper: the
joint stream reads x, the bone stream reads the bone vectors ``x_v - x_parent(v)``
(``topology.bone_vectors``, zero at the root); the logits are the SUM of the two streams' scores,
the paper's two-stream fusion ("add the softmax scores"; we add the scores before any softmax, so
the result stays differentiable logits). Each stream is a full AGCN:

- ``data_bn``: BatchNorm1d over M*V*C (one statistic per body slot);
- ``depth`` blocks ``l1..l{depth}`` (paper: 10, channels 64x4, 128x3, 256x3, stride 2 where the
  channels double); block = ReLU(TCN(AGC(h)) + res(h)), TCN = 9x1 conv + BN (``temporal_kernel``),
  res = 0 in l1, identity when the shape is kept, else a strided 1x1 conv + BN;
- adaptive graph conv with K = 3 subsets (identity, inward, outward of
  ``topology.inward_outward()``), f_in of shape (C, T, V):

      C_k = softmax_dim0( theta_k(f)^T phi_k(f) / (C_e T) )      # embedded Gaussian, (V, V)
      f_out = ReLU( BN( sum_k W_k f_in (A_k + B_k + C_k) ) + down(f_in) )

  where theta/phi are 1x1 convs to C_e = C_out/4 channels (``conv_a``/``conv_b``), W_k the 1x1
  ``conv_d``, A_k fixed, B_k learnable (init 0, the released code's ``PA``), the softmax normalises
  over the source joints (columns sum to 1), and ``down`` is a 1x1 conv + BN when C_in != C_out;
- global average pooling over (T, V), the mean over bodies, dropout (``dropout``, default 0 =
  the paper), a linear classifier ``fc``.

The graph is applied as in the released code, ``f_in @ A`` (rows of A are sources), so official
checkpoints behave identically; the state-dict keys follow it too (``joint.``/``bone.`` prefix,
then ``data_bn``, ``l{i}.gcn1.{PA, conv_a.k, conv_b.k, conv_d.k, bn, down}``, ``l{i}.tcn1``,
``l{i}.residual``, ``fc``). Departures: B_k starts at exactly 0 (the paper; the code uses 1e-6);
the K subset convolutions are evaluated as one fused convolution each (same function, faster);
initialisation follows the released code (Kaiming fan-out convs, ``conv_d`` N(0, 2/(C_out C_in K)),
the graph-conv BN weight 1e-6, ``fc`` N(0, 2/num_classes)) from a generator seeded with
``init_seed``; inputs with fewer than ``num_persons`` bodies are padded with absent (zero) bodies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robench.errors import ConfigError
from robench.victim import Victim, VictimConfig, register_victim

from ._layers import (
    channel_plan,
    check_config,
    init_kaiming,
    normalize_input,
    pad_persons,
    pool,
    seeded,
)


@dataclass(frozen=True)
class AGCNConfig(VictimConfig):
    """2s-AGCN hyper-parameters; defaults are the paper's."""

    width: int = 64  # channels of the first block (doubled twice)
    depth: int = 10  # number of blocks per stream
    temporal_kernel: int = 9  # temporal convolution length (odd)
    dropout: float = 0.0  # before the classifier (the paper has none)
    embedding_ratio: int = 4  # C_e = C_out // embedding_ratio (the code's coff_embedding)
    init_seed: int = 0

    def __post_init__(self) -> None:
        check_config(self, self.width, self.depth, self.temporal_kernel, self.dropout)
        if not isinstance(self.embedding_ratio, int) or not 1 <= self.embedding_ratio <= self.width:
            raise ConfigError(
                f"expected an integer in [1, width={self.width}], got {self.embedding_ratio!r} "
                "in AGCNConfig.embedding_ratio"
            )


class AdaptiveGraphConv(nn.Module):
    """The adaptive graph convolution (A_k + B_k + C_k), K subsets; (B, C_in, T, V) -> (B, C_out, T, V)."""

    def __init__(self, c_in: int, c_out: int, a: torch.Tensor, ratio: int) -> None:
        super().__init__()
        k = a.shape[0]
        self.k = k
        self.inter = max(1, c_out // ratio)
        self.register_buffer("A", a.clone(), persistent=False)
        self.PA = nn.Parameter(torch.zeros_like(a))
        self.conv_a = nn.ModuleList(nn.Conv2d(c_in, self.inter, 1) for _ in range(k))
        self.conv_b = nn.ModuleList(nn.Conv2d(c_in, self.inter, 1) for _ in range(k))
        self.conv_d = nn.ModuleList(nn.Conv2d(c_in, c_out, 1) for _ in range(k))
        self.bn = nn.BatchNorm2d(c_out)
        if c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.BatchNorm2d(c_out))
        else:
            self.down = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, v = x.shape
        k, e = self.k, self.inter
        # theta and phi of every subset as one 1x1 convolution
        w_ab = torch.cat([m.weight for m in self.conv_a] + [m.weight for m in self.conv_b])
        b_ab = torch.cat([m.bias for m in self.conv_a] + [m.bias for m in self.conv_b])
        ab = F.conv2d(x, w_ab, b_ab)
        theta = ab[:, : k * e].reshape(b, k, e, t, v).permute(0, 1, 4, 2, 3).reshape(b, k, v, e * t)
        phi = ab[:, k * e :].reshape(b, k, e * t, v)
        c_k = torch.softmax(theta @ phi / (e * t), dim=-2)  # (B, K, V, V), columns sum to 1
        adj = c_k + (self.A + self.PA)  # (B, K, V, V): A_k + B_k + C_k, rows = sources
        agg = x.reshape(b, 1, c * t, v) @ adj  # (B, K, C*T, V)
        w_d = torch.cat([m.weight for m in self.conv_d], dim=1)  # (C_out, K*C_in, 1, 1)
        b_d = torch.stack([m.bias for m in self.conv_d]).sum(0)
        y = self.bn(F.conv2d(agg.reshape(b, k * c, t, v), w_d, b_d))
        y = y + (x if self.down is None else self.down(x))
        return torch.relu(y)


class UnitTCN(nn.Module):
    """Temporal conv (kernel x 1, stride) + BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, (kernel, 1), (stride, 1), ((kernel - 1) // 2, 0))
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class AGCNBlock(nn.Module):
    """TCN_GCN unit: ReLU(TCN(AGC(x)) + residual(x))."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        a: torch.Tensor,
        kernel: int,
        stride: int,
        residual: bool,
        ratio: int,
    ) -> None:
        super().__init__()
        self.gcn1 = AdaptiveGraphConv(c_in, c_out, a, ratio)
        self.tcn1 = UnitTCN(c_out, c_out, kernel, stride)
        self._identity = residual and c_in == c_out and stride == 1
        use_conv = residual and not self._identity
        self.residual = UnitTCN(c_in, c_out, 1, stride) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn1(self.gcn1(x))
        if self.residual is not None:
            y = y + self.residual(x)
        elif self._identity:
            y = y + x
        return torch.relu(y)


class AGCNStream(nn.Module):
    """One AGCN stream: data_bn, blocks l1..l{depth}, pooling, dropout, fc; (N,C,T,V,M) -> (N,K)."""

    def __init__(self, cfg: AGCNConfig, a: torch.Tensor) -> None:
        super().__init__()
        self.num_persons = cfg.num_persons
        v = a.shape[1]
        self.data_bn = nn.BatchNorm1d(cfg.num_persons * cfg.in_channels * v)
        plan = channel_plan(cfg.in_channels, cfg.width, cfg.depth)
        for i, (c_in, c_out, stride) in enumerate(plan):
            block = AGCNBlock(
                c_in,
                c_out,
                a,
                cfg.temporal_kernel,
                stride,
                residual=i != 0,
                ratio=cfg.embedding_ratio,
            )
            self.add_module(f"l{i + 1}", block)
        self.depth = cfg.depth
        self.drop_out = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(plan[-1][1], cfg.num_classes)

    def init_weights(self, g: torch.Generator) -> None:
        init_kaiming(self, g)
        for m in self.modules():
            if isinstance(m, AdaptiveGraphConv):
                for conv in m.conv_d:  # conv_branch_init
                    n, k1 = conv.weight.shape[:2]
                    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (n * k1 * m.k)), generator=g)
                nn.init.constant_(m.bn.weight, 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        h = normalize_input(self.data_bn, pad_persons(x, self.num_persons), per_person=True)
        for i in range(self.depth):
            h = getattr(self, f"l{i + 1}")(h)
        return self.fc(self.drop_out(pool(h, n)))


@register_victim("agcn")
class AGCN(Victim):
    """2s-AGCN (Shi et al., CVPR 2019): joint stream + bone stream, scores summed; see the module doc."""

    paper = 'Shi, Zhang, Cheng and Lu, "Two-Stream Adaptive Graph Convolutional Networks for Skeleton-Based Action Recognition", CVPR 2019'

    Config = AGCNConfig

    def __init__(self, config: AGCNConfig) -> None:
        super().__init__(config)
        a = torch.from_numpy(self.topology.inward_outward())
        self.joint = AGCNStream(config, a)
        self.bone = AGCNStream(config, a)
        g = seeded(config.init_seed)
        self.joint.init_weights(g)
        self.bone.init_weights(g)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.joint(x) + self.bone(self.topology.bone_vectors(x))
