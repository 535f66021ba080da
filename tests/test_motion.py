"""Time-varying AR motion model and SMI gradient (robench.ops.motion)."""

from __future__ import annotations

import math

import pytest
import torch

from robench.data.skeleton import presence_mask
from robench.errors import ConfigError, DataError
from robench.ops.motion import fit_tvar, mean_abs_normalize, motion_gradient


def _tvar2_series(
    t: int, n: int, noise: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, 3, t, 2, 1) float32 clips from x_s = a1_s x_{s-1} + a2_s x_{s-2} + noise·e_s.

    Complex roots r_s·exp(±iω_s) with r_s ≈ 1 and slowly varying ω_s, r_s: a1 = 2r cos ω, a2 = -r²,
    so the clips oscillate with a slowly changing frequency and amplitude and never die out.
    """
    s = torch.arange(t, dtype=torch.float64)
    r = 1.0 + 0.01 * torch.sin(2 * math.pi * s / t)
    w = 0.3 + 0.15 * torch.sin(2 * math.pi * s / t + 1.0)
    a1, a2 = 2 * r * torch.cos(w), -(r**2)
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, 3, t, 2, 1, generator=g, dtype=torch.float64)
    x = torch.zeros_like(e)
    x[:, :, 0], x[:, :, 1] = e[:, :, 0], e[:, :, 1]
    for k in range(2, t):
        x[:, :, k] = a1[k] * x[:, :, k - 1] + a2[k] * x[:, :, k - 2] + noise * e[:, :, k]
    return x.float(), a1.float(), a2.float()


def test_recovers_known_time_varying_ar2_coefficients():
    x, a1, a2 = _tvar2_series(t=160, n=2, noise=1e-4)
    fit = fit_tvar(x)
    inner = slice(16, -16)
    err1 = (fit.a1[:, :, inner] - a1[inner].view(1, 1, -1, 1, 1)).abs()
    err2 = (fit.a2[:, :, inner] - a2[inner].view(1, 1, -1, 1, 1)).abs()
    assert err1.median() < 0.01 and err2.median() < 0.01
    assert err1.quantile(0.95) < 0.03 and err2.quantile(0.95) < 0.03
    # a constant-coefficient fit would be far off: the test can tell time variation apart
    assert err1.median() < 0.25 * (a1[inner] - a1[inner].mean()).abs().median()


def test_recovers_time_varying_ar1_coefficient():
    t = 120
    s = torch.arange(t, dtype=torch.float64)
    b = 1.0 + 0.02 * torch.sin(2 * math.pi * s / t)
    x = torch.ones(1, 3, t, 1, 1, dtype=torch.float64)
    x[:, 1] = -0.5
    for k in range(1, t):
        x[:, :, k] = b[k] * x[:, :, k - 1]
    fit = fit_tvar(x.float(), bandwidth=4.0)
    err = (fit.b[0, :, 10:-10, 0, 0] - b[10:-10].float()).abs()
    assert err.max() < 2e-3


def test_jacobians_match_the_fitted_recursion_by_finite_differences():
    x, _, _ = _tvar2_series(t=40, n=1, noise=0.05, seed=3)
    fit = fit_tvar(x)
    a1, a2, b = (
        fit.a1[0, 0, :, 0, 0].double(),
        fit.a2[0, 0, :, 0, 0].double(),
        fit.b[0, 0, :, 0, 0].double(),
    )
    series = x[0, 0, :, 0, 0].double()

    def roll(start: int, value: float) -> tuple[float, float]:
        """x_{start+1}, x_{start+2} from the fitted recursion with x_start set to ``value``."""
        prev = series[start - 1] if start >= 1 else None
        nxt = (
            a1[start + 1] * value + a2[start + 1] * prev
            if prev is not None
            else b[start + 1] * value
        )
        return float(nxt), float(a1[start + 2] * nxt + a2[start + 2] * value)

    for start in (0, 5, 20, 37):
        h = 1e-3
        (u1, u2), (d1, d2) = (
            roll(start, float(series[start]) + h),
            roll(start, float(series[start]) - h),
        )
        assert fit.j1[0, 0, start, 0, 0] == pytest.approx((u1 - d1) / (2 * h), rel=1e-4, abs=1e-5)
        assert fit.j2[0, 0, start, 0, 0] == pytest.approx((u2 - d2) / (2 * h), rel=1e-4, abs=1e-5)
    # nothing follows the last frames
    assert fit.j1[0, :, -1].abs().max() == 0 and fit.j2[0, :, -2:].abs().max() == 0


def _motion_map(delta: torch.Tensor, j1: torch.Tensor, j2: torch.Tensor) -> torch.Tensor:
    """Linearised motion map, written independently with loops: y_s = δ_s + J1_{s-1}δ_{s-1} + J2_{s-2}δ_{s-2}."""
    y = delta.clone()
    t = delta.shape[2]
    for s in range(t):
        if s >= 1:
            y[:, :, s] += j1[:, :, s - 1] * delta[:, :, s - 1]
        if s >= 2:
            y[:, :, s] += j2[:, :, s - 2] * delta[:, :, s - 2]
    return y


def test_motion_gradient_is_the_vjp_of_the_linearised_motion_map():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 12, 4, 2, generator=g, dtype=torch.float64)
    x[0, :, 9:] = 0  # padded tail
    x[1, :, :, :, 1] = 0  # absent second body
    present = presence_mask(x)
    j1 = torch.randn(x.shape, generator=g, dtype=torch.float64) * present
    j2 = torch.randn(x.shape, generator=g, dtype=torch.float64) * present
    grad = torch.randn(x.shape, generator=g, dtype=torch.float64)
    out = motion_gradient(grad, j1, j2, present)
    gh = mean_abs_normalize(grad * present)

    def phi(delta: torch.Tensor) -> torch.Tensor:  # <ĝ, M(δ)> summed per sample
        return (gh * _motion_map(delta * present, j1, j2)).flatten(1).sum(1)

    delta0 = torch.randn(x.shape, generator=g, dtype=torch.float64)
    fd = torch.zeros_like(delta0)
    flat = fd.view(2, -1)
    for i in range(flat.shape[1]):
        e = torch.zeros_like(delta0).view(2, -1)
        e[:, i] = 1.0
        e = e.view_as(delta0)
        flat[:, i] = (phi(delta0 + 0.5 * e) - phi(delta0 - 0.5 * e)) / 1.0
    torch.testing.assert_close(out, fd * present, rtol=1e-9, atol=1e-9)
    assert out[0, :, 9:].abs().max() == 0 and out[1, :, :, :, 1].abs().max() == 0
    # a shifted (wrong-direction) transform would differ: the check has teeth
    wrong = gh + j1 * torch.roll(gh, 1, 2) + j2 * torch.roll(gh, 2, 2)
    assert not torch.allclose(wrong * present, out)


def test_padding_respected_and_matches_the_unpadded_fit():
    x, _, _ = _tvar2_series(t=48, n=1, noise=0.05, seed=5)
    full = torch.zeros(2, 3, 64, 2, 2)
    full[0, :, :48, :, :1] = x[0]  # body 0 of sample 0 valid for 48 frames, padded after
    full[1, :, :30, :, :1] = x[0, :, :30]
    fit_pad = fit_tvar(full, bandwidth=5.0)
    fit_ref = fit_tvar(x, bandwidth=5.0)
    torch.testing.assert_close(fit_pad.a1[0, :, :48, :, :1], fit_ref.a1[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fit_pad.j2[0, :, :48, :, :1], fit_ref.j2[0], rtol=1e-4, atol=1e-4)
    for f in (fit_pad.a1, fit_pad.a2, fit_pad.b, fit_pad.j1, fit_pad.j2):
        assert f[0, :, 48:].abs().max() == 0 and f[1, :, 30:].abs().max() == 0
        assert f[:, :, :, :, 1].abs().max() == 0  # absent body
    assert fit_pad.j1[0, :, 47].abs().max() == 0 and fit_pad.j2[0, :, 46:48].abs().max() == 0
    assert fit_pad.j1[0, :, 46].abs().max() > 0
    # the default bandwidth follows each body's own valid length
    assert fit_tvar(full).bandwidth[0, 0] == pytest.approx(4.8)


def test_fit_handles_constant_and_zero_series_without_nan():
    x = torch.zeros(1, 3, 20, 3, 1)
    x[:, 0] = 0.7  # constant coordinate: collinear regressors, ridge keeps it finite
    x[0, 1, :, 1, 0] = torch.linspace(0.1, 0.5, 20)
    fit = fit_tvar(x)
    for f in (fit.a1, fit.a2, fit.b, fit.j1, fit.j2):
        assert torch.isfinite(f).all()
    assert fit.b[0, 0, 5:15].sub(1).abs().max() < 1e-3  # x_t = x_{t-1}


def test_bad_inputs_raise():
    with pytest.raises(DataError):
        fit_tvar(torch.zeros(2, 2, 5, 3, 1))
    with pytest.raises(ConfigError):
        fit_tvar(torch.zeros(1, 3, 5, 3, 1), bandwidth=0.0)
    with pytest.raises(DataError):
        motion_gradient(
            torch.zeros(1, 3, 4, 2, 1), torch.zeros(1, 3, 5, 2, 1), torch.zeros(1, 3, 4, 2, 1)
        )
