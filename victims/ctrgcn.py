"""CTR-GCN: channel-wise topology refinement graph convolution (Chen, Zhang, Yuan, Li, Deng and Hu,
ICCV 2021).

Input (N, 3, T, V, M) -> logits (N, num_classes). The network:

- temporal resize: the valid frames of each sample (frames up to its last frame with a present body)
  are resampled to ``num_frames`` (paper: 64) by linear interpolation with half-pixel centres
  (``F.interpolate(mode="linear", align_corners=False)`` semantics, per sample, batched with gather),
  so gradients reach every input frame. The paper does this in its data loader (with a 95 % central
  crop at test time); here it is part of the model, so attacks see the model the paper evaluates.
  We keep all valid frames (no crop); ``num_frames=0`` disables the resize;
- ``data_bn``: BatchNorm1d over M*V*C;
- ``depth`` blocks ``l1..l{depth}`` (paper: 10, channels 64x4, 128x3, 256x3, stride 2 where the
  channels double); block = ReLU(MS-TCN(CTR-GC(h)) + res(h)), res = 0 in l1, identity when the shape
  is kept, else a strided 1x1 conv + BN;
- CTR-GC with K = 3 subsets (identity, inward, outward of ``topology.inward_outward()``, rows =
  targets): for subset k, with x of shape (C, T, V),

      M_k(u, v) = tanh( psi_k(mean_t x)_u - phi_k(mean_t x)_v )   # R = C_in/8 channels (8 when C_in<=9)
      Q_k = alpha * xi_k(M_k) + PA_k                               # (C_out, V, V), xi = 1x1 conv
      z[c, t, u] = sum_k sum_v Q_k[c, u, v] * (W_k x)[c, t, v]
      out = ReLU( BN(z) + down(x) )

  PA_k is the learnable shared topology (init A_k), alpha a learnable scalar (init 0), W_k a 1x1
  conv (``conv3``), psi/phi/xi the ``conv1``/``conv2``/``conv4`` 1x1 convs; ``down`` = 1x1 conv + BN
  when C_in != C_out. psi/phi are applied to the temporal mean (the released code averages after the
  1x1 conv; the two are equal because the conv is linear);
- multi-scale TCN: branches of C_out/(len(dilations)+2) channels: for each dilation d (paper 1, 2)
  1x1 conv-BN-ReLU then a ``temporal_kernel`` (paper 5) x 1 conv with dilation d + BN; a 1x1
  conv-BN-ReLU-maxpool(3x1)-BN branch; a strided 1x1 conv-BN branch; outputs concatenated;
- global average pooling over (T, V), the mean over bodies, dropout (default 0, as the paper's
  NTU setting), linear ``fc``.

State-dict keys follow the released code (``data_bn``, ``l{i}.gcn1.{PA, alpha, convs.k.conv1..4,
bn, down}``, ``l{i}.tcn1.branches.j``, ``l{i}.residual``, ``fc``). Departures: the subset
convolutions run as fused tensor ops (same function); initialisation as the released code (Kaiming
fan-out convs, BN 1 (N(1, 0.02) in the TCN), graph-conv BN 1e-6, ``fc`` N(0, 2/num_classes)) but from a generator seeded with
``init_seed``; inputs with fewer than ``num_persons`` bodies are padded with absent (zero) bodies.
"""

from __future__ import annotations

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
class CTRGCNConfig(VictimConfig):
    """CTR-GCN hyper-parameters; defaults are the paper's."""

    width: int = 64  # channels of the first block (doubled twice); divisible by len(dilations)+2
    depth: int = 10  # number of blocks
    temporal_kernel: int = 5  # kernel of the dilated TCN branches (odd)
    dilations: tuple[int, ...] = (1, 2)
    dropout: float = 0.0  # before the classifier
    rel_reduction: int = 8  # R = C_in // rel_reduction (8 when C_in <= 9)
    num_frames: int = 64  # valid frames resized to this length; 0 = no resize
    init_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dilations", tuple(self.dilations))
        check_config(self, self.width, self.depth, self.temporal_kernel, self.dropout)
        if not self.dilations or any(not isinstance(d, int) or d < 1 for d in self.dilations):
            raise ConfigError(
                f"expected positive integers, got {self.dilations!r} in CTRGCNConfig.dilations"
            )
        branches = len(self.dilations) + 2
        if self.width % branches:
            raise ConfigError(
                f"expected a multiple of {branches} (len(dilations)+2 TCN branches), got "
                f"{self.width} in CTRGCNConfig.width"
            )
        if not isinstance(self.rel_reduction, int) or self.rel_reduction < 1:
            raise ConfigError(
                f"expected a positive integer, got {self.rel_reduction!r} in CTRGCNConfig.rel_reduction"
            )
        if not isinstance(self.num_frames, int) or self.num_frames < 0:
            raise ConfigError(
                f"expected an integer >= 0, got {self.num_frames!r} in CTRGCNConfig.num_frames"
            )


