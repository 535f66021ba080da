"""``robench data build NAME --out FILE.npz`` and ``robench data stats FILE.npz``."""

from __future__ import annotations

import math

import click
import torch

from robench.commands.options import out_option, quiet_option
from robench.data.dataset import METRES_PER_UNIT, UNITS, SkeletonSet
from robench.data.skeleton import motion_stats, presence_mask
from robench.errors import ConfigError, UnknownNameError
from robench.registry import suggest

BUILDERS = ("synth-ntu25", "synth-ntu60")


def describe(ds: SkeletonSet) -> list[str]:
    """Readable summary lines of any set: shape, classes, splits, performers, clip lengths, bodies."""
    n, _, t, v, m = ds.x.shape
    pres = presence_mask(ds.x)[:, 0, :, 0, :]  # (N, T, M)
    lengths = pres.any(-1).sum(-1).double()
    lines = [
        f"{ds.name}: {n} clips, x {tuple(ds.x.shape)} float32 in {ds.unit}, topology {ds.topology.name} "
        f"({v} joints), {ds.num_classes} classes",
        f"classes: {', '.join(ds.class_names)}",
    ]
    for split in sorted(set(ds.split)) if ds.split else ["(all)"]:
        sub = ds.get_split(split) if ds.split else ds
        subj = sorted(set(sub.subject.tolist()) - {-1}) if sub.subject is not None else []
        counts = torch.bincount(sub.y, minlength=ds.num_classes)
        lines.append(
            f"split {split}: {len(sub)} clips, {len(subj)} performers, "
            f"{int(counts.min())}..{int(counts.max())} clips per class"
        )
    if n:
        lines.append(
            f"valid frames: min {int(lengths.min())}, median {int(lengths.median())}, max {int(lengths.max())} of {t}; "
            f"clips with a second body: {float(pres[..., 1:].any(-1).any(-1).double().mean()) if m > 1 else 0.0:.3f}"
        )
        ms = motion_stats(ds.topology, ds.x)
        lines.append(
            f"bone lengths ({ds.unit}): median {ms['bone_median']:.4g}, 5-95% "
            f"[{ms['bone_p05']:.4g}, {ms['bone_p95']:.4g}]; joint speed ({ds.unit} per frame): "
            f"median {ms['speed_median']:.4g}, 90% {ms['speed_p90']:.4g}"
        )
    return lines


def realism_table(ds: SkeletonSet) -> list[str]:
    """The realism statistics of an ntu25 set in a metric unit against the NTU targets and bands."""
    from robench.data.synth import REALISM_TARGETS, realism_bands, realism_stats

    if ds.topology.name != "ntu25" or ds.unit not in METRES_PER_UNIT:
        return [
            f"realism statistics need the ntu25 topology in a metric unit; got {ds.topology.name} in {ds.unit}"
        ]
    stats = realism_stats(ds)
    bands = realism_bands(ds.name)
    lines = [f"{'statistic':<24} {'value':>9} {'target':>9} {'band':>19}  ok"]
    for key, value in stats.items():
        if key in REALISM_TARGETS:
            lo, hi = bands[key]
            ok = "yes" if lo <= value <= hi else ("n/a" if math.isnan(value) else "NO")
            lines.append(
                f"{key:<24} {value:>9.4f} {REALISM_TARGETS[key]:>9.4f} {f'[{lo:.4f}, {hi:.4f}]':>19}  {ok}"
            )
        else:
            lines.append(f"{key:<24} {value:>9.4f}")
    return lines


@click.group("data")
def data_group() -> None:
    """Build the embedded data sets and inspect robench .npz files."""


@data_group.command("build")
@click.argument("name")
@out_option("output .npz path", required=True, dir_okay=False)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-train", type=int, default=None, help="default: the world's (2,000 / 3,000)")
@click.option("--n-test", type=int, default=None, help="default: the world's (600 / 900)")
@click.option("--num-frames", type=int, default=64, show_default=True)
@quiet_option("no progress bar")
def build(
    name: str,
    out: str,
    seed: int,
    n_train: int | None,
    n_test: int | None,
    num_frames: int,
    quiet: bool,
) -> None:
    """Generate built-in data set NAME (synth-ntu25 or synth-ntu60), write it to --out and print
    its statistics."""
    if name not in BUILDERS:
        close = suggest(name, BUILDERS)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"expected a built-in data set {list(BUILDERS)}, got {name!r}{hint} in NAME"
        )
    from robench.data.synth import generate

    ds = generate(
        seed=seed,
        n_train=n_train,
        n_test=n_test,
        num_frames=num_frames,
        progress=not quiet,
        world=name,
    )
    path = ds.save(out)
    click.echo(f"wrote {path} (fingerprint {ds.fingerprint()[:12]})")
    for line in describe(ds) + realism_table(ds):
        click.echo(line)


@data_group.command("stats")
@click.argument("path", type=click.Path(dir_okay=False))
def stats(path: str) -> None:
    """Print the summary and realism statistics of the robench .npz at PATH."""
    ds = SkeletonSet.load(path)
    for line in describe(ds) + realism_table(ds):
        click.echo(line)


