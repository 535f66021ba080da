"""``synth-ntu25`` (the HDM05-like regime) and the generator both embedded worlds share.

``synth-ntu60`` (:mod:`robench.data.synth_gestures`), the embedded default world of the benchmarks
and commands, adds NTU-60's fine-grained classes to this generator.

Clips of 16 actions (12 single-person, 4 two-person interactions, :data:`CLASS_NAMES`) on the NTU-25
(Kinect v2) skeleton, in metres at 30 fps, shaped like the CTR-GCN NTU arrays: (N, 3, T, 25, 2),
centred on the first-frame spine-mid of body 1, zero padding at the end, an absent second body all
zero. Built by joint-angle forward kinematics (:mod:`robench.data.synth_motion`) with the nuisance variation
of a real capture:

- 40 performers with their own bodies (overall scale sd 5 %, per-segment sd 3.5 %: bone lengths vary
  about ±10 %), stance, idle posture, preferred speed (sd 8 %) and amplitude (sd 6 %); cross-subject
  split, 30 training and 10 test performers drawn by the seed.
- View: the performer faces the camera ±45° (an interacting pair is seen side-on ±45°), camera pitch
  per setup (8 setups, -12°..+5°), and the body order of a pair is random.
- Per-sample speed (sd 10 %), amplitude, onset and phase; valid length uniform in [0.625 T, T] frames;
  a hand action covers 40-95 % of its clip; 30 % of the hand-action clips are performed seated.
- Idle motion on every non-active limb (breathing, weight shift, head and arm sway).
- Kinect-like sensor noise: Gaussian jitter (1.5 mm sd per coordinate) plus heavy-tailed glitches
  (a joint jumps by a random vector, log-normal size) on 25 % of the frames of each hand, hand tip,
  thumb and foot (median 5 cm) and 4 % of the wrist and ankle frames (median 4 cm).
- Confusable pairs that differ only in detail: wave vs raise the same hand(s) (an oscillation; same
  posture), left vs right wave, raise one hand vs both, cheer up (wave both) vs raise both, clap vs
  rub hands, slow vs fast kick (durations overlap), sit down vs stand up (time reversal).

No label noise: every clip is a clean instance of its class; difficulty comes from the variation above.
Everything is drawn from ``numpy.random.SeedSequence(seed)`` streams, so a seed fixes the data exactly
on every machine. The realism targets (:data:`REALISM_TARGETS`) are statistics of real NTU RGB+D
(Shahroudy et al., CVPR 2016) skeletons; :func:`realism_stats` measures them on any ntu25 set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from robench.data.dataset import METRES_PER_UNIT, SkeletonSet
from robench.data.skeleton import BUILTIN_TOPOLOGIES
from robench.data.synth_motion import (
    ACTIONS,
    DISTAL,
    DOFS,
    FPS,
    GROUPS,
    SEMI_DISTAL,
    Action,
    Ctx,
    J,
    body_offsets,
    forward_kinematics,
    idle,
    place_on_floor,
    rot_x,
    rot_y,
    seat,
)
from robench.errors import ConfigError, DataError

NAME = "synth-ntu25"
CLASS_NAMES: tuple[str, ...] = tuple(a.name for a in ACTIONS)
TWO_PERSON_CLASSES: tuple[str, ...] = tuple(a.name for a in ACTIONS if a.two_person)


@dataclass(frozen=True)
class World:
    """One regime of the procedural generator: its action library and default split sizes.

    Everything else (performers, views, nuisance motion, sensor noise, clip length, the cross-subject
    split) is shared, so two worlds differ only in their classes and default sizes.
    """

    name: str
    actions: tuple[Action, ...]
    n_train: int
    n_test: int

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.actions)

    @property
    def two_person_classes(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.actions if a.two_person)


def _worlds() -> dict[str, World]:
    from robench.data.synth_gestures import ACTIONS60

    return {
        NAME: World(NAME, ACTIONS, 2000, 600),
        NAME60: World(NAME60, ACTIONS60, 3000, 900),
    }


NAME60 = "synth-ntu60"
WORLDS: tuple[str, ...] = (NAME, NAME60)


def get_world(name: str) -> World:
    """The :class:`World` called ``name`` (one of :data:`WORLDS`)."""
    worlds = _worlds()
    if name not in worlds:
        raise ConfigError(f"expected a synthetic world {WORLDS}, got {name!r} in argument 'world'")
    return worlds[name]


N_SUBJECTS, N_TEST_SUBJECTS, N_SETUPS = 40, 10, 8
SEATED_FRACTION = 0.3  # of the clips of seatable (hand) actions
JITTER_SD = 0.0015  # m, Gaussian sensor jitter per coordinate
GLITCH = {
    DISTAL: (0.25, 0.05, 0.3),
    SEMI_DISTAL: (0.04, 0.04, 0.4),
}  # joints -> (rate/frame, median m, sd log)

# Statistics of real NTU RGB+D skeletons (Kinect v2, 30 fps). Bones: mean length over present frames.
REALISM_TARGETS: dict[str, float] = {
    "bone_spine_m": 0.27,  # spine_base -> spine_mid
    "bone_upper_arm_m": 0.23,
    "bone_forearm_m": 0.22,
    "bone_thigh_m": 0.34,
    "bone_shin_m": 0.34,
    "bone_shoulder_m": 0.14,  # spine_shoulder -> shoulder (half shoulder width)
    "bone_cv": 0.06,  # across-body coefficient of variation of those lengths (±10 % people)
    "speed_median_mps": 0.14,  # ||x_{t+1} - x_t|| * fps over present frames, all joints
    "speed_p90_mps": 1.5,
    "jitter_median_m": 0.007,  # ||x_{t+1} - 2 x_t + x_{t-1}||
    "jitter_p90_m": 0.08,
    "pair_distance_median_m": 1.1,  # spine-base distance of two present bodies
    "pair_distance_in_range": 1.0,  # fraction of two-body frames with distance in [0.7, 1.5] m
}
REALISM_BANDS: dict[str, tuple[float, float]] = {
    **{
        k: (0.9 * v, 1.1 * v)
        for k, v in REALISM_TARGETS.items()
        if k.startswith("bone_") and k != "bone_cv"
    },
    "bone_cv": (0.03, 0.10),
    **{
        k: (v / 1.5, v * 1.5)
        for k, v in REALISM_TARGETS.items()
        if k.startswith(("speed", "jitter"))
    },
    "pair_distance_median_m": (0.7, 1.5),
    "pair_distance_in_range": (0.8, 1.0),
}
_BONE_PAIRS = {
    "spine": [("spine_mid", "spine_base")],
    "upper_arm": [("elbow_left", "shoulder_left"), ("elbow_right", "shoulder_right")],
    "forearm": [("wrist_left", "elbow_left"), ("wrist_right", "elbow_right")],
    "thigh": [("knee_left", "hip_left"), ("knee_right", "hip_right")],
    "shin": [("ankle_left", "knee_left"), ("ankle_right", "knee_right")],
    "shoulder": [("shoulder_left", "spine_shoulder"), ("shoulder_right", "spine_shoulder")],
}


def _check_int(value: object, field: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ConfigError(f"expected an integer >= {lo}, got {value!r} in {field}")
    return int(value)


def _subjects(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-performer body (bone offsets) and motion style; index 0 is performer P001."""
    scale = np.clip(rng.normal(1.0, 0.05, N_SUBJECTS), 0.87, 1.13)
    factor = np.clip(rng.normal(1.0, 0.035, (N_SUBJECTS, len(GROUPS))), 0.91, 1.09)
    return {
        "offsets": body_offsets(scale, factor),
        "arm_abd": rng.uniform(0.06, 0.18, N_SUBJECTS),
        "elbow": rng.uniform(0.08, 0.3, N_SUBJECTS),
        "stance": rng.uniform(0.02, 0.07, N_SUBJECTS),
        "knee": rng.uniform(0.0, 0.08, N_SUBJECTS),
        "speed": np.exp(rng.normal(0.0, 0.08, N_SUBJECTS)),
        "amp": np.exp(rng.normal(0.0, 0.06, N_SUBJECTS)),
    }


