"""One-off white-box runs: one victim, one attack, one threat model, on the synthetic test split.

:func:`run_one_off` is the core of ``robench attack VICTIM ATTACK``: it picks the first ``n`` test
samples the victim classifies correctly in a seeded permutation of the split, attacks them in batches under a linf/l2 threat model of
radius ``eps`` (data units), re-verifies every returned batch with ``threat.check`` and summarises the
per-sample metrics of :mod:`robench.run.metrics` (success rate with a 95% Wilson interval, mean L∞,
joint displacement, bone-length and acceleration deviation, wall time). Nothing is stored; the
benchmark harness is the way to record results.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from torch import nn

from robench.access import Knowledge, WhiteBox
from robench.attack import ATTACKS, create_attack, is_family_member
from robench.data import SkeletonSet, open_dataset
from robench.errors import ConfigError, DataError, ThreatViolation
from robench.run.metrics import sample_metrics, wilson_interval
from robench.threat import ThreatModel

STEP_FIELDS = ("steps", "iterations")


def _attack_overrides(attack_name: str, steps: int | None) -> dict[str, Any]:
    """Map ``steps`` onto the attack's iteration-count field (``steps`` or ``iterations``)."""
    if steps is None:
        return {}
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"expected an integer >= 1, got {steps!r} in option 'steps'")
    if is_family_member(attack_name):
        return {"steps": steps}  # the adapter validates it against the torchattacks signature
    fields = {f.name for f in dataclasses.fields(ATTACKS.get(attack_name).Config)}
    for key in STEP_FIELDS:
        if key in fields:
            return {key: steps}
    raise ConfigError(
        f"expected an attack with an iteration count ({' or '.join(STEP_FIELDS)}), got {attack_name!r} "
        f"with fields {sorted(fields)} in option 'steps'"
    )


def trained_victim(name: str, checkpoint: str | None = None) -> nn.Module:
    """The trained model a one-off run attacks: a zoo name (``stgcn.synth_ntu25``), a ``.pt`` path,
    or an architecture name with ``checkpoint`` (whose metadata must name that architecture). A bare
    architecture name is refused: attacking an untrained network measures nothing."""
    from robench.victim import VICTIMS
    from robench.zoo import create_victim, names
    from robench.zoo.checkpoint import load_victim, read_metadata

    if checkpoint is not None:
        if name.endswith(".pt") or "." in name:
            raise ConfigError(
                f"expected an architecture name with --checkpoint (e.g. 'stgcn'), got {name!r} in "
                "argument 'VICTIM' (a zoo name or .pt file is given alone)"
            )
        arch = read_metadata(checkpoint)["arch"]
        if name != arch:
            raise ConfigError(
                f"expected --checkpoint of architecture {name!r}, got one of {arch!r} in {checkpoint}"
            )
        return load_victim(checkpoint)
    if not name.endswith(".pt") and "." not in name and name in VICTIMS:
        shipped = [n for n in names() if n.split(".")[0] == name]
        hint = f" such as {shipped[0]!r}" if shipped else ""
        raise ConfigError(
            f"expected a trained victim (a zoo name{hint}, a .pt checkpoint or --checkpoint FILE.pt), "
            f"got untrained architecture {name!r} in argument 'VICTIM' (`robench train {name}` trains one)"
        )
    return create_victim(name)


def trained_on(name: str, checkpoint: str | None = None) -> str:
    """The built-in data set a trained victim was trained on (its metadata's ``dataset``): the
    default test split of one-off runs. ``synth-ntu25`` when the metadata is unreadable or names no
    data set (old checkpoints), the default world for a bare architecture name (nothing trained);
    a victim trained on a file is refused (``--dataset`` must name it)."""
    from robench.data import BUILTIN_DATASETS, DEFAULT_WORLD
    from robench.errors import RobenchError
    from robench.victim import VICTIMS
    from robench.zoo import checkpoint_path, names
    from robench.zoo.checkpoint import read_metadata
    from robench.zoo.external import is_external

    if is_external(name):
        raise ConfigError(
            f"expected --dataset for an external model (it records no training data), got none for {name!r}"
        )
    if checkpoint is None and name in VICTIMS and name not in names():
        return DEFAULT_WORLD
    try:
        meta = read_metadata(checkpoint or checkpoint_path(name))
    except RobenchError:
        return "synth-ntu25"
    ds = meta.get("dataset")
    if not ds:
        return "synth-ntu25"
    if ds not in BUILTIN_DATASETS:
        raise ConfigError(
            f"expected --dataset for victim {name!r}, got a victim trained on {ds!r} (not a "
            f"built-in data set) in option '--dataset'"
        )
    return ds


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _first_correct(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, batch_size: int
) -> tuple[torch.Tensor, int, int]:
    """(indices of the first ``n`` correctly classified samples, samples scanned, correct among them).

    Batches are classified in order until ``n`` correct samples are found, so a large test split is
    not classified in full for a small ``n``.
    """
    found: list[torch.Tensor] = []
    count, scanned = 0, 0
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            ok = (
                model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]
            ).nonzero().flatten() + i
            found.append(ok)
            count += ok.numel()
            scanned = min(i + batch_size, x.shape[0])
            if count >= n:
                break
    idx = torch.cat(found) if found else torch.zeros(0, dtype=torch.int64, device=x.device)
    return idx[:n], scanned, count


