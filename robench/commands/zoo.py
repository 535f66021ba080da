"""``robench train``, ``robench zoo list|build`` and ``robench list``."""

from __future__ import annotations

from pathlib import Path

import click

from robench import zoo
from robench.commands.options import noting_tracked, out_option, quiet_option
from robench.data import DEFAULT_WORLD, open_dataset
from robench.errors import ConfigError
from robench.zoo.train import TrainConfig, train_and_save


def _weights_name(dataset: str) -> str:
    return Path(dataset).stem.replace("-", "_")


@click.command("train")
@click.argument("victim")
@click.option(
    "--dataset", default=DEFAULT_WORLD, show_default=True, help="built-in name or .npz path"
)
@click.option("--epochs", type=int, default=None, help="default: the zoo recipe's")
@click.option("--seed", type=int, default=0, show_default=True)
@out_option("output prefix (writes PREFIX.pt and PREFIX.json)", dir_okay=False)
@click.option("--width", type=int, default=None, help="override the recipe's base width")
@click.option("--depth", type=int, default=None, help="override the recipe's depth")
@click.option("--lr", type=float, default=None, help="base learning rate (default: the recipe's)")
@click.option("--batch-size", type=int, default=None, help="default: the recipe's")
@click.option(
    "--augment/--no-augment", default=None, help="yaw/scale augmentation (default: the recipe's)"
)
@click.option(
    "--val-fraction",
    type=float,
    default=0.0,
    show_default=True,
    help="hold out this fraction of the training performers; keep the weights of the best "
    "validation epoch (never the test split)",
)
@click.option(
    "--patience",
    type=int,
    default=None,
    help="with --val-fraction: stop after this many epochs without a better validation accuracy "
    "(default 5)",
)
@quiet_option("no progress bar")
def train_cmd(
    victim: str,
    dataset: str,
    epochs: int | None,
    seed: int,
    out: str | None,
    width: int | None,
    depth: int | None,
    lr: float | None,
    batch_size: int | None,
    augment: bool | None,
    val_fraction: float,
    patience: int | None,
    quiet: bool,
) -> None:
    """Train architecture VICTIM (e.g. stgcn) and write its checkpoint + metadata (the full recipe,
    the validation split and its best epoch when --val-fraction is given)."""
    recipe = zoo.recipe(victim)
    vc = {**recipe["config"], "init_seed": seed}  # another seed: other initial weights too
    if width is not None:
        vc["width"] = width
    if depth is not None:
        vc["depth"] = depth
    if patience is not None and not val_fraction:
        raise ConfigError(
            f"expected --val-fraction with --patience, got --patience {patience} alone"
        )
    knobs = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "augment": augment,
             "patience": patience}  # fmt: skip
    given = {k: v for k, v in knobs.items() if v is not None}
    tc = TrainConfig(
        **{**recipe["train"], "seed": seed, "val_fraction": val_fraction, **given}
    )  # fmt: skip
    data = open_dataset(dataset)
    out = out or f"runs/train/{victim}.{_weights_name(dataset)}"
    meta = train_and_save(
        victim,
        data,
        out,
        tc,
        vc,
        progress=not quiet,
        extra_meta={
            "command": f"robench train {victim} --dataset {dataset} --seed {seed} --epochs {tc.epochs}"
            + "".join(
                f" --{k.replace('_', '-')} {v}"
                if not isinstance(v, bool)
                else (" --augment" if v else " --no-augment")
                for k, v in {**given, "val_fraction": val_fraction}.items()
                if k != "epochs" and (k != "val_fraction" or v)
            )
        },
    )
    click.echo(
        f"{victim}: clean accuracy {meta['clean_accuracy']:.4f} on {meta['n_test']} test samples, "
        f"{meta['num_parameters']} parameters, {meta['train_seconds']} s; wrote {out}.pt (sha256 {meta['weights_sha256'][:12]})"
    )


@click.group("zoo")
def zoo_group() -> None:
    """The shipped synthetic zoo."""


@zoo_group.command("list")
def zoo_list() -> None:
    """Print name, architecture, parameters, clean accuracy and sha256 of each shipped victim, then
    the shipped no-box manifolds (their k-NN probe accuracy and what they were pretrained on)."""
    from robench.manifold import manifold_dir, manifold_names
    from robench.zoo.checkpoint import read_metadata

    rows = zoo.entries()
    click.echo(f"{'name':<24} {'arch':<8} {'params':>8} {'clean acc':>9}  sha256")
    for r in rows:
        d = r.get("defense")
        recipe = (
            f"  ({d['name']} of {d['base']}, {d['config'].get('epochs')} epochs, "
            f"{r.get('train_seconds')} s)"
            if d
            else ""
        )
        click.echo(
            f"{r['name']:<24} {r['arch']:<8} {r['num_parameters']:>8} {r['clean_accuracy']:>9.4f}  "
            f"{r['weights_sha256']}{recipe}"
        )
    for name in manifold_names():
        m = read_metadata(manifold_dir() / f"{name}.pt")
        click.echo(
            f"{name:<24} {'manifold':<8} {m['num_parameters']:>8} {'k-NN':>4} {m['knn_accuracy']:.4f}  "
            f"{m['weights_sha256']}  (pretrained on {m['dataset']}, {m.get('clips', '?')} clips)"
        )