def resize_valid_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Resample each sample's valid frames to ``num_frames`` by linear interpolation.

    x (N, C, T, V, M) -> (N, C, num_frames, V, M). The valid length L_n is 1 + the last frame with a
    present body (at least 1). Output frame i reads source position
    p = clamp((i + 0.5) L_n / num_frames - 0.5, 0) and mixes frames floor(p) and min(floor(p)+1, L_n-1)
    with weights (1 - frac, frac), exactly as ``F.interpolate(..., mode="linear",
    align_corners=False)`` on the first L_n frames. Differentiable in x; when L_n == num_frames it is
    the identity.
    """
    n, c, t, v, m = x.shape
    present = (x != 0).any(dim=1).flatten(2).any(dim=2)  # (N, T)
    frame = torch.arange(1, t + 1, device=x.device)
    length = torch.where(present, frame, torch.zeros_like(frame)).amax(dim=1).clamp(min=1)  # (N,)
    out_idx = torch.arange(num_frames, device=x.device, dtype=x.dtype)
    pos = ((out_idx + 0.5)[None, :] * length[:, None].to(x.dtype) / num_frames - 0.5).clamp(min=0.0)
    i0 = pos.floor().long()
    last = (length - 1)[:, None]
    i0 = torch.minimum(i0, last)
    i1 = torch.minimum(i0 + 1, last)
    w = (pos - i0.to(x.dtype)).clamp(0.0, 1.0).view(n, 1, num_frames, 1, 1)

    def take(idx: torch.Tensor) -> torch.Tensor:
        return torch.gather(x, 2, idx.view(n, 1, num_frames, 1, 1).expand(n, c, num_frames, v, m))

    return take(i0) * (1.0 - w) + take(i1) * w


class CTRGC(nn.Module):
    """Parameters of one subset's channel-wise topology refinement (conv1..conv4 of the paper)."""

    def __init__(self, c_in: int, c_out: int, rel_reduction: int) -> None:
        super().__init__()
        rel = 8 if c_in <= 9 else max(1, c_in // rel_reduction)
        self.conv1 = nn.Conv2d(c_in, rel, 1)
        self.conv2 = nn.Conv2d(c_in, rel, 1)
        self.conv3 = nn.Conv2d(c_in, c_out, 1)
        self.conv4 = nn.Conv2d(rel, c_out, 1)


class CTRGraphConv(nn.Module):
    """CTR-GC over K subsets, summed, BN, residual ``down``, ReLU; (B, C_in, T, V) -> (B, C_out, T, V)."""

    def __init__(self, c_in: int, c_out: int, a: torch.Tensor, rel_reduction: int) -> None:
        super().__init__()
        self.k = a.shape[0]
        self.convs = nn.ModuleList(CTRGC(c_in, c_out, rel_reduction) for _ in range(self.k))
        self.PA = nn.Parameter(a.clone())
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(c_out)
        if c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.BatchNorm2d(c_out))
        else:
            self.down = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, v = x.shape
        k, convs = self.k, self.convs
        # psi and phi of every subset on the temporal mean, as one matrix product
        w12 = torch.cat([g.conv1.weight for g in convs] + [g.conv2.weight for g in convs]).flatten(
            1
        )
        b12 = torch.cat([g.conv1.bias for g in convs] + [g.conv2.bias for g in convs])
        q = torch.einsum("oc,bcv->bov", w12, x.mean(dim=2)) + b12[:, None]
        q1, q2 = q.view(b, 2, k, -1, v).unbind(1)  # (B, K, R, V) each
        rel = torch.tanh(q1.unsqueeze(-1) - q2.unsqueeze(-2))  # (B, K, R, V, V)
        w4 = torch.stack([g.conv4.weight.flatten(1) for g in convs])  # (K, C_out, R)
        b4 = torch.stack([g.conv4.bias for g in convs])  # (K, C_out)
        refine = torch.einsum("kor,bkruv->bkouv", w4, rel) + b4[None, :, :, None, None]
        adj = refine * self.alpha + self.PA[None, :, None]  # (B, K, C_out, V, V), rows = targets
        w3 = torch.cat([g.conv3.weight for g in convs])
        b3 = torch.cat([g.conv3.bias for g in convs])
        x3 = F.conv2d(x, w3, b3).view(b, k, -1, t, v)
        y = self.bn(torch.einsum("bkouv,bkotv->botu", adj, x3))
        y = y + (x if self.down is None else self.down(x))
        return torch.relu(y)


