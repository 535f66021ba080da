"""Per-sample metrics of an attacked batch, and the Wilson score interval for rates.

Perceptual statistics (every attack reports them, beside the harness's threat-model check), all computed
in float64 on the exact difference of the stored tensors, batched over the samples:

- ``linf``: ``max |x' - x|`` over all coordinates (data units);
- ``l2``: ``‖x' - x‖₂`` over all 3·T·V·M coordinates (data units);
- ``joint_disp_cm``: mean Euclidean displacement ``‖x'_{t,v,m} - x_{t,v,m}‖₂`` over the joints of present
  (frame, body) slots; in centimetres when the unit is metric, else in data units;
- ``bone_dev_pct``: mean ``|ℓ' - ℓ| / ℓ · 100`` over the bones of present slots with ``ℓ > 0``;
- ``accel_dev``: mean ``‖ẍ'_{t,v,m} - ẍ_{t,v,m}‖₂`` with ``ẍ_t = x_{t+1} - 2x_t + x_{t-1}`` (per frame²,
  no Δt, data units) over the joints of (t, body) where frames t-1, t, t+1 are all present.

A mean over an empty set (no present joint, T < 3, ...) is 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robench.data.skeleton import Topology, get_topology, presence_mask
from robench.errors import DataError

_CM_PER_UNIT = {"m": 100.0, "cm": 1.0, "mm": 0.1}


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """(N, ...) values, broadcastable bool mask -> (N,) mean over the mask (0 where it is empty)."""
    mask = mask.expand_as(values)
    n = values.shape[0]
    total = torch.where(mask, values, torch.zeros_like(values)).reshape(n, -1).sum(1)
    count = mask.reshape(n, -1).sum(1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))


def perturbation_stats(
    x: Tensor, x_adv: Tensor, topology: Topology | str, unit: str
) -> dict[str, Tensor]:
    """Perceptual statistics per sample (see the module docstring); each value is (N,) float64.

    ``x``, ``x_adv``: (N, 3, T, V, M); presence (padding, absent bodies) is read from the clean ``x``.
    """
    topo = get_topology(topology)
    if not isinstance(x_adv, Tensor) or x_adv.shape != x.shape:
        raise DataError(
            f"expected x_adv of shape {tuple(x.shape)}, got {tuple(getattr(x_adv, 'shape', ()))} in perturbation_stats"
        )
    topo.check_tensor(x, "x")
    n = x.shape[0]
    with torch.no_grad():
        xd, ad = x.detach().double(), x_adv.detach().double()
        d = ad - xd
        present = presence_mask(x.detach())  # (N, 1, T, 1, M)
        flat = d.reshape(n, -1)
        linf = flat.abs().amax(1) if flat.shape[1] else torch.zeros(n, dtype=torch.float64)
        l2 = flat.norm(dim=1)
        disp = d.norm(dim=1, keepdim=True)  # (N, 1, T, V, M)
        joint_disp = _masked_mean(disp, present) * _CM_PER_UNIT.get(unit, 1.0)
        lc = topo.bone_lengths(xd)  # (N, T, B, M)
        la = topo.bone_lengths(ad)
        rel = (la - lc).abs() / lc.clamp_min(1e-300) * 100.0
        bone_dev = _masked_mean(rel, present[:, 0] & (lc > 0))
        if x.shape[2] >= 3:
            acc_c = xd[:, :, 2:] - 2 * xd[:, :, 1:-1] + xd[:, :, :-2]
            acc_a = ad[:, :, 2:] - 2 * ad[:, :, 1:-1] + ad[:, :, :-2]
            acc_mask = present[:, :, 2:] & present[:, :, 1:-1] & present[:, :, :-2]
            accel = _masked_mean((acc_a - acc_c).norm(dim=1, keepdim=True), acc_mask)
        else:
            accel = torch.zeros(n, dtype=torch.float64, device=x.device)
    return {
        "linf": linf,
        "l2": l2,
        "joint_disp_cm": joint_disp,
        "bone_dev_pct": bone_dev,
        "accel_dev": accel,
    }


def _margin(logits: Tensor, y: Tensor) -> Tensor:
    """(N,) true-class logit minus the largest other logit (negative = misclassified)."""
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    other = logits.scatter(1, y.view(-1, 1), float("-inf")).amax(1)
    return true - other


def sample_metrics(
    logits_clean: Tensor,
    logits_adv: Tensor,
    y: Tensor,
    x: Tensor,
    x_adv: Tensor,
    topology: Topology | str,
    unit: str,
    queries: Tensor | None = None,
) -> dict[str, Tensor]:
    """Every per-sample column of the store for one attacked batch.

    Adds to :func:`perturbation_stats`: ``clean_pred``, ``adv_pred`` (int64 argmax), ``clean_correct``,
    ``success`` (bool; untargeted: clean correct and adversarial wrong), ``margin_clean``,
    ``margin_adv`` (float64; true logit minus the largest other), ``queries`` (int64; -1 when the
    attack does not query). ``logits_*``: (N, K) with K >= 2; ``y``: (N,) int64.
    """
    n = x.shape[0]
    for name, lg in (("logits_clean", logits_clean), ("logits_adv", logits_adv)):
        if lg.dim() != 2 or lg.shape[0] != n or lg.shape[1] < 2:
            raise DataError(
                f"expected logits of shape ({n}, K >= 2), got {tuple(lg.shape)} in {name}"
            )
    if logits_adv.shape != logits_clean.shape:
        raise DataError(
            f"expected logits_adv of shape {tuple(logits_clean.shape)}, got {tuple(logits_adv.shape)}"
        )
    if y.shape != (n,) or y.dtype != torch.int64:
        raise DataError(
            f"expected int64 labels of shape ({n},), got {y.dtype} {tuple(y.shape)} in y"
        )
    k = logits_clean.shape[1]
    if n and (int(y.min()) < 0 or int(y.max()) >= k):
        raise DataError(f"expected labels in [0, {k}), got {int(y.min())}..{int(y.max())} in y")
    if queries is None:
        q = torch.full((n,), -1, dtype=torch.int64, device=y.device)
    else:
        q = torch.as_tensor(queries).to(torch.int64).reshape(-1)
        if q.shape != (n,):
            raise DataError(f"expected ({n},) query counts, got {tuple(q.shape)} in queries")
    out = perturbation_stats(x, x_adv, topology, unit)
    with torch.no_grad():
        lc, la = logits_clean.detach().double(), logits_adv.detach().double()
        clean_pred = lc.argmax(1)
        adv_pred = la.argmax(1)
        clean_correct = clean_pred == y
        out.update(
            clean_pred=clean_pred,
            adv_pred=adv_pred,
            clean_correct=clean_correct,
            success=clean_correct & (adv_pred != y),
            margin_clean=_margin(lc, y),
            margin_adv=_margin(la, y),
            queries=q,
        )
    return out


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (Wilson, JASA 1927) for a binomial rate; 95% with z = 1.96.

    ``p = s/n``, ``centre = (p + z²/2n) / (1 + z²/n)``,
    ``half = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)``; returns ``(centre - half, centre + half)``
    clipped to [0, 1]. ``n = 0`` gives ``(0.0, 1.0)``.
    """
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise DataError(f"expected a count n >= 0, got {n!r} in wilson_interval")
    if isinstance(successes, bool) or int(successes) != successes or not 0 <= successes <= n:
        raise DataError(f"expected 0 <= successes <= {n}, got {successes!r} in wilson_interval")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
