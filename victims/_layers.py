"""Helpers shared by the GCN victims (ST-GCN, 2s-AGCN, CTR-GCN); not a victim itself.

The leading underscore keeps the victim registry from importing this module as a plugin.

All three papers use the same skeleton of a network: a BatchNorm over the raw coordinates
(``data_bn``), ten blocks whose channels double (and whose temporal stride is 2) at the fifth and
eighth block (64-64-64-64-128-128-128-256-256-256), global average pooling over (T, V), the mean
over persons and a linear classifier. :func:`channel_plan` generalises the plan to any depth: with
``depth`` blocks, block ``ceil(depth/3)`` and block ``ceil(2*depth/3)`` (0-based) double the channels
and have stride 2, which gives exactly blocks 4 and 7 for the papers' depth 10.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robench.errors import ConfigError


def check_config(cfg: object, width: int, depth: int, kernel: int, dropout: float) -> None:
    """Shared range checks of a victim config; raises ConfigError naming the field."""
    name = type(cfg).__qualname__
    if not isinstance(width, int) or width < 1:
        raise ConfigError(f"expected a positive integer, got {width!r} in {name}.width")
    if not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"expected a positive integer, got {depth!r} in {name}.depth")
    if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ConfigError(
            f"expected an odd positive integer, got {kernel!r} in {name}.temporal_kernel"
        )
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"expected a probability in [0, 1), got {dropout!r} in {name}.dropout")
    num_classes = getattr(cfg, "num_classes", 2)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"expected an integer >= 2, got {num_classes!r} in {name}.num_classes")
    persons = getattr(cfg, "num_persons", 1)
    if not isinstance(persons, int) or persons < 1:
        raise ConfigError(f"expected a positive integer, got {persons!r} in {name}.num_persons")


def channel_plan(in_channels: int, width: int, depth: int) -> list[tuple[int, int, int]]:
    """(in, out, temporal stride) per block; channels double with stride 2 at 1/3 and 2/3 depth.

    ``channel_plan(3, 64, 10)`` is the papers' plan: 3->64, 64->64 x3, 64->128 (stride 2),
    128->128 x2, 128->256 (stride 2), 256->256 x2.
    """
    doubling = {math.ceil(depth / 3), math.ceil(2 * depth / 3)} - {0}
    plan, c_in, c = [], in_channels, width
    for i in range(depth):
        stride = 1
        if i in doubling:
            c, stride = 2 * c, 2
        plan.append((c_in, c, stride))
        c_in = c
    return plan


def pad_persons(x: torch.Tensor, num_persons: int) -> torch.Tensor:
    """(N, C, T, V, M) -> (N, C, T, V, num_persons), appending all-zero (absent) bodies."""
    m = x.shape[4]
    if m == num_persons:
        return x
    return torch.cat([x, x.new_zeros(*x.shape[:4], num_persons - m)], dim=4)


def normalize_input(bn: nn.BatchNorm1d, x: torch.Tensor, per_person: bool) -> torch.Tensor:
    """``data_bn`` then fold persons into the batch: (N, C, T, V, M) -> (N*M, C, T, V).

    ``per_person`` True normalises M*V*C channels (2s-AGCN, CTR-GCN: each body slot has its own
    statistics); False normalises V*C channels shared by the bodies (the original ST-GCN).
    """
    n, c, t, v, m = x.shape
    h = x.permute(0, 4, 3, 1, 2).contiguous()  # N, M, V, C, T
    h = bn(h.view(n, m * v * c, t)) if per_person else bn(h.view(n * m, v * c, t))
    return h.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)


def pool(h: torch.Tensor, n: int) -> torch.Tensor:
    """(N*M, C, T, V) -> (N, C): mean over T and V, then over the M bodies (absent ones included)."""
    return h.mean(dim=(2, 3)).view(n, -1, h.shape[1]).mean(dim=1)


def init_kaiming(module: nn.Module, generator: torch.Generator) -> None:
    """The 2s-AGCN / CTR-GCN initialisation, drawn from ``generator``.

    Conv2d: Kaiming normal (fan_out), bias 0; BatchNorm: weight 1, bias 0; Linear: N(0, 2/out), bias 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.out_features), generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def seeded(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (weight initialisation is deterministic per config)."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g
