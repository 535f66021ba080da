"""The action library of ``synth-ntu60``: 60 classes in the granularity of NTU RGB+D 60.

NTU-60 (Shahroudy et al., CVPR 2016) is hard because many of its classes differ only in where a hand
goes and what it does there: drink water, eat a meal and brush teeth all bring a hand to the mouth;
reading, writing, typing and playing with a phone all hold the hands in front of the chest; put on
and take off glasses (or a hat) differ in the direction of one short movement; thumbs-up, pointing
and a victory sign differ in the hand tip and thumb alone. This module gives the procedural
generator those distinctions:

- **Reach targets** (:data:`TARGETS`): points on or around the body (mouth, ear, eyes, forehead,
  top of the head, chest, belly, back, pocket, a book held in front, a desk, a phone screen, ...),
  in the body frame of :mod:`robench.data.synth_motion`. :func:`solve_reaches` finds, by
  damped Gauss-Newton on the forward kinematics of the mean body, the shoulder and elbow angles that
  put the hand (palm joint) on each target; a performer's own body and idle posture then land it
  within a few centimetres, as real people do.
- **Micro-motions** on top of a held reach: an oscillation of one degree of freedom (brushing teeth:
  ±3 cm sideways at 2-3.5 Hz; writing: ±1 cm), repeated reaches (eating), a wrist tilt (drinking),
  finger and thumb movement (typing, playing with a phone); and hand shapes (fist, extended hand
  tip, thumb up or folded) through the ``finger``/``thumb`` degrees of freedom.
- **Direction pairs**: put on / take off glasses or a hat approach or leave the target along
  opposite directions; wear / take off a shoe pull the hands towards or away from the foot.

The 11 actions of ``synth-ntu25`` that NTU-60 also has (right-hand wave, cheer up, clap, rub hands,
the fast kick, sit down, stand up, handshake, push, hug, point at a person) are reused unchanged; the
left-hand wave, the three raises and the slow kick, which NTU-60 lacks, are left out. :data:`ACTIONS60` lists the 60 classes in NTU-60's
order of kinds: 49 single-person actions, then 11 two-person interactions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from robench.data.synth_motion import (
    DOFS,
    GROUPS,
    SIDES,
    Action,
    Ctx,
    D,
    J,
    _active_window,
    _reach,
    _shift,
    _step,
    _trunk_pitch,
    active_window_timed,
    body_offsets,
    bump,
    clap,
    forward_kinematics,
    hands_up,
    handshake,
    hug,
    kick,
    kick_timed,
    point_at,
    push,
    ramp,
    rub_hands,
    sit_down,
    smooth_noise,
    stand_up,
)

# --------------------------------------------------------------------------------- reach targets
# name -> (point for the LEFT hand in the body frame (x = left, y = up, z = forward; metres; the
# right hand's point is mirrored in x), wrist flexion). Relative to the mean rest body: head centre
# (0, 0.694, 0.017), spine shoulder (0, 0.49, 0), shoulders (±0.139, 0.476, 0).
TARGETS: dict[str, tuple[tuple[float, float, float], float]] = {
    "mouth": ((0.03, 0.62, 0.13), 0.5),
    "ear": ((0.11, 0.69, 0.03), 0.3),
    "eyes": ((0.05, 0.72, 0.14), 0.4),
    "forehead": ((0.04, 0.78, 0.12), 0.5),
    "forehead_side": ((0.08, 0.76, 0.1), 0.9),
    "head_top": ((0.06, 0.83, 0.02), 0.3),
    "above_head": ((0.09, 0.95, 0.08), 0.2),
    "head_side": ((0.11, 0.78, -0.02), 0.3),
    "cheek": ((0.07, 0.65, 0.12), 0.4),
    "neck_back": ((0.05, 0.6, -0.08), 0.6),
    "chest": ((0.03, 0.38, 0.13), 0.6),
    "chest_mid": ((0.015, 0.36, 0.25), 0.0),
    "belly": ((0.04, 0.16, 0.15), 0.5),
    "low_back": ((0.08, 0.08, -0.14), 0.3),
    "pocket": ((0.17, 0.0, 0.05), 0.2),
    "book": ((0.12, 0.3, 0.33), -0.3),
    "desk": ((0.14, 0.12, 0.33), -0.2),
    "phone": ((0.04, 0.4, 0.32), -0.2),
    "face_front": ((0.06, 0.62, 0.3), 0.0),
    "selfie": ((0.2, 0.8, 0.38), -0.3),
    "point_far": ((0.12, 0.55, 0.5), 0.0),
    "cross": ((-0.1, 0.38, 0.2), 0.2),
    "watch": ((-0.02, 0.33, 0.3), 0.0),
    "give": ((0.1, 0.3, 0.5), -0.2),
    "partner_back": ((0.06, 0.5, 0.47), 0.3),
    "partner_pocket": ((0.12, 0.15, 0.38), 0.2),
}
ARM_DOFS = ("sh_flex", "sh_abd", "sh_rot", "elbow")
_ARM_INITS = ((0.8, 0.3, -0.3, 1.5), (2.2, 0.6, 0.3, 2.2))  # arm forward / arm up, elbow bent
_ARM_PRIOR = (0.0, 0.2, 0.0, 0.0)  # a weak pull away from odd solutions (arm out to the side)
_ARM_LIMITS = ((-1.2, 3.0), (-0.5, 1.6), (-1.2, 1.2), (0.0, 2.5))  # rad: flexion up to 140°


def _hand_points(angles: torch.Tensor, wrist: torch.Tensor, offsets: np.ndarray) -> torch.Tensor:
    """(K, 4) left-arm angles, (K,) wrist flexion -> (K, 3) left hand positions of the rest body."""
    q = torch.zeros(angles.shape[0], 1, len(DOFS), dtype=torch.float64)
    q[:, 0, [D[f"{d}_l"] for d in ARM_DOFS]] = angles
    q[:, 0, D["wrist_l"]] = wrist
    return forward_kinematics(q, offsets)[:, 0, J["hand_left"]]


@functools.cache
def solve_reaches() -> dict[str, dict[str, float]]:
    """Left-arm angles (``ARM_DOFS`` + ``wrist``) that put the left hand on each of :data:`TARGETS`
    (right arm: the same values, mirrored by the kinematics' convention). Damped Gauss-Newton on the
    forward kinematics of the mean body, 20 iterations from each of two starting postures, angles
    kept within joint limits (``_ARM_LIMITS``); the start with the smaller residual wins.
    :func:`reach_errors` reports the residuals (under 1.5 cm for every target, pinned by the tests)."""
    names = list(TARGETS)
    k = len(names)
    offsets = body_offsets(np.ones(k), np.ones((k, len(GROUPS))))
    goal = torch.tensor([TARGETS[n][0] for n in names], dtype=torch.float64)
    wrist = torch.tensor([TARGETS[n][1] for n in names], dtype=torch.float64)
    prior = torch.tensor(_ARM_PRIOR, dtype=torch.float64)
    lo, hi = (torch.tensor(v, dtype=torch.float64) for v in zip(*_ARM_LIMITS, strict=True))
    best, best_err = None, None
    for init in _ARM_INITS:
        theta = torch.tensor([init] * k, dtype=torch.float64)
        for _ in range(20):
            jac = torch.autograd.functional.jacobian(
                lambda a: _hand_points(a, wrist, offsets).sum(0), theta, vectorize=True
            ).permute(1, 0, 2)  # (K, 3, 4): each target's hand depends on its own angles only
            r = _hand_points(theta, wrist, offsets) - goal
            a = jac.transpose(1, 2) @ jac + 1e-2 * torch.eye(4, dtype=torch.float64)
            b = jac.transpose(1, 2) @ r[..., None] + 1e-3 * (theta - prior)[..., None]
            theta = torch.minimum(torch.maximum(theta - torch.linalg.solve(a, b)[..., 0], lo), hi)
        err = (_hand_points(theta, wrist, offsets) - goal).norm(dim=1)
        if best is None:
            best, best_err = theta, err
        else:
            better = err < best_err
            best = torch.where(better[:, None], theta, best)
            best_err = torch.where(better, err, best_err)
    return {
        n: {**dict(zip(ARM_DOFS, map(float, best[i]), strict=True)), "wrist": TARGETS[n][1]}
        for i, n in enumerate(names)
    }


def reach_errors() -> dict[str, float]:
    """Distance (m) between each target and the hand placed by :func:`solve_reaches`."""
    poses = solve_reaches()
    names = list(TARGETS)
    offsets = body_offsets(np.ones(len(names)), np.ones((len(names), len(GROUPS))))
    angles = torch.tensor([[poses[n][d] for d in ARM_DOFS] for n in names], dtype=torch.float64)
    wrist = torch.tensor([poses[n]["wrist"] for n in names], dtype=torch.float64)
    goal = torch.tensor([TARGETS[n][0] for n in names], dtype=torch.float64)
    err = (_hand_points(angles, wrist, offsets) - goal).norm(dim=1)
    return {n: float(e) for n, e in zip(names, err, strict=True)}


# --------------------------------------------------------------------------------- primitives
def _hold(c: Ctx, q: np.ndarray, s: str, target: str, e: np.ndarray, jitter: float = 0.06,
          **extra: float) -> None:  # fmt: skip
    """Blend the arm of side ``s`` into the reach pose of ``target`` under envelope ``e`` (0..1).

    Inside the envelope the arm's static idle posture is replaced by the reach pose (per-sample angle
    jitter ``jitter`` rad sd), its idle sway is kept; ``extra`` adds hand-shape or wrist values
    (``finger``, ``thumb``, ``wrist_twist``, ...), also blended in by ``e``.
    """
    pose = {**solve_reaches()[target], **extra}
    for dof, value in pose.items():
        col = D[f"{dof}_{s}"]
        static = q[..., col].mean(1, keepdims=True)
        noise = c.rng.normal(0.0, jitter, (c.n, 1))
        q[..., col] += e * (value + noise - static)


def _osc(c: Ctx, f_lo: float, f_hi: float) -> np.ndarray:
    """A unit sine at a per-sample frequency in [f_lo, f_hi] Hz (scaled by speed), random phase."""
    f = c.u(f_lo, f_hi) * np.sqrt(c.speed)
    return np.sin(2 * np.pi * f * c.t + c.u(0, 2 * np.pi))


def _window(c: Ctx, rise: float = 0.6, fall: float = 0.5) -> np.ndarray:
    return _active_window(c, rise, fall)


def _sides(both: bool) -> tuple[str, ...]:
    return SIDES if both else ("r",)


def reach(
    target: str,
    both: bool = False,
    micro: tuple[str, float, float, float] | None = None,
    neck: float = 0.0,
    hand: dict[str, float] | None = None,
    rise: float = 0.6,
    fall: float = 0.5,
    alternate: bool = False,
) -> Callable[[Ctx], None]:
    """Hand(s) to ``target``, held, optionally with a micro-motion ``(dof, amplitude rad, f_lo Hz,
    f_hi Hz)`` on both hands (in anti-phase with ``alternate``), a neck flexion ``neck`` (looking at
    the hands) and a hand shape ``hand``."""

    def fn(c: Ctx) -> None:
        e = _window(c, rise, fall)
        osc = _osc(c, *micro[2:]) if micro else None
        amp = micro[1] * c.amp * c.u(0.7, 1.3) if micro else None
        for i, s in enumerate(_sides(both)):
            _hold(c, c.q1, s, target, e, **(hand or {}))
            if micro:
                sign = -1.0 if (alternate and i == 1) else 1.0
                c.add(c.q1, f"{micro[0]}_{s}", e**2 * sign * amp * osc)
        if neck:
            c.add(c.q1, "neck_flex", e * neck * c.u(0.7, 1.3))

    return fn


def reach_directed(target: str, along: str, on: bool, both: bool = True) -> Callable[[Ctx], None]:
    """Put on (``on``) or take off an object at ``target``: the hands arrive at (put on) or leave
    from (take off) the target displaced along ``along`` ("forward": glasses; "up": a hat), the
    displacement fading in or out in the first or second half of the held reach."""

    # displacement of the arm angles that moves the hand ~8 cm forward (glasses: the forearm
    # extends) or ~8 cm up (a hat: the arm lifts), checked by the tests on the forward kinematics
    flex, elbow = {"forward": (-0.05, -0.25), "up": (0.3, -0.5)}[along]

    def fn(c: Ctx) -> None:
        rise, hold, fall = 0.5 / c.speed, c.u(0.5, 1.0) / c.speed, 0.5 / c.speed
        t0 = c.onset(rise + hold + fall)
        e = bump(c.t, t0, rise, hold, fall)
        mid = t0 + rise + 0.5 * hold
        # put on: displaced while arriving, settling on the target; take off: the reverse
        away = 1 - ramp(c.t, t0 + rise * 0.5, 0.5 * hold) if on else ramp(c.t, mid, 0.5 * hold)
        for s in _sides(both):
            _hold(c, c.q1, s, target, e)
            c.add(c.q1, f"sh_flex_{s}", e * flex * away)
            c.add(c.q1, f"elbow_{s}", e * elbow * away)

    return fn


def drink(c: Ctx) -> None:
    """Hand to the mouth; during the held reach the wrist tilts (the cup) and the head tips back."""
    e, hold_start, hold = active_window_timed(c, 0.7, 0.6)
    _hold(c, c.q1, "r", "mouth", e)
    tilt = ramp(c.t, hold_start + 0.15 * hold, 0.5 * hold)
    c.add(c.q1, "wrist_r", -0.6 * e * tilt)
    c.add(c.q1, "neck_flex", -0.15 * e * tilt)


def eat(c: Ctx) -> None:
    """Repeated reaches to the mouth: the elbow opens and closes at 0.7-1.1 Hz."""
    e = _window(c, 0.5, 0.5)
    _hold(c, c.q1, "r", "mouth", e)
    cyc = 0.5 - 0.5 * np.cos(2 * np.pi * c.u(0.7, 1.1) * np.sqrt(c.speed) * c.t + c.u(0, 6.3))
    c.add(c.q1, "elbow_r", -e * c.u(0.5, 0.9) * cyc)
    c.add(c.q1, "sh_flex_r", -e * 0.2 * cyc)


def drop(c: Ctx) -> None:
    """Hold an object in front (fist), open the hand halfway through the hold, look down."""
    e, hold_start, hold = active_window_timed(c, 0.5, 0.4)
    _hold(c, c.q1, "r", "give", e, finger=1.4, thumb=0.6)
    release = ramp(c.t, hold_start + 0.5 * hold, 0.15)
    c.add(c.q1, "finger_r", -1.4 * e * release)
    c.add(c.q1, "thumb_r", -0.6 * e * release)
    c.add(c.q1, "neck_flex", 0.3 * e * release)


def pick_up(c: Ctx) -> None:
    dur = 1.6 / c.speed
    t0 = c.onset(dur)
    e = bump(c.t, t0, 0.45 * dur, 0.1 * dur, 0.45 * dur)
    _trunk_pitch(c, c.q1, c.u(0.7, 1.0) * e)
    for s in SIDES:
        c.add(c.q1, f"knee_{s}", c.u(0.3, 0.7) * e)
        c.add(c.q1, f"hip_flex_{s}", 0.2 * e)
    c.add(c.q1, "sh_flex_r", c.u(0.6, 0.9) * e)
    c.add(c.q1, "finger_r", 1.2 * ramp(c.t, t0 + 0.5 * dur, 0.1))


def throw(c: Ctx) -> None:
    dur = 0.9 / c.speed
    t0 = c.onset(dur + 0.4)
    cock = bump(c.t, t0, 0.35 * dur, 0.05 * dur, 0.2 * dur)
    fling = bump(c.t, t0 + 0.45 * dur, 0.15 * dur, 0.1 * dur, 0.4 * dur)
    c.add(c.q1, "sh_flex_r", 2.3 * cock * c.u(0.8, 1.1) + 1.2 * fling)
    c.add(c.q1, "sh_abd_r", 0.5 * cock)
    c.add(c.q1, "elbow_r", 1.5 * cock + 0.2 * fling)
    c.add(c.q1, "spine_twist", 0.3 * cock - 0.3 * fling)
    c.add(c.q1, "spine_flex", 0.2 * fling)


def jacket(on: bool) -> Callable[[Ctx], None]:
    """Wear (arms into sleeves: one arm back, then the other, shrug) or take off (shrug, pull the
    sleeves down and back) a jacket."""

    def fn(c: Ctx) -> None:
        dur = c.u(2.0, 2.8) / c.speed
        t0 = c.onset(dur, earliest=0.05)
        u = np.clip((c.t - t0) / dur, 0, 1)
        phase = u if on else 1 - u
        for k, s in enumerate(("r", "l")):
            arm = np.sin(np.pi * np.clip(phase * 2 - k * 0.7, 0, 1)) ** 2
            c.add(c.q1, f"sh_flex_{s}", -0.7 * arm)
            c.add(c.q1, f"sh_abd_{s}", 0.8 * arm)
            c.add(c.q1, f"elbow_{s}", 0.6 * arm)
        shrug = bump(c.t, t0 + (0.7 if on else 0.1) * dur, 0.15 * dur, 0.05 * dur, 0.1 * dur)
        for s in SIDES:
            c.add(c.q1, f"clav_{s}", 0.25 * shrug)
            c.add(c.q1, f"sh_flex_{s}", 0.5 * shrug)
            c.add(c.q1, f"elbow_{s}", 1.2 * shrug)
        c.add(c.q1, "spine_twist", 0.15 * np.sin(2 * np.pi * phase))

    return fn


def shoe(on: bool) -> Callable[[Ctx], None]:
    """Bend down to the lifted right foot; during the held pose both hands move from the body to
    the foot (wear: pulling the shoe on) or from the foot back to the body (take off)."""

    def fn(c: Ctx) -> None:
        e, hold_start, hold = active_window_timed(c, 0.8, 0.7)
        _trunk_pitch(c, c.q1, c.u(0.6, 0.85) * e)
        c.add(c.q1, "hip_flex_r", c.u(0.4, 0.7) * e)
        c.add(c.q1, "knee_r", c.u(0.6, 0.9) * e)
        p = ramp(c.t, hold_start + 0.1 * hold, 0.7 * hold)
        at_foot = p if on else 1 - p  # 1: hands at the foot, 0: pulled back to the body
        for s in SIDES:
            c.add(c.q1, f"sh_flex_{s}", e * (0.55 + 0.3 * at_foot))
            c.add(c.q1, f"elbow_{s}", e * (0.9 - 0.6 * at_foot))

    return fn


def hop(c: Ctx) -> None:
    e = _window(c, 0.3, 0.3)
    c.add(c.q1, "hip_flex_l", 0.5 * e)
    c.add(c.q1, "knee_l", 1.0 * e)
    b = np.clip(_osc(c, 1.6, 2.4), 0, None)
    c.add(c.q1, "root_y", e * c.u(0.04, 0.09) * b)
    c.add(c.q1, "knee_r", e * 0.25 * (1 - b))


def jump(c: Ctx) -> None:
    dur = 0.9 / c.speed
    t0 = c.onset(dur)
    crouch = bump(c.t, t0, 0.3 * dur, 0.05 * dur, 0.15 * dur)
    air = bump(c.t, t0 + 0.4 * dur, 0.15 * dur, 0.1 * dur, 0.2 * dur)
    land = bump(c.t, t0 + 0.85 * dur, 0.05 * dur, 0.05 * dur, 0.2 * dur)
    for s in SIDES:
        c.add(c.q1, f"hip_flex_{s}", 0.6 * (crouch + land))
        c.add(c.q1, f"knee_{s}", 1.0 * (crouch + land))
        c.add(c.q1, f"ankle_{s}", -0.4 * (crouch + land))
        c.add(c.q1, f"sh_flex_{s}", -0.5 * crouch + 1.0 * air)
    c.add(c.q1, "root_y", c.u(0.12, 0.25) * air)


def stagger(c: Ctx) -> None:
    e = _window(c, 0.3, 0.4)
    sway = smooth_noise(c.rng, c.n, c.t, 0.4, 0.9)
    c.add(c.q1, "root_x", e * 0.15 * sway * c.amp)
    c.add(c.q1, "root_roll", e * 0.12 * sway)
    c.add(c.q1, "spine_lat", -e * 0.15 * sway)
    for s, sign in (("l", 1.0), ("r", -1.0)):
        c.add(c.q1, f"hip_abd_{s}", e * 0.15 * np.clip(sign * sway, 0, None))
        c.add(c.q1, f"sh_abd_{s}", e * 0.3)


def fall_down(c: Ctx) -> None:
    dur = 1.2 / c.speed
    t0 = c.onset(dur)
    s = ramp(c.t, t0, dur)
    _trunk_pitch(c, c.q1, c.u(0.5, 0.9) * s)
    for side in SIDES:
        c.add(c.q1, f"knee_{side}", c.u(1.3, 1.7) * s)
        c.add(c.q1, f"hip_flex_{side}", 0.8 * s)
        c.add(c.q1, f"sh_flex_{side}", 1.0 * s)
    c.add(c.q1, "root_z", c.u(0.1, 0.3) * s)  # the foot lock keeps the feet on the floor


def bow(c: Ctx) -> None:
    e = _window(c, 0.5, 0.6)
    _trunk_pitch(c, c.q1, c.u(0.35, 0.6) * e)
    c.add(c.q1, "neck_flex", 0.3 * e)


def shake_head(c: Ctx) -> None:
    e = _window(c, 0.2, 0.2)
    c.add(c.q1, "neck_yaw", e * c.u(0.3, 0.5) * _osc(c, 1.6, 2.6))


def sneeze(c: Ctx) -> None:
    """Both hands to the mouth; the head and trunk jerk forward while they are there."""
    e, hold_start, hold = active_window_timed(c, 0.4, 0.5)
    for s in SIDES:
        _hold(c, c.q1, s, "mouth", e)
    jerk = bump(c.t, hold_start + 0.3 * hold, 0.1, 0.05, 0.3)
    c.add(c.q1, "neck_flex", 0.35 * jerk)
    c.add(c.q1, "spine_flex", 0.3 * jerk)


def nausea(c: Ctx) -> None:
    e = _window(c, 0.6, 0.6)
    for s in SIDES:
        _hold(c, c.q1, s, "belly", e)
    _trunk_pitch(c, c.q1, e * c.u(0.3, 0.55))
    c.add(c.q1, "neck_flex", e * 0.2 * (1 + 0.5 * _osc(c, 0.5, 1.2)))


def gesture(target: str, **hand: float) -> Callable[[Ctx], None]:
    """A held hand shape at ``target`` (thumbs up, victory sign, pointing)."""
    return reach(target, hand=hand, rise=0.5, fall=0.4)


# --------------------------------------------------------------------------------- interactions
def punch(c: Ctx) -> None:
    c.dist[:] = c.rng.uniform(0.8, 1.0, c.n)
    t0 = c.onset(1.0 / c.speed)
    strike = bump(c.t, t0 + 0.15 / c.speed, 0.15 / c.speed, 0.1 / c.speed, 0.35 / c.speed)
    guard = bump(c.t, t0, 0.15 / c.speed, 0.6 / c.speed, 0.3 / c.speed)
    _reach(c, c.q1, guard, 0.6, 1.6, -0.4)
    _reach(c, c.q1, strike, 0.9, -1.4, 0.2)
    c.add(c.q1, "finger_r", 1.5 * guard)
    c.add(c.q1, "spine_twist", -0.3 * strike)
    hit = t0 + 0.3 / c.speed
    recoil = bump(c.t, hit, 0.1, 0.1, 0.4)
    c.add(c.q2, "spine_flex", -0.3 * recoil)
    c.add(c.q2, "neck_flex", -0.3 * recoil)


def kick_person(c: Ctx) -> None:
    """The kick of ``kicking_something`` aimed at the partner, who doubles over when it lands."""
    c.dist[:] = c.rng.uniform(0.9, 1.15, c.n)
    t0, dur = kick_timed(c, 0.6)
    recoil = bump(c.t, t0 + 0.5 * dur, 0.1, 0.1, 0.4)
    _trunk_pitch(c, c.q2, 0.35 * recoil)
    for s in SIDES:
        c.add(c.q2, f"sh_flex_{s}", 0.4 * recoil)


def pat_on_back(c: Ctx) -> None:
    c.dist[:] = c.rng.uniform(0.6, 0.75, c.n)
    e = _window(c, 0.5, 0.5)
    _hold(c, c.q1, "r", "partner_back", e)
    c.add(c.q1, "elbow_r", e**2 * 0.25 * c.amp * np.clip(_osc(c, 1.5, 2.5), 0, None))
    c.add(c.q2, "spine_flex", 0.05 * e)


def give(c: Ctx) -> None:
    c.dist[:] = c.rng.uniform(0.8, 1.0, c.n)
    e1 = _window(c, 0.6, 0.6)
    _hold(c, c.q1, "r", "give", e1, finger=0.8)
    _hold(c, c.q2, "r", "give", _shift(c.t, e1, c.u(0.2, 0.5) / c.speed), finger=0.8)


def touch_partner_pocket(c: Ctx) -> None:
    c.dist[:] = c.rng.uniform(0.65, 0.8, c.n)
    e = _window(c, 0.6, 0.5)
    _hold(c, c.q1, "r", "partner_pocket", e)
    _trunk_pitch(c, c.q1, 0.15 * e)


def walk(towards: bool) -> Callable[[Ctx], None]:
    """Both walk towards each other (from 1.6-2.2 m) or apart (from 0.7-0.9 m), 0.3-0.5 m each."""

    def fn(c: Ctx) -> None:
        c.dist[:] = c.rng.uniform(1.6, 2.2, c.n) if towards else c.rng.uniform(0.7, 0.9, c.n)
        dur = c.u(1.0, 1.6) / c.speed
        t0 = c.onset(dur)
        for q in (c.q1, c.q2):
            dist = (1 if towards else -1) * c.u(0.3, 0.5)
            _step(c, q, t0, dur * c.u(0.9, 1.1), dist)
            swing = np.sin(2 * np.pi * np.clip((c.t - t0) / dur, 0, 1) * 2)
            c.add(q, "sh_flex_l", 0.3 * swing * (c.t > t0))
            c.add(q, "sh_flex_r", -0.3 * swing * (c.t > t0))

    return fn


# --------------------------------------------------------------------------------- the classes
_TYPING = ("finger", 0.35, 3.0, 5.0)
A = Action
ACTIONS60: tuple[Action, ...] = (
    A("drink_water", drink, seatable=True),
    A("eat_meal", eat, seatable=True),
    A("brush_teeth", reach("mouth", micro=("sh_rot", 0.18, 2.0, 3.5))),
    A("brush_hair", reach("head_side", micro=("sh_flex", 0.25, 0.8, 1.4))),
    A("drop", drop),
    A("pick_up", pick_up),
    A("throw", throw),
    A("sit_down", sit_down),
    A("stand_up", stand_up),
    A("clapping", clap, seatable=True),
    A("reading", reach("book", both=True, neck=0.35), seatable=True),
    A("writing", reach("desk", micro=("sh_rot", 0.05, 1.5, 3.0), neck=0.35), seatable=True),
    A(
        "tear_up_paper",
        reach("book", both=True, micro=("wrist_twist", 0.5, 1.0, 2.0), alternate=True),
        seatable=True,
    ),  # fmt: skip
    A("wear_jacket", jacket(on=True)),
    A("take_off_jacket", jacket(on=False)),
    A("wear_a_shoe", shoe(on=True)),
    A("take_off_a_shoe", shoe(on=False)),
    A("put_on_glasses", reach_directed("eyes", "forward", on=True), seatable=True),
    A("take_off_glasses", reach_directed("eyes", "forward", on=False), seatable=True),
    A("put_on_a_hat", reach_directed("head_top", "up", on=True)),
    A("take_off_a_hat", reach_directed("head_top", "up", on=False)),
    A("cheer_up", hands_up("rl", waving=True), seatable=True),
    A("hand_waving", hands_up("r", waving=True), seatable=True),
    A("kicking_something", kick(0.5)),
    A("reach_into_pocket", reach("pocket", micro=("finger", 0.4, 1.0, 2.0))),
    A("hopping", hop),
    A("jump_up", jump),
    A("make_a_phone_call", reach("ear"), seatable=True),
    A(
        "playing_with_phone",
        reach(
            "phone",
            both=True,
            micro=("thumb", 0.4, 2.5, 4.0),
            alternate=True,
            neck=0.4,
            hand={"thumb": 0.5},
        ),
        seatable=True,
    ),  # fmt: skip
    A(
        "typing_on_a_keyboard",
        reach("desk", both=True, micro=_TYPING, alternate=True, neck=0.3, hand={"finger": 0.7}),
        seatable=True,
    ),  # fmt: skip
    A("pointing_to_something", gesture("point_far", finger=0.0, thumb=0.8)),
    A("taking_a_selfie", reach("selfie", neck=-0.15)),
    A("check_time", reach("watch", neck=0.35, hand={"wrist_twist": -0.8}), seatable=True),
    A("rub_two_hands", rub_hands, seatable=True),
    A("nod_head_bow", bow),
    A("shake_head", shake_head, seatable=True),
    A("wipe_face", reach("cheek", both=True, micro=("sh_flex", 0.12, 1.0, 2.0)), seatable=True),
    A("salute", gesture("forehead_side", finger=0.0)),
    A("put_palms_together", reach("chest_mid", both=True), seatable=True),
    A("cross_hands_in_front", reach("cross", both=True), seatable=True),
    A("sneeze_cough", sneeze, seatable=True),
    A("staggering", stagger),
    A("falling_down", fall_down),
    A("headache", reach("forehead", both=True), seatable=True),
    A("chest_pain", reach("chest"), seatable=True),
    A("back_pain", reach("low_back")),
    A("neck_pain", reach("neck_back"), seatable=True),
    A("nausea_vomiting", nausea),
    A("fan_self", reach("face_front", micro=("wrist", 0.5, 2.5, 4.0)), seatable=True),
    A("punch_slap", punch, two_person=True),
    A("kicking_other_person", kick_person, two_person=True),
    A("pushing", push, two_person=True),
    A("pat_on_back", pat_on_back, two_person=True),
    A("point_finger_at_person", point_at, two_person=True),
    A("hugging", hug, two_person=True),
    A("giving_object", give, two_person=True),
    A("touch_pocket", touch_partner_pocket, two_person=True),
    A("handshaking", handshake, two_person=True),
    A("walking_towards", walk(towards=True), two_person=True),
    A("walking_apart", walk(towards=False), two_person=True),
)
