"""Skeleton topologies and bone geometry for (N, C=3, T, V, M) tensors.

A :class:`Topology` names the joints, fixes a kinematic tree (``parents``, root has -1) and a centre
joint (used by ST-GCN's spatial partition). Built-ins: ``ntu25`` (Kinect v2, the 1-based NTU RGB+D
edge list of Shahroudy et al., CVPR 2016, centre joint 21), ``openpose18`` (Kinetics/OpenPose,
centre = neck), ``openpose18-score`` (the same joints as 2-D coordinates plus a confidence score
in channel 2, the Kinetics-skeleton layout) and ``hdm05-25`` (HDM05 as prepared by BEAT, root 10).
User topologies load from a small JSON file::

    {"name": "mine", "joint_names": ["a", "b", "c"], "parents": [-1, 0, 1], "center": 0}

``score_channels`` (optional, e.g. ``[2]``) names channels that are not coordinates: no threat model
moves them (:meth:`robench.threat.ThreatModel.allowed_mask` excludes them and ``check`` reports any
change), and bone lengths are taken over the coordinate channels only.

Tensors follow robench's layout: ``x`` is (N, 3, T, V, M); frames/bodies that are all zero are
padding.
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from robench.errors import ConfigError, DataError, UnknownNameError
from robench.registry import suggest

UNITS = ("m", "cm", "mm", "px", "normalized")
"""The coordinate units a set or a threat model declares: metric, image pixels, or normalised
(unitless, e.g. OpenPose coordinates divided by the frame size)."""
METRES_PER_UNIT = {"m": 1.0, "cm": 0.01, "mm": 0.001}


@dataclass(frozen=True)
class Topology:
    """A skeleton: joint names, a kinematic tree (parent per joint, -1 at the root), a centre joint."""

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    center: int
    score_channels: tuple[int, ...] = ()  # channels that are not coordinates (e.g. a confidence)

    def __post_init__(self) -> None:
        if any(not 0 <= c < 3 for c in self.score_channels) or len(set(self.score_channels)) > 2:
            raise ConfigError(
                f"expected score channels among 0, 1, 2 (at least one coordinate left), got "
                f"{list(self.score_channels)} in topology {self.name!r} field 'score_channels'"
            )
        v = len(self.joint_names)
        if v < 2:
            raise ConfigError(f"expected at least 2 joints, got {v} in topology {self.name!r}")
        if len(self.parents) != v:
            raise ConfigError(
                f"expected {v} parents (one per joint), got {len(self.parents)} in topology "
                f"{self.name!r} field 'parents'"
            )
        roots = [j for j, p in enumerate(self.parents) if p == -1]
        if len(roots) != 1:
            raise ConfigError(
                f"expected exactly one root (parent -1), got {len(roots)} in topology "
                f"{self.name!r} field 'parents'"
            )
        for j, p in enumerate(self.parents):
            if p != -1 and not 0 <= p < v:
                raise ConfigError(
                    f"expected parent index in [0, {v}), got {p} for joint {j} in topology "
                    f"{self.name!r} field 'parents'"
                )
        if not 0 <= self.center < v:
            raise ConfigError(
                f"expected center in [0, {v}), got {self.center} in topology {self.name!r}"
            )
        # every joint must reach the root (no cycles)
        for j in range(v):
            seen, k = set(), j
            while k != -1:
                if k in seen:
                    raise ConfigError(
                        f"expected a tree, got a cycle through joint {j} in topology {self.name!r}"
                    )
                seen.add(k)
                k = self.parents[k]

    # ------------------------------------------------------------------ structure
    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def root(self) -> int:
        return self.parents.index(-1)

    @cached_property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """(child, parent) pairs, one per non-root joint, in joint order."""
        return tuple((j, p) for j, p in enumerate(self.parents) if p != -1)

    @cached_property
    def order(self) -> tuple[int, ...]:
        """Joints in breadth-first order from the root (parents before children)."""
        children: dict[int, list[int]] = {j: [] for j in range(self.num_joints)}
        for j, p in enumerate(self.parents):
            if p != -1:
                children[p].append(j)
        out, queue = [], deque([self.root])
        while queue:
            j = queue.popleft()
            out.append(j)
            queue.extend(children[j])
        return tuple(out)

    def adjacency(self) -> np.ndarray:
        """Symmetric (V, V) 0/1 adjacency of the bones, without self-loops."""
        a = np.zeros((self.num_joints, self.num_joints), dtype=np.float32)
        for c, p in self.bones:
            a[c, p] = a[p, c] = 1.0
        return a

    def hop_distance(self) -> np.ndarray:
        """(V, V) graph hop distances (inf where unreachable)."""
        v = self.num_joints
        d = np.full((v, v), np.inf)
        adj = self.adjacency()
        for s in range(v):
            d[s, s] = 0
            queue = deque([s])
            while queue:
                u = queue.popleft()
                for w in np.nonzero(adj[u])[0]:
                    if d[s, w] == np.inf:
                        d[s, w] = d[s, u] + 1
                        queue.append(w)
        return d

    def spatial_partition(self) -> np.ndarray:
        """ST-GCN "spatial configuration" partition: (3, V, V) = root, centrifugal, centripetal.

        Each neighbour j of joint i (hop distance <= 1) goes to subset 0 if it is i itself, 1 if it is
        at least as far from the centre joint as i (centrifugal), 2 if closer (centripetal); entries
        are the degree-normalised adjacency (A D^-1, Yan et al., AAAI 2018). The subset order is the
        released ST-GCN code's, so official checkpoints' ``gcn.conv`` chunks line up.
        """
        v = self.num_joints
        hop = self.hop_distance()
        adj = (hop <= 1).astype(np.float32)
        deg = adj.sum(0)
        norm = adj / np.where(deg > 0, deg, 1)[None, :]
        dc = hop[:, self.center]
        out = np.zeros((3, v, v), dtype=np.float32)
        for i in range(v):
            for j in range(v):
                if hop[j, i] > 1:
                    continue
                if i == j:
                    out[0, j, i] = norm[j, i]
                elif dc[j] >= dc[i]:
                    out[1, j, i] = norm[j, i]
                else:
                    out[2, j, i] = norm[j, i]
        return out

    def inward_outward(self) -> np.ndarray:
        """(3, V, V) identity, normalised inward (child->parent) and outward graphs (2s-AGCN, CTR-GCN)."""
        v = self.num_joints
        inward = np.zeros((v, v), dtype=np.float32)
        for c, p in self.bones:
            inward[p, c] = 1.0  # row = target, column = source: message child -> parent
        outward = inward.T.copy()

        def norm(a: np.ndarray) -> np.ndarray:
            d = a.sum(0)
            return a / np.where(d > 0, d, 1)[None, :]

        return np.stack([np.eye(v, dtype=np.float32), norm(inward), norm(outward)])

    # ------------------------------------------------------------------ geometry
    def check_tensor(self, x: torch.Tensor, field: str = "x") -> None:
        if x.dim() != 5 or x.shape[1] != 3 or x.shape[3] != self.num_joints:
            raise DataError(
                f"expected shape (N, 3, T, {self.num_joints}, M) for topology {self.name!r}, "
                f"got {tuple(x.shape)} in {field}"
            )

    def bone_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, V, M) -> (N, 3, T, V, M): ``x_v - x_parent(v)``; zero at the root."""
        parent = torch.tensor(
            [p if p != -1 else j for j, p in enumerate(self.parents)], device=x.device
        )
        return x - x.index_select(3, parent)

    @property
    def coordinate_channels(self) -> tuple[int, ...]:
        """The channels that are coordinates (all three unless :attr:`score_channels` says)."""
        return tuple(c for c in range(3) if c not in self.score_channels)

    def bone_lengths(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, V, M) -> (N, T, B, M) lengths of the B = V-1 bones (order of :attr:`bones`),
        over the coordinate channels only."""
        child = torch.tensor([c for c, _ in self.bones], device=x.device)
        parent = torch.tensor([p for _, p in self.bones], device=x.device)
        vec = x.index_select(3, child) - x.index_select(3, parent)
        if self.score_channels:
            vec = vec.index_select(1, torch.tensor(self.coordinate_channels, device=x.device))
        return vec.norm(dim=1)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "joint_names": list(self.joint_names),
            "parents": list(self.parents),
            "center": self.center,
        }
        if self.score_channels:  # only when set: every other topology's JSON (and hash) unchanged
            d["score_channels"] = list(self.score_channels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict, source: str = "topology") -> Topology:
        for key in ("name", "joint_names", "parents", "center"):
            if key not in d:
                raise ConfigError(f"expected field {key!r}, got none in {source}")
        try:
            return cls(
                name=str(d["name"]),
                joint_names=tuple(str(n) for n in d["joint_names"]),
                parents=tuple(int(p) for p in d["parents"]),
                center=int(d["center"]),
                score_channels=tuple(int(c) for c in d.get("score_channels", ())),
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"expected names, integer parents and centre, got {e} in {source}"
            ) from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> Topology:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"expected a topology JSON file, got no file at {path}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"expected valid JSON, got {e.msg} at line {e.lineno} in {path}"
            ) from None
        if not isinstance(d, dict):
            raise ConfigError(f"expected a JSON object, got {type(d).__name__} in {path}")
        return cls.from_dict(d, source=str(path))


def _parents_from_edges(
    num_joints: int, edges_1based: list[tuple[int, int]], root_1based: int
) -> tuple[int, ...]:
    adj: dict[int, list[int]] = {j: [] for j in range(num_joints)}
    for a, b in edges_1based:
        adj[a - 1].append(b - 1)
        adj[b - 1].append(a - 1)
    parents = [-2] * num_joints
    parents[root_1based - 1] = -1
    queue = deque([root_1based - 1])
    while queue:
        u = queue.popleft()
        for w in adj[u]:
            if parents[w] == -2:
                parents[w] = u
                queue.append(w)
    return tuple(parents)


# The NTU RGB+D (Kinect v2) edge list (Shahroudy et al., CVPR 2016), 1-based: the same
# ``inward_ori_index`` list as the 2s-AGCN and CTR-GCN graph code.
NTU25_EDGES = [
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
]  # fmt: skip
NTU25_NAMES = (
    "spine_base", "spine_mid", "neck", "head", "shoulder_left", "elbow_left", "wrist_left",
    "hand_left", "shoulder_right", "elbow_right", "wrist_right", "hand_right", "hip_left",
    "knee_left", "ankle_left", "foot_left", "hip_right", "knee_right", "ankle_right", "foot_right",
    "spine_shoulder", "handtip_left", "thumb_left", "handtip_right", "thumb_right",
)  # fmt: skip
OPENPOSE18_EDGES_0 = [
    (4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2),
    (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14),
]  # fmt: skip
OPENPOSE18_NAMES = (
    "nose", "neck", "shoulder_right", "elbow_right", "wrist_right", "shoulder_left", "elbow_left",
    "wrist_left", "hip_right", "knee_right", "ankle_right", "hip_left", "knee_left", "ankle_left",
    "eye_right", "eye_left", "ear_right", "ear_left",
)  # fmt: skip
HDM05_PARENTS = (
    10,
    0,
    1,
    2,
    3,
    10,
    5,
    6,
    7,
    8,
    -1,
    10,
    11,
    12,
    13,
    13,
    15,
    16,
    17,
    18,
    13,
    20,
    21,
    22,
    23,
)
HDM05_NAMES = (
    "lhipjoint", "lfemur", "ltibia", "lfoot", "ltoes", "rhipjoint", "rfemur", "rtibia", "rfoot",
    "rtoes", "root", "lowerback", "upperback", "thorax", "head", "lclavicle", "lhumerus", "lradius",
    "lwrist", "lhand", "rclavicle", "rhumerus", "rradius", "rwrist", "rhand",
)  # fmt: skip

BUILTIN_TOPOLOGIES: dict[str, Topology] = {
    "ntu25": Topology("ntu25", NTU25_NAMES, _parents_from_edges(25, NTU25_EDGES, 21), center=20),
    "openpose18": Topology(
        "openpose18",
        OPENPOSE18_NAMES,
        _parents_from_edges(18, [(a + 1, b + 1) for a, b in OPENPOSE18_EDGES_0], 2),
        center=1,
    ),
    "hdm05-25": Topology("hdm05-25", HDM05_NAMES, HDM05_PARENTS, center=10),
}
# OpenPose-18 as 2-D joints plus a confidence score in channel 2 (Kinetics-skeleton, ST-GCN's layout)
BUILTIN_TOPOLOGIES["openpose18-score"] = dataclasses.replace(
    BUILTIN_TOPOLOGIES["openpose18"], name="openpose18-score", score_channels=(2,)
)


def get_topology(name_or_path: str | Topology) -> Topology:
    """A built-in topology by name, a user topology from a ``.json`` file path, or the topology's
    JSON text itself (what a victim trained on a data set with its own topology keeps in its
    config, so the checkpoint depends on no other file)."""
    if isinstance(name_or_path, Topology):
        return name_or_path
    if name_or_path in BUILTIN_TOPOLOGIES:
        return BUILTIN_TOPOLOGIES[name_or_path]
    if isinstance(name_or_path, str) and name_or_path.lstrip().startswith("{"):
        try:
            return Topology.from_dict(json.loads(name_or_path), source="topology JSON")
        except json.JSONDecodeError as e:
            raise DataError(f"expected topology JSON, got {e.msg} in topology JSON") from None
    if str(name_or_path).endswith(".json"):
        return Topology.from_json_file(name_or_path)
    close = suggest(str(name_or_path), BUILTIN_TOPOLOGIES)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownNameError(
        f"unknown topology {name_or_path!r}{hint} (built-in: {', '.join(BUILTIN_TOPOLOGIES)}; "
        "or pass a .json file with name, joint_names, parents, center)"
    )


def presence_mask(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, T, V, M) -> (N, 1, T, 1, M) bool: True where a body is present in a frame.

    A (frame, body) slot whose 3·V coordinates are all exactly zero is padding (or an absent second
    person) and must stay zero under every transform and attack.
    """
    return (x != 0).any(dim=1, keepdim=True).any(dim=3, keepdim=True)


