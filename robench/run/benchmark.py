"""Benchmark definitions: a YAML file validated into frozen dataclasses.

A benchmark names everything one matrix of cells depends on::

    id: quick                       # board / results folder name
    version: 1                      # bump when the definition changes meaning
    description: ...
    dataset: {name: synth-ntu60, seed: 0, n_train: 480, n_test: 240}   # or {path: data.npz};
                                    # default: the embedded default world, synth-ntu60
    split: test                     # the split attacked (default "test")
    subset: {n: 96, seed: 0}        # first n ids of a seeded permutation of the split (n: null = all)
    victims:                        # zoo names or .pt checkpoints (relative to the YAML file)
      - stgcn.synth_ntu25
      - {name: my_model.pt, id: mine, defense: null}
      - {name: stgcn.synth_ntu25, defense: temporal-smoothing, defense_params: {sigma: 1.5}}
    attacks:                        # registered attack names; ``params`` override the Config defaults
      - fgsm
      - {name: pgd, params: {steps: 10}, eps: [0.005, 0.01, 0.02]}   # eps sweep for this attack
      - {name: some-query-attack, budget: 1000, oracle: decision}
      - {name: pgd, id: pgd-bpda, bpda: true}  # white-box through a defense's BPDA approximation
    threats:                        # eps may be a list: one threat model per value
      - {norm: linf, eps: 0.01, preserve_bones: false}
    surrogates: [stgcn.synth_ntu25] # transfer surrogates (default: every victim)
    attacker_data: {n: 256, seed: 0} # the attacker's own data: a seeded subset of the "train"
                                    # split for transfer (labelled) and no-box (unlabelled) attacks
    seeds: [0]
    batch_size: 64
    comparisons:                    # declared paired comparisons of transfer attacks (by id):
      - [tasar, ba]                 # [attack, reference], each with a verdict on the board

Every error a user can make raises a one-line :class:`~robench.errors.ConfigError` naming the file
and the field ("expected a list of victim names, got int in quick.yaml field 'victims'"); unknown
attack / victim names suggest the closest registered ones. The knowledge level of an attack is read
from its class (``Attack.knowledge``), never from the file. An attack's ``eps`` list replaces the eps
of every top-level threat model for that attack only (an eps sweep); the top-level threat models are
the benchmark's *primary* threat models, the ones a board's worst case is taken over.
Built-in benchmarks ship as ``robench/benchmarks/*.yaml`` (``smoke``, ``quick``).
"""

from __future__ import annotations

import inspect
import re
from importlib import resources
from pathlib import Path
from typing import Any

from robench.access import Knowledge
from robench.data import DEFAULT_WORLD
from robench.errors import ConfigError, RobenchError
from robench.registry import suggest
from robench.run.spec import AttackSpec, Benchmark, DatasetSpec, SubsetSpec, VictimSpec, freeze
from robench.threat import ThreatModel
from robench.yamlio import load_yaml

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TOP_FIELDS = (
    "id",
    "version",
    "description",
    "dataset",
    "split",
    "subset",
    "victims",
    "attacks",
    "threats",
    "surrogates",
    "attacker_data",
    "seeds",
    "batch_size",
    "comparisons",
)
_SYNTH_OPTIONS = ("seed", "n_train", "n_test", "num_frames")
_THREAT_FIELDS = (
    "norm",
    "eps",
    "unit",
    "preserve_bones",
    "bone_tolerance",
    "joints",
    "frames",
    "topology",
)


def builtin_benchmarks() -> list[str]:
    """Names of the benchmarks shipped in ``robench/benchmarks/*.yaml``."""
    root = resources.files("robench.benchmarks")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_benchmark(name_or_path: str | Path) -> Benchmark:
    """A built-in benchmark by name (``"quick"``) or a YAML file by path."""
    s = str(name_or_path)
    path = Path(s)
    if s.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise ConfigError(f"expected a benchmark YAML file, got no file at {s}")
        return parse_benchmark(
            load_yaml(path.read_bytes(), path.name), source=path.name, base_dir=path.parent
        )
    names = builtin_benchmarks()
    if s not in names:
        close = suggest(s, names)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"expected a built-in benchmark ({', '.join(names)}) or a .yaml path, got {s!r}{hint}"
        )
    text = resources.files("robench.benchmarks").joinpath(f"{s}.yaml").read_text()
    return parse_benchmark(load_yaml(text, f"{s}.yaml"), source=f"{s}.yaml", base_dir=None)