def _split_plan(
    rng: np.random.Generator, n_train: int, n_test: int, k: int
) -> dict[str, np.ndarray]:
    """Balanced labels (``k`` classes) and performers per split; performer ids are 1-based; a
    partner per sample."""
    perm = rng.permutation(N_SUBJECTS) + 1
    pools = {"train": np.sort(perm[N_TEST_SUBJECTS:]), "test": np.sort(perm[:N_TEST_SUBJECTS])}
    y, subj, partner, split = [], [], [], []
    for name, n in (("train", n_train), ("test", n_test)):
        pool = pools[name]
        y.append(rng.permutation(np.arange(n) % k))
        pos = rng.permutation(np.arange(n) % len(pool))
        subj.append(pool[pos])
        partner.append(pool[(pos + rng.integers(1, len(pool), n)) % len(pool)])
        split += [name] * n
    return {
        "y": np.concatenate(y),
        "subject": np.concatenate(subj),
        "partner": np.concatenate(partner),
        "split": np.array(split),
    }


def _sample_ids(setup: np.ndarray, subject: np.ndarray, y: np.ndarray) -> tuple[str, ...]:
    """``S{setup}P{performer}A{action}R{repetition}``, repetition counted per (performer, action)."""
    seen: dict[tuple[int, int], int] = {}
    ids = []
    for s, p, a in zip(setup.tolist(), subject.tolist(), y.tolist(), strict=True):
        r = seen[(p, a)] = seen.get((p, a), 0) + 1
        ids.append(f"S{s:03d}P{p:03d}A{a + 1:03d}R{r:03d}")
    return tuple(ids)


