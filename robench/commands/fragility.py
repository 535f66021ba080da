"""``robench fragility VICTIM...``: white-box success against ε and iterations, and clean margins."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from robench.commands.options import out_option, quiet_option
from robench.errors import ConfigError


def _numbers(text: str, field: str, kind: type) -> list:
    """A comma-separated option value as a list of ``kind`` (float or int); one-line error else."""
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise ConfigError(
            f"expected comma-separated {what}, got {text!r} in option {field!r}"
        ) from None


@click.command("fragility")
@click.argument("victims", nargs=-1, required=True)
@click.option(
    "--dataset",
    default=None,
    help="built-in name or .npz; default: what the victims were trained on",
)
@click.option(
    "--eps",
    default="0.005,0.01,0.02",
    show_default=True,
    help="radii in data units, comma-separated",
)
@click.option("--steps", default="10,50,200", show_default=True, help="iteration counts")
@click.option("--attacks", default="pgd,bim", show_default=True, help="white-box attacks")
@click.option("--n", "n", type=int, default=300, show_default=True, help="clips per row")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--early-stop/--final-iterate",
    default=True,
    show_default=True,
    help="judge each clip's first fooling iterate (saves gradients) or the final iterate",
)
@click.option("--batch-size", type=int, default=64, show_default=True)
@out_option("JSON file the rows are written to as they finish; an existing one is resumed")
@quiet_option()
def fragility_cmd(
    victims: tuple[str, ...],
    dataset: str | None,
    eps: str,
    steps: str,
    attacks: str,
    n: int,
    seed: int,
    early_stop: bool,
    batch_size: int,
    out: str | None,
    quiet: bool,
) -> None:
    """Success of white-box attacks (default PGD and I-FGSM at 10, 50, 200 iterations and ε = 0.5,
    1, 2 cm) on the first N correctly classified test clips of each VICTIM (a zoo name or .pt file),
    with 95% Wilson intervals, and the quantiles of the clips' clean logit margins. Prints a
    Markdown table; -o FILE.json keeps every row as it lands and resumes from it."""
    from robench.data import open_dataset
    from robench.io import sha256_file
    from robench.run.fragility import measure, table
    from robench.run.oneoff import trained_on, trained_victim
    from robench.zoo import checkpoint_path

    radii, counts = _numbers(eps, "eps", float), _numbers(steps, "steps", int)
    models, weights = {}, {}
    for name in victims:
        models[name] = trained_victim(name)
        weights[name] = sha256_file(name if name.endswith(".pt") else checkpoint_path(name))
    if dataset is None:
        worlds = {trained_on(name) for name in victims}
        if len(worlds) > 1:
            raise ConfigError(
                f"expected victims trained on one data set, got {sorted(worlds)} in option "
                "'--dataset' (name the one to use)"
            )
        dataset = worlds.pop()
    data = open_dataset(dataset).get_split("test")
    log = None if quiet else (lambda msg: click.echo(msg, err=True))
    doc = measure(
        models,
        data,
        eps=radii,
        steps=counts,
        attacks=[a for a in attacks.split(",") if a],
        n=n,
        seed=seed,
        early_stop=early_stop,
        batch_size=batch_size,
        out=Path(out) if out else None,
        weights=weights,
        progress=log,
    )
    unit_cm = {"m": 100.0, "cm": 1.0, "mm": 0.1}.get(data.unit, 1.0)
    click.echo(table(doc, unit_cm))
    sys.stdout.flush()


COMMANDS = [fragility_cmd]
