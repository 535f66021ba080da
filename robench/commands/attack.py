"""``robench attack VICTIM ATTACK``: a one-off white-box run on the synthetic test split."""

from __future__ import annotations

import click

from robench.commands.options import quiet_option
from robench.run.oneoff import format_summary, run_one_off, trained_on, trained_victim


@click.command("attack")
@click.argument("victim")
@click.argument("attack")
@click.option(
    "--eps",
    type=float,
    default=0.01,
    show_default=True,
    help="radius in data units (metres for the synth worlds and NTU)",
)
@click.option(
    "--steps", type=int, default=None, help="iteration count (the attack's steps/iterations field)"
)
@click.option(
    "--n",
    "n",
    type=int,
    default=64,
    show_default=True,
    help="correctly classified test samples to attack",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--norm", type=click.Choice(["linf", "l2"]), default="linf", show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--dataset",
    default=None,
    help="built-in name or .npz path (test split); default: the one the victim was trained on",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="trained weights (.pt with its .json) of architecture VICTIM",
)
@quiet_option("no progress bar")
def attack_cmd(
    victim: str,
    attack: str,
    eps: float,
    steps: int | None,
    n: int,
    seed: int,
    norm: str,
    batch_size: int,
    dataset: str | None,
    checkpoint: str | None,
    quiet: bool,
) -> None:
    """Attack VICTIM with ATTACK (e.g. pgd, torchattacks:PGD) and print a summary.

    VICTIM is a trained model: a zoo name (stgcn.synth_ntu25), a .pt checkpoint, or an architecture
    name with --checkpoint; an untrained architecture and a class count that differs from the data
    set's are refused (exit 2). N correctly classified test samples, the first found in a permutation
    of the test split seeded by --seed (a file sorted by class is sampled across classes), are
    attacked in batches; every batch is verified against the threat model of the data's topology
    and unit (score channels never move). Success rate comes with a 95% Wilson
    interval.
    """
    from robench.data import open_dataset

    model = trained_victim(victim, checkpoint)
    data = open_dataset(dataset or trained_on(victim, checkpoint)).get_split("test")
    result = run_one_off(
        victim,
        attack,
        eps=eps,
        steps=steps,
        n=n,
        seed=seed,
        norm=norm,
        progress=not quiet,
        dataset=data,
        batch_size=batch_size,
        model=model,
    )
    click.echo(format_summary(result))


COMMANDS = [attack_cmd]