def generate(
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    num_frames: int = 64,
    progress: bool = False,
    world: str = NAME,
) -> SkeletonSet:
    """Generate a synthetic world (``synth-ntu25`` by default, or ``synth-ntu60``): ``n_train`` +
    ``n_test`` clips (train first; defaults: the world's sizes, 2,000 + 600 and 3,000 + 900),
    x (N, 3, num_frames, 25, 2).

    Deterministic per ``seed``; classes are balanced within each split and performers are disjoint
    between the splits (30 train, 10 test). ``split`` is "train"/"test"; ``subject`` the performer id
    of the actor (an interaction partner comes from the same split). Costs about a second per 1,000
    clips of 64 frames (synth-ntu60: plus 3 s once per process to solve its reach poses).
    """
    w = get_world(world)
    actions = w.actions
    seed = _check_int(seed, "seed", 0)
    n_train = w.n_train if n_train is None else n_train
    n_test = w.n_test if n_test is None else n_test
    n_train, n_test = _check_int(n_train, "n_train", 0), _check_int(n_test, "n_test", 0)
    t_len = _check_int(num_frames, "num_frames", 8)
    if n_train + n_test == 0:
        raise ConfigError("expected at least one clip, got n_train = n_test = 0 in generate")
    streams = [
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6 + len(actions))
    ]
    rng_subj, rng_split, rng_time, rng_idle, rng_view, rng_noise = streams[:6]
    people = _subjects(rng_subj)
    plan = _split_plan(rng_split, n_train, n_test, len(actions))
    y, subj, partner = plan["y"], plan["subject"], plan["partner"]
    n = len(y)
    two = np.array([a.two_person for a in actions])[y]
    pair = np.nonzero(two)[0]

    length = rng_time.integers(max(2, round(0.625 * t_len)), t_len + 1, n)
    t = (np.arange(t_len) / FPS)[None]
    speed = people["speed"][subj - 1] * np.exp(rng_time.normal(0.0, 0.1, n))
    amp = people["amp"][subj - 1] * rng_time.uniform(0.85, 1.15, n)
    style = lambda ids: {k: people[k][ids - 1] for k in ("arm_abd", "elbow", "stance", "knee")}  # noqa: E731
    q1 = np.zeros((n, t_len, len(DOFS)))
    q2 = np.zeros((len(pair), t_len, len(DOFS)))
    idle(rng_idle, q1, t, style(subj))
    idle(rng_idle, q2, t, style(partner[pair]))
    seated = np.array([a.seatable for a in actions])[y] & (rng_idle.random(n) < SEATED_FRACTION)
    q_seated = q1[seated]
    seat(rng_idle, q_seated)
    q1[seated] = q_seated
    q2_full = np.zeros((n, t_len, len(DOFS)))
    q2_full[pair] = q2
    dist = np.zeros(n)
    for k, action in enumerate(tqdm(actions, desc=f"{w.name} actions", disable=not progress)):
        idx = np.nonzero(y == k)[0]
        if len(idx) == 0:
            continue
        c = Ctx(streams[6 + k], t, length[idx, None] / FPS, speed[idx, None], amp[idx, None],
                q1[idx], q2_full[idx], dist[idx])  # fmt: skip
        action.fn(c)
        q1[idx], q2_full[idx], dist[idx] = c.q1, c.q2, c.dist

    off1, off2 = people["offsets"][subj - 1], people["offsets"][partner[pair] - 1]
    q2 = q2_full[pair]
    bodies = torch.zeros((n, t_len, 2, 25, 3), dtype=torch.float64)
    bodies[:, :, 0] = place_on_floor(forward_kinematics(q1, off1), q1, off1)
    # body 2 stands `dist` in front of body 1, facing it (a half turn about the vertical)
    p2 = place_on_floor(forward_kinematics(q2, off2), q2, off2) * torch.tensor(
        [-1.0, 1.0, -1.0], dtype=torch.float64
    )
    p2[..., 2] += torch.from_numpy(dist[pair])[:, None, None]
    bodies[pair, :, 1] = p2
    swap = torch.from_numpy(pair[rng_view.random(len(pair)) < 0.5])
    bodies[swap] = bodies[swap].flip(2)

    # camera: Kinect frame (x = sensor's left, y up, z depth); yaw ±45° about the facing direction
    setup = rng_view.integers(1, N_SETUPS + 1, n)
    pitch = rng_view.uniform(-0.21, 0.09, N_SETUPS + 1)[setup] + rng_view.normal(0, 0.02, n)
    yaw = rng_view.uniform(-np.pi / 4, np.pi / 4, n) + np.pi
    yaw[pair] += np.where(rng_view.random(len(pair)) < 0.5, 0.5, -0.5) * np.pi
    cam = rot_x(pitch) @ rot_y(yaw)  # (n, 3, 3)
    bodies = (bodies.reshape(n, -1, 3) @ cam.transpose(1, 2)).reshape(n, t_len, 2, 25, 3)
    bodies -= bodies[:, :1, :1, J["spine_mid"]][:, :, :, None].clone()
    x = bodies.float()

    # Kinect-like noise: Gaussian jitter + heavy-tailed glitches on distal joints
    x += torch.from_numpy(rng_noise.standard_normal(x.shape, dtype=np.float32)) * JITTER_SD
    for joints, (rate, size, spread) in GLITCH.items():
        shape = (n, t_len, 2, len(joints))
        hit = rng_noise.random(shape, dtype=np.float32) < rate
        mag = np.exp(rng_noise.normal(np.log(size), spread, shape)).astype(np.float32) * hit
        direction = rng_noise.standard_normal(shape + (3,), dtype=np.float32)
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        x[:, :, :, list(joints)] += torch.from_numpy(mag[..., None] * direction)

    present = np.arange(t_len)[None] < length[:, None]  # (n, T)
    mask = present[:, :, None] & np.stack([np.ones(n, bool), two], -1)[:, None]
    x = torch.where(torch.from_numpy(mask)[..., None, None], x, torch.zeros(()))  # +0.0, not -0.0
    x = x.permute(0, 4, 1, 3, 2).contiguous()
    return SkeletonSet(
        x=x,
        y=torch.from_numpy(y.astype(np.int64)),
        ids=_sample_ids(setup, subj, y),
        class_names=w.class_names,
        topology=BUILTIN_TOPOLOGIES["ntu25"],
        unit="m",
        name=w.name,
        split=tuple(plan["split"].tolist()),
        subject=torch.from_numpy(subj.astype(np.int64)),
        source=f"robench.synth.generate(seed={seed})"
        if w.name == NAME
        else f"robench.synth.generate(seed={seed}, world={w.name!r})",
    )