class TemporalConv(nn.Module):
    """(kernel x 1) conv with stride and dilation, 'same' padding, + BN."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        pad = (kernel + (kernel - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(c_in, c_out, (kernel, 1), (stride, 1), (pad, 0), (dilation, 1))
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class MultiScaleTCN(nn.Module):
    """Dilated conv branches + max-pool branch + strided 1x1 branch, concatenated over channels."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, dilations: tuple[int, ...]
    ) -> None:
        super().__init__()
        bc = c_out // (len(dilations) + 2)
        branches = [
            nn.Sequential(
                nn.Conv2d(c_in, bc, 1),
                nn.BatchNorm2d(bc),
                nn.ReLU(inplace=True),
                TemporalConv(bc, bc, kernel, stride, d),
            )
            for d in dilations
        ]
        branches.append(
            nn.Sequential(
                nn.Conv2d(c_in, bc, 1),
                nn.BatchNorm2d(bc),
                nn.ReLU(inplace=True),
                nn.MaxPool2d((3, 1), (stride, 1), (1, 0)),
                nn.BatchNorm2d(bc),
            )
        )
        branches.append(
            nn.Sequential(nn.Conv2d(c_in, bc, 1, stride=(stride, 1)), nn.BatchNorm2d(bc))
        )
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([br(x) for br in self.branches], dim=1)


class CTRGCNBlock(nn.Module):
    """TCN_GCN unit: ReLU(MS-TCN(CTR-GC(x)) + residual(x))."""

    def __init__(
        self, c_in: int, c_out: int, a: torch.Tensor, stride: int, residual: bool, cfg: CTRGCNConfig
    ) -> None:
        super().__init__()
        self.gcn1 = CTRGraphConv(c_in, c_out, a, cfg.rel_reduction)
        self.tcn1 = MultiScaleTCN(c_out, c_out, cfg.temporal_kernel, stride, cfg.dilations)
        self._identity = residual and c_in == c_out and stride == 1
        use_conv = residual and not self._identity
        self.residual = TemporalConv(c_in, c_out, 1, stride) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn1(self.gcn1(x))
        if self.residual is not None:
            y = y + self.residual(x)
        elif self._identity:
            y = y + x
        return torch.relu(y)


@register_victim("ctrgcn")
class CTRGCN(Victim):
    """CTR-GCN (Chen et al., ICCV 2021) with in-model temporal resize; see the module doc."""

    paper = 'Chen et al., "Channel-wise Topology Refinement Graph Convolution for Skeleton-Based Action Recognition", ICCV 2021'

    Config = CTRGCNConfig

    def __init__(self, config: CTRGCNConfig) -> None:
        super().__init__(config)
        cfg = config
        a = torch.from_numpy(self.topology.inward_outward())
        v = a.shape[1]
        self.data_bn = nn.BatchNorm1d(cfg.num_persons * cfg.in_channels * v)
        plan = channel_plan(cfg.in_channels, cfg.width, cfg.depth)
        for i, (c_in, c_out, stride) in enumerate(plan):
            self.add_module(
                f"l{i + 1}", CTRGCNBlock(c_in, c_out, a, stride, residual=i != 0, cfg=cfg)
            )
        self.drop_out = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(plan[-1][1], cfg.num_classes)
        g = seeded(cfg.init_seed)
        init_kaiming(self, g)
        for m in self.modules():
            if isinstance(m, CTRGraphConv):
                nn.init.constant_(m.bn.weight, 1e-6)
            elif isinstance(m, MultiScaleTCN):  # the released code's weights_init for the TCN
                for bn in m.modules():
                    if isinstance(bn, nn.BatchNorm2d):
                        nn.init.normal_(bn.weight, 1.0, 0.02, generator=g)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.config.num_frames:
            x = resize_valid_frames(x, self.config.num_frames)
        h = normalize_input(self.data_bn, pad_persons(x, self.config.num_persons), per_person=True)
        for i in range(self.config.depth):
            h = getattr(self, f"l{i + 1}")(h)
        return self.fc(self.drop_out(pool(h, n)))