@data_group.command("baseline")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--train", "train_split", default="train", show_default=True, help="fit split")
@click.option("--test", "test_split", default="test", show_default=True, help="scored split")
@click.option("--frames", type=int, default=16, show_default=True, help="sequence feature length")
@click.option(
    "--victim",
    default=None,
    help="a trained victim (zoo name or .pt) to compare, clip by clip, with each baseline",
)
def baseline(path: str, train_split: str, test_split: str, frames: int, victim: str | None) -> None:
    """Nearest-centroid accuracies on the robench .npz at PATH: the floor a trained victim must beat
    (time-averaged pose, and the pose sequence resampled to --frames frames; robench.data.baseline).
    With --victim, its accuracy on the same clips and, per baseline, the paired difference with the
    exact McNemar p-value (b: clips only the victim gets right, c: only the baseline)."""
    from robench.data.baseline import centroid_predict
    from robench.report.aggregate import mcnemar_p
    from robench.run.metrics import wilson_interval

    if frames < 1:
        raise ConfigError(f"expected an integer >= 1, got {frames} in option '--frames'")
    ds = SkeletonSet.load(path)
    train, test = ds.get_split(train_split), ds.get_split(test_split)
    n = len(test)

    def rate(ok: torch.Tensor) -> str:
        lo, hi = wilson_interval(int(ok.sum()), n)
        return f"{100 * float(ok.double().mean()):.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

    right = None
    if victim is not None:
        from robench.run.oneoff import trained_victim

        model = trained_victim(victim).eval()
        k = getattr(getattr(model, "config", None), "num_classes", None)
        if k is not None and k != ds.num_classes:
            raise ConfigError(
                f"expected a victim with {ds.num_classes} classes (the data set's), got {k} in "
                "option '--victim'"
            )
        topo = getattr(model, "topology", None)
        persons = getattr(getattr(model, "config", None), "num_persons", None)
        if (topo is not None and topo.num_joints != ds.topology.num_joints) or (
            persons is not None and persons < ds.x.shape[4]
        ):
            raise ConfigError(
                f"expected a victim for {ds.topology.num_joints} joints and {ds.x.shape[4]} "
                f"bodies (the data set's), got {getattr(topo, 'num_joints', '?')} joints and "
                f"{persons} bodies in option '--victim'"
            )
        with torch.inference_mode():
            logits = torch.cat([model(test.x[i : i + 64]) for i in range(0, n, 64)])
        if logits.dim() != 2 or logits.shape[1] != ds.num_classes:
            raise ConfigError(
                f"expected (N, {ds.num_classes}) logits, got {tuple(logits.shape)} in option '--victim'"
            )
        right = logits.argmax(1) == test.y
    click.echo(
        f"{ds.name}: fit on {len(train)} {train_split} clips, scored on {n} {test_split} clips"
    )
    for kind, what in (
        ("pose", "time-averaged pose"),
        ("sequence", f"{frames}-frame pose sequence"),
    ):
        ok = centroid_predict(train, test, kind, frames) == test.y
        line = f"nearest centroid, {what}: {rate(ok)}"
        if right is not None:
            b, c = int((right & ~ok).sum()), int((~right & ok).sum())
            line += (
                f"; victim - baseline {100 * (b - c) / n:+.1f} points, McNemar p = "
                f"{mcnemar_p(b, c):.3g} (b {b}, c {c})"
            )
        click.echo(line)
    if right is not None:
        click.echo(f"victim {victim}: {rate(right)}")
    major = int(torch.bincount(train.y, minlength=ds.num_classes).argmax())
    click.echo(
        f"chance {100 / ds.num_classes:.1f}%, majority class of {train_split} "
        f"({ds.class_names[major]}) {100 * float((test.y == major).double().mean()):.1f}%"
    )


IMPORTERS = ("ntu-skeleton", "ctrgcn-npz", "pyskl", "hdm05-arrays", "folder", "kinetics")