NOBOX_SALT = 0x6E6F626F  # "nobo": the no-box stream of a seed


def generate_nobox(
    seed: int = 0,
    n: int | None = None,
    num_frames: int = 64,
    progress: bool = False,
    world: str = NAME,
) -> SkeletonSet:
    """Clips of a world by performers no victim saw: the attacker's unlabelled data of a no-box
    attack (its motion-manifold pretraining data), split ``"nobox"``.

    Drawn from the world's generator with its own stream, ``SeedSequence([seed, NOBOX_SALT])``: 30
    new performers (new bodies, styles and speeds; ids 41-80, so no id is shared with the train and
    test performers 1-40), new views, timing and noise. ``n`` defaults to the world's train size.
    Labels are kept (a probe of the manifold uses them); the harness never hands them to an attack.
    """
    w = get_world(world)
    n = w.n_train if n is None else _check_int(n, "n", 1)
    sub_seed = int(
        np.random.SeedSequence([_check_int(seed, "seed", 0), NOBOX_SALT]).generate_state(1)[0]
    )
    d = generate(
        sub_seed, n_train=n, n_test=0, num_frames=num_frames, progress=progress, world=world
    )
    subject = d.subject + N_SUBJECTS
    ids = tuple(f"{i[:4]}P{int(i[5:8]) + N_SUBJECTS:03d}{i[8:]}" for i in d.ids)  # S###P###A###R###
    suffix = "" if w.name == NAME else f", world={w.name!r}"
    return SkeletonSet(
        x=d.x,
        y=d.y,
        ids=ids,
        class_names=d.class_names,
        topology=d.topology,
        unit=d.unit,
        name=f"{w.name}-nobox",
        split=("nobox",) * len(ids),
        subject=subject,
        source=f"robench.synth.generate_nobox(seed={seed}{suffix})",
    )