def motion_stats(topo: Topology, x: torch.Tensor, chunk: int = 256) -> dict[str, float]:
    """Bone lengths and joint speeds of (N, 3, T, V, M) clips, in the clips' own unit.

    Bone lengths (coordinate channels only) pool every bone of every present (frame, body) slot;
    speeds ``||x_{t+1} - x_t||`` per frame pool every joint of every body present in both frames.
    Keys: ``bone_median``, ``bone_p05``, ``bone_p95``, ``speed_median``, ``speed_p90`` (NaN when
    nothing is present) and ``slots`` (present (frame, body) slots).
    """
    coords = torch.tensor(topo.coordinate_channels)
    bones, speeds, slots = [], [], 0
    for i in range(0, x.shape[0], chunk):
        xc = x[i : i + chunk]
        pres = presence_mask(xc)[:, 0, :, 0, :]  # (n, T, M)
        slots += int(pres.sum())
        if topo.bones:
            bones.append(topo.bone_lengths(xc).permute(0, 1, 3, 2)[pres].flatten())
        both = pres[:, 1:] & pres[:, :-1]
        step = xc.index_select(1, coords).diff(dim=2).norm(dim=1)  # (n, T-1, V, M)
        speeds.append(step.permute(0, 1, 3, 2)[both].flatten())

    def q(parts: list[torch.Tensor], p: float) -> float:
        # numpy: torch.quantile refuses more than 2**24 values (a real NTU set pools ~10**8)
        v = torch.cat(parts).numpy() if parts else np.zeros(0, np.float32)
        return (
            float(np.quantile(v.astype(np.float64) if v.size < 2**24 else v, p))
            if v.size
            else float("nan")
        )

    return {
        "bone_median": q(bones, 0.5),
        "bone_p05": q(bones, 0.05),
        "bone_p95": q(bones, 0.95),
        "speed_median": q(speeds, 0.5),
        "speed_p90": q(speeds, 0.9),
        "slots": float(slots),
    }