def _tname(v: Any) -> str:
    return "null" if v is None else type(v).__name__


class _Ctx:
    """Error helper: every message ends with "in FILE field 'FIELD'"."""

    def __init__(self, source: str) -> None:
        self.source = source

    def err(self, expected: str, got: Any, field: str, *, raw: bool = False) -> ConfigError:
        g = got if raw else _tname(got)
        return ConfigError(f"expected {expected}, got {g} in {self.source} field '{field}'")

    def int_(self, v: Any, field: str, minimum: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err("an integer", v, field)
        if minimum is not None and v < minimum:
            raise self.err(f"an integer >= {minimum}", v, field, raw=True)
        return v

    def str_(self, v: Any, field: str) -> str:
        if not isinstance(v, str) or not v.strip():
            raise self.err("a non-empty string", v, field)
        return v.strip()

    def mapping(self, v: Any, field: str, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.err("a mapping", v, field)
        for k in v:
            if k not in known:
                close = suggest(str(k), known)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"expected one of {list(known)}, got unknown key {k!r}{hint} in {self.source} field '{field}'"
                )
        return v


def parse_benchmark(
    data: Any, source: str = "benchmark", base_dir: Path | None = None
) -> Benchmark:
    """Validate a parsed YAML mapping into a :class:`Benchmark` (see the module docstring)."""
    c = _Ctx(source)
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of benchmark fields, got {_tname(data)} in {source}")
    c.mapping(data, "<top level>", _TOP_FIELDS)
    for req in ("id", "victims", "attacks"):
        if req not in data:
            raise ConfigError(f"expected field {req!r}, got none in {source}")
    bid = c.str_(data["id"], "id")
    if not _ID_RE.fullmatch(bid) or ".." in bid:
        raise c.err(
            "a benchmark id of letters, digits, '.', '_' and '-' (a name, not a path)",
            repr(bid),
            "id",
            raw=True,
        )
    version = c.int_(data.get("version", 1), "version", 1)
    description = data.get("description", "") or ""
    if not isinstance(description, str):
        raise c.err("a string", description, "description")
    dataset = _dataset(c, data.get("dataset", {"name": DEFAULT_WORLD}), base_dir)
    split = c.str_(data.get("split", "test"), "split")
    subset = _subset(c, data.get("subset", {}), "subset")
    victims = _victims(c, data["victims"], "victims", base_dir)
    threats = _threats(
        c, data.get("threats", [{"norm": "linf", "eps": 0.01}]), _data_frame(dataset), base_dir
    )
    attacks = _attacks(c, data["attacks"], threats)
    seeds_raw = data.get("seeds", [0])
    if not isinstance(seeds_raw, list) or not seeds_raw:
        raise c.err("a non-empty list of integer seeds", seeds_raw, "seeds")
    seeds = tuple(c.int_(s, f"seeds[{i}]", 0) for i, s in enumerate(seeds_raw))
    if len(set(seeds)) != len(seeds):
        raise c.err("distinct seeds", seeds_raw, "seeds", raw=True)
    batch_size = c.int_(data.get("batch_size", 64), "batch_size", 1)
    if "surrogates" in data and data["surrogates"] is not None:
        surrogates = _surrogates(c, data["surrogates"], victims, base_dir)
    else:
        surrogates = tuple(VictimSpec(id=v.id, source=v.source) for v in victims)
    if any(a.knowledge is Knowledge.TRANSFER for a in attacks) and not surrogates:
        raise c.err("at least one surrogate for the transfer attacks", "[]", "surrogates", raw=True)
    comparisons = _comparisons(c, data.get("comparisons"), attacks)
    return Benchmark(
        id=bid,
        version=version,
        dataset=dataset,
        victims=victims,
        attacks=attacks,
        threats=threats,
        subset=subset,
        split=split,
        surrogates=surrogates,
        attacker_data=_subset(c, data.get("attacker_data", {}), "attacker_data"),
        seeds=seeds,
        batch_size=batch_size,
        description=description.strip(),
        source=source,
        comparisons=comparisons,
    )


def _comparisons(c: _Ctx, raw: Any, attacks: tuple[AttackSpec, ...]) -> tuple[tuple[str, str], ...]:
    """``comparisons``: a list of ``[attack, reference]`` pairs of distinct transfer attack ids of
    this benchmark (the board pairs each on the clips both share, with a verdict)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise c.err("a list of [attack, reference] pairs", raw, "comparisons")
    transfer = [a.id for a in attacks if a.knowledge is Knowledge.TRANSFER]
    out: list[tuple[str, str]] = []
    for i, item in enumerate(raw):
        f = f"comparisons[{i}]"
        if not isinstance(item, list):
            raise c.err("an [attack, reference] pair of attack ids", item, f)
        if len(item) != 2:
            raise c.err(
                "an [attack, reference] pair of attack ids", f"a list of {len(item)}", f, raw=True
            )
        pair = tuple(c.str_(v, f"{f}[{j}]") for j, v in enumerate(item))
        for j, name in enumerate(pair):
            if name not in transfer:
                close = suggest(name, transfer)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise c.err(
                    f"the id of a transfer attack of this benchmark ({', '.join(transfer) or 'none'})",
                    f"{name!r}{hint}",
                    f"{f}[{j}]",
                    raw=True,
                )
        if pair[0] == pair[1]:
            raise c.err("two different attacks", f"{pair[0]!r} twice", f, raw=True)
        if pair in out:
            raise c.err("each pair once", f"a repeat of {list(pair)}", f, raw=True)
        out.append((pair[0], pair[1]))
    return tuple(out)


def _dataset(c: _Ctx, d: Any, base_dir: Path | None) -> DatasetSpec:
    if isinstance(d, str):
        d = {"path": d} if d.endswith(".npz") else {"name": d}
    opts = _synth_options()
    d = c.mapping(d, "dataset", ("name", "path", *opts))
    if "path" in d:
        extra = [k for k in d if k not in ("path", "name")]
        if extra:
            raise c.err(
                "no generator options beside 'path'",
                f"{extra[0]!r}",
                f"dataset.{extra[0]}",
                raw=True,
            )
        p = _resolve_path(c, d["path"], "dataset.path", base_dir, ".npz")
        return DatasetSpec(name=Path(p).stem, path=p)
    name = c.str_(d.get("name", DEFAULT_WORLD), "dataset.name")
    from robench.data import BUILTIN_DATASETS

    if name not in BUILTIN_DATASETS:
        close = suggest(name, BUILTIN_DATASETS)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise c.err(
            f"a built-in data set {list(BUILTIN_DATASETS)} or a 'path'{hint}",
            repr(name),
            "dataset.name",
            raw=True,
        )
    seed = c.int_(d.get("seed", 0), "dataset.seed", 0)
    options = tuple(
        sorted((k, c.int_(v, f"dataset.{k}", 1)) for k, v in d.items() if k not in ("name", "seed"))
    )
    return DatasetSpec(name=name, seed=seed, options=options)


def _synth_options() -> tuple[str, ...]:
    """Keyword options of ``robench.data.synth.generate`` (falls back to the documented ones)."""
    try:
        from robench.data import synth

        params = inspect.signature(synth.generate).parameters
        names = tuple(
            p
            for p, v in params.items()
            if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)
            and p not in ("progress", "world")
        )
        return names or _SYNTH_OPTIONS
    except (ImportError, AttributeError):
        return _SYNTH_OPTIONS


def _subset(c: _Ctx, d: Any, field: str) -> SubsetSpec:
    if isinstance(d, int) and not isinstance(d, bool):
        d = {"n": d}
    d = c.mapping(d, field, ("n", "seed"))
    n = d.get("n")
    n = None if n is None else c.int_(n, f"{field}.n", 1)
    return SubsetSpec(n=n, seed=c.int_(d.get("seed", 0), f"{field}.seed", 0))


def _resolve_path(c: _Ctx, p: Any, field: str, base_dir: Path | None, suffix: str) -> str:
    s = c.str_(p, field)
    if not s.endswith(suffix):
        raise c.err(f"a {suffix} path", repr(s), field, raw=True)
    cand = Path(s).expanduser()
    if not cand.is_absolute() and base_dir is not None and (base_dir / cand).exists():
        cand = base_dir / cand
    if not cand.exists():
        raise c.err(f"an existing {suffix} file", f"no file at {s!r}", field, raw=True)
    return str(cand.resolve())


def _victim_source(c: _Ctx, name: Any, field: str, base_dir: Path | None) -> tuple[str, str]:
    """(default id, source) of a zoo name or .pt path."""
    if not isinstance(name, str):
        raise c.err("a victim name (zoo name or .pt path)", name, field)
    if name.endswith(".pt"):
        src = _resolve_path(c, name, field, base_dir, ".pt")
        return Path(src).stem, src
    from robench import zoo

    names = zoo.names()
    if name not in names:
        close = suggest(name, names)
        hint = f"; did you mean {', '.join(repr(x) for x in close)}?" if close else ""
        raise ConfigError(
            f"expected a zoo victim ({', '.join(names) or 'none shipped'}) or a .pt checkpoint path, "
            f"got {name!r}{hint} in {c.source} field '{field}'"
        )
    return name, name


def _external_source(c: _Ctx, item: dict, f: str, base_dir: Path | None) -> tuple[str, str]:
    """(default id, source) of your own model: ``{torchscript: FILE, sha256: HEX}`` or
    ``{module: pkg.mod:factory, checkpoint: FILE, sha256: HEX}`` (:mod:`robench.zoo.external`)."""
    from robench.zoo.external import external_source

    kind = "module" if "module" in item else "torchscript"
    other = "torchscript" if kind == "module" else "module"
    for bad in (other, "name") + (() if kind == "module" else ("checkpoint",)):
        if bad in item:
            raise c.err(f"no {bad!r} beside {kind!r}", repr(item[bad]), f"{f}.{bad}", raw=True)
    need = ("sha256", "checkpoint") if kind == "module" else ("sha256",)
    for key in need:
        if key not in item:
            raise c.err(f"a {key!r}", "none", f"{f}.{key}", raw=True)
    file_field = "checkpoint" if kind == "module" else "torchscript"
    raw_path = c.str_(item[file_field], f"{f}.{file_field}")
    path = str(
        Path(raw_path) if Path(raw_path).is_absolute() or base_dir is None else base_dir / raw_path
    )
    if not Path(path).exists():
        raise ConfigError(
            f"expected a model file, got no file at {path} in {c.source} field '{f}.{file_field}'"
        )
    try:
        src = external_source(kind, path, str(item["sha256"]), item.get("module"))
    except ConfigError as e:
        raise ConfigError(f"{e} of {c.source} entry '{f}'") from None
    default_id = str(item["module"]).rpartition(":")[2] if kind == "module" else Path(path).stem
    return default_id, src


def _victims(c: _Ctx, raw: Any, field: str, base_dir: Path | None) -> tuple[VictimSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise c.err("a list of victim names", raw, field)
    out: list[VictimSpec] = []
    for i, item in enumerate(raw):
        f = f"{field}[{i}]"
        if isinstance(item, dict):
            keys = ("name", "id", "defense", "defense_params", "module", "torchscript",
                    "checkpoint", "sha256")  # fmt: skip
            item = c.mapping(item, f, keys)
            if "module" in item or "torchscript" in item:
                vid, src = _external_source(c, item, f, base_dir)
            elif "name" not in item:
                raise c.err("a 'name' (or 'module' / 'torchscript')", "none", f, raw=True)
            else:
                vid, src = _victim_source(c, item["name"], f"{f}.name", base_dir)
            vid = c.str_(item.get("id", vid), f"{f}.id")
            defense = item.get("defense")
            params = item.get("defense_params") or {}
            if not isinstance(params, dict):
                raise c.err("a mapping", params, f"{f}.defense_params")
            if defense is not None:
                defense = _check_defense(c, defense, f"{f}.defense")
            out.append(
                VictimSpec(id=vid, source=src, defense=defense, defense_params=freeze(params))
            )
        else:
            vid, src = _victim_source(c, item, f, base_dir)
            out.append(VictimSpec(id=vid, source=src))
    keys = [v.key for v in out]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:
        raise c.err("distinct victims (give one an 'id')", f"{dup!r} twice", field, raw=True)
    return tuple(out)


def _check_defense(c: _Ctx, name: Any, field: str) -> str:
    """Defense names are checked against ``robench.defense.DEFENSES`` when that registry exists."""
    name = c.str_(name, field)
    try:
        from robench.defense import DEFENSES  # type: ignore[import-not-found]
    except ImportError:
        raise c.err(
            "no defense (no defense registry is installed yet)", repr(name), field, raw=True
        ) from None
    if name not in DEFENSES:
        raise ConfigError(f"{DEFENSES.unknown(name)} in {c.source} field '{field}'")
    if DEFENSES.get(name).kind.value == "weights":
        raise ConfigError(
            f"expected a transform or heads defense, got weights defense {name!r} in {c.source} "
            f"field '{field}' (train it once with `robench defend VICTIM {name}` and name the "
            "checkpoint it writes as the victim)"
        )
    return name


def _surrogates(
    c: _Ctx, raw: Any, victims: tuple[VictimSpec, ...], base_dir: Path | None
) -> tuple[VictimSpec, ...]:
    if not isinstance(raw, list):
        raise c.err("a list of victim names", raw, "surrogates")
    by_id = {v.id: v for v in victims}
    out: list[VictimSpec] = []
    for i, item in enumerate(raw):
        if isinstance(item, str) and item in by_id:
            out.append(VictimSpec(id=item, source=by_id[item].source))
            continue
        vid, src = _victim_source(c, item, f"surrogates[{i}]", base_dir)
        out.append(VictimSpec(id=vid, source=src))
    ids = [v.id for v in out]
    if len(set(ids)) != len(ids):
        raise c.err("distinct surrogates", raw, "surrogates", raw=True)
    return tuple(out)


def _data_frame(dataset: DatasetSpec) -> dict[str, Any]:
    """The data set's topology and unit, the defaults of every threat model: a built-in world is
    ntu25 in metres; a ``.npz`` file is asked for its ``topology`` and ``unit`` entries only (a file
    that cannot be read gives no defaults here; opening it later names the problem)."""
    if dataset.path is None:
        return {"topology": "ntu25", "unit": "m"}
    import json

    import numpy as np

    from robench.data.skeleton import BUILTIN_TOPOLOGIES, Topology

    try:
        with np.load(dataset.path, allow_pickle=False) as f:
            topo, unit = str(f["topology"]), str(f["unit"])
        topology = BUILTIN_TOPOLOGIES.get(topo) or Topology.from_dict(json.loads(topo))
    except Exception:  # noqa: BLE001 - reported when the data set is opened
        return {}
    return {"topology": topology, "unit": unit}


def _threats(
    c: _Ctx, raw: Any, frame: dict[str, Any] | None = None, base_dir: Path | None = None
) -> tuple[ThreatModel, ...]:
    """The threat models; ``topology`` and ``unit`` default to the data set's (``frame``), and a
    relative ``.json`` topology path resolves from the YAML file's folder."""
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise c.err("a list of threat models", raw, "threats")
    out: list[ThreatModel] = []
    for i, item in enumerate(raw):
        f = f"threats[{i}]"
        item = {**(frame or {}), **c.mapping(item, f, _THREAT_FIELDS)}
        topo = item.get("topology")
        if isinstance(topo, str) and topo.endswith(".json"):
            item["topology"] = _resolve_path(c, topo, f"{f}.topology", base_dir, ".json")
        eps = item.get("eps", 0.01)
        eps_list = eps if isinstance(eps, list) else [eps]
        if not eps_list:
            raise c.err("at least one eps", "[]", f"{f}.eps", raw=True)
        for e in eps_list:
            d = dict(item, eps=e)
            try:
                tm = ThreatModel.from_dict(d, source=f"{c.source} field '{f}'")
            except RobenchError as ex:
                raise ConfigError(str(ex)) from None
            if tm in out:
                raise c.err("distinct threat models", f"{tm.name} twice", "threats", raw=True)
            out.append(tm)
    return tuple(out)


def _attacks(c: _Ctx, raw: Any, threats: tuple[ThreatModel, ...]) -> tuple[AttackSpec, ...]:
    from robench.attack import ATTACKS, attack_class, is_family_member
    from robench.config import make_config

    if not isinstance(raw, list) or not raw:
        raise c.err("a list of attacks", raw, "attacks")
    out: list[AttackSpec] = []
    for i, item in enumerate(raw):
        f = f"attacks[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        item = c.mapping(item, f, ("name", "id", "params", "eps", "budget", "oracle", "bpda"))
        if "name" not in item:
            raise c.err("a 'name'", "none", f, raw=True)
        name = c.str_(item["name"], f"{f}.name")
        family = is_family_member(name)
        if not family and name not in ATTACKS:
            raise ConfigError(f"{ATTACKS.unknown(name)} in {c.source} field '{f}.name'")
        cls = attack_class(name)
        params = item.get("params") or {}
        if not isinstance(params, dict):
            raise c.err("a mapping of hyper-parameters", params, f"{f}.params")
        for k, v in params.items():
            if isinstance(v, dict):
                raise c.err("a number, string, boolean or list", v, f"{f}.params.{k}")
        frozen = tuple(sorted((str(k), freeze(v)) for k, v in params.items()))
        if not family:
            try:
                make_config(cls.Config, dict(frozen), source=f"{c.source} field '{f}.params'")
            except RobenchError as ex:
                raise ConfigError(str(ex)) from None
        eps = item.get("eps")
        if eps is not None:
            if not isinstance(eps, list) or not eps:
                raise c.err("a non-empty list of eps values", eps, f"{f}.eps")
            for j, e in enumerate(eps):
                if isinstance(e, bool) or not isinstance(e, int | float):
                    raise c.err("a number", e, f"{f}.eps[{j}]")
                if e < 0:
                    raise c.err("a number >= 0", e, f"{f}.eps[{j}]", raw=True)
            eps = tuple(float(e) for e in eps)
        budget = c.int_(item.get("budget", 1000), f"{f}.budget", 1)
        oracle = item.get("oracle")
        if oracle is not None and oracle not in ("decision", "score"):
            raise c.err("'decision' or 'score'", repr(oracle), f"{f}.oracle", raw=True)
        for t in threats:
            if t.norm not in cls.norms:
                raise ConfigError(
                    f"expected a norm in {list(cls.norms)} for attack {name!r}, got {t.norm!r} in {c.source} field 'threats'"
                )
        bpda = item.get("bpda", False)
        if not isinstance(bpda, bool):
            raise c.err("true or false", bpda, f"{f}.bpda")
        if bpda and cls.knowledge is not Knowledge.WHITE_BOX:
            raise c.err("bpda only on white-box attacks", repr(name), f"{f}.bpda", raw=True)
        aid = c.str_(item.get("id", name), f"{f}.id")
        out.append(
            AttackSpec(
                id=aid, name=name, params=frozen, eps=eps, budget=budget, oracle=oracle, bpda=bpda
            )
        )
    ids = [a.id for a in out]
    dup = next((a for a in ids if ids.count(a) > 1), None)
    if dup is not None:
        raise c.err(
            "distinct attack ids (give repeated attacks an 'id')",
            f"{dup!r} twice",
            "attacks",
            raw=True,
        )
    return tuple(out)
