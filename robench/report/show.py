"""Skeleton pictures: clean and adversarial clips side by side (animated GIF + PNG frame strip).

:func:`render_pair` draws one sample: bones of :attr:`Topology.bones`, the clean skeleton on the
left, the adversarial one on the right (the clean one as a faint ghost behind it), every joint of
the adversarial skeleton sized and coloured by its displacement ``||x_adv - x||_2`` (shared scale
over the clip; cm when the unit is metric). Front view = (x, y) of the data (x right, y up for
Kinect/NTU); ``view="3d"`` draws (x, z, y) on 3-D axes. Padding frames (all-zero in both clips) are
skipped; absent bodies are not drawn. The GIF has one frame per drawn time step (at most
``max_gif_frames``, evenly spaced), written with matplotlib's ``PillowWriter``; the PNG strip shows
``frames`` evenly spaced time steps (clean row above the adversarial row).

:func:`load_pair` reads a results folder: the cell from ``results.sqlite``, the adversarial example
from the harness cache (``DIR/cache/adv-<cell_key>.pt`` = ``{"ids": [...], "x_adv": (N,3,T,V,M)}``,
or for transfer cells the shared generation ``DIR/cache/transfer-<gen_key>.pt``), and the clean
clip from the benchmark's data set (``DIR/benchmark.json``), checked against the cell's dataset
fingerprint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import PillowWriter  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from tqdm import tqdm  # noqa: E402

from robench.data.skeleton import Topology  # noqa: E402
from robench.errors import DataError  # noqa: E402
from robench.io import atomic_write  # noqa: E402

try:  # matplotlib depends on Pillow; say so clearly if an install lacks it
    import PIL  # noqa: F401, E402

    HAVE_PIL = True
except ImportError:  # pragma: no cover
    HAVE_PIL = False

_CM_PER_UNIT = {"m": 100.0, "cm": 1.0, "mm": 0.1}
_CLEAN, _ADV, _GHOST = "#2b5d8a", "#b23a2e", "#9db4c8"


def _np(x: torch.Tensor | np.ndarray, field: str, topology: Topology) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 4 or a.shape[0] != 3 or a.shape[2] != topology.num_joints:
        raise DataError(
            f"expected shape (3, T, {topology.num_joints}, M), got {tuple(a.shape)} in {field}"
        )
    if not np.isfinite(a).all():
        raise DataError(f"expected finite coordinates, got NaN/inf in {field}")
    return a.astype(np.float64)


def _pick(idx: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` evenly spaced elements of ``idx`` (all when there are fewer)."""
    if len(idx) <= k:
        return idx
    return idx[np.unique(np.round(np.linspace(0, len(idx) - 1, k)).astype(int))]


