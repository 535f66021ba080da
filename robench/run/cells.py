"""Cells: the unit of a benchmark matrix, their keys, seeds and expansion from a prepared plan.

One cell = (dataset, victim[, defense], attack, threat model, seed, subset[, surrogate]). Its key is
the sha256 of its canonical config JSON (dataset fingerprint, subset hash, weights sha256 of victim and
surrogate, the attack's full Config, threat model, seed, batch size), so a changed config never reuses
stale rows. Transfer cells sharing a (surrogate, attack, threat, seed, subset) share one *generation*
(``gen_key``): its adversarial examples are made once and evaluated on every victim. Each cell's
``torch.Generator`` is seeded from ``sha256(f"{seed}:{key}")`` (key: the cell key, or the generation
key for transfer attacks), so a cell's rows do not depend on which other cells run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robench.access import Knowledge
from robench.run.nobox import manifold_key, uses_manifold
from robench.run.spec import AttackSpec, VictimSpec
from robench.threat import ThreatModel

CELL_FORMAT = "robench.cell/1"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def derive_seed(seed: int, key: str) -> int:
    """63-bit generator seed from (benchmark seed, cell key)."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:15], 16)


@dataclass(frozen=True, eq=False)
class Cell:
    """One cell of the matrix; ``gen_key`` groups the transfer (or no-box) cells sharing one
    generation: the adversarial examples do not depend on the victim."""

    key: str
    victim: VictimSpec
    attack: AttackSpec
    knowledge: Knowledge
    threat: ThreatModel
    seed: int
    surrogates: tuple[VictimSpec, ...]
    config: dict[str, Any]
    gen_key: str | None = None
    gen_config: dict[str, Any] | None = None

    @property
    def surrogate_id(self) -> str | None:
        """``None`` unless transfer; the surrogate's id, or ``a+b+c`` for an ensemble generation."""
        return "+".join(s.id for s in self.surrogates) if self.surrogates else None

    @property
    def diagonal(self) -> bool:
        """A transfer cell whose victim is (one of) its surrogate(s): white-box in effect."""
        return any(s.id == self.victim.id for s in self.surrogates)


def weights_sha(spec: VictimSpec) -> str:
    """weights sha256 from the checkpoint metadata (no need to load the model)."""
    from robench.zoo import source_metadata

    return str(source_metadata(spec.source)["weights_sha256"])


def inputs_sha256(cell: Cell, cache: dict[str, str]) -> str:
    """sha256 over what a cell reads beyond its config: the bytes of its victim's and surrogates'
    checkpoint files (and their metadata) and the source file of its attack plugin. A failed
    (``invalid``) cell is retried when this changes: a repaired checkpoint, a fixed plugin.
    ``cache`` maps file paths to their sha256 (one plan hashes each file once)."""
    import inspect

    from robench.zoo import checkpoint_path

    files = []
    for spec in (cell.victim, *cell.surrogates):
        pt = checkpoint_path(spec.source)
        files += [pt, pt.with_suffix(".json")]
    try:
        files.append(Path(inspect.getsourcefile(cell.attack.cls) or ""))
    except (TypeError, OSError):  # a class without a source file: its config alone decides
        pass
    parts = []
    for f in files:
        key = str(f)
        if key not in cache:
            try:
                cache[key] = hashlib.sha256(f.read_bytes()).hexdigest()
            except OSError:
                cache[key] = "missing"
        parts.append(f"{f.name}:{cache[key]}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def expand_cells(plan: Any) -> list[Cell]:
    """Every cell of the benchmark, in run order (seeds, attacks, threats, surrogates, victims)."""
    b = plan.bench
    shas: dict[str, str] = {}

    def sha(v: VictimSpec) -> str:
        if v.source not in shas:
            shas[v.source] = weights_sha(v)
        return shas[v.source]

    base = {
        "format": CELL_FORMAT,
        "dataset": {"name": plan.data.name, "fingerprint": plan.dataset_hash, "split": b.split},
        "subset": {"n": len(plan.ids), "seed": b.subset.seed, "sha256": plan.subset_hash},
        "batch_size": b.batch_size,
    }
    cells: list[Cell] = []
    for seed in b.seeds:
        for a in b.attacks:
            cls = a.cls
            acfg = {
                "id": a.id,
                "name": a.name,
                "knowledge": cls.knowledge.value,
                "config": a.config_dict(),
            }
            if a.bpda:  # only when set: the keys of every other cell stay as they were
                acfg["bpda"] = True
            if cls.knowledge is Knowledge.QUERY:
                acfg.update(
                    budget=a.budget, oracle=a.oracle or getattr(cls, "oracle_mode", "decision")
                )
            extra = {}
            if cls.knowledge is Knowledge.TRANSFER:
                ad = b.attacker_data
                extra["attacker_data"] = {"n": ad.n, "seed": ad.seed, "sha256": plan.attacker_hash}
            config = a.build().config
            if cls.knowledge is Knowledge.NO_BOX and uses_manifold(config):  # rebuilt: new cell
                extra["manifold"] = manifold_key(b, config)
            for t in b.threats_for(a):
                common = dict(base, attack=acfg, threat=t.to_dict(), seed=seed, **extra)
                groups: list[tuple[VictimSpec, ...]] = [()]
                if cls.knowledge is Knowledge.TRANSFER:
                    # an ensemble attack gets every declared surrogate in one generation
                    groups = [b.surrogates] if cls.ensemble else [(s,) for s in b.surrogates]
                pairs = [(g, v) for g in groups for v in b.victims]
                for group, v in pairs:
                    gen_cfg = gen_key = None
                    if group:
                        sur = [{"id": s.id, "weights_sha256": sha(s)} for s in group]
                        gen_cfg = dict(
                            common,
                            kind="transfer-generation",
                            surrogate=sur[0] if len(sur) == 1 else sur,
                        )
                        gen_key = sha256_json(gen_cfg)
                    elif cls.knowledge is Knowledge.NO_BOX:  # victim-blind: one generation
                        gen_cfg = dict(common, kind="nobox-generation")
                        gen_key = sha256_json(gen_cfg)
                    vcfg = {
                        "id": v.id,
                        "weights_sha256": sha(v),
                        "defense": v.defense,
                        "defense_params": [list(p) for p in v.defense_params],
                    }
                    cfg = dict(common, victim=vcfg, surrogate=(gen_cfg or {}).get("surrogate"))
                    cells.append(
                        Cell(
                            sha256_json(cfg),
                            v,
                            a,
                            cls.knowledge,
                            t,
                            seed,
                            group,
                            cfg,
                            gen_key,
                            gen_cfg,
                        )
                    )
    return cells
