"""Threat models: the declared set of allowed perturbations, projected onto and checked.

A :class:`ThreatModel` is a norm ball (``linf``: elementwise; ``l2``: per sample over all 3·T·V·M
coordinates) of radius ``eps`` in data units, intersected with hard constraints:

- padding frames and absent bodies (all-zero (frame, body) slots, :func:`robench.skeleton.presence_mask`)
  stay exactly zero;
- only ``joints`` (default all) in frames ``[start, stop)`` (default all) may move; everything else
  equals the clean input exactly;
- with ``preserve_bones`` every bone of a present body keeps its clean length within the relative
  ``bone_tolerance`` (``|l'/l - 1| <= bone_tolerance``).

:meth:`ThreatModel.project` maps any candidate onto a point satisfying all of them;
:meth:`ThreatModel.check` verifies a returned batch without trusting (or calling) ``project`` and
names every violation with its size. The harness calls ``check`` on every adversarial example.

Tolerances of ``check`` (float rounding only, nothing an attack can exploit):
norm ``<= eps·(1 + 1e-6) + 1e-9``; bones ``|l' - l| <= tol·l·(1 + 1e-6) + 8·u·s`` with ``u`` the
machine epsilon of the dtype and ``s`` the sample's largest absolute coordinate (a zero-length clean
bone must stay within ``8·u·s`` of zero); padding and masked coordinates must be *exactly* unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from robench.errors import ConfigError, DataError, UnknownNameError
from robench.skeleton import BUILTIN_TOPOLOGIES, Topology, get_topology, presence_mask

NORMS = ("linf", "l2")
UNITS = ("m", "cm", "mm", "normalized")
_METRES_PER_UNIT = {"m": 1.0, "cm": 0.01, "mm": 0.001}
_UNIT_SUFFIX = {"m": "m", "cm": "cm", "mm": "mm", "normalized": "u"}
REL_TOL = 1e-6  # relative slack of check() on the norm bound
ABS_TOL = 1e-9  # absolute slack of check() on the norm bound
MAX_ROUNDS = 50  # alternating projection rounds before the bisection fallback
BISECTION_STEPS = 30
_DIR_EPS = 1e-12  # a bone direction shorter than this (data units) is treated as undefined


@dataclass(frozen=True)
class Violation:
    """One kind of threat-model violation in a batch.

    ``size`` is the worst measured value of the offending quantity (e.g. the largest norm), ``limit``
    the allowed value, ``count`` the number of samples affected; ``detail`` adds free text (shapes).
    """

    kind: str
    size: float
    limit: float
    count: int
    detail: str = ""

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        if self.kind in ("shape", "dtype"):
            return f"{self.kind} mismatch{extra}"
        if self.kind in ("linf", "l2"):
            return (
                f"{self.kind} norm {self.size:.6g} exceeds eps {self.limit:.6g} by "
                f"{self.size - self.limit:.3g} in {self.count} sample(s){extra}"
            )
        if self.kind == "bone_length":
            return (
                f"bone length deviates by {100 * self.size:.4g}% (limit {100 * self.limit:.4g}%) "
                f"in {self.count} sample(s){extra}"
            )
        if self.kind == "non_finite":
            return (
                f"{int(self.size)} non-finite value(s) (NaN/inf) in {self.count} sample(s){extra}"
            )
        what = {
            "padding": "padding / absent body modified",
            "joint_mask": "disallowed joints modified",
            "frame_mask": "disallowed frames modified",
            "degenerate_bone": "zero-length bone stretched",
        }.get(self.kind, self.kind)
        return f"{what}: up to {self.size:.6g} (limit {self.limit:.6g}) in {self.count} sample(s){extra}"


@dataclass(frozen=True)
class ThreatModel:
    """Norm ball + hard constraints on skeleton perturbations; see the module docstring.

    ``eps`` is in the data's units (metres for synth-ntu25); ``topology`` is a built-in name, a
    ``.json`` topology file or a :class:`~robench.skeleton.Topology`. ``joints`` is normalised to a
    sorted tuple and ``frames`` to a ``(start, stop)`` tuple. Invalid fields raise ConfigError.
    """

    norm: str = "linf"
    eps: float = 0.01
    unit: str = "m"
    preserve_bones: bool = False
    bone_tolerance: float = 0.01
    joints: tuple[int, ...] | None = None
    frames: tuple[int, int] | None = None
    topology: Any = "ntu25"  # str (name or .json path) or Topology

    def __post_init__(self) -> None:
        src = "threat model"
        if self.norm not in NORMS:
            raise ConfigError(f"expected norm in {NORMS}, got {self.norm!r} in {src} field 'norm'")
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)):
            raise ConfigError(f"expected a number, got {self.eps!r} in {src} field 'eps'")
        if not math.isfinite(self.eps) or self.eps < 0:
            raise ConfigError(f"expected a finite eps >= 0, got {self.eps!r} in {src} field 'eps'")
        object.__setattr__(self, "eps", float(self.eps))
        if self.unit not in UNITS:
            raise ConfigError(f"expected unit in {UNITS}, got {self.unit!r} in {src} field 'unit'")
        if not isinstance(self.preserve_bones, bool):
            raise ConfigError(
                f"expected true/false, got {self.preserve_bones!r} in {src} field 'preserve_bones'"
            )
        tol = self.bone_tolerance
        if (
            isinstance(tol, bool)
            or not isinstance(tol, (int, float))
            or not math.isfinite(tol)
            or tol < 0
        ):
            raise ConfigError(
                f"expected a finite number >= 0, got {tol!r} in {src} field 'bone_tolerance'"
            )
        object.__setattr__(self, "bone_tolerance", float(tol))
        if isinstance(self.topology, Topology):
            topo = self.topology
        elif isinstance(self.topology, str):
            try:
                topo = get_topology(self.topology)
            except UnknownNameError as e:
                raise ConfigError(f"{e} in {src} field 'topology'") from None
        else:
            raise ConfigError(
                f"expected a topology name or .json path, got {type(self.topology).__name__} in {src} field 'topology'"
            )
        object.__setattr__(self, "_topo", topo)  # resolved once; not a dataclass field
        v = topo.num_joints
        if self.joints is not None:
            js = self.joints
            if isinstance(js, (str, bytes)) or not hasattr(js, "__iter__"):
                raise ConfigError(
                    f"expected a list of joint indices, got {js!r} in {src} field 'joints'"
                )
            js = tuple(js)
            if not js:
                raise ConfigError(
                    f"expected at least one joint (or null for all), got [] in {src} field 'joints'"
                )
            for j in js:
                if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < v:
                    raise ConfigError(
                        f"expected joint indices in [0, {v}) for topology {topo.name!r}, got {j!r} in {src} field 'joints'"
                    )
            if len(set(js)) != len(js):
                raise ConfigError(
                    f"expected distinct joint indices, got duplicates {list(js)} in {src} field 'joints'"
                )
            object.__setattr__(self, "joints", tuple(sorted(js)))
        if self.frames is not None:
            fr = self.frames
            ok = not isinstance(fr, (str, bytes)) and hasattr(fr, "__len__") and len(fr) == 2
            ok = ok and all(isinstance(f, int) and not isinstance(f, bool) for f in fr)
            if not ok or not 0 <= fr[0] < fr[1]:
                raise ConfigError(
                    f"expected frames [start, stop) with 0 <= start < stop, got {fr!r} in {src} field 'frames'"
                )
            object.__setattr__(self, "frames", (int(fr[0]), int(fr[1])))

    # ------------------------------------------------------------------ description
    @property
    def topology_obj(self) -> Topology:
        """The resolved :class:`Topology`."""
        return self._topo  # type: ignore[attr-defined]

    @property
    def eps_cm(self) -> float | None:
        """``eps`` in centimetres when the unit is metric (m, cm, mm), else None."""
        if self.unit not in _METRES_PER_UNIT:
            return None
        return self.eps * _METRES_PER_UNIT[self.unit] * 100.0

    @property
    def name(self) -> str:
        """Short id, e.g. ``linf-eps0.01m``, ``l2-eps0.5m-bones1%-j0,3-f0:32`` (``u`` = normalized units)."""
        s = f"{self.norm}-eps{self.eps:g}{_UNIT_SUFFIX[self.unit]}"
        if self.preserve_bones:
            s += f"-bones{100 * self.bone_tolerance:g}%"
        if self.joints is not None:
            s += "-j" + ",".join(str(j) for j in self.joints)
        if self.frames is not None:
            s += f"-f{self.frames[0]}:{self.frames[1]}"
        return s

    def to_dict(self) -> dict[str, Any]:
        topo = self.topology
        if isinstance(topo, Topology):
            topo = topo.name if BUILTIN_TOPOLOGIES.get(topo.name) == topo else topo.to_dict()
        return {
            "norm": self.norm,
            "eps": self.eps,
            "unit": self.unit,
            "preserve_bones": self.preserve_bones,
            "bone_tolerance": self.bone_tolerance,
            "joints": list(self.joints) if self.joints is not None else None,
            "frames": list(self.frames) if self.frames is not None else None,
            "topology": topo,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "threat model") -> ThreatModel:
        """Build from a dict (YAML/JSON); unknown or ill-typed fields raise a one-line ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError(f"expected a mapping, got {type(d).__name__} in {source}")
        known = (
            "norm",
            "eps",
            "unit",
            "preserve_bones",
            "bone_tolerance",
            "joints",
            "frames",
            "topology",
        )
        for key in d:
            if key not in known:
                raise ConfigError(
                    f"expected one of {list(known)}, got unknown field {key!r} in {source}"
                )
        kw: dict[str, Any] = dict(d)
        for key in ("eps", "bone_tolerance"):
            if key in kw and (isinstance(kw[key], bool) or not isinstance(kw[key], (int, float))):
                raise ConfigError(f"expected a number, got {kw[key]!r} in {source} field {key!r}")
        for key in ("norm", "unit"):
            if key in kw and not isinstance(kw[key], str):
                raise ConfigError(f"expected a string, got {kw[key]!r} in {source} field {key!r}")
        if isinstance(kw.get("topology"), dict):
            kw["topology"] = Topology.from_dict(kw["topology"], source=f"{source} field 'topology'")
        for key in ("joints", "frames"):
            if kw.get(key) is not None and not isinstance(kw[key], (list, tuple)):
                raise ConfigError(
                    f"expected a list or null, got {kw[key]!r} in {source} field {key!r}"
                )
        try:
            return cls(**kw)
        except ConfigError as e:
            msg = str(e)
            raise ConfigError(msg.replace("in threat model", f"in {source}", 1)) from None

    # ------------------------------------------------------------------ masks
    def _validate(self, x: Tensor, field_name: str = "x") -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise DataError(
                f"expected a floating-point tensor, got {getattr(x, 'dtype', type(x))} in {field_name}"
            )
        self.topology_obj.check_tensor(x, field_name)

    def allowed_mask(self, x: Tensor) -> Tensor:
        """(N, 1, T, V, M) bool: True where a coordinate may move (present & joint & frame masks)."""
        self._validate(x)
        _, _, t, v, _ = x.shape
        mask = presence_mask(x)  # (N, 1, T, 1, M)
        if self.joints is not None:
            jm = torch.zeros(v, dtype=torch.bool, device=x.device)
            jm[list(self.joints)] = True
            mask = mask & jm.view(1, 1, 1, v, 1)
        else:
            mask = mask.expand(-1, -1, -1, v, -1)
        if self.frames is not None:
            fm = torch.zeros(t, dtype=torch.bool, device=x.device)
            fm[self.frames[0] : min(self.frames[1], t)] = True
            mask = mask & fm.view(1, 1, t, 1, 1)
        return mask

    # ------------------------------------------------------------------ measurement
    def _norms(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """(N,) float64 perturbation norm of each sample (exact difference of the stored values)."""
        d = (x_adv.double() - x.double()).flatten(1)
        return d.abs().amax(1) if self.norm == "linf" else d.norm(dim=1)

    def _norm_limit(self) -> float:
        return self.eps * (1 + REL_TOL) + ABS_TOL

    def _bone_excess(self, x: Tensor, x_adv: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per sample: (bad, max rel. deviation of bad non-degenerate bones, degenerate bad, max |l'|).

        Deviations are measured in float64 over bones of present (frame, body) slots.
        """
        topo = self.topology_obj
        xd, ad = x.double(), x_adv.double()
        lc = topo.bone_lengths(xd)  # (N, T, B, M)
        la = topo.bone_lengths(ad)
        present = presence_mask(x)[:, 0]  # (N, T, 1, M)
        scale = x.detach().abs().flatten(1).amax(1).double().view(-1, 1, 1, 1)
        slack = 8 * torch.finfo(x.dtype).eps * scale
        dev = (la - lc).abs()
        nondeg = lc > 0
        bad = present & (dev > self.bone_tolerance * lc * (1 + REL_TOL) + slack)
        rel = torch.where(bad & nondeg, dev / lc.clamp_min(1e-300), torch.zeros_like(dev))
        deg = torch.where(bad & ~nondeg, la, torch.zeros_like(la))
        n = x.shape[0]
        return (
            (bad & nondeg).reshape(n, -1).any(1),
            rel.reshape(n, -1).amax(1) if rel.numel() else torch.zeros(n, dtype=torch.float64),
            (bad & ~nondeg).reshape(n, -1).any(1),
            deg.reshape(n, -1).amax(1) if deg.numel() else torch.zeros(n, dtype=torch.float64),
        )

    def _sample_ok(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """(N,) bool: norm and bone constraints hold (masks are kept exact by construction)."""
        ok = self._norms(x, x_adv) <= self._norm_limit()
        if self.preserve_bones:
            bad, _, deg, _ = self._bone_excess(x, x_adv)
            ok = ok & ~bad & ~deg
        return ok

    # ------------------------------------------------------------------ check
    def check(self, x: Tensor, x_adv: Tensor) -> list[Violation]:
        """Every violation of the threat model by ``x_adv`` against the clean ``x``; [] when valid.

        Independent of :meth:`project`: measures shape, dtype, finiteness, the norm (float64, exact
        difference of the stored values), padding/absent bodies (must be exactly 0), joint/frame
        masks (exactly unchanged) and bone lengths (when ``preserve_bones``).
        """
        self._validate(x)
        if not torch.isfinite(x).all():
            raise DataError("expected finite coordinates, got NaN/inf in the clean batch 'x'")
        if not isinstance(x_adv, Tensor) or x_adv.shape != x.shape:
            got = tuple(x_adv.shape) if isinstance(x_adv, Tensor) else type(x_adv).__name__
            return [
                Violation(
                    "shape",
                    float("nan"),
                    float("nan"),
                    x.shape[0],
                    f"expected {tuple(x.shape)}, got {got}",
                )
            ]
        out: list[Violation] = []
        n = x.shape[0]
        x = x.detach()
        xa = x_adv.detach()
        if xa.dtype != x.dtype:
            out.append(
                Violation(
                    "dtype", float("nan"), float("nan"), n, f"expected {x.dtype}, got {xa.dtype}"
                )
            )
        finite = torch.isfinite(xa)
        if not finite.all():
            per = (~finite).reshape(n, -1)
            out.append(Violation("non_finite", float(per.sum()), 0.0, int(per.any(1).sum())))
        # compare in float64 so a dtype mismatch does not hide a change
        xd = x.double()
        ad = torch.where(finite, xa.double(), xd)  # non-finite entries are reported above
        pres = presence_mask(x)
        pad = (~pres).expand_as(x)
        pad_bad = pad & ((ad != 0) | ~finite)
        if pad_bad.any():
            size = torch.where(
                pad_bad, xa.double().abs().nan_to_num(nan=math.inf), torch.zeros_like(xd)
            )
            out.append(
                Violation(
                    "padding", float(size.max()), 0.0, int(pad_bad.reshape(n, -1).any(1).sum())
                )
            )
        changed = ((ad != xd) | ~finite) & pres
        diff = (ad - xd).abs()
        _, _, t, v, _ = x.shape
        if self.joints is not None:
            jm = torch.ones(v, dtype=torch.bool, device=x.device)
            jm[list(self.joints)] = False  # True = disallowed
            bad = changed & jm.view(1, 1, 1, v, 1)
            if bad.any():
                size = float(torch.where(bad, diff, torch.zeros_like(diff)).max())
                out.append(Violation("joint_mask", size, 0.0, int(bad.reshape(n, -1).any(1).sum())))
        if self.frames is not None:
            fm = torch.ones(t, dtype=torch.bool, device=x.device)
            fm[self.frames[0] : min(self.frames[1], t)] = False
            bad = changed & fm.view(1, 1, t, 1, 1)
            if bad.any():
                size = float(torch.where(bad, diff, torch.zeros_like(diff)).max())
                out.append(Violation("frame_mask", size, 0.0, int(bad.reshape(n, -1).any(1).sum())))
        norms = self._norms(xd, ad)
        over = norms > self._norm_limit()
        if over.any():
            out.append(Violation(self.norm, float(norms.max()), self.eps, int(over.sum())))
        if self.preserve_bones:
            bad, rel, deg, deg_len = self._bone_excess(x, ad)
            if bad.any():
                out.append(
                    Violation("bone_length", float(rel.max()), self.bone_tolerance, int(bad.sum()))
                )
            if deg.any():
                out.append(Violation("degenerate_bone", float(deg_len.max()), 0.0, int(deg.sum())))
        return out

    # ------------------------------------------------------------------ projection
    def _ball(self, x: Tensor, delta: Tensor, allowed: Tensor) -> Tensor:
        """Masked ε-ball projection of ``x + delta``; exact in the stored dtype (float rounding settled).

        linf clamps each coordinate to [-eps, eps]; l2 scales each sample radially by
        min(1, eps/‖delta‖₂). A coordinate rounded outside the ball by ``x + delta`` is moved one ulp
        towards ``x`` (linf) or the sample shrunk again (l2) until the stored difference is within eps.
        """
        eps = self.eps
        delta = torch.where(allowed, delta, torch.zeros_like(delta))
        if self.norm == "linf":
            delta = delta.clamp(-eps, eps)
        else:
            nrm = delta.double().flatten(1).norm(dim=1)
            scale = torch.where(nrm > eps, eps / nrm.clamp_min(1e-300), torch.ones_like(nrm))
            delta = delta * scale.to(delta.dtype).view(-1, 1, 1, 1, 1)
        out = torch.where(allowed, x + delta, x)
        for _ in range(8):
            if self.norm == "linf":
                over = (out.double() - x.double()).abs() > eps
                if not over.any():
                    return out
                out = torch.where(over, torch.nextafter(out, x), out)
            else:
                nrm = self._norms(x, out)
                over = nrm > eps
                if not over.any():
                    return out
                shrink = (eps / nrm.clamp_min(1e-300)) * (1 - 4 * torch.finfo(x.dtype).eps)
                d = (out - x) * shrink.to(x.dtype).view(-1, 1, 1, 1, 1)
                cand = torch.where(allowed, x + d, x)
                out = torch.where(over.view(-1, 1, 1, 1, 1), cand, out)
        # pathological rounding: leave the samples still outside at x
        over = self._norms(x, out) > eps
        return torch.where(over.view(-1, 1, 1, 1, 1), x, out)

    def _bones(self, x: Tensor, y: Tensor, allowed: Tensor) -> Tensor:
        """Restore clean bone lengths of ``y`` by walking the tree from the root (CIASA's SSR).

        For each joint j in breadth-first order with parent p:
        ``y_j <- y_p + ℓ_j · (y_j - y_p)/‖y_j - y_p‖`` with ℓ_j the clean length of bone (j, p),
        applied only where j may move (``allowed``). A vanishing direction falls back to the clean
        direction; a zero clean length puts j on its parent. Batched over N, T, M; loop over V.
        """
        topo = self.topology_obj
        y = y.clone()
        for j in topo.order:
            p = topo.parents[j]
            if p == -1:
                continue
            vec = y[:, :, :, j] - y[:, :, :, p]  # (N, 3, T, M)
            nrm = vec.norm(dim=1, keepdim=True)
            cvec = x[:, :, :, j] - x[:, :, :, p]
            length = cvec.norm(dim=1, keepdim=True)
            cunit = torch.where(
                length > _DIR_EPS, cvec / length.clamp_min(_DIR_EPS), torch.zeros_like(cvec)
            )
            unit = torch.where(nrm > _DIR_EPS, vec / nrm.clamp_min(_DIR_EPS), cunit)
            new = y[:, :, :, p] + length * unit
            y[:, :, :, j] = torch.where(allowed[:, :, :, j], new, y[:, :, :, j])
        return y

    def project(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """A new tensor satisfying every constraint, close to ``x_adv``; no argument is modified.

        1. ``delta = x_adv - x`` (non-finite entries set to 0), zeroed outside :meth:`allowed_mask`,
           projected onto the ε-ball (exact in the stored dtype).
        2. With ``preserve_bones``: alternate bone restoration (:meth:`_bones`, the tree walk of
           CIASA, Liu et al., TNNLS 2022) and step 1 for the samples that still fail, up to 50 rounds.
           Alternating projections onto a ball and the (non-convex) bone manifold need not converge
           (notably when a joint mask pins a bone's child), so samples still failing then are pulled
           back along the segment ``x + s·(z - x)``: ``s`` is bisected (30 steps) keeping the largest
           tested ``s`` at which all constraints hold (``s = 0``, i.e. ``x``, always does). The
           result therefore always passes :meth:`check`.
        """
        self._validate(x)
        if not isinstance(x_adv, Tensor) or x_adv.shape != x.shape:
            raise DataError(
                f"expected x_adv of shape {tuple(x.shape)}, got {tuple(getattr(x_adv, 'shape', ()))} in project"
            )
        x = x.detach()
        xa = x_adv.detach().to(x.dtype)
        allowed = self.allowed_mask(x)
        delta = torch.nan_to_num(xa - x, nan=0.0, posinf=0.0, neginf=0.0)
        out = self._ball(x, delta, allowed)
        if not self.preserve_bones:
            return out
        ok = self._sample_ok(x, out)
        for _ in range(MAX_ROUNDS):
            if bool(ok.all()):
                return out
            cand = self._ball(x, self._bones(x, out, allowed) - x, allowed)
            out = torch.where(ok.view(-1, 1, 1, 1, 1), out, cand)
            ok = self._sample_ok(x, out)
        if bool(ok.all()):
            return out
        # bisection fallback on the failing samples
        n = x.shape[0]
        view = (-1, 1, 1, 1, 1)
        lo = torch.zeros(n, dtype=torch.float64, device=x.device)
        hi = torch.ones(n, dtype=torch.float64, device=x.device)
        best = torch.where(ok.view(view), out, x)
        d = out - x
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            cand = self._ball(x, d * mid.to(x.dtype).view(view), allowed)
            good = self._sample_ok(x, cand) & ~ok
            best = torch.where(good.view(view), cand, best)
            lo = torch.where(good, mid, lo)
            hi = torch.where(good | ok, hi, mid)
        return best