class _Scene:
    """Shared geometry of one clean/adversarial pair: presence, displacement, limits, colours."""

    def __init__(
        self, xc: np.ndarray, xa: np.ndarray, topology: Topology, unit: str, view: str
    ) -> None:
        self.xc, self.xa, self.topology, self.view = xc, xa, topology, view
        self.present = (xc != 0).any(axis=(0, 2)) | (xa != 0).any(axis=(0, 2))  # (T, M)
        self.frames = np.nonzero(self.present.any(axis=1))[0]
        if len(self.frames) == 0:
            raise DataError(
                "expected at least one non-padding frame, got an all-zero clip in x_clean"
            )
        scale = _CM_PER_UNIT.get(unit, 1.0)
        self.disp_unit = "cm" if unit in _CM_PER_UNIT else unit
        self.disp = np.linalg.norm(xa - xc, axis=0) * scale  # (T, V, M)
        dmax = float(self.disp[self.frames].max())
        self.dmax = dmax if dmax > 0 else 1.0
        self.child = np.array([c for c, _ in topology.bones])
        self.parent = np.array([p for _, p in topology.bones])
        pts = np.concatenate([xc[:, self.frames], xa[:, self.frames]], axis=1)  # (3, 2T', V, M)
        live = np.concatenate([self.present[self.frames]] * 2, axis=0)  # (2T', M)
        coords = pts.transpose(1, 3, 2, 0)[live].reshape(-1, 3)  # (K*V, 3)
        lo, hi = coords.min(0), coords.max(0)
        pad = 0.08 * float((hi - lo).max() or 1.0)
        self.lo, self.hi = lo - pad, hi + pad
        self.cmap = plt.get_cmap("plasma")

    def axes_limits(self, ax: Any) -> None:
        if self.view == "3d":
            ax.set_xlim(self.lo[0], self.hi[0])
            ax.set_ylim(self.lo[2], self.hi[2])
            ax.set_zlim(self.lo[1], self.hi[1])
            ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
            ax.view_init(elev=12, azim=-70)
        else:
            ax.set_xlim(self.lo[0], self.hi[0])
            ax.set_ylim(self.lo[1], self.hi[1])
            ax.set_aspect("equal")
            ax.set_xticks([]), ax.set_yticks([])

    def _xy(self, p: np.ndarray) -> np.ndarray:
        """(3, V) -> (V, 2) front view or (V, 3) as (x, z, y) for 3-D."""
        return p[[0, 2, 1]].T if self.view == "3d" else p[:2].T

    def _bones(self, ax: Any, p: np.ndarray, colour: str, lw: float, alpha: float = 1.0) -> None:
        q = self._xy(p)
        segs = np.stack([q[self.child], q[self.parent]], axis=1)
        if self.view == "3d":
            from mpl_toolkits.mplot3d.art3d import Line3DCollection

            ax.add_collection3d(Line3DCollection(segs, colors=colour, linewidths=lw, alpha=alpha))
        else:
            ax.add_collection(LineCollection(segs, colors=colour, linewidths=lw, alpha=alpha))

    def titles(self, ax_c: Any, ax_a: Any, t: int, size: float = 8) -> None:
        ax_c.set_title(f"clean  (frame {t + 1}/{len(self.present)})", fontsize=size)
        ax_a.set_title(
            f"adversarial  (max {self.disp[t].max():.2f} {self.disp_unit})", fontsize=size
        )

    def draw(self, ax_c: Any, ax_a: Any, t: int) -> None:
        """Draw time step ``t`` on the clean and adversarial axes (cleared first; any view)."""
        for ax in (ax_c, ax_a):
            ax.cla()
            self.axes_limits(ax)
        for m in np.nonzero(self.present[t])[0]:
            c, a = self.xc[:, t, :, m], self.xa[:, t, :, m]
            self._bones(ax_c, c, _CLEAN, 2.0)
            ax_c.scatter(*self._xy(c).T, s=10, color=_CLEAN, zorder=3)
            self._bones(ax_a, c, _GHOST, 1.2, alpha=0.6)
            self._bones(ax_a, a, _ADV, 2.0)
            d = self.disp[t, :, m]
            ax_a.scatter(*self._xy(a).T, s=6 + 70 * d / self.dmax, c=d, cmap=self.cmap, vmin=0,
                         vmax=self.dmax, edgecolors="black", linewidths=0.3, zorder=4)  # fmt: skip
        self.titles(ax_c, ax_a, t)

    def panel(self, ax_c: Any, ax_a: Any) -> Any:
        """A function ``update(t)`` redrawing time step ``t`` on this pair of axes. The front view
        creates its artists once and only moves them (much faster for animations)."""
        if self.view == "3d":
            return lambda t: self.draw(ax_c, ax_a, t)
        for ax in (ax_c, ax_a):
            self.axes_limits(ax)
        bodies = range(self.xc.shape[3])

        def lines(ax: Any, colour: str, lw: float, alpha: float = 1.0) -> list[Any]:
            return [
                ax.add_collection(LineCollection([], colors=colour, linewidths=lw, alpha=alpha))
                for _ in bodies
            ]

        clean_l, ghost_l, adv_l = (
            lines(ax_c, _CLEAN, 2.0),
            lines(ax_a, _GHOST, 1.2, 0.6),
            lines(ax_a, _ADV, 2.0),
        )
        clean_p = [ax_c.scatter([], [], s=10, color=_CLEAN, zorder=3) for _ in bodies]
        adv_p = [
            ax_a.scatter(
                [],
                [],
                c=[],
                cmap=self.cmap,
                vmin=0,
                vmax=self.dmax,
                edgecolors="black",
                linewidths=0.3,
                zorder=4,
            )  # fmt: skip
            for _ in bodies
        ]

        def update(t: int) -> None:
            for m in bodies:
                on = bool(self.present[t, m])
                for art in (clean_l[m], ghost_l[m], adv_l[m], clean_p[m], adv_p[m]):
                    art.set_visible(on)
                if not on:
                    continue
                qc, qa = self._xy(self.xc[:, t, :, m]), self._xy(self.xa[:, t, :, m])
                for art, q in ((clean_l[m], qc), (ghost_l[m], qc), (adv_l[m], qa)):
                    art.set_segments(np.stack([q[self.child], q[self.parent]], axis=1))
                clean_p[m].set_offsets(qc)
                d = self.disp[t, :, m]
                adv_p[m].set_offsets(qa)
                adv_p[m].set_sizes(6 + 70 * d / self.dmax)
                adv_p[m].set_array(d)
            self.titles(ax_c, ax_a, t)

        return update

    def colorbar(self, fig: Any, axes: Any) -> None:
        sm = plt.cm.ScalarMappable(cmap=self.cmap, norm=plt.Normalize(0, self.dmax))
        fig.colorbar(sm, ax=axes, shrink=0.8, label=f"joint displacement ({self.disp_unit})")


