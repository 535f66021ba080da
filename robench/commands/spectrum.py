"""``robench spectrum RESULTS_DIR --victim V``: which temporal frequencies of cached transfer
perturbations fool a victim (:mod:`robench.run.spectrum`)."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from robench.errors import DataError


@click.command("spectrum")
@click.argument("results_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--victim", "victims", multiple=True, required=True, help="zoo name or .pt; repeat")
@click.option(
    "--cutoff",
    type=int,
    default=5,
    show_default=True,
    help="frequency bins over time in the low band (bin 0 = the clip's mean offset)",
)
@click.option("--seed", type=int, default=0, show_default=True, help="of the random-sign control")
def spectrum_cmd(results_dir: Path, victims: tuple[str, ...], cutoff: int, seed: int) -> None:
    """Split every transfer perturbation cached in RESULTS_DIR/cache (a `robench run` of a
    benchmark with transfer attacks) into a low and a high temporal band and probe each at the
    full budget (x + eps * sign(part)) against each VICTIM, beside the perturbation itself, its
    eps-sign and an eps-random-sign control: the share of the victim's correctly classified clips
    each probe fools."""
    from robench.data import open_dataset
    from robench.run.oneoff import trained_victim
    from robench.run.spectrum import PROBES, band_transfer, generations, surrogate_label
    from robench.threat import ThreatModel

    gens = generations(results_dir)
    models = {v: trained_victim(v).eval() for v in victims}
    sets: dict[str, object] = {}
    head = ["surrogate", "attack", "victim", "n", "low share", *PROBES]
    click.echo("| " + " | ".join(head) + " |")
    click.echo("|" + "---|" * len(head))
    for g in gens:
        cfg = g["config"]
        ds = cfg["dataset"]
        key = f"{ds['name']}:{ds['split']}"
        if key not in sets:
            full = open_dataset(ds["name"])
            if full.fingerprint() != ds["fingerprint"]:
                raise DataError(
                    f"{g['path']}: made on another build of {ds['name']} (fingerprint "
                    f"{ds['fingerprint'][:12]}, this one {full.fingerprint()[:12]})"
                )
            sets[key] = full.get_split(ds["split"])
        data = sets[key]
        sub = data.by_ids(g["ids"])
        x, y = torch.as_tensor(sub.x), torch.as_tensor(sub.y).long()
        threat = ThreatModel.from_dict(cfg["threat"], source=str(g["path"]))
        for v, model in models.items():
            row = band_transfer(model, x, y, g["x_adv"].to(x.dtype), threat, cutoff, seed=seed)
            cells = [f"{100 * row['fooled'][p]:.1f}%" for p in PROBES]
            click.echo(
                f"| {surrogate_label(cfg)} | {cfg['attack']['id']} | {v} | {row['n']} | "
                f"{row['low_share']:.2f} | " + " | ".join(cells) + " |"
            )


COMMANDS = [spectrum_cmd]
