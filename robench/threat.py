"""Threat models: the declared set of allowed perturbations, projected onto and checked.

A :class:`ThreatModel` is a norm ball (``linf``: elementwise; ``l2``: per sample over all 3·T·V·M
coordinates) of radius ``eps`` in data units, intersected with hard constraints:

- padding frames and absent bodies (all-zero (frame, body) slots, :func:`robench.data.skeleton.presence_mask`)
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

from robench.data.skeleton import (
    BUILTIN_TOPOLOGIES,
    METRES_PER_UNIT,
    UNITS,
    Topology,
    get_topology,
    presence_mask,
    restore_bones,
)
from robench.errors import ConfigError, DataError, UnknownNameError

NORMS = ("linf", "l2")
_UNIT_SUFFIX = {"m": "m", "cm": "cm", "mm": "mm", "px": "px", "normalized": "u"}
REL_TOL = 1e-6  # relative slack of check() on the norm bound
ABS_TOL = 1e-9  # absolute slack of check() on the norm bound
MAX_ROUNDS = 50  # alternating projection rounds before the bisection fallback
BISECTION_STEPS = 30  # per fallback bisection


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
    ``.json`` topology file or a :class:`~robench.data.skeleton.Topology`. ``joints`` is normalised to a
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
        if self.preserve_bones and topo.score_channels:
            raise ConfigError(
                f"expected preserve_bones: false for topology {topo.name!r} (its score channels are "
                f"not coordinates; bone restoration there is not supported), got true in {src} field 'preserve_bones'"
            )
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
        if self.unit not in METRES_PER_UNIT:
            return None
        return self.eps * METRES_PER_UNIT[self.unit] * 100.0

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
        """(N, 1, T, V, M) bool: True where a coordinate may move (present & joint & frame masks);
        (N, 3, T, V, M) when the topology has score channels, which never move."""
        self._validate(x)
        _, _, t, v, _ = x.shape
        mask = presence_mask(x)  # (N, 1, T, 1, M)
        scores = self.topology_obj.score_channels
        if scores:
            cm = torch.ones(3, dtype=torch.bool, device=x.device)
            cm[list(scores)] = False
            mask = mask & cm.view(1, 3, 1, 1, 1)
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

    def _bone_bad(self, x: Tensor, x_adv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(bad, clean lengths, adversarial lengths), each (N, T, B, M), float64 lengths.

        A bone of a present (frame, body) slot is bad when ``|l' - l| > tol·l·(1 + 1e-6) + 8·u·s``
        (``u``: machine epsilon of x's dtype, ``s``: the sample's largest absolute coordinate).
        """
        topo = self.topology_obj
        child = torch.tensor([c for c, _ in topo.bones], device=x.device)
        parent = torch.tensor([q for _, q in topo.bones], device=x.device)

        def lengths(z: Tensor) -> Tensor:  # (N, T, B, M); as Topology.bone_lengths, faster
            z = z.double()
            v = z.index_select(3, child) - z.index_select(3, parent)
            return (v * v).sum(1).sqrt()

        lc, la = lengths(x), lengths(x_adv)
        present = presence_mask(x)[:, 0]  # (N, T, 1, M)
        scale = x.detach().abs().flatten(1).amax(1).double().view(-1, 1, 1, 1)
        slack = 8 * torch.finfo(x.dtype).eps * scale
        bad = present & ((la - lc).abs() > self.bone_tolerance * lc * (1 + REL_TOL) + slack)
        return bad, lc, la

    def _bone_excess(self, x: Tensor, x_adv: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per sample: (bad, max rel. deviation of bad non-degenerate bones, degenerate bad, max |l'|)."""
        bad, lc, la = self._bone_bad(x, x_adv)
        nondeg = lc > 0
        rel = torch.where(
            bad & nondeg, (la - lc).abs() / lc.clamp_min(1e-300), torch.zeros_like(lc)
        )
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
        masks and score channels (exactly unchanged) and bone lengths (when ``preserve_bones``).
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
        scores = self.topology_obj.score_channels
        if scores:  # a confidence score is data, not a coordinate: it must not change
            cm = torch.zeros(3, dtype=torch.bool, device=x.device)
            cm[list(scores)] = True
            bad = changed & cm.view(1, 3, 1, 1, 1)
            if bad.any():
                size = float(torch.where(bad, diff, torch.zeros_like(diff)).max())
                out.append(
                    Violation("score_channel", size, 0.0, int(bad.reshape(n, -1).any(1).sum()))
                )
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
        """Masked ε-ball projection of ``x + delta``, exact for the *stored* values.

        linf clamps each coordinate to [-eps, eps]; a coordinate that ``x + delta`` rounds outside
        the ball is moved one ulp towards ``x``. l2 scales each sample radially by
        min(1, r/‖delta‖₂) with r = eps; when rounding of ``x + delta`` leaves the stored norm above
        eps, r shrinks by 2^k ulps of the sample's largest coordinate (k = 0, 1, ...) until it holds
        (r = 0, i.e. ``x``, always does).
        """
        eps = self.eps
        view = (-1, 1, 1, 1, 1)
        delta = torch.where(allowed, delta, torch.zeros_like(delta))
        if self.norm == "linf":
            out = torch.where(allowed, x + delta.clamp(-eps, eps), x)
            for _ in range(8):
                over = (out.double() - x.double()).abs() > eps
                if not over.any():
                    return out
                out = torch.where(over, torch.nextafter(out, x), out)
            return torch.where(over, x, out)  # unreachable in practice: one ulp step suffices
        nrm = delta.double().flatten(1).norm(dim=1)
        ulp = torch.finfo(x.dtype).eps * x.detach().abs().flatten(1).amax(1).double()
        out = x
        todo = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for k in range(-1, 24):
            radius = eps if k < 0 else (eps - (2.0**k) * ulp).clamp_min(0.0)
            scale = torch.where(nrm > radius, radius / nrm.clamp_min(1e-300), torch.ones_like(nrm))
            cand = torch.where(allowed, x + delta * scale.to(x.dtype).view(view), x)
            good = todo & (self._norms(x, cand) <= eps)
            out = torch.where(good.view(view), cand, out)
            todo = todo & ~good
            if not todo.any():
                break
        return out  # samples still in ``todo`` stay at x

    def _bones(self, x: Tensor, y: Tensor, allowed: Tensor) -> Tensor:
        """Restore clean bone lengths (:func:`robench.data.skeleton.restore_bones`, the box of
        linf)."""
        eps = self.eps if self.norm == "linf" else None
        return restore_bones(self.topology_obj, x, y, allowed, eps)

    def project(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """A new tensor satisfying every constraint, close to ``x_adv``; no argument is modified.

        1. ``delta = x_adv - x`` (non-finite entries set to 0), zeroed outside :meth:`allowed_mask`,
           projected onto the ε-ball (:meth:`_ball`, exact for the stored values).
        2. With ``preserve_bones``: alternate bone restoration (:meth:`_bones`, the tree walk of
           CIASA's SSR, Liu et al., TNNLS 2022, kept inside the linf box) and step 1 on the samples
           that still fail, up to 50 rounds (linf usually passes after one round).
        3. Fallback. Alternating projections onto a ball and the non-convex bone manifold can stall
           (e.g. a joint pinned in a corner of its linf box, or a joint mask pinning a bone's child).
           Bone lengths only couple joints of one (frame, body) slot, and scaling a slot's
           perturbation by ``s <= 1`` keeps it in the ball, so each failing slot is pulled back along
           ``x + s·(z - x)`` with ``s`` bisected (30 steps), keeping the largest tested ``s`` at which
           its bones hold (``s = 0``, the clean slot, always does). Should a sample still fail (float
           rounding at the ball's boundary), the same bisection runs on the whole sample. The result
           therefore always passes :meth:`check`.
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
        view = (-1, 1, 1, 1, 1)
        ok = self._sample_ok(x, out)
        for _ in range(MAX_ROUNDS):
            if bool(ok.all()):
                return out
            cand = self._ball(x, self._bones(x, out, allowed) - x, allowed)
            if torch.equal(cand[~ok], out[~ok]):
                break  # a fixed point (e.g. a joint mask pins a bone): only the fallback helps
            out = torch.where(ok.view(view), out, cand)
            ok = self._sample_ok(x, out)
        if bool(ok.all()):
            return out
        out = self._shrink(x, out, allowed, slots=True)
        ok = self._sample_ok(x, out)
        if bool(ok.all()):
            return out
        return torch.where(ok.view(view), out, self._shrink(x, out, allowed, slots=False))

    def _shrink(self, x: Tensor, z: Tensor, allowed: Tensor, slots: bool) -> Tensor:
        """Bisect ``s`` in ``x + s·(z - x)`` per failing (frame, body) slot (``slots``) or sample.

        Keeps, per unit, the candidate of the largest tested ``s`` that passes the unit's test
        (slot: its bones; sample: norm and bones); units failing at every tested ``s`` end at ``x``.
        """
        n, _, t, _, m = x.shape
        d = z - x
        if slots:
            shape, sview = (n, t, m), (n, 1, t, 1, m)

            def passes(c: Tensor) -> Tensor:
                return ~self._bone_bad(x, c)[0].any(2)

        else:
            shape, sview = (n,), (n, 1, 1, 1, 1)

            def passes(c: Tensor) -> Tensor:
                return self._sample_ok(x, c)

        todo = ~passes(z)
        best = torch.where(todo.view(sview), x, z)
        lo = torch.zeros(shape, dtype=torch.float64, device=x.device)
        hi = torch.ones(shape, dtype=torch.float64, device=x.device)
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            s = torch.where(todo, mid, torch.ones_like(mid)).to(x.dtype)
            cand = self._ball(x, d * s.view(sview), allowed)
            good = todo & passes(cand)
            best = torch.where(good.view(sview), cand, best)
            lo = torch.where(good, mid, lo)
            hi = torch.where(good | ~todo, hi, mid)
        return best
