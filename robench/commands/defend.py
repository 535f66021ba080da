"""``robench defend VICTIM DEFENSE``: a weights defense (adversarial training) written as a checkpoint,
or a heads defense (BEAT) post-trained into the artefact cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from robench.commands.options import noting_tracked, out_option, quiet_option
from robench.errors import ConfigError


def parse_params(items: tuple[str, ...], option: str = "--param") -> dict[str, Any]:
    """``NAME=VALUE`` pairs; VALUE read as YAML (numbers, booleans, null, strings)."""
    from robench.yamlio import load_yaml

    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"expected NAME=VALUE, got {item!r} in option '{option}'")
        value = load_yaml(raw, f"option '{option}'") if raw else ""
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                value = float(value)
            except ValueError:
                pass
        out[name] = value
    return out


@click.command("defend")
@click.argument("victim")
@click.argument("defense")
@click.option("--dataset", default=None, help="training data; default: what VICTIM was trained on")
@click.option(
    "--param", "params", multiple=True, help="NAME=VALUE override of the defense's config"
)
@out_option("output prefix (writes PREFIX.pt and PREFIX.json)", dir_okay=False)
@quiet_option("no progress bar")
def defend_cmd(
    victim: str,
    defense: str,
    dataset: str | None,
    params: tuple[str, ...],
    out: str | None,
    quiet: bool,
) -> None:
    """Fine-tune a copy of VICTIM (a zoo name or .pt checkpoint) with the weights defense DEFENSE
    (pgd-at, trades) on the data set's train split and write it as a checkpoint whose metadata holds
    the defense, its full config, the base checkpoint's sha256, the training seconds and the clean
    test accuracy. A heads defense (beat) is post-trained on the frozen VICTIM into the artefact
    cache, where a benchmark entry naming it with the same params finds it. Transform defenses are
    not trained: name them in a benchmark's victim entry.
    """
    import dataclasses

    import torch

    from robench.data import open_dataset
    from robench.defense import DefenseKind, create_defense
    from robench.run.oneoff import trained_on, trained_victim
    from robench.zoo import checkpoint_path
    from robench.zoo.checkpoint import read_metadata, save_victim
    from robench.zoo.train import evaluate

    d = create_defense(defense, **parse_params(params))
    if d.kind is DefenseKind.TRANSFORM:
        raise ConfigError(
            f"expected a weights or heads defense (pgd-at, trades, beat), got {defense!r} of kind "
            "'transform' in argument 'DEFENSE' (a transform is applied at run time: name it as a "
            "benchmark victim's 'defense')"
        )
    model = trained_victim(victim)
    base = read_metadata(checkpoint_path(victim))["weights_sha256"]
    ds_name = dataset or trained_on(victim)
    data = open_dataset(ds_name)
    train, test = data.get_split("train"), data.get_split("test")
    d.progress = not quiet
    defended = d(model, test.x[:8], train, torch.Generator().manual_seed(0))
    stem = Path(victim).stem if victim.endswith(".pt") else victim
    if d.kind is DefenseKind.HEADS:  # cached heads: a benchmark entry naming the defense loads them
        click.echo(
            f"{stem}+{defense}: clean accuracy {evaluate(defended, test):.4f} on {len(test)} test "
            f"clips, {d.seconds:.1f} s; heads cached for benchmark entries "
            f"{{name: {victim}, defense: {defense}, defense_params: {{...}}}} with these params"
        )
        return
    target = Path(out or f"runs/defend/{stem}.{defense}")
    config = dataclasses.asdict(d.config)
    arg = " ".join([*(f"--param {p}" for p in params), f"--dataset {ds_name}"])
    target.parent.mkdir(parents=True, exist_ok=True)
    with noting_tracked(target.parent):
        meta = save_victim(
            defended,
            target,
            {
                "dataset": data.name,
                "dataset_sha256": data.fingerprint(),
                "clean_accuracy": evaluate(defended, test),
                "clean_accuracy_split": "test",
                "n_test": len(test),
                "defense": {"name": defense, "config": config, "base": victim,
                            "base_weights_sha256": base},
                "train_seconds": round(d.seconds, 1),
                "torch_threads": torch.get_num_threads(),
                "command": f"robench defend {victim} {defense} {arg}".strip(),
            },
        )  # fmt: skip
    click.echo(
        f"{stem}+{defense}: clean accuracy {meta['clean_accuracy']:.4f} on {len(test)} test clips, "
        f"{meta['train_seconds']} s; wrote {target}.pt (sha256 {meta['weights_sha256'][:12]})"
    )


COMMANDS = [defend_cmd]