_DIR_EPS = 1e-12  # a bone direction shorter than this (data units) is treated as undefined


def _norm3(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the coordinate axis (dim 1), keepdim; faster than vector_norm here."""
    return (v * v).sum(1, keepdim=True).sqrt()


def restore_bones(
    topo: Topology, x: torch.Tensor, y: torch.Tensor, allowed: torch.Tensor, eps: float | None
) -> torch.Tensor:
    """Restore clean bone lengths of ``y`` by walking the tree from the root (CIASA's SSR).

    For each joint j in breadth-first order with parent p (already placed):
    ``y_j <- y_p + ℓ_j · u`` with ℓ_j the clean length of bone (j, p) and, as in SSR,
    ``u = (y_j - y_p)/‖y_j - y_p‖``, applied only where j may move (``allowed``). A vanishing
    direction falls back to the clean direction; a zero clean length puts j on its parent.

    Departure from SSR (``eps`` given: the linf box): when that point leaves j's box ``|y_j - x_j| <= eps``, ``u``
    is moved along the great circle towards the clean direction ``c_j`` (bisection on
    ``normalize((1-t)·u + t·c_j)``, 20 steps) to the first point inside the box. ``t = 1`` gives
    ``y_p + ℓ_j·c_j = x_j + (y_p - x_p)``, inside the box whenever the parent is, so one walk
    satisfies bones and ball together instead of stalling in alternating projections.
    Batched over N, T, M; the only loop is over the V joints.
    """
    y = y.clone()
    for j in topo.order:
        p = topo.parents[j]
        if p == -1:
            continue
        yp, xj = y[:, :, :, p], x[:, :, :, j]
        vec = y[:, :, :, j] - yp  # (N, 3, T, M)
        nrm = _norm3(vec)
        cvec = xj - x[:, :, :, p]
        length = _norm3(cvec)
        cunit = torch.where(
            length > _DIR_EPS, cvec / length.clamp_min(_DIR_EPS), torch.zeros_like(cvec)
        )
        unit = torch.where(nrm > _DIR_EPS, vec / nrm.clamp_min(_DIR_EPS), cunit)
        new = yp + length * unit
        move = allowed[:, :, :, j]  # (N, 1, T, M)
        if eps is not None:

            def inside(q: torch.Tensor, xj: torch.Tensor = xj) -> torch.Tensor:
                return ((q - xj).abs() <= eps).all(1, keepdim=True)

            out_box = move & ~inside(new)
            if bool(out_box.any()):
                lo = torch.zeros_like(length)
                hi = torch.ones_like(length)
                for _ in range(20):
                    mid = (lo + hi) / 2
                    u = (1 - mid) * unit + mid * cunit
                    un = _norm3(u)
                    u = torch.where(un > 1e-6, u / un.clamp_min(1e-6), cunit)
                    ok = inside(yp + length * u)
                    hi = torch.where(ok, mid, hi)
                    lo = torch.where(ok, lo, mid)
                u = (1 - hi) * unit + hi * cunit
                un = _norm3(u)
                u = torch.where(un > 1e-6, u / un.clamp_min(1e-6), cunit)
                new = torch.where(out_box, yp + length * u, new)
            new = torch.minimum(torch.maximum(new, xj - eps), xj + eps)  # float rounding only
        y[:, :, :, j] = torch.where(move, new, y[:, :, :, j])
    return y