def render_pair(
    x_clean: torch.Tensor | np.ndarray,
    x_adv: torch.Tensor | np.ndarray,
    topology: Topology,
    title: str,
    out_prefix: str | Path,
    *,
    unit: str = "m",
    frames: int = 6,
    view: str = "front",
    max_gif_frames: int = 64,
    fps: int = 10,
    progress: bool = False,
) -> tuple[Path, Path]:
    """Write ``OUT_PREFIX.gif`` (animated, clean | adversarial) and ``OUT_PREFIX.png`` (a strip of
    ``frames`` time steps) for one sample; x_clean, x_adv: (3, T, V, M). Returns (gif, png).
    ``progress`` shows a bar over the GIF frames."""
    if not HAVE_PIL:  # pragma: no cover
        raise DataError(
            "expected Pillow (a matplotlib dependency) to be importable, got ImportError in render_pair"
        )
    if view not in ("front", "3d"):
        raise DataError(f"expected view 'front' or '3d', got {view!r} in render_pair")
    if frames < 1 or max_gif_frames < 1 or fps < 1:
        raise DataError(
            f"expected frames, max_gif_frames, fps >= 1, got {frames}, {max_gif_frames}, {fps} in render_pair"
        )
    xc, xa = _np(x_clean, "x_clean", topology), _np(x_adv, "x_adv", topology)
    if xc.shape != xa.shape:
        raise DataError(f"expected x_adv of shape {xc.shape} (as x_clean), got {xa.shape} in x_adv")
    scene = _Scene(xc, xa, topology, unit, view)
    out_prefix = Path(out_prefix)
    gif, png = (
        out_prefix.with_name(out_prefix.name + ".gif"),
        out_prefix.with_name(out_prefix.name + ".png"),
    )
    kw = {"projection": "3d"} if view == "3d" else {}

    # animated GIF: one frame per drawn time step
    fig, (ax_c, ax_a) = plt.subplots(1, 2, figsize=(7.6, 4.4), subplot_kw=kw, layout="constrained")
    fig.suptitle(title, fontsize=9)
    scene.colorbar(fig, [ax_c, ax_a])
    steps = _pick(scene.frames, max_gif_frames)
    update = scene.panel(ax_c, ax_a)
    update(int(steps[0]))
    fig.canvas.draw()
    fig.set_layout_engine("none")  # freeze the layout of the first frame: same axes in every frame

    def write_gif(tmp: Path) -> None:
        gif_tmp = tmp.with_name(tmp.name + ".gif")  # PIL picks the format from the suffix
        writer = PillowWriter(fps=fps)
        try:
            with writer.saving(fig, str(gif_tmp), dpi=80):
                for t in tqdm(
                    steps, desc="frames", unit="frame", disable=not progress, leave=False
                ):
                    update(int(t))
                    writer.grab_frame()
            os.replace(gif_tmp, tmp)
        finally:
            gif_tmp.unlink(missing_ok=True)

    try:
        atomic_write(gif, write_gif)
    finally:
        plt.close(fig)

    # PNG strip: clean row above adversarial row
    cols = _pick(scene.frames, frames)
    fig, axes = plt.subplots(2, len(cols), figsize=(2.1 * len(cols) + 1.2, 4.8), squeeze=False,
                             subplot_kw=kw, layout="constrained")  # fmt: skip
    for j, t in enumerate(cols):
        scene.panel(axes[0, j], axes[1, j])(int(t))
        axes[0, j].set_title(f"clean, frame {t + 1}", fontsize=7)
        axes[1, j].set_title(f"adv., max {scene.disp[t].max():.2f} {scene.disp_unit}", fontsize=7)
    scene.colorbar(fig, axes.ravel().tolist())
    fig.suptitle(title, fontsize=9)
    try:
        atomic_write(
            png, lambda p: fig.savefig(p, format="png", dpi=100, metadata={"Software": None})
        )
    finally:
        plt.close(fig)
    return gif, png


