"""Procedural human motion on the NTU-25 skeleton: joint-angle forward kinematics and the action library.

Used by :mod:`robench.data.synth` to build the embedded ``synth-ntu25`` data set. Everything is batched
numpy over ``(B, T)`` (bodies x frames); the only Python loops run over joints or action classes.

Body frame (metres): x = the body's left, y = up, z = forward, origin at the spine base of the rest
pose. A pose is a vector of named joint angles (:data:`DOFS`, radians; ``root_x/y/z`` in metres). The
right-side angles use the mirrored convention, so equal values give mirror-image poses. Forward
kinematics composes per-segment rotations down a tree rooted at the spine base (the NTU edge list is
rooted at the spine shoulder, but joint positions do not depend on where the tree is rooted):

    R_pelvis = Ry(yaw) Rx(pitch) Rz(roll);  R_spine1 = R_pelvis S(0.4);  R_spine2 = R_spine1 S(0.6)
    R_upperarm = R_spine2 Rz(m·abd) Rx(-flex) Ry(m·rot);  R_forearm = R_upperarm Rx(-elbow);  ...
    p_child = p_parent + R_segment · offset_child          (m = +1 left, -1 right)

A foot lock then translates each frame so that the lower ankle stays where it stands at rest (soft
weights, 2 cm scale), which keeps feet planted while sitting, bowing or kicking; explicit root
translations (steps, being pushed) are added afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from robench.data.skeleton import NTU25_NAMES

FPS = 30.0
J = {name: i for i, name in enumerate(NTU25_NAMES)}
SIDES = ("l", "r")
_SIDE_NAME = {"l": "left", "r": "right"}
DISTAL = tuple(
    J[f"{part}_{s}"] for part in ("hand", "handtip", "thumb", "foot") for s in ("left", "right")
)
SEMI_DISTAL = tuple(J[f"{part}_{s}"] for part in ("wrist", "ankle") for s in ("left", "right"))

_SIDE_DOFS = (
    "clav", "sh_flex", "sh_abd", "sh_rot", "elbow", "wrist",
    "hip_flex", "hip_abd", "hip_rot", "knee", "ankle",
    "finger", "thumb", "wrist_twist",
)  # fmt: skip
DOFS = (
    "root_x", "root_y", "root_z", "root_yaw", "root_pitch", "root_roll",
    "spine_flex", "spine_lat", "spine_twist", "neck_flex", "neck_yaw",
) + tuple(f"{d}_{s}" for s in SIDES for d in _SIDE_DOFS)  # fmt: skip
D = {name: i for i, name in enumerate(DOFS)}

# ---------------------------------------------------------------------------------- rest skeleton
# joint -> (FK parent, rest direction in the body frame (left side; mirrored for right), length m,
# anthropometric group). Lengths are the NTU (Kinect v2) means quoted in robench.data.synth.REALISM_TARGETS.
_BONES: dict[str, tuple[str, tuple[float, float, float], float, str]] = {
    "spine_mid": ("spine_base", (0, 1, 0), 0.27, "torso"),
    "spine_shoulder": ("spine_mid", (0, 1, 0), 0.22, "torso"),
    "neck": ("spine_shoulder", (0, 1, 0.05), 0.075, "torso"),
    "head": ("neck", (0, 1, 0.1), 0.13, "head"),
    "shoulder_{s}": ("spine_shoulder", (1, -0.1, 0), 0.14, "shoulder"),
    "elbow_{s}": ("shoulder_{s}", (0, -1, 0), 0.23, "upper_arm"),
    "wrist_{s}": ("elbow_{s}", (0, -1, 0), 0.22, "forearm"),
    "hand_{s}": ("wrist_{s}", (0, -1, 0), 0.075, "hand"),
    "handtip_{s}": ("hand_{s}", (0, -1, 0.05), 0.07, "hand"),
    "thumb_{s}": ("hand_{s}", (-0.2, -0.6, 0.8), 0.05, "hand"),
    "hip_{s}": ("spine_base", (0.8, -0.55, 0), 0.095, "hip"),
    "knee_{s}": ("hip_{s}", (0, -1, 0), 0.34, "thigh"),
    "ankle_{s}": ("knee_{s}", (0, -1, 0), 0.34, "shin"),
    "foot_{s}": ("ankle_{s}", (0, -0.35, 1), 0.1, "foot"),
}
GROUPS = tuple(dict.fromkeys(group for *_, group in _BONES.values()))  # torso, head, shoulder, ...


def _rest_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    v = len(NTU25_NAMES)
    parent = np.full(v, -1)
    direction = np.zeros((v, 3))
    length = np.zeros(v)
    group = np.zeros(v, dtype=np.int64)
    for child, (par, d, ln, grp) in _BONES.items():
        for s in ("left", "right") if "{s}" in child else ("",):
            c, p = J[child.format(s=s)], J[par.format(s=s)]
            vec = np.array(d, dtype=float)
            if s == "right":
                vec[0] = -vec[0]
            parent[c], length[c], group[c] = p, ln, GROUPS.index(grp)
            direction[c] = vec / np.linalg.norm(vec)
    order, done = [J["spine_base"]], {J["spine_base"]}
    while len(order) < v:
        for j in range(v):
            if j not in done and parent[j] in done:
                order.append(j)
                done.add(j)
    return parent, direction, length, group, tuple(order)


FK_PARENT, REST_DIR, REST_LEN, LEN_GROUP, FK_ORDER = _rest_tables()


def body_offsets(scale: np.ndarray, group_factor: np.ndarray) -> np.ndarray:
    """(S,) overall scale and (S, len(GROUPS)) per-group factors -> (S, 25, 3) bone offsets (m)."""
    lengths = REST_LEN[None] * scale[:, None] * group_factor[:, LEN_GROUP]
    return REST_DIR[None] * lengths[..., None]


# ---------------------------------------------------------------------------------- rotations
def _rot(axis: int, a: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(a), torch.sin(a)
    r = torch.zeros(a.shape + (3, 3), dtype=a.dtype)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r[..., axis, axis] = 1.0
    r[..., i, i] = c
    r[..., j, j] = c
    r[..., i, j] = -s
    r[..., j, i] = s
    return r


def rot_x(a: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Batched rotation about x: (...,) angles (float64) -> (..., 3, 3)."""
    return _rot(0, torch.as_tensor(a, dtype=torch.float64))