@data_group.command("import")
@click.argument("fmt", metavar="FORMAT")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@out_option("output .npz path", required=True, dir_okay=False)
@click.option(
    "--split",
    type=click.Choice(["xsub", "xview", "xset"]),
    default="xsub",
    show_default=True,
    help="the NTU evaluation protocol that assigns train/test",
)
@click.option(
    "--bodies",
    type=click.Choice(["motion", "first"]),
    default="motion",
    show_default=True,
    help="which two bodies to keep: the most moving, or the first to appear",
)
@click.option(
    "--frames", type=int, default=300, show_default=True, help="clip length (zero padded)"
)
@click.option("--truncate", is_flag=True, help="cut longer clips instead of refusing them")
@click.option(
    "--missing",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="the data set's missing-skeleton list (one sample name per line): skipped",
)
@click.option(
    "--labels", default=None, type=click.Path(dir_okay=False), help="folder: the labels CSV"
)
@click.option(
    "--topology", default=None, type=click.Path(dir_okay=False), help="folder: the topology JSON"
)
@click.option(
    "--unit",
    type=click.Choice(list(UNITS)),
    default=None,
    help="folder: the coordinates' unit (default m)",
)
@click.option("--name", default=None, help="the set's name (default: ntu, or the file's stem)")
@quiet_option("no progress bar")
def import_cmd(
    fmt: str,
    paths: tuple[str, ...],
    out: str,
    split: str,
    bodies: str,
    frames: int,
    truncate: bool,
    missing: str | None,
    labels: str | None,
    topology: str | None,
    unit: str | None,
    name: str | None,
    quiet: bool,
) -> None:
    """Import PATHS (files or folders) of FORMAT into a robench .npz (written only when every file
    read). FORMAT: ntu-skeleton (raw NTU RGB+D / 120 .skeleton files), ctrgcn-npz (CTR-GCN's
    NTU60_CS.npz-style arrays: one file, its own train/test), pyskl (a 3-D annotation pickle, read
    without executing code; --split picks its protocol), hdm05-arrays (BEAT/TASAR classTrain.npz /
    classTest.npz), folder (a folder of per-clip .npy/.csv arrays with --labels CSV and --topology
    JSON), kinetics (Kinetics-skeleton / OpenPose JSON files or folders: x, y and a confidence score
    that no attack may change). Conventions in the README."""
    import time
    from pathlib import Path

    from tqdm import tqdm

    from robench.data.formats.ntu_skeleton import import_ntu

    if fmt not in IMPORTERS:
        close = suggest(fmt, IMPORTERS)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"expected a format {list(IMPORTERS)}, got {fmt!r}{hint} in FORMAT")
    if frames < 1:
        raise ConfigError(f"expected a positive integer, got {frames} in option '--frames'")
    skip = Path(missing).read_text().split() if missing else ()
    folder_opts = {"--labels": labels, "--topology": topology, "--unit": unit}
    if fmt != "folder":
        given = [k for k, v in folder_opts.items() if v is not None]
        if given:
            raise ConfigError(
                f"expected no {given[0]} for format {fmt!r} (only 'folder' takes it), got one in option '{given[0]}'"
            )
    t0 = time.perf_counter()
    if fmt == "ntu-skeleton":
        ds = import_ntu(
            paths,
            split=split,
            bodies=bodies,
            num_frames=frames,
            truncate=truncate,
            missing=skip,
            name=name or "ntu",
            progress=None if quiet else lambda it: tqdm(it, desc="import", unit="file"),
        )
    elif fmt == "kinetics":
        given = [k for k, v in {"--bodies": bodies != "motion", "--missing": missing is not None,
                                "--split": split != "xsub"}.items() if v]  # fmt: skip
        if given:
            raise ConfigError(
                f"expected no {given[0]} for format 'kinetics' (its files fix that), got one in option '{given[0]}'"
            )
        from robench.data.formats.kinetics import import_kinetics

        ds = import_kinetics(
            paths, frames, truncate, name or "kinetics",
            progress=None if quiet else lambda it: tqdm(it, desc="import", unit="file"),
        )  # fmt: skip
    else:
        most = 2 if fmt == "hdm05-arrays" else 1
        if not 1 <= len(paths) <= most:
            what = "one or two files" if most == 2 else "one path"
            raise ConfigError(f"expected {what} for format {fmt!r}, got {len(paths)} in PATHS")
        unused = {"--bodies": bodies != "motion", "--frames": frames != 300, "--truncate": truncate,
                  "--missing": missing is not None, "--split": fmt != "pyskl" and split != "xsub"}  # fmt: skip
        given = [k for k, v in unused.items() if v]
        if given:
            raise ConfigError(
                f"expected no {given[0]} for format {fmt!r} (its file fixes that), got one in option '{given[0]}'"
            )
        if fmt == "ctrgcn-npz":
            from robench.data.formats.ctrgcn_npz import import_ctrgcn_npz

            ds = import_ctrgcn_npz(paths[0], name=name)
        elif fmt == "hdm05-arrays":
            from robench.data.formats.hdm05_arrays import import_hdm05_arrays

            ds = import_hdm05_arrays(paths, name=name)
        elif fmt == "folder":
            from robench.data.formats.folder import import_folder

            for opt, val in (("--labels", labels), ("--topology", topology)):
                if val is None:
                    raise ConfigError(
                        f"expected {opt} for format 'folder', got none in option '{opt}'"
                    )
            ds = import_folder(
                paths[0], labels, topology, unit or "m", name,
                progress=None if quiet else lambda it: tqdm(it, desc="import", unit="clip"),
            )  # fmt: skip
        else:
            from robench.data.formats.pyskl import import_pyskl

            ds = import_pyskl(paths[0], protocol=split, name=name)
    secs = time.perf_counter() - t0
    ds.save(out)
    click.echo(f"{out}: {len(ds)} clips in {secs:.1f} s ({len(ds) / max(secs, 1e-9):.0f} clips/s)")
    for line in describe(ds):
        click.echo(line)


COMMANDS = [data_group]