# ---------------------------------------------------------------------- results folder


@dataclass(frozen=True)
class Pair:
    """A clean/adversarial sample from a results folder, ready for :func:`render_pair`."""

    x_clean: torch.Tensor  # (3, T, V, M)
    x_adv: torch.Tensor  # (3, T, V, M)
    topology: Topology
    unit: str
    title: str
    cell: dict[str, Any]


def select_cell(cells: Any, attack: str, victim: str | None = None, threat: str | None = None,
                seed: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The one ok cell matching ``attack`` (name, or ``name<-surrogate`` for a transfer cell) and the
    optional victim / threat / seed; none or several raise a DataError listing the candidates."""
    ok = cells[cells["status"] == "ok"]
    name, _, sur = attack.partition("<-")
    sel = ok[ok["attack"] == name]
    if sur:
        sel = sel[sel["surrogate"] == sur]
    if sel.empty:
        have = sorted(
            {
                a if not s else f"{a}<-{s}"
                for a, s in zip(ok["attack"], ok["surrogate"].fillna(""), strict=True)
            }
        )
        raise DataError(
            f"expected an attack of the results folder ({', '.join(have) or 'none'}), got {attack!r} in --attack"
        )
    for col, want, opt in (
        ("victim", victim, "--victim"),
        ("threat", threat, "--threat"),
        ("seed", seed, "--seed"),
    ):
        if want is None:
            continue
        sub = sel[sel[col].astype(str) == str(want)]
        if sub.empty:
            have = ", ".join(sorted({str(v) for v in sel[col]}))
            raise DataError(f"expected one of {have} for attack {attack!r}, got {want!r} in {opt}")
        sel = sub
    if len(sel) > 1:
        opts = sorted({f"--victim {r.victim} --threat {r.threat} --seed {r.seed}"
                       + (f" (surrogate {r.surrogate})" if isinstance(r.surrogate, str) and r.surrogate else "")
                       for r in sel.itertuples()})  # fmt: skip
        raise DataError(
            f"expected one cell for attack {attack!r}, got {len(sel)}; choose with one of: {'; '.join(opts[:4])}"
        )
    return sel.iloc[0].to_dict()


def _adv_file(folder: Path, cell: dict[str, Any]) -> Path:
    cache = folder / "cache"
    own = cache / f"adv-{cell['cell_key']}.pt"
    if own.exists():
        return own
    cfg = json.loads(cell.get("config_json") or "{}")
    if cfg.get("surrogate"):
        gen = {k: v for k, v in cfg.items() if k != "victim"}
        gen["kind"] = "transfer-generation"
        from robench.run.cells import sha256_json

        shared = cache / f"transfer-{sha256_json(gen)}.pt"
        if shared.exists():
            return shared
    raise DataError(
        f"expected cached adversarial examples for cell {cell['cell_key'][:12]} ({cell['attack']} on "
        f"{cell['victim']}), got no file {own.name} in {cache}; rerun the benchmark into this folder "
        "to regenerate them"
    )


def _dataset(folder: Path, cell: dict[str, Any]) -> Any:
    from robench.run.spec import DatasetSpec

    b = (
        json.loads((folder / "benchmark.json").read_text())
        if (folder / "benchmark.json").exists()
        else None
    )
    if not isinstance(b, dict) or not isinstance(b.get("dataset"), dict):
        raise DataError(
            f"expected the harness's benchmark.json with a 'dataset' field, got none in {folder}"
        )
    d = dict(b["dataset"])
    if "path" in d:
        spec = DatasetSpec(name=Path(d["path"]).stem, path=d["path"])
    else:
        name, seed = d.pop("name", "synth-ntu25"), int(d.pop("seed", 0))
        spec = DatasetSpec(
            name=name, seed=seed, options=tuple(sorted((k, int(v)) for k, v in d.items()))
        )
    data = spec.open()
    want = json.loads(cell.get("config_json") or "{}").get("dataset", {}).get("fingerprint")
    if want and data.fingerprint() != want:
        raise DataError(
            f"expected the data set the cell was run on (sha256 {want[:12]}), got {data.fingerprint()[:12]} "
            f"from {folder / 'benchmark.json'} field 'dataset'"
        )
    return data


def load_pair(results_dir: str | Path, sample_id: str, attack: str, victim: str | None = None,
              threat: str | None = None, seed: int | None = None) -> Pair:  # fmt: skip
    """Clean and adversarial clip of ``sample_id`` under the cell picked by :func:`select_cell`."""
    from robench.run.store import Store, store_exists

    folder = Path(results_dir)
    if not store_exists(folder):
        raise DataError(f"expected a results folder with results.sqlite, got none at {folder}")
    with Store(folder) as st:
        cell = select_cell(st.cells(), attack, victim, threat, seed)
        rows = st.samples(cell["cell_key"])
    row = rows[rows["sample_id"] == sample_id]
    if row.empty:
        raise DataError(
            f"expected a sample id of the cell's subset (e.g. {rows['sample_id'].iloc[0]!r}), got {sample_id!r} in --sample"
        )
    row = row.iloc[0]
    path = _adv_file(folder, cell)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if (
        not isinstance(payload, dict)
        or "ids" not in payload
        or not isinstance(payload.get("x_adv"), torch.Tensor)
    ):
        raise DataError(
            f"expected a dict with 'ids' and tensor 'x_adv', got {type(payload).__name__} in {path}"
        )
    ids = list(payload["ids"])
    if sample_id not in ids:
        raise DataError(
            f"expected a sample the attack ran on (clean-correct for the attacked model), got {sample_id!r} "
            f"which {cell['attack']} did not attack in {path.name}; pick a sample with eligible = 1"
        )
    x_adv = payload["x_adv"][ids.index(sample_id)].float()
    data = _dataset(folder, cell)
    clean = data.by_ids([sample_id])
    names = data.class_names

    def cls(i: Any) -> str:
        i = int(i)
        return names[i] if 0 <= i < len(names) else str(i)

    sur = (
        f"<-{cell['surrogate']}"
        if isinstance(cell.get("surrogate"), str) and cell["surrogate"]
        else ""
    )
    verdict = "success" if bool(row["success"]) else "no success"
    title = (
        f"{sample_id}: {cell['attack']}{sur} on {cell['victim']} ({cell['threat']})  "
        f"label {cls(row['label'])}, clean {cls(row['clean_pred'])}, adv {cls(row['adv_pred'])} [{verdict}]"
    )
    return Pair(clean.x[0], x_adv, data.topology, data.unit, title, cell)