def rot_y(a: torch.Tensor | np.ndarray) -> torch.Tensor:
    return _rot(1, torch.as_tensor(a, dtype=torch.float64))


def rot_z(a: torch.Tensor | np.ndarray) -> torch.Tensor:
    return _rot(2, torch.as_tensor(a, dtype=torch.float64))


def _chain(*mats: torch.Tensor) -> torch.Tensor:
    out = mats[0]
    for m in mats[1:]:
        out = out @ m
    return out


def _maybe(r: torch.Tensor, rot, angle: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """``r @ rot(angle)``, skipped when every angle is 0 (the hand and finger degrees of freedom added
    for synth-ntu60 then leave synth-ntu25's coordinates bit for bit as they were)."""
    return r @ rot(angle) if bool(angle.ne(0).any()) else r


def forward_kinematics(q: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
    """Joint positions of poses ``q`` (B, T, len(DOFS)) on bodies ``offsets`` (B, 25, 3) -> (B, T, 25, 3)
    float64 tensor. Root translation (``root_x/y/z``) is NOT applied here (see :func:`place_on_floor`).
    """
    qt = torch.as_tensor(q, dtype=torch.float64)
    g = {name: qt[..., i] for name, i in D.items()}
    r_pelvis = _chain(rot_y(g["root_yaw"]), rot_x(g["root_pitch"]), rot_z(g["root_roll"]))
    f, lat, tw = g["spine_flex"], g["spine_lat"], g["spine_twist"]
    r_s1 = _chain(r_pelvis, rot_x(0.4 * f), rot_z(-0.4 * lat), rot_y(0.4 * tw))
    r_s2 = _chain(r_s1, rot_x(0.6 * f), rot_z(-0.6 * lat), rot_y(0.6 * tw))
    r_neck = _chain(r_s2, rot_x(g["neck_flex"]), rot_y(g["neck_yaw"]))
    seg = {J["spine_mid"]: r_s1, J["spine_shoulder"]: r_s2, J["neck"]: r_neck, J["head"]: r_neck}
    for s, m in (("l", 1.0), ("r", -1.0)):
        name = _SIDE_NAME[s]
        r_ua = _chain(
            r_s2,
            rot_z(m * g[f"sh_abd_{s}"]),
            rot_x(-g[f"sh_flex_{s}"]),
            rot_y(m * g[f"sh_rot_{s}"]),
        )
        r_fa = r_ua @ rot_x(-g[f"elbow_{s}"])
        r_fa = _maybe(r_fa, rot_y, m * g[f"wrist_twist_{s}"])
        r_hand = r_fa @ rot_x(-g[f"wrist_{s}"])
        r_th = _chain(
            r_pelvis,
            rot_z(m * g[f"hip_abd_{s}"]),
            rot_x(-g[f"hip_flex_{s}"]),
            rot_y(m * g[f"hip_rot_{s}"]),
        )
        r_sh = r_th @ rot_x(g[f"knee_{s}"])
        seg[J[f"shoulder_{name}"]] = r_s2 @ rot_z(m * g[f"clav_{s}"])
        seg[J[f"elbow_{name}"]] = r_ua
        seg[J[f"wrist_{name}"]] = r_fa
        seg[J[f"hand_{name}"]] = r_hand
        # finger flexion curls the hand tip towards the palm; the thumb folds across it
        seg[J[f"handtip_{name}"]] = _maybe(r_hand, rot_x, -g[f"finger_{s}"])
        seg[J[f"thumb_{name}"]] = _maybe(r_hand, rot_z, m * g[f"thumb_{s}"])
        seg[J[f"hip_{name}"]] = r_pelvis
        seg[J[f"knee_{name}"]] = r_th
        seg[J[f"ankle_{name}"]] = r_sh
        seg[J[f"foot_{name}"]] = r_sh @ rot_x(-g[f"ankle_{s}"])
    off = torch.as_tensor(offsets, dtype=torch.float64)[:, None, :, :, None]  # (B, 1, V, 3, 1)
    p = torch.zeros(qt.shape[:2] + (len(NTU25_NAMES), 3), dtype=torch.float64)
    for j in FK_ORDER[1:]:
        p[:, :, j] = p[:, :, FK_PARENT[j]] + (seg[j] @ off[:, :, j])[..., 0]
    return p


def place_on_floor(p: torch.Tensor, q: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
    """Foot lock + explicit root translation: (B, T, 25, 3) -> (B, T, 25, 3) in the body frame.

    Each frame is shifted by ``-(w·Δankle_left + (1-w)·Δankle_right)`` (Δ = displacement from the rest
    pose), ``w = sigmoid((y_right - y_left) / 0.02 m)``: the lower foot stays planted. Then the body-frame
    translation ``(root_x, root_y, root_z)`` is added.
    """
    rest = forward_kinematics(np.zeros((p.shape[0], 1, len(DOFS))), offsets)
    al, ar = J["ankle_left"], J["ankle_right"]
    dl, dr = p[:, :, al] - rest[:, :, al], p[:, :, ar] - rest[:, :, ar]
    w = torch.sigmoid((p[:, :, ar, 1] - p[:, :, al, 1]) / 0.02)[..., None]
    root = torch.as_tensor(q[..., [D["root_x"], D["root_y"], D["root_z"]]], dtype=torch.float64)
    return p + (root - w * dl - (1 - w) * dr)[:, :, None, :]


# ---------------------------------------------------------------------------------- time profiles
def min_jerk(u: np.ndarray) -> np.ndarray:
    """Minimum-jerk 0 -> 1 profile 10u^3 - 15u^4 + 6u^5 of ``u`` clipped to [0, 1]."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10 + u * (-15 + 6 * u))


def ramp(t: np.ndarray, t0: np.ndarray, dur: np.ndarray) -> np.ndarray:
    """0 before ``t0``, min-jerk rise over ``dur`` seconds, 1 afterwards."""
    return min_jerk((t - t0) / np.maximum(dur, 1e-3))


def bump(
    t: np.ndarray, t0: np.ndarray, rise: np.ndarray, hold: np.ndarray, fall: np.ndarray
) -> np.ndarray:
    """0 -> 1 (min-jerk over ``rise``) -> hold -> 0 (over ``fall``); all times in seconds."""
    return ramp(t, t0, rise) - ramp(t, t0 + rise + hold, fall)


def smooth_noise(
    rng: np.random.Generator, n: int, t: np.ndarray, fmin: float, fmax: float, k: int = 3
) -> np.ndarray:
    """(n, T) band-limited random signal of unit peak scale: a mean of ``k`` sinusoids with random
    frequencies in [fmin, fmax] Hz and random phases."""
    f = rng.uniform(fmin, fmax, (n, 1, k))
    ph = rng.uniform(0, 2 * np.pi, (n, 1, k))
    return np.sin(2 * np.pi * f * t[..., None] + ph).sum(-1) / np.sqrt(k)


# ---------------------------------------------------------------------------------- action context
@dataclass
class Ctx:
    """The samples of one action class: per-sample draws are (n, 1) so they broadcast against ``t``.

    ``q1``/``q2``: (n, T, len(DOFS)) poses of body 1 (actor) and body 2 (partner, interactions only);
    ``dist``: (n,) initial spine-base distance of an interacting pair (m); ``dur``: valid seconds;
    ``speed``/``amp``: per-sample speed and amplitude factors (subject style x sample variation).
    """

    rng: np.random.Generator
    t: np.ndarray
    dur: np.ndarray
    speed: np.ndarray
    amp: np.ndarray
    q1: np.ndarray
    q2: np.ndarray
    dist: np.ndarray

    @property
    def n(self) -> int:
        return self.q1.shape[0]

    def u(self, lo: float, hi: float) -> np.ndarray:
        return self.rng.uniform(lo, hi, (self.n, 1))

    def onset(self, total: np.ndarray, earliest: float = 0.1) -> np.ndarray:
        """A start time that fits an event of ``total`` seconds into the clip when possible."""
        room = np.maximum(self.dur - total - earliest - 0.05, 0.0)
        return earliest + self.u(0, 1) * room

    def add(self, q: np.ndarray, name: str, value: np.ndarray) -> None:
        q[..., D[name]] += value


def idle(
    rng: np.random.Generator, q: np.ndarray, t: np.ndarray, style: dict[str, np.ndarray]
) -> None:
    """Stance plus idle motion on every limb: breathing, weight shift, head, arm and trunk sway.

    ``style`` holds per-body (n,) arrays: ``arm_abd``, ``elbow``, ``stance``, ``knee``.
    """
    n = q.shape[0]
    c = lambda a: a[:, None]  # noqa: E731
    breath = np.sin(
        2 * np.pi * rng.uniform(0.2, 0.35, (n, 1)) * t + rng.uniform(0, 2 * np.pi, (n, 1))
    )
    shift = rng.uniform(0.015, 0.045, (n, 1)) * smooth_noise(rng, n, t, 0.08, 0.35)
    q[..., D["spine_flex"]] += 0.015 * breath + 0.02 * smooth_noise(rng, n, t, 0.1, 0.4)
    q[..., D["spine_lat"]] += -0.4 * shift
    q[..., D["spine_twist"]] += 0.03 * smooth_noise(rng, n, t, 0.1, 0.4)
    q[..., D["root_yaw"]] += 0.04 * smooth_noise(rng, n, t, 0.05, 0.3)
    q[..., D["neck_flex"]] += 0.05 * smooth_noise(rng, n, t, 0.1, 0.5)
    q[..., D["neck_yaw"]] += 0.1 * smooth_noise(rng, n, t, 0.1, 0.5)
    for s in SIDES:
        q[..., D[f"clav_{s}"]] += 0.012 * breath
        q[..., D[f"sh_abd_{s}"]] += c(style["arm_abd"]) + 0.03 * smooth_noise(rng, n, t, 0.1, 0.6)
        q[..., D[f"sh_flex_{s}"]] += 0.05 * smooth_noise(rng, n, t, 0.1, 0.6)
        q[..., D[f"elbow_{s}"]] += c(style["elbow"]) + 0.05 * smooth_noise(rng, n, t, 0.1, 0.6)
        q[..., D[f"wrist_{s}"]] += 0.08 * smooth_noise(rng, n, t, 0.1, 0.8)
        q[..., D[f"hip_abd_{s}"]] += c(style["stance"]) + (shift if s == "r" else -shift)
        q[..., D[f"hip_flex_{s}"]] += c(style["knee"]) * 0.5
        q[..., D[f"knee_{s}"]] += c(style["knee"])
        q[..., D[f"ankle_{s}"]] -= c(style["knee"]) * 0.5


# ---------------------------------------------------------------------------------- actions
def _active_window(c: Ctx, rise: float, fall: float) -> np.ndarray:
    """An envelope that raises a pose, holds it and lowers it, covering 40-95 % of the clip at a random
    position (clips keep some idle time before and after the action, as real recordings do)."""
    return active_window_timed(c, rise, fall)[0]


def active_window_timed(
    c: Ctx, rise: float, fall: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_active_window` and its timing: ``(envelope, hold start, hold duration)`` (s, (n, 1)),
    so that an action's cue (a wrist tilt, a release) can be placed inside the held pose."""
    r = rise / c.speed * c.u(0.8, 1.2)
    f = fall / c.speed * c.u(0.8, 1.2)
    hold = np.maximum(c.dur * c.u(0.4, 0.95) - r - f, 0.3)
    t0 = c.onset(r + hold + f, earliest=0.05)
    return bump(c.t, t0, r, hold, f), t0 + r, hold


def _hand_up(c: Ctx, q: np.ndarray, s: str, e: np.ndarray, waving: bool) -> None:
    """Upper arm out to the side, forearm up ('hand raised'); a wave oscillates the elbow."""
    abd, flex, rot, elb = c.u(1.0, 1.65), c.u(0.0, 0.7), c.u(1.1, 1.6), c.u(0.7, 1.4)
    c.add(q, f"sh_abd_{s}", e * abd)
    c.add(q, f"sh_flex_{s}", e * flex)
    c.add(q, f"sh_rot_{s}", e * rot)
    c.add(q, f"elbow_{s}", e * elb)
    c.add(q, f"clav_{s}", e * 0.1)
    c.add(q, "spine_lat", e * (0.06 if s == "r" else -0.06))
    if waving:
        a = c.u(0.3, 0.8) * c.amp
        f = c.u(1.5, 2.8) * np.sqrt(c.speed)
        w = np.sin(2 * np.pi * f * c.t + c.u(0, 2 * np.pi))
        c.add(q, f"elbow_{s}", e * a * w)
        c.add(q, f"sh_rot_{s}", e * 0.3 * a * w)
        c.add(q, f"sh_abd_{s}", e * 0.5 * a * w)
        c.add(q, f"wrist_{s}", e * 0.6 * a * np.sin(2 * np.pi * f * c.t + 0.6))
    else:  # a raised hand is never perfectly still
        c.add(q, f"elbow_{s}", e * 0.05 * smooth_noise(c.rng, c.n, c.t, 0.2, 1.2))
        c.add(q, f"sh_abd_{s}", e * 0.02 * smooth_noise(c.rng, c.n, c.t, 0.2, 1.2))


def hands_up(sides: str, waving: bool) -> Callable[[Ctx], None]:
    """Raise the hand(s) of ``sides`` ("r", "l" or "lr", the second one lagging up to 0.12 s);
    ``waving`` adds the wave oscillation."""

    def fn(c: Ctx) -> None:
        e = _active_window(c, 0.8, 0.7)
        for i, s in enumerate(sides):
            _hand_up(
                c, c.q1, s, e if i == 0 else _shift(c.t, e, c.u(-0.12, 0.12) / c.speed), waving
            )

    return fn


def _shift(t: np.ndarray, e: np.ndarray, lag: np.ndarray) -> np.ndarray:
    """Delay each row of an envelope ``e`` (n, T) by ``lag`` (n, 1) seconds (linear interpolation)."""
    frames = t[0] * FPS
    src = np.clip(frames[None] - lag * FPS, 0, frames[-1])
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, len(frames) - 1)
    a = src - lo
    rows = np.arange(e.shape[0])[:, None]
    return (1 - a) * e[rows, lo] + a * e[rows, hi]


def _hands_front(c: Ctx, e: np.ndarray) -> None:
    """Both forearms raised in front of the chest, palms meeting at the midline (clap/rub pose)."""
    flex, abd, elb = c.u(0.45, 0.8), c.u(0.15, 0.35), c.u(1.3, 1.65)
    # internal rotation that brings the hands within ~2 cm of the midline (a fit of the FK solution)
    rot = -(1.185 - 0.405 * flex + 0.444 * abd - 0.352 * elb)
    for s in SIDES:
        c.add(c.q1, f"sh_flex_{s}", e * flex)
        c.add(c.q1, f"sh_abd_{s}", e * abd)
        c.add(c.q1, f"sh_rot_{s}", e * rot)
        c.add(c.q1, f"elbow_{s}", e * elb)


def clap(c: Ctx) -> None:
    e = _active_window(c, 0.6, 0.5)
    _hands_front(c, e)
    sep = c.u(0.1, 0.6) * c.amp
    f = c.u(1.5, 3.0) * np.sqrt(c.speed)
    open_ = 0.5 - 0.5 * np.cos(2 * np.pi * f * c.t + c.u(0, 2 * np.pi))
    for s in SIDES:
        c.add(c.q1, f"sh_rot_{s}", e**2 * sep * open_)


def rub_hands(c: Ctx) -> None:
    e = _active_window(c, 0.6, 0.5)
    _hands_front(c, e)
    a = c.u(0.06, 0.25) * c.amp
    f = c.u(2.0, 3.5) * np.sqrt(c.speed)
    ph = 2 * np.pi * f * c.t + c.u(0, 2 * np.pi)
    c.add(c.q1, "elbow_l", e**2 * a * np.sin(ph))
    c.add(c.q1, "elbow_r", -(e**2) * a * np.sin(ph))
    for s in SIDES:
        c.add(c.q1, f"sh_rot_{s}", e**2 * 0.3 * a * (1 + np.cos(ph)))


def kick(base_duration: float) -> Callable[[Ctx], None]:
    """Front kick with the right leg: chamber (knee up), extend, retract; trunk leans back."""

    def fn(c: Ctx) -> None:
        kick_timed(c, base_duration)

    return fn


def kick_timed(c: Ctx, base_duration: float) -> tuple[np.ndarray, np.ndarray]:
    """The kick of :func:`kick` on ``c``; returns its ``(start, duration)`` (s, (n, 1))."""
    dur = base_duration * np.exp(c.rng.normal(0, 0.2, (c.n, 1))) / c.speed
    t0 = c.onset(dur)
    u = np.clip((c.t - t0) / dur, 0, 1)
    lift = np.sin(np.pi * u) ** 2
    k = c.u(0.8, 1.4) * c.amp
    c.add(c.q1, "hip_flex_r", k * lift)
    c.add(c.q1, "knee_r", c.u(0.7, 1.2) * np.sin(2 * np.pi * u) ** 2)
    c.add(c.q1, "ankle_r", -0.3 * lift)
    c.add(c.q1, "spine_flex", -0.15 * k * lift)
    c.add(c.q1, "sh_abd_l", 0.25 * lift)
    c.add(c.q1, "sh_abd_r", 0.2 * lift)
    c.add(c.q1, "sh_flex_l", 0.3 * lift)
    c.add(c.q1, "sh_flex_r", -0.2 * lift)
    return t0, dur


def _trunk_pitch(c: Ctx, q: np.ndarray, pitch: np.ndarray) -> None:
    """Tilt the pelvis forward by ``pitch`` while the thighs stay put (hip flexion compensates)."""
    c.add(q, "root_pitch", pitch)
    for s in SIDES:
        c.add(q, f"hip_flex_{s}", pitch)


def _sit(c: Ctx, down: bool) -> None:
    dur = 1.3 * np.exp(c.rng.normal(0, 0.12, (c.n, 1))) / c.speed
    t0 = c.onset(dur)
    s = ramp(c.t, t0, dur)
    s = s if down else 1 - s
    lean = np.sin(np.pi * np.clip((c.t - t0) / dur, 0, 1)) ** 2
    hip, knee = c.u(1.35, 1.6), c.u(1.4, 1.65)
    for side in SIDES:
        c.add(c.q1, f"hip_flex_{side}", hip * s)
        c.add(c.q1, f"knee_{side}", knee * s)
        c.add(c.q1, f"sh_flex_{side}", 0.35 * lean + 0.15 * s)
        c.add(c.q1, f"elbow_{side}", 0.4 * s)
    _trunk_pitch(c, c.q1, c.u(0.3, 0.5) * lean)
    c.add(c.q1, "spine_flex", 0.1 * lean)


def sit_down(c: Ctx) -> None:
    _sit(c, down=True)


def stand_up(c: Ctx) -> None:
    _sit(c, down=False)


# ---------------------------------------------------------------------------------- interactions
def _reach(c: Ctx, q: np.ndarray, e: np.ndarray, flex, elbow, rot, abd=0.0) -> None:
    c.add(q, "sh_flex_r", e * flex)
    c.add(q, "elbow_r", e * elbow)
    c.add(q, "sh_rot_r", e * rot)
    c.add(q, "sh_abd_r", e * abd)


def _step(c: Ctx, q: np.ndarray, t0: np.ndarray, dur: np.ndarray, dist: np.ndarray) -> None:
    """Translate the body ``dist`` m along its own forward axis, with a leg swing while moving."""
    c.add(q, "root_z", dist * ramp(c.t, t0, dur))
    u = np.clip((c.t - t0) / dur, 0, 1)
    swing = np.sin(np.pi * u) * np.sign(dist)
    c.add(q, "hip_flex_r", 0.35 * np.clip(swing, 0, None) * (u < 0.5))
    c.add(q, "knee_r", 0.5 * np.abs(swing) * (u < 0.5))
    c.add(q, "hip_flex_l", 0.35 * np.clip(swing, 0, None) * (u >= 0.5))
    c.add(q, "knee_l", 0.5 * np.abs(swing) * (u >= 0.5))


def handshake(c: Ctx) -> None:
    c.dist[:] = c.rng.uniform(0.8, 1.0, c.n)
    rise, hold, fall = 0.5 / c.speed, c.u(0.7, 1.3) / c.speed, 0.5 / c.speed
    t0 = c.onset(rise + hold + fall)
    pump = 0.12 * c.amp * np.sin(2 * np.pi * c.u(2.0, 3.0) * c.t + c.u(0, 2 * np.pi))
    for q, lag in ((c.q1, 0.0), (c.q2, c.u(0.0, 0.25))):
        e = bump(c.t, t0 + lag, rise - lag, hold, fall)
        _reach(c, q, e, c.u(0.7, 0.95), c.u(0.45, 0.8), -c.u(0.35, 0.65), -0.1)
        c.add(q, "sh_flex_r", e**3 * pump)
        c.add(q, "spine_flex", 0.1 * e)


def push(c: Ctx) -> None:
    c.dist[:] = c.rng.uniform(0.95, 1.25, c.n)
    t0 = c.onset(1.2 / c.speed)
    step = c.u(0.15, 0.3)
    _step(c, c.q1, t0, 0.45 / c.speed, step)
    thrust = bump(c.t, t0 + 0.1 / c.speed, 0.35 / c.speed, 0.15 / c.speed, 0.5 / c.speed)
    chamber = bump(c.t, t0, 0.2 / c.speed, 0.05 / c.speed, 0.25 / c.speed)
    for s in SIDES:
        c.add(c.q1, f"sh_flex_{s}", c.u(1.1, 1.45) * thrust)
        c.add(c.q1, f"elbow_{s}", 1.3 * chamber + 0.2 * thrust)
        c.add(c.q1, f"sh_rot_{s}", -0.3 * thrust)
    c.add(c.q1, "spine_flex", 0.2 * thrust)
    hit = t0 + 0.4 / c.speed
    _step(c, c.q2, hit, 0.4 / c.speed, -c.u(0.2, 0.45) * c.amp)
    recoil = bump(c.t, hit, 0.15, 0.1, 0.5)
    c.add(c.q2, "spine_flex", -0.25 * recoil)
    for s in SIDES:
        c.add(c.q2, f"sh_abd_{s}", 0.5 * recoil)
        c.add(c.q2, f"sh_flex_{s}", 0.3 * recoil)


def hug(c: Ctx) -> None:
    """Both walk toward each other, embrace, let go and step back a little."""
    c.dist[:] = c.rng.uniform(1.0, 1.3, c.n)
    walk, rise, hold, fall = 0.6 / c.speed, 0.6 / c.speed, c.u(0.5, 1.0) / c.speed, 0.6 / c.speed
    t0 = c.onset(walk + rise + hold + fall)
    close = (c.dist[:, None] - c.u(0.4, 0.55)) / 2
    for q in (c.q1, c.q2):
        _step(c, q, t0, walk, close * c.u(0.9, 1.1))
        e = bump(c.t, t0 + 0.5 * walk, rise, hold, fall)
        for s in SIDES:
            c.add(q, f"sh_flex_{s}", c.u(1.0, 1.35) * e)
            c.add(q, f"sh_abd_{s}", c.u(0.3, 0.6) * e)
            c.add(q, f"elbow_{s}", c.u(0.9, 1.3) * e)
            c.add(q, f"sh_rot_{s}", -0.4 * e)
        c.add(q, "spine_flex", 0.15 * e)
        c.add(q, "neck_yaw", 0.3 * e)
        _step(c, q, t0 + 0.5 * walk + rise + hold, walk, -close * c.u(0.3, 0.7))


def point_at(c: Ctx) -> None:
    c.dist[:] = c.rng.uniform(1.0, 1.5, c.n)
    rise, hold, fall = 0.45 / c.speed, c.u(0.6, 1.2) / c.speed, 0.5 / c.speed
    t0 = c.onset(rise + hold + fall)
    e = bump(c.t, t0, rise, hold, fall)
    _reach(c, c.q1, e, c.u(1.25, 1.6), c.u(0.0, 0.25), c.u(-0.2, 0.2))
    jab = 0.06 * c.amp * np.sin(2 * np.pi * c.u(1.5, 2.5) * c.t)
    c.add(c.q1, "sh_flex_r", e**2 * jab)
    c.add(c.q1, "wrist_r", -0.3 * e)
    c.add(c.q2, "neck_flex", 0.15 * bump(c.t, t0 + 0.3, 0.4, c.u(0.3, 0.8), 0.4))


def seat(rng: np.random.Generator, q: np.ndarray) -> None:
    """Put bodies ``q`` (n, T, DOFS) on a chair: hips and knees flexed about 85°, feet planted."""
    n = q.shape[0]
    for s in SIDES:
        q[..., D[f"hip_flex_{s}"]] += rng.uniform(1.35, 1.6, (n, 1))
        q[..., D[f"knee_{s}"]] += rng.uniform(1.4, 1.65, (n, 1))
        q[..., D[f"hip_abd_{s}"]] += rng.uniform(0.0, 0.15, (n, 1))


@dataclass(frozen=True)
class Action:
    """An action class: ``fn`` adds its motion to a :class:`Ctx`; ``seatable`` actions are performed
    seated in a fraction of the clips (a posture nuisance, as in NTU's seated setups)."""

    name: str
    fn: Callable[[Ctx], None]
    two_person: bool = False
    seatable: bool = False


ACTIONS: tuple[Action, ...] = (
    Action("wave_right_hand", hands_up("r", waving=True), seatable=True),
    Action("wave_left_hand", hands_up("l", waving=True), seatable=True),
    Action("cheer_up", hands_up("rl", waving=True), seatable=True),
    Action("raise_right_hand", hands_up("r", waving=False), seatable=True),
    Action("raise_left_hand", hands_up("l", waving=False), seatable=True),
    Action("raise_both_hands", hands_up("rl", waving=False), seatable=True),
    Action("clap_hands", clap, seatable=True),
    Action("rub_hands", rub_hands, seatable=True),
    Action("kick_slow", kick(1.05)),
    Action("kick_fast", kick(0.5)),
    Action("sit_down", sit_down),
    Action("stand_up", stand_up),
    Action("handshake", handshake, two_person=True),
    Action("push", push, two_person=True),
    Action("hug", hug, two_person=True),
    Action("point_at_person", point_at, two_person=True),
)