def run_one_off(
    victim_name: str,
    attack_name: str,
    eps: float = 0.01,
    steps: int | None = None,
    n: int = 64,
    seed: int = 0,
    norm: str = "linf",
    progress: bool = True,
    *,
    model: nn.Module | None = None,
    dataset: SkeletonSet | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Attack the first ``n`` correctly classified test samples of a seeded permutation of the
    split (``seed``; a file sorted by class is sampled across classes); returns a summary dict.

    ``model``/``dataset`` default to ``create_victim(victim_name)`` and the test split of the
    built-in data set it was trained on (:func:`trained_on`; ``synth-ntu25`` when unknown); pass them to run on anything else (``victim_name`` is then
    only a label). ``steps`` maps onto the attack's ``steps`` or ``iterations`` field. Keys of the
    result: victim, attack, threat, eps, norm, unit, seed, n_test, n_scanned (test samples classified,
    in the seeded order, until ``n`` correct ones were found), clean_accuracy (on the scanned samples), n (attacked),
    successes, success_rate, ci_low, ci_high, linf, l2, joint_disp_cm, bone_dev_pct, accel_dev
    (means over the attacked samples), seconds, per_sample (the :func:`sample_metrics` columns).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"expected an integer >= 1, got {n!r} in option 'n'")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"expected an integer >= 1, got {batch_size!r} in option 'batch_size'")
    attack = create_attack(attack_name, **_attack_overrides(attack_name, steps))
    if attack.knowledge is not Knowledge.WHITE_BOX:
        raise ConfigError(
            f"expected a white-box attack for a one-off run, got {attack.knowledge.value} attack "
            f"{attack_name!r} (run it through a benchmark config instead)"
        )
    if dataset is None:
        dataset = open_dataset(trained_on(victim_name)).get_split("test")
    if model is None:
        model = trained_victim(victim_name)
    k = getattr(getattr(model, "config", None), "num_classes", None)
    if k is not None and k != dataset.num_classes:
        raise ConfigError(
            f"expected a victim with {dataset.num_classes} classes (the data set {dataset.name!r} has), "
            f"got {k} for victim {victim_name!r}"
        )
    model.eval()  # evaluation only; the attack never switches modes
    threat = ThreatModel(norm=norm, eps=eps, unit=dataset.unit, topology=dataset.topology)
    device = _device_of(model)
    # a seeded order across the whole split: a file sorted by class is sampled across classes
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(int(seed)))
    x_all, y_all = dataset.x[order].to(device), dataset.y[order].to(device)
    pick, scanned, n_correct = _first_correct(model, x_all, y_all, n, batch_size)
    if pick.numel() == 0:
        raise DataError(
            f"expected at least one correctly classified test sample, got none of {len(dataset)} for {victim_name!r}"
        )
    x, y = x_all[pick], y_all[pick]
    generator = torch.Generator(device=device).manual_seed(int(seed))

    from tqdm.auto import tqdm

    columns: dict[str, list[torch.Tensor]] = {}
    start = time.perf_counter()
    batches = range(0, x.shape[0], batch_size)
    for i in tqdm(
        batches, desc=f"{attack.name} on {victim_name}", unit="batch", disable=not progress
    ):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        x_adv = attack(WhiteBox(model), xb, yb, threat, generator)
        violations = threat.check(xb, x_adv)
        if violations:  # Attack.__call__ already checks; verify again independently of it
            raise ThreatViolation(
                f"attack {attack.name!r} left the threat model: " + "; ".join(map(str, violations))
            )
        with torch.inference_mode():
            lc, la = model(xb), model(x_adv)
        row = sample_metrics(lc, la, yb, xb, x_adv, dataset.topology, dataset.unit)
        for key, value in row.items():
            columns.setdefault(key, []).append(value.cpu())
    seconds = time.perf_counter() - start
    per = {k: torch.cat(v) for k, v in columns.items()}
    m = int(x.shape[0])
    successes = int(per["success"].sum())
    lo, hi = wilson_interval(successes, m)
    return {
        "victim": victim_name,
        "attack": attack.name,
        "threat": threat.name,
        "eps": float(eps),
        "norm": norm,
        "unit": dataset.unit,
        "seed": int(seed),
        "n_test": len(dataset),
        "n_scanned": scanned,
        "clean_accuracy": n_correct / scanned,
        "n": m,
        "successes": successes,
        "success_rate": successes / m,
        "ci_low": lo,
        "ci_high": hi,
        **{
            k: float(per[k].double().mean())
            for k in ("linf", "l2", "joint_disp_cm", "bone_dev_pct", "accel_dev")
        },
        "seconds": seconds,
        "per_sample": per,
    }


def format_summary(r: dict[str, Any]) -> str:
    """A small fixed-width table of a :func:`run_one_off` result."""
    unit = r["unit"]
    disp_unit = "cm" if unit in ("m", "cm", "mm") else unit
    rows = [
        ("victim", r["victim"]),
        ("attack", r["attack"]),
        ("threat model", r["threat"]),
        (
            "clean accuracy",
            f"{100 * r['clean_accuracy']:.1f}% of {r['n_scanned']} of the {r['n_test']} test samples "
            f"(seeded order, seed {r['seed']})",
        ),
        ("attacked", f"{r['n']} correctly classified (seed {r['seed']})"),
        (
            "success rate",
            f"{100 * r['success_rate']:.1f}%  95% CI [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]  "
            f"({r['successes']}/{r['n']})",
        ),
        ("mean linf", f"{r['linf']:.5g} {unit}"),
        ("mean l2", f"{r['l2']:.5g} {unit}"),
        ("joint displacement", f"{r['joint_disp_cm']:.4g} {disp_unit}"),
        ("bone deviation", f"{r['bone_dev_pct']:.4g} %"),
        ("accel deviation", f"{r['accel_dev']:.4g} {unit}/frame²"),
        ("time", f"{r['seconds']:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