# ---------------------------------------------------------------------------------- statistics
def realism_stats(ds: SkeletonSet, fps: float = FPS, chunk: int = 256) -> dict[str, float]:
    """The :data:`REALISM_TARGETS` statistics of an ntu25 set in a metric unit (values in metres).

    Bones: mean length over present frames per body, averaged over bodies (``bone_cv``: sd / mean of
    the per-body means, averaged over the six bones). Speeds ``||x_{t+1} - x_t|| * fps`` and jitter
    ``||x_{t+1} - 2 x_t + x_{t-1}||`` pool all joints of frames whose neighbours are present; pair
    distances pool the frames where both bodies are present (NaN when there are none).
    """
    if ds.topology.name != "ntu25" or ds.topology.num_joints != 25:
        raise DataError(
            f"expected the ntu25 topology, got {ds.topology.name!r} in {ds.source} field 'topology'"
        )
    if ds.unit not in METRES_PER_UNIT:
        raise DataError(
            f"expected a metric unit (m, cm, mm), got {ds.unit!r} in {ds.source} field 'unit'"
        )
    scale = METRES_PER_UNIT[ds.unit]
    bone_sum = {k: [] for k in _BONE_PAIRS}
    speed, jitter, pair_d, two = [], [], [], []
    for i in range(0, len(ds), chunk):
        x = ds.x[i : i + chunk].permute(0, 4, 2, 3, 1) * scale  # (n, M, T, V, 3)
        pres = (x != 0).any(-1).any(-1)  # (n, M, T)
        cnt = pres.sum(-1)
        body = cnt > 0
        for key, pairs in _BONE_PAIRS.items():
            ln = sum((x[..., J[a], :] - x[..., J[b], :]).norm(dim=-1) for a, b in pairs) / len(
                pairs
            )
            bone_sum[key].append(((ln * pres).sum(-1) / cnt.clamp(min=1))[body])
        ok1 = pres[..., 1:] & pres[..., :-1]
        speed.append((x[:, :, 1:] - x[:, :, :-1]).norm(dim=-1)[ok1].flatten() * fps)
        ok2 = pres[..., 2:] & pres[..., 1:-1] & pres[..., :-2]
        jitter.append((x[:, :, 2:] - 2 * x[:, :, 1:-1] + x[:, :, :-2]).norm(dim=-1)[ok2].flatten())
        if x.shape[1] > 1:
            both = pres[:, 0] & pres[:, 1]
            pair_d.append((x[:, 0, :, 0] - x[:, 1, :, 0]).norm(dim=-1)[both])
            two.append(pres[:, 1].any(-1))
    out: dict[str, float] = {}
    cvs = []
    for key, parts in bone_sum.items():
        v = torch.cat(parts).double()
        out[f"bone_{key}_m"] = float(v.mean()) if len(v) else float("nan")
        cvs.append(float(v.std() / v.mean()) if len(v) > 1 else float("nan"))
    out["bone_cv"] = float(np.mean(cvs))

    def q(parts: list[torch.Tensor], p: float) -> float:
        v = torch.cat(parts).numpy() if parts else np.zeros(0)
        return float(np.quantile(v, p)) if len(v) else float("nan")

    out["speed_median_mps"], out["speed_p90_mps"] = q(speed, 0.5), q(speed, 0.9)
    out["jitter_median_m"], out["jitter_p90_m"] = q(jitter, 0.5), q(jitter, 0.9)
    out["pair_distance_median_m"] = q(pair_d, 0.5)
    d = torch.cat(pair_d) if pair_d else torch.zeros(0)
    out["pair_distance_in_range"] = (
        float(((d >= 0.7) & (d <= 1.5)).double().mean()) if len(d) else float("nan")
    )
    out["two_person_fraction"] = float(torch.cat(two).double().mean()) if two else 0.0
    return out


# per-world departures from REALISM_BANDS: synth-ntu60's walking towards / apart and patting a
# back put more two-body frames outside 0.7-1.5 m
WORLD_BANDS: dict[str, dict[str, tuple[float, float]]] = {
    "synth-ntu60": {"pair_distance_in_range": (0.7, 1.0)},
}


def realism_bands(world: str | None = None) -> dict[str, tuple[float, float]]:
    """:data:`REALISM_BANDS` with the departures of ``world`` (a data set name) applied."""
    return {**REALISM_BANDS, **WORLD_BANDS.get(world or "", {})}


def realism_failures(stats: dict[str, float], world: str | None = None) -> list[str]:
    """One line per statistic of ``stats`` outside its band ([] when all pass): the bands of
    :func:`realism_bands` for ``world``."""
    bad = []
    for key, (lo, hi) in realism_bands(world).items():
        v = stats.get(key, float("nan"))
        if not lo <= v <= hi:
            bad.append(
                f"{key} = {v:.4g} outside [{lo:.4g}, {hi:.4g}] (target {REALISM_TARGETS[key]:.4g})"
            )
    return bad
