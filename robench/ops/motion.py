"""Time-varying autoregressive motion model and the skeleton-motion-informed (SMI) gradient.

Lu et al., "Hard No-Box Adversarial Attack on Skeleton-Based Human Action Recognition with
Skeleton-Motion-Informed Gradient", ICCV 2023; reused by TASAR (Diao et al., ICLR 2025).

Motion model
------------
Every scalar series ``x_t`` (one sample, axis, joint and body) follows a time-varying AR(2)
``x_t = a1_t·x_{t-1} + a2_t·x_{t-2}`` and, separately, a time-varying AR(1) ``x_t = b_t·x_{t-1}``
(no intercept: tvReg's ``type = "none"``). Both are fitted by *local-linear kernel least squares*
(tvReg's ``est = "ll"``): at every frame ``t0`` the coefficients are ``a(t0) + a'(t0)·(t - t0)/h`` and

    minimise  Σ_t K((t - t0)/h) · (x_t - Σ_i [a_i(t0) + a_i'(t0)(t - t0)/h] · x_{t-i})²

with the Gaussian kernel ``K(u) = exp(-u²/2)``. The weighted normal equations (4×4 for AR(2), 2×2 for
AR(1)) of all series and all ``t0`` are formed with three batched matrix products (kernel moments of
the lagged products) and solved at once by an unrolled batched Cholesky in float64, with a ridge term
``A + ridge·diag(A) + 1e-12·I`` for stability (no R, no per-series Python loop).

Bandwidth: ``h = max(bandwidth_frac · n_valid, min_bandwidth)`` frames, ``bandwidth_frac = 0.1`` and
``min_bandwidth = 2`` by default (6.4 frames for a 64-frame clip), or a fixed ``bandwidth`` in frames.
Departure: tvReg picks ``h`` by leave-one-out cross-validation with a triweight kernel in rescaled time
``t/T``; a fixed fraction of the valid length is deterministic and orders of magnitude cheaper.

Padding: a (frame, body) slot that is all zero (:func:`robench.data.skeleton.presence_mask`) is absent.
The AR(2) equation at ``t`` enters a fit only when frames ``t, t-1, t-2`` are all present, the AR(1)
equation when ``t, t-1`` are; Jacobians are zero wherever a frame they link is absent.

Jacobians (Lu et al., ICCV 2023; the released SMI/TASAR ``ARcal.py``)
---------------------------------------------------------------------
``J1_t = ∂x_{t+1}/∂x_t`` and ``J2_t = ∂x_{t+2}/∂x_t`` under the fitted recursion::

    J1_t = a1_{t+1}                       where the AR(2) equation at t+1 exists (t-1 present)
         = b_{t+1}                        otherwise, e.g. t = 0: "AR(1) for the first coefficient"
    J2_t = J1_t · a1_{t+2} + a2_{t+2}     (= a1_{t+2}·a1_{t+1} + a2_{t+2} in the interior)

Reading of "and AR(1) for the first coefficient": ``ARcal.py`` fits ``tvAR(p=2)`` (coefficients for
t = 2..L-1) and ``tvAR(p=1)`` (t = 1..L-1), builds ``J1`` from the AR(2) ``a1`` shifted by one frame and
replaces its first entry — where AR(2) has no coefficient because ``x_{-1}`` does not exist — by the
AR(1) coefficient ``b_1``; ``J2 = J1·a1_{t+2} + a2_{t+2}``. We apply the same rule to the first frame
of every present segment.

SMI gradient
------------
``g̃_t = ĝ_t + J1_t ⊙ ĝ_{t+1} + J2_t ⊙ ĝ_{t+2}`` with ``ĝ = N(g) = g / mean|g|`` (per sample over all
coordinates) and ``ĝ`` beyond the valid frames = 0: the vector-Jacobian product of the linearised
motion map ``δ ↦ (δ_s + J1_{s-1} δ_{s-1} + J2_{s-2} δ_{s-2})_s`` (a perturbation of frame t also moves
the two frames the motion model predicts from it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from robench.data.skeleton import presence_mask
from robench.errors import ConfigError, DataError
from robench.ops.transfer import mean_abs_normalize

__all__ = ["TVARFit", "fit_tvar", "mean_abs_normalize", "motion_gradient"]

_ABS_RIDGE = 1e-12


@dataclass(frozen=True)
class TVARFit:
    """Fitted time-varying AR coefficients, each (N, 3, T, V, M) float32.

    ``a1[..., t, ...]``/``a2`` are the AR(2) coefficients of the equation for ``x_t`` (zero where it
    does not exist), ``b`` the AR(1) coefficient; ``j1``/``j2`` the motion Jacobians (module
    docstring); ``present`` (N, 1, T, 1, M) the presence mask; ``bandwidth`` (N, M) frames.
    """

    a1: Tensor
    a2: Tensor
    b: Tensor
    j1: Tensor
    j2: Tensor
    present: Tensor
    bandwidth: Tensor

    def motion_gradient(self, g: Tensor) -> Tensor:
        """The SMI gradient of ``g`` under this fit (see :func:`motion_gradient`)."""
        return motion_gradient(g, self.j1, self.j2, self.present)


def _shift(v: Tensor, k: int, fill: float | bool = 0) -> Tensor:
    """``out[..., t] = v[..., t - k]`` along the last dim (k > 0 lags, k < 0 leads), padded by fill."""
    if k == 0:
        return v
    pad = torch.full_like(v[..., : abs(k)], fill)
    if k > 0:
        return torch.cat([pad, v[..., :-k]], dim=-1)
    return torch.cat([v[..., -k:], pad], dim=-1)


def _cholesky_solve(a: list[list[Tensor]], rhs: list[Tensor]) -> list[Tensor]:
    """Solve many small SPD systems given elementwise: ``a[i][j]`` and ``rhs[i]`` are same-shape tensors.

    Unrolled Cholesky ``A = L Lᵀ`` then forward/back substitution; the loops run over the n ≤ 4 matrix
    indices, every operation is batched over all systems.
    """
    n = len(rhs)
    low: list[list[Tensor | None]] = [[None] * n for _ in range(n)]
    for j in range(n):
        s = a[j][j]
        for k in range(j):
            s = s - low[j][k] ** 2
        d = s.clamp_min(_ABS_RIDGE).sqrt()
        low[j][j] = d
        for i in range(j + 1, n):
            s = a[i][j]
            for k in range(j):
                s = s - low[i][k] * low[j][k]
            low[i][j] = s / d
    z: list[Tensor] = []
    for i in range(n):
        s = rhs[i]
        for k in range(i):
            s = s - low[i][k] * z[k]
        z.append(s / low[i][i])
    out: list[Tensor | None] = [None] * n
    for i in reversed(range(n)):
        s = z[i]
        for k in range(i + 1, n):
            s = s - low[k][i] * out[k]
        out[i] = s / low[i][i]
    return out  # type: ignore[return-value]


def fit_tvar(
    x: Tensor,
    bandwidth: float | None = None,
    bandwidth_frac: float = 0.1,
    min_bandwidth: float = 2.0,
    ridge: float = 1e-6,
    chunk: int = 16,
) -> TVARFit:
    """Fit time-varying AR(2) and AR(1) coefficients to every series of ``x`` (N, 3, T, V, M).

    See the module docstring for the estimator, bandwidth, padding rule and Jacobians. Returns a
    :class:`TVARFit` on ``x``'s device, float32. Cost: three batched (N·M) products of
    (3·V·7, T)×(T, T) in float64 plus ~100 elementwise ops on (N, M, 3·V, T) tensors, done ``chunk``
    clips at a time so the temporaries stay cache-sized (≈1 s for 256 clips of 64 frames on one core).
    """
    if x.dim() != 5 or x.shape[1] != 3:
        raise DataError(f"expected x of shape (N, 3, T, V, M), got {tuple(x.shape)} in fit_tvar")
    if bandwidth is not None and not bandwidth > 0:
        raise ConfigError(f"expected a positive bandwidth (frames), got {bandwidth!r} in fit_tvar")
    if not bandwidth_frac > 0 or not min_bandwidth > 0:
        raise ConfigError(
            f"expected positive bandwidth_frac and min_bandwidth, got {bandwidth_frac!r}, "
            f"{min_bandwidth!r} in fit_tvar"
        )
    if ridge < 0:
        raise ConfigError(f"expected ridge >= 0, got {ridge!r} in fit_tvar")
    if chunk < 1:
        raise ConfigError(f"expected chunk >= 1, got {chunk!r} in fit_tvar")
    parts = [
        _fit_chunk(xc, bandwidth, bandwidth_frac, min_bandwidth, ridge) for xc in x.split(chunk)
    ]
    if len(parts) == 1:
        return parts[0]
    return TVARFit(
        *(torch.cat([getattr(p, f) for p in parts]) for f in TVARFit.__dataclass_fields__)
    )


def _fit_chunk(
    x: Tensor, bandwidth: float | None, bandwidth_frac: float, min_bandwidth: float, ridge: float
) -> TVARFit:
    n, c, t, v, m = x.shape
    present = presence_mask(x)  # (N, 1, T, 1, M)
    p = present[:, 0, :, 0, :].permute(0, 2, 1)  # (N, M, T)
    xs = x.detach().to(torch.float64).permute(0, 4, 1, 3, 2).reshape(n, m, c * v, t)
    x1, x2 = _shift(xs, 1), _shift(xs, 2)
    p1, p2 = _shift(p, 1, False), _shift(p, 2, False)
    eq2 = (p & p1 & p2).to(torch.float64).unsqueeze(2)  # (N, M, 1, T)
    eq1 = (p & p1).to(torch.float64).unsqueeze(2)
    # lagged products; channel order: 11, 12, 22, 01, 02 (AR(2) equations), 11, 01 (AR(1) equations)
    prods = torch.stack(
        [
            x1 * x1 * eq2,
            x1 * x2 * eq2,
            x2 * x2 * eq2,
            xs * x1 * eq2,
            xs * x2 * eq2,
            x1 * x1 * eq1,
            xs * x1 * eq1,
        ],
        dim=3,
    )  # (N, M, CV, 7, T)
    if bandwidth is None:
        h = (bandwidth_frac * p.sum(-1).to(torch.float64)).clamp_min(min_bandwidth)  # (N, M)
    else:
        h = torch.full((n, m), float(bandwidth), dtype=torch.float64, device=x.device)
    tt = torch.arange(t, dtype=torch.float64, device=x.device)
    hh = h[..., None, None]
    d = (tt[:, None] - tt[None, :]).expand(n, m, t, t) / hh  # (t - t0)/h: (N, M, t, t0)
    k0 = torch.exp(-0.5 * d * d)
    k1 = k0 * d
    k2 = k1 * d
    flat = prods.reshape(n, m, c * v * 7, t)
    # kernel moments Σ_t K·((t-t0)/h)^p·prod per t0, channel-first and contiguous for the solves
    s0 = (flat @ k0).view(n, m, c * v, 7, t).movedim(3, 0).contiguous()
    s1 = (flat @ k1).view(n, m, c * v, 7, t).movedim(3, 0).contiguous()
    sub = prods[:, :, :, [0, 1, 2, 5], :].reshape(n, m, c * v * 4, t)
    s2 = (sub @ k2).view(n, m, c * v, 4, t).movedim(3, 0).contiguous()

    def reg(a: Tensor) -> Tensor:
        return a * (1 + ridge) + _ABS_RIDGE

    # AR(2): unknowns (a1, a2, a1', a2'), regressors (x1, x2, d·x1, d·x2)
    m11, m12, m22 = s0[0], s0[1], s0[2]
    l11, l12, l22 = s1[0], s1[1], s1[2]
    q11, q12, q22 = s2[0], s2[1], s2[2]
    a_mat = [
        [reg(m11), m12, l11, l12],
        [m12, reg(m22), l12, l22],
        [l11, l12, reg(q11), q12],
        [l12, l22, q12, reg(q22)],
    ]
    rhs = [s0[3], s0[4], s1[3], s1[4]]
    a1, a2, _, _ = _cholesky_solve(a_mat, rhs)
    # AR(1): unknowns (b, b'), regressors (x1, d·x1)
    b, _ = _cholesky_solve([[reg(s0[5]), s1[5]], [s1[5], reg(s2[3])]], [s0[6], s1[6]])
    a1 = a1 * eq2
    a2 = a2 * eq2
    b = b * eq1
    # Jacobians (module docstring): J1_t = a1_{t+1} (AR(1) b_{t+1} where AR(2) has no equation)
    has2 = _shift(eq2, -1)  # AR(2) equation at t+1 exists
    has1 = _shift(eq1, -1)
    j1 = has2 * _shift(a1, -1) + (1 - has2) * has1 * _shift(b, -1)
    j2 = _shift(eq2, -2) * (j1 * _shift(a1, -2) + _shift(a2, -2))

    def back(s: Tensor) -> Tensor:  # (N, M, CV, T) -> (N, 3, T, V, M) float32
        return s.reshape(n, m, c, v, t).permute(0, 2, 4, 3, 1).to(torch.float32).contiguous()

    return TVARFit(
        a1=back(a1),
        a2=back(a2),
        b=back(b),
        j1=back(j1),
        j2=back(j2),
        present=present,
        bandwidth=h.float(),
    )


def motion_gradient(g: Tensor, j1: Tensor, j2: Tensor, present: Tensor | None = None) -> Tensor:
    """SMI gradient ``g̃_t = ĝ_t + J1_t ⊙ ĝ_{t+1} + J2_t ⊙ ĝ_{t+2}``, ``ĝ = N(g)``, all (N, 3, T, V, M).

    ``present`` (broadcastable bool, e.g. (N, 1, T, 1, M) from :func:`robench.data.skeleton.presence_mask`)
    zeroes ``g`` before the normalisation and the result after it, so absent frames/bodies neither
    receive nor pass on gradient; ``ĝ`` beyond the last frame is 0. Without ``present`` only the
    Jacobians (zero across absent frames) carry the padding rule.
    """
    if g.shape != j1.shape or g.shape != j2.shape:
        raise DataError(
            f"expected g, J1, J2 of one shape, got {tuple(g.shape)}, {tuple(j1.shape)}, "
            f"{tuple(j2.shape)} in motion_gradient"
        )
    if present is not None:
        g = g * present
    gh = mean_abs_normalize(g)
    zero = torch.zeros_like(gh[:, :, :1])
    lead1 = torch.cat([gh[:, :, 1:], zero], dim=2)  # ĝ_{t+1}
    lead2 = torch.cat([gh[:, :, 2:], zero, zero], dim=2)[:, :, : gh.shape[2]]  # ĝ_{t+2}
    out = gh + j1 * lead1 + j2 * lead2
    if present is not None:
        out = out * present
    return out
