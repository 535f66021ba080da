"""Which temporal frequencies of a transfer perturbation fool a victim?

A transfer attack's perturbation ``δ = x_adv - x`` is split along time into a low band (the
``cutoff`` lowest bins of the real FFT over the clip's frames, inverted, kept on the present
(frame, body) slots) and the high band ``δ - low``, so ``low + high = δ`` (up to float rounding) and padding and
absent bodies stay zero. Each part is then *probed* at the full budget: ``x + ε·sign(part)``, the
L∞ step every sign attack takes, so the probes of one clip have the same L∞ and L2 size and differ
only in their sign pattern. With the perturbation itself, its ε·sign and an ε·random-sign control
on the same coordinates, a row says how much of a surrogate's transfer comes from smooth motion
and how much from frame-to-frame jitter, and which the victim is sensitive to. Every probe is
checked against the threat model before a model sees it.

``robench spectrum RESULTS_DIR --victim V`` runs it over the transfer generations a benchmark run
cached in ``RESULTS_DIR/cache/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robench.data.skeleton import presence_mask
from robench.errors import ConfigError, DataError
from robench.run.metrics import _margin
from robench.threat import ThreatModel

PROBES = ("perturbation", "sign", "low-sign", "high-sign", "random-sign")


def temporal_bands(
    delta: torch.Tensor, x: torch.Tensor, cutoff: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) parts of an (N, C, T, V, M) perturbation: ``low`` keeps the ``cutoff`` lowest
    real-FFT bins over T (bin 0 is the clip's mean offset) on the slots present in ``x``;
    ``high = delta - low``."""
    if delta.dim() != 5 or delta.shape != x.shape:
        raise ConfigError(
            f"expected a perturbation shaped like its (N, C, T, V, M) clips, got "
            f"{tuple(delta.shape)} for clips {tuple(x.shape)}"
        )
    bins = delta.shape[2] // 2 + 1
    if isinstance(cutoff, bool) or not isinstance(cutoff, int) or not 0 < cutoff < bins:
        raise ConfigError(
            f"expected an integer in 1..{bins - 1} (a clip of {delta.shape[2]} frames has "
            f"{bins} frequency bins), got {cutoff!r} in option '--cutoff'"
        )
    f = torch.fft.rfft(delta.double(), dim=2)
    keep = (torch.arange(bins, device=delta.device) < cutoff).view(1, 1, -1, 1, 1)
    low = torch.fft.irfft(f * keep, n=delta.shape[2], dim=2) * presence_mask(x)
    low = low.to(delta.dtype)
    return low, delta - low


def sign_probe(x: torch.Tensor, part: torch.Tensor, eps: float) -> torch.Tensor:
    """``x + eps * sign(part)``: every coordinate where ``part`` is non-zero moved by exactly eps."""
    return x + eps * torch.sign(part)


def probes(
    x: torch.Tensor, x_adv: torch.Tensor, eps: float, cutoff: int, seed: int = 0
) -> tuple[dict[str, torch.Tensor], float]:
    """The probes of :data:`PROBES` for clips ``x`` and their adversarial versions, and the low
    band's share of the perturbation's L2 norm. The random signs are drawn (from ``seed``) on the
    coordinates the perturbation moved."""
    delta = x_adv - x
    low, high = temporal_bands(delta, x, cutoff)
    g = torch.Generator().manual_seed(seed)
    coin = torch.rand(delta.shape, generator=g).to(delta.device) < 0.5
    rnd = torch.where(coin, 1.0, -1.0).to(delta.dtype) * (delta != 0)
    out = {
        "perturbation": x_adv,
        "sign": sign_probe(x, delta, eps),
        "low-sign": sign_probe(x, low, eps),
        "high-sign": sign_probe(x, high, eps),
        "random-sign": sign_probe(x, rnd, eps),
    }
    share = float(low.double().norm() / delta.double().norm().clamp_min(1e-300))
    return out, share


@torch.no_grad()
def _margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat(
        [_margin(model(x[i : i + batch_size]), y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    )  # fmt: skip


def band_transfer(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    threat: ThreatModel,
    cutoff: int = 5,
    batch_size: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """One row: on the clips ``model`` classifies correctly, the share fooled by each probe
    (``fooled``), the count ``n``, and ``low_share`` (the low band's share of ‖δ‖₂). Each probe
    is projected onto the threat model (which absorbs the float rounding of ``x ± eps``) and
    checked; one that still leaves it raises :class:`~robench.errors.DataError`. L∞ only: an L2
    sign probe would be projected to another shape."""
    if threat.norm != "linf":
        raise ConfigError(f"expected an linf threat model, got {threat.norm!r} in field 'norm'")
    ps, share = probes(x, x_adv, threat.eps, cutoff, seed)
    ok = _margins(model, x, y, batch_size) > 0
    fooled = {}
    for name, xp in ps.items():
        xp = threat.project(x, xp)  # the float rounding of x + eps, and any joint or frame mask
        bad = threat.check(x, xp)
        if bad:
            raise DataError(f"probe {name!r} leaves the threat model: {bad[0]}")
        m = _margins(model, xp, y, batch_size)
        fooled[name] = float((m[ok] <= 0).double().mean()) if ok.any() else float("nan")
    return {"n": int(ok.sum()), "low_share": share, "fooled": fooled}


def generations(results_dir: str | Path) -> list[dict[str, Any]]:
    """The transfer generations cached in ``RESULTS_DIR/cache/transfer-*.pt``, sorted by surrogate
    and attack id: each a dict with ``x_adv``, ``ids``, ``config`` (parsed) and ``path``."""
    cache = Path(results_dir) / "cache"
    out = []
    for p in sorted(cache.glob("transfer-*.pt")):
        try:
            d = torch.load(p, map_location="cpu", weights_only=True)
            cfg = json.loads(d["config"])
            if not isinstance(d["x_adv"], torch.Tensor) or len(d["ids"]) != len(d["x_adv"]):
                raise ValueError("ids and x_adv differ in length")
        except Exception as e:  # noqa: BLE001 - any unreadable cache file is named
            raise DataError(f"{p}: not a transfer generation ({type(e).__name__}: {e})") from None
        out.append({"x_adv": d["x_adv"], "ids": list(d["ids"]), "config": cfg, "path": p})
    if not out:
        raise DataError(f"{cache}: no transfer generations (transfer-*.pt) to analyse")
    return sorted(out, key=lambda g: (surrogate_label(g["config"]), g["config"]["attack"]["id"]))


def surrogate_label(config: dict[str, Any]) -> str:
    """A generation's surrogate id, or ``a+b`` for one made from several (an ensemble)."""
    s = config.get("surrogate")
    if isinstance(s, dict):
        return str(s.get("id"))
    if isinstance(s, list):
        return "+".join(str(d.get("id") if isinstance(d, dict) else d) for d in s)
    return str(s)
