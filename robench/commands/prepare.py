"""``robench prepare tasar|ba --surrogate NAME``: build the Bayesian post-training artefacts ahead of time;
``robench prepare smi --world NAME``: pretrain the no-box attacks' motion manifold.

TASAR's heads (:func:`robench.ops.posterior.head_posterior`) and BA's finetuned SWAG posterior
(:func:`robench.ops.posterior.ba_posterior`) are cached under ``$ROBENCH_CACHE`` (default
``~/.cache/robench``) keyed by the surrogate's weights, the attacker's data and the post-training
config. The attacks build them on first use; this command builds them once, up front, on exactly the
data the harness hands a transfer attack (the ``train`` split of the data set), so later benchmark
runs only load them. ``--set KEY=VALUE`` overrides attack config fields (use the same overrides as the
benchmark, or the keys will differ).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from robench.commands.options import quiet_option
from robench.errors import ConfigError
from robench.yamlio import load_yaml


def _overrides(pairs: tuple[str, ...]) -> dict:
    out = {}
    for item in pairs:
        if "=" not in item:
            raise ConfigError(f"expected KEY=VALUE, got {item!r} in option '--set'")
        key, raw = item.split("=", 1)
        out[key.strip()] = load_yaml(raw, f"option '--set {key.strip()}=...'")
    return out


def _prepare(kind: str, surrogate: str, dataset: str | None, seed: int, n_train: int | None, n_test: int | None,
             cache_dir: str | None, sets: tuple[str, ...], quiet: bool) -> None:  # fmt: skip
    from robench.attack import ATTACKS
    from robench.data import open_dataset
    from robench.ops import artifacts, posterior
    from robench.run.oneoff import trained_on
    from robench.zoo import create_victim

    attack = ATTACKS.get(kind)(**_overrides(sets))  # user errors before any expensive work
    model = create_victim(surrogate).eval()
    dataset = dataset or trained_on(surrogate)
    options = {} if dataset.endswith(".npz") else {"seed": seed}
    if n_train is not None:
        options["n_train"] = n_train
    if n_test is not None:
        options["n_test"] = n_test
    data = open_dataset(dataset, **options).get_split("train")
    cfg = attack.config
    directory = cache_dir or cfg.cache_dir or None
    t0 = time.perf_counter()
    if kind == "tasar":
        art = posterior.head_posterior(
            model, data.x, data.y, cfg.posttrain(), directory, progress=not quiet
        )
        path = artifacts.artifact_path(
            "tasar", posterior.posterior_parts(model, data.x, data.y, cfg.posttrain()), directory
        )
        extra = f"posterior-mean ensemble train accuracy {float(art['train_acc']):.3f}"
    else:
        art = posterior.ba_posterior(
            model, data.x, data.y, cfg.finetune(), directory, progress=not quiet
        )
        path = artifacts.artifact_path(
            "ba", posterior.posterior_parts(model, data.x, data.y, cfg.finetune()), directory
        )
        extra = f"{sum(v.numel() for k, v in art.items() if k.startswith('mean.'))} parameters"
    click.echo(
        f"{kind} artefacts for {surrogate} on {data.name} train ({len(data)} clips): {path} "
        f"({extra}; {time.perf_counter() - t0:.1f}s)"
    )


def _common(fn):  # noqa: ANN001, ANN202
    for deco in reversed(
        [
            click.option(
                "--surrogate",
                required=True,
                help="zoo name (stgcn.synth_ntu60), arch, or .pt checkpoint",
            ),
            click.option(
                "--dataset",
                default=None,
                help="built-in name or .npz path (default: the data set SURROGATE was trained on)",
            ),
            click.option(
                "--seed",
                type=int,
                default=0,
                show_default=True,
                help="generator seed of a built-in set",
            ),
            click.option(
                "--n-train", type=int, default=None, help="generator option of a built-in set"
            ),
            click.option(
                "--n-test", type=int, default=None, help="generator option of a built-in set"
            ),
            click.option(
                "--cache-dir",
                default=None,
                help="artefact folder (default $ROBENCH_CACHE or ~/.cache/robench)",
            ),
            click.option(
                "--set", "sets", multiple=True, metavar="KEY=VALUE", help="attack config override"
            ),
            quiet_option("no progress bar"),
        ]
    ):
        fn = deco(fn)
    return fn


@click.group("prepare")
def prepare() -> None:
    """Build cached post-training artefacts of the Bayesian transfer attacks, or a manifold."""


@prepare.command("smi")
@click.option(
    "--world",
    type=click.Choice(["synth-ntu60", "synth-ntu25"]),
    default="synth-ntu60",
    show_default=True,
    help="the built-in world whose no-box clips the manifold is pretrained on",
)
@click.option("--seed", type=int, default=0, show_default=True, help="the world's generator seed")
@click.option(
    "--clips",
    type=click.IntRange(min=2),
    default=2000,
    show_default=True,
    help="no-box clips to pretrain on (the harness hands no-box attacks 2000)",
)
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="pretraining config override"
)
@click.option(
    "-o",
    "--out",
    default=None,
    help="output prefix (default: the zoo's manifolds/smi.WORLD, which it replaces; git-tracked "
    "files it changes are named on stderr)",
)
@quiet_option("no progress bar")
def prepare_smi(
    world: str, seed: int, clips: int, sets: tuple[str, ...], out: str | None, quiet: bool
) -> None:
    """Pretrain the motion manifold of the SMI no-box attacks (inter-skeleton contrastive
    learning, robench.manifold) on WORLD's no-box clips (performers no victim saw), probe it by
    k-NN on the world's test split and write a verified checkpoint with its recipe, data
    fingerprints and probe accuracy."""
    from robench.commands.options import noting_tracked
    from robench.manifold import build_manifold, manifold_dir
    from robench.manifold.pretrain import PretrainConfig

    overrides = _overrides(sets)
    PretrainConfig(**overrides)  # user errors before any expensive work
    target = Path(out) if out else manifold_dir() / f"smi.{world.replace('-', '_')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with noting_tracked(target.parent):
        meta = build_manifold(world, target, seed, overrides, not quiet, clips)
    click.echo(
        f"manifold {target.name}: k-NN accuracy {meta['knn_accuracy']:.4f} (random init "
        f"{meta['knn_accuracy_random_init']:.4f}), {meta['train_seconds']} s; wrote {target}.pt "
        f"(sha256 {meta['weights_sha256'][:12]})"
    )


@prepare.command("tasar")
@_common
def prepare_tasar(surrogate, dataset, seed, n_train, n_test, cache_dir, sets, quiet) -> None:  # noqa: ANN001
    """Post-train TASAR's Bayesian heads on SURROGATE (SG-AdaHMC + smoothing + per-head SWAG)."""
    _prepare("tasar", surrogate, dataset, seed, n_train, n_test, cache_dir, sets, quiet)


@prepare.command("ba")
@_common
def prepare_ba(surrogate, dataset, seed, n_train, n_test, cache_dir, sets, quiet) -> None:  # noqa: ANN001
    """Finetune SURROGATE for the BA baseline (flatness gradient + diagonal SWAG)."""
    _prepare("ba", surrogate, dataset, seed, n_train, n_test, cache_dir, sets, quiet)


COMMANDS = [prepare]