@zoo_group.command("build")
@click.argument("names", nargs=-1)
@click.option(
    "--dataset", default=None, help="only the checkpoints trained on this data set (synth-ntu60)"
)
@quiet_option("no progress bar")
@out_option("output folder (default: the package's zoo folder)", file_okay=False)
def zoo_build(names: tuple[str, ...], dataset: str | None, quiet: bool, out: str | None) -> None:
    """Retrain the shipped victims NAMES (default: all of them, or all of --dataset) with the zoo's
    recipes, data sets and seeds: what produced the shipped checkpoints. Each one is written as soon
    as it is trained, so an interrupted build resumes by naming the rest."""
    plan = dict(zoo.PLAN)
    defended = {
        n: zoo.PLAN[base][1] for n, (base, _, _) in zoo.DEFENDED.items()
    }  # name -> data set
    for name in names:
        if name not in plan and name not in defended:
            raise zoo.VICTIMS.unknown(name, extra_names=[*plan, *defended])
    chosen = [n for n in plan if (not names or n in names) and dataset in (None, plan[n][1])]
    chosen_d = [
        n for n, d in defended.items() if (not names or n in names) and dataset in (None, d)
    ]
    if not chosen and not chosen_d:
        what = f"a data set of {', '.join(names)}" if names else "a data set of the zoo plan"
        raise ConfigError(f"expected {what}, got {dataset!r} in option '--dataset'")
    target = Path(out) if out else zoo.zoo_dir()
    with noting_tracked(target):
        _build(target, [(n, *plan[n]) for n in chosen], quiet)
    ctx = click.get_current_context()
    for name in chosen_d:  # after their bases: a defended checkpoint fine-tunes its base
        base, defense, overrides = zoo.DEFENDED[name]
        from robench.commands.defend import defend_cmd

        rebuilt = target / f"{base}.pt"  # -o DIR: the base built there, not the shipped one
        if target.resolve() != zoo.zoo_dir().resolve() and rebuilt.exists():
            base = str(rebuilt)
        ctx.invoke(defend_cmd, victim=base, defense=defense, dataset=None, out=str(target / name),
                   params=tuple(f"{k}={v}" for k, v in overrides.items()), quiet=quiet)  # fmt: skip


def _build(target: Path, chosen: list[tuple[str, str, str, int]], quiet: bool) -> None:
    for name, arch, dataset, seed in chosen:
        recipe = zoo.recipe(arch)
        tc = TrainConfig(**{**recipe["train"], "seed": seed})
        meta = train_and_save(
            arch,
            open_dataset(dataset),
            target / name,
            tc,
            {**recipe["config"], "init_seed": seed},  # another seed: other initial weights too
            progress=not quiet,
            extra_meta={"command": f"robench zoo build {name}"},
        )
        click.echo(
            f"{name}: clean accuracy {meta['clean_accuracy']:.4f}, {meta['train_seconds']} s"
        )


@click.command("list")
@click.argument(
    "kind", type=click.Choice(["victims", "attacks", "defenses", "zoo", "datasets", "topologies"])
)
def list_cmd(kind: str) -> None:
    """List registered victims, attacks, defenses, shipped checkpoints, data sets or topologies."""
    if kind == "victims":
        from robench.victim import VICTIMS

        names = VICTIMS.names()
    elif kind == "attacks":
        from robench.attack import ATTACKS

        for name in ATTACKS.names():
            cls = ATTACKS.get(name)
            click.echo(
                f"{name:<16} {cls.knowledge.value:<10} norms={','.join(cls.norms)} randomized={cls.randomized}"
            )
        return
    elif kind == "defenses":
        from robench.defense import DEFENSES

        names = DEFENSES.names()
    elif kind == "zoo":
        names = zoo.names()
    elif kind == "datasets":
        from robench.data import BUILTIN_DATASETS

        names = list(BUILTIN_DATASETS)
    else:
        from robench.data.skeleton import BUILTIN_TOPOLOGIES

        names = list(BUILTIN_TOPOLOGIES)
    for n in names:
        click.echo(n)


COMMANDS = [train_cmd, zoo_group, list_cmd]
