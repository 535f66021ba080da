"""The harness: a prepared benchmark (:class:`Plan`) and the run of one cell with ONLY its access object.

:func:`prepare` loads the data set and subset, writes ``subset.json`` / ``benchmark.json`` and expands
the cells (:mod:`robench.run.cells`: keys, seeds, transfer generations); :mod:`robench.run.executor`
runs the pending ones into the store. A finished cell (status ``ok`` or ``invalid``) is skipped by the
next run; ``error`` cells are retried.

Per cell:

1. the samples the attack is run on — white-box / query: the victim classifies them correctly on
   clean input; transfer: the surrogate does; no-box: every clip (the attacker cannot know which
   the victim gets right). A cell is scored on its *eligible* samples: victim-correct (and, for
   transfer, surrogate-correct). Other samples keep ``x_adv = x`` and still get a row;
2. the attack receives only its access object (:mod:`robench.access`): ``WhiteBox(victim)``,
   ``Transfer([surrogate], train_x, train_y)`` with the training split, ``Query(QueryOracle(victim,
   budget))``, or ``NoBox(clips, manifold, attack_set)`` — the attacker's own unlabelled clips, its
   motion manifold and the unlabelled clips under attack, after :mod:`robench.run.nobox` has
   checked the manifold's recorded data against the benchmark's (a leaking cell is refused);
3. the attack runs through ``Attack.__call__`` (threat check, input-mutation check); a
   :class:`~robench.errors.RobenchError` (e.g. ThreatViolation) marks the cell ``invalid`` with the
   reason, any other exception ``error`` with its message, and the run continues;
4. predictions under ``torch.inference_mode``; :func:`robench.run.metrics.sample_metrics`; the cell row
   and its sample rows are written in one transaction.

Transfer and no-box attacks generate adversarial examples once per generation (surrogate, attack,
threat, seed, subset), cached atomically under ``DIR/cache/transfer-<sha256>.pt`` (``nobox-``), and
evaluate them on every victim.
Per victim (computed once and reused by its cells): clean logits, ``forward_random`` (two eval
forwards of the first samples differ) and, for white-box cells, ``zero_grad_frac`` (fraction of
eligible samples whose input gradient of CE on the clean input is exactly zero).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robench.access import Knowledge, QueryOracle
from robench.errors import ConfigError, RobenchError, ThreatViolation
from robench.io import atomic_write, atomic_write_text
from robench.run.cells import (
    Cell,
    canonical_json,
    derive_seed,
    expand_cells,
    inputs_sha256,
    weights_sha,
)
from robench.run.checks import check_classes, check_threats
from robench.run.defended import attacker_copy, defend_victim, reseed, zero_gradients
from robench.run.judge import (
    SPOT_SAMPLES,
    SPOT_THREADS,
    HarnessCompromised,
    check_stored_norms,
    compare_spot,
    fingerprint,
    judge_batch,
    refuse_overridden_call,
    snapshot_guards,
    verify_guards,
)
from robench.run.metrics import sample_metrics
from robench.run.nobox import attacker_clips, generation_code, manifold_for
from robench.run.spec import Benchmark, VictimSpec, subset_hash
from robench.run.store import Store
from robench.run.worker import AttackJob, WorkerError, run_job
from robench.threat import ThreatModel
from robench.zoo import victim_provenance

_RANDOM_CHECK = 8  # samples forwarded twice to detect a randomised forward pass


@dataclass(eq=False)
class _Model:
    """A loaded victim/surrogate with the per-model results reused by its cells."""

    model: torch.nn.Module
    sha: str
    clean_logits: torch.Tensor
    correct: torch.Tensor  # (n,) bool
    forward_random: int
    fingerprint: (
        tuple  # :func:`~robench.run.judge.fingerprint` at load time (verified before every scoring)
    )
    zero_grad: dict[bool, torch.Tensor] = field(default_factory=dict)  # bpda -> (n,) bool, lazily


@dataclass(eq=False)
class Plan:
    """A prepared benchmark: data, subset, cells; loads models lazily."""

    bench: Benchmark
    out_dir: Path
    device: torch.device
    data: Any
    ids: list[str]
    x: torch.Tensor
    y: torch.Tensor
    train_x: torch.Tensor | None
    train_y: torch.Tensor | None
    dataset_hash: str
    subset_hash: str
    attacker_hash: str = ""  # sha256 of the attacker's sample ids (transfer / no-box data)
    nobox_x: torch.Tensor | None = None  # the 'nobox' split's coordinates, no labels
    threads: int = field(default_factory=torch.get_num_threads)  # torch threads of each worker
    cells: list[Cell] = field(default_factory=list)
    _models: dict[str, _Model] = field(default_factory=dict)
    _x_adv: dict[str, Any] = field(default_factory=dict)  # gen_key -> (x_adv, seconds) | exception
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _file_hashes: dict[str, str] = field(default_factory=dict)

    def inputs_sha256(self, cell: Cell) -> str:
        """See :func:`robench.run.cells.inputs_sha256` (files hashed once per plan)."""
        with self._lock:
            return inputs_sha256(cell, self._file_hashes)

    # ------------------------------------------------------------------ models
    def model(self, spec: VictimSpec) -> _Model:
        """The loaded model of ``spec`` (eval mode, on the device) with its clean predictions."""
        with self._lock:
            return self._load_model(spec)

    def _load_model(self, spec: VictimSpec) -> _Model:
        cache_key = f"{spec.source}|{spec.defense}|{spec.defense_params}"
        if cache_key in self._models:
            return self._models[cache_key]
        from robench.zoo import create_victim

        net = create_victim(spec.source).to(self.device).eval()
        if spec.defense is not None:
            probe = self.x[: min(self.bench.batch_size, _RANDOM_CHECK, len(self.ids))]
            net = defend_victim(net, spec, probe, self.data).to(self.device)
        k = getattr(getattr(net, "config", None), "num_classes", self.data.num_classes)
        bs = self.bench.batch_size
        with torch.inference_mode():
            logits = torch.cat([net(self.x[i : i + bs]) for i in range(0, len(self.ids), bs)])
        k = k if k != self.data.num_classes else logits.shape[-1]  # an external model: its logits
        if logits.dim() != 2 or k != self.data.num_classes:
            raise ConfigError(
                f"expected a victim with {self.data.num_classes} classes (the data set's), got {k} for victim {spec.id!r}"
            )
        with torch.inference_mode():
            # same batch twice (a different batch size may legitimately change float rounding)
            probe = self.x[: min(bs, _RANDOM_CHECK)]
            rand = int(not torch.equal(net(probe), net(probe)))
        sha = getattr(net, "weights_sha256", "") or weights_sha(spec)
        m = _Model(net, sha, logits, logits.argmax(1) == self.y, rand, fingerprint(net))
        self._models[cache_key] = m
        return m

    def verify_pristine(self, m: _Model) -> None:
        """The harness's model must be exactly as loaded before it scores anything: every parameter
        and buffer (non-persistent ones included), no hooks, no instance attribute added or replaced
        (a patched ``forward``). Plugins never receive it; this guards the guard."""
        if fingerprint(m.model) != m.fingerprint:
            raise RuntimeError(
                f"the harness's pristine copy of {m.sha[:12]} changed (hooks, buffers, attributes or "
                "weights); refusing to score with it"
            )

    def zero_grad(self, m: _Model, bpda: bool = False) -> torch.Tensor:
        """(n,) bool: the input gradient of CE(f(x), y) on the clean input is exactly zero, through
        the BPDA pass for BPDA cells; once per model and mode, for the samples it classifies
        correctly (False elsewhere): ``zero_grad_frac`` is taken over those (eligible) samples."""
        with self._lock:  # a randomized defense's stream is shared: one user at a time
            if bpda not in m.zero_grad:
                args = (self.x, self.y, m.correct, self.bench.batch_size, bpda)
                m.zero_grad[bpda] = zero_gradients(m.model, *args)
        return m.zero_grad[bpda]

    # ------------------------------------------------------------------ running
    def run_cell(self, cell: Cell) -> dict[str, Any]:
        """Run one cell and return its store record ``{"cell": {...}, "samples": {...} | None}``."""
        t0 = time.perf_counter()
        row: dict[str, Any] = {
            "cell_key": cell.key,
            "benchmark": self.bench.id,
            "dataset": self.data.name,
            "victim": cell.victim.id,
            "defense": cell.victim.defense,
            "attack": cell.attack.id,
            "knowledge": cell.knowledge.value,
            "surrogate": cell.surrogate_id,
            "threat": cell.threat.name,
            "norm": cell.threat.norm,
            "eps": cell.threat.eps,
            "seed": cell.seed,
            "subset_hash": self.subset_hash,
            "config_json": canonical_json(cell.config),
            "weights_sha256": cell.config["victim"]["weights_sha256"],
            "n": len(self.ids),
            "inputs_sha256": self.inputs_sha256(cell),
        }
        samples = None
        try:
            verify_guards(globals())
            samples, extra = self._attack_cell(cell)
            verify_guards(globals())
            row.update(extra, status="ok", error=None)
        except RobenchError as e:
            row.update(status="invalid", error=_one_line(e))
        except (WorkerError, HarnessCompromised) as e:  # the attack crashed or its worker died
            row.update(status="error", error=_one_line(e))
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on
            row.update(status="error", error=f"{type(e).__name__}: {_one_line(e)}")
        row["seconds"] = time.perf_counter() - t0 + row.pop("_gen_share", 0.0)
        return {"cell": row, "samples": samples}

    def _attack_cell(self, cell: Cell) -> tuple[dict[str, Any], dict[str, Any]]:
        vic = self.model(cell.victim)
        attack = cell.attack.build()
        refuse_overridden_call(type(attack))
        n, k = len(self.ids), vic.clean_logits.shape[1]
        targeted = bool(getattr(attack.config, "targeted", False))
        target = self._targets(cell, k) if targeted else None
        extra: dict[str, Any] = {"forward_random": vic.forward_random, "zero_grad_frac": None}
        queries = None
        if cell.knowledge is Knowledge.NO_BOX:  # checked per cell, also for a cached generation
            manifold_for(self, cell, attack)
        if cell.gen_key is not None:  # transfer: on the surrogate-correct clips; no-box: all
            surs = [self.model(s) for s in cell.surrogates]
            sur_correct = _all_correct(surs) if surs else torch.ones_like(vic.correct)
            attacked = sur_correct.nonzero().flatten()
            x_adv_e, gen_s = self._transfer_examples(cell, attack, surs, target, attacked)
            extra["_gen_share"] = gen_s / max(1, len(self.bench.victims))
            eligible = sur_correct & vic.correct
        else:
            attacked = vic.correct.nonzero().flatten()
            eligible = vic.correct
            if cell.knowledge is Knowledge.WHITE_BOX:
                zg = self.zero_grad(vic, cell.attack.bpda)[eligible]
                extra["zero_grad_frac"] = float(zg.float().mean()) if zg.numel() else 0.0
            x_adv_e, q = self._run_attack(
                cell, attack, [vic], attacked, target, derive_seed(cell.seed, cell.key)
            )
            self._save_examples(cell.key, attacked, x_adv_e)
            if q is not None:
                queries = torch.zeros(n, dtype=torch.int64)
                queries[attacked.cpu()] = q
        x_adv = self.x.clone()
        x_adv[attacked] = x_adv_e.to(self.device)
        self.verify_pristine(vic)
        logits_adv = vic.clean_logits.clone()
        bs = self.bench.batch_size
        with self._lock, torch.inference_mode():  # a randomized defense: the cell's own stream
            reseed(vic.model, derive_seed(cell.seed, cell.key + ":score"))
            for i in range(0, attacked.numel(), bs):
                idx = attacked[i : i + bs]
                logits_adv[idx] = vic.model(x_adv[idx])
        cols = sample_metrics(
            vic.clean_logits,
            logits_adv,
            self.y,
            self.x,
            x_adv,
            self.data.topology,
            self.data.unit,
            queries,
        )
        check_stored_norms(cell.threat, cols, attacked)
        goal = cols["adv_pred"] == target if targeted else cols["adv_pred"] != self.y
        tgt = target if targeted else torch.full((n,), -1, dtype=torch.int64, device=self.y.device)
        samples = {
            "sample_id": self.ids,
            "label": self.y,
            "target": tgt,
            "clean_pred": cols["clean_pred"],
            "adv_pred": cols["adv_pred"],
            "clean_correct": cols["clean_correct"],
            "eligible": eligible,
            "success": eligible & goal,
            **{
                c: cols[c]
                for c in (
                    "margin_clean",
                    "margin_adv",
                    "linf",
                    "l2",
                    "joint_disp_cm",
                    "bone_dev_pct",
                    "accel_dev",
                    "queries",
                )
            },
        }
        return samples, extra

    def _save_examples(self, key: str, attacked: torch.Tensor, x_adv: torch.Tensor) -> None:
        """Keep a cell's adversarial examples (``DIR/cache/adv-<cell_key>.pt``) for ``robench show``."""
        ids = [self.ids[i] for i in attacked.tolist()]
        payload = {"ids": ids, "x_adv": x_adv.detach().cpu()}
        path = self.out_dir / "cache" / f"adv-{key}.pt"
        atomic_write(path, lambda p: torch.save(payload, p))

    def _targets(self, cell: Cell, k: int) -> torch.Tensor:
        """Target classes for targeted attacks: ``(y + U{1..K-1}) mod K`` from a cell-seeded generator."""
        key = cell.gen_key or cell.key
        g = torch.Generator().manual_seed(derive_seed(cell.seed, key + ":target"))
        shift = torch.randint(1, k, (len(self.ids),), generator=g).to(self.y.device)
        return (self.y + shift) % k

    def _job(
        self, cell: Cell, attack: Any, models: list[_Model], idxs: list, target, seed: int,
        threads: int | None = None,
    ):  # fmt: skip
        """The worker job of ``cell``: batches ``idxs`` and exactly the cell's grant, run with
        ``threads`` torch threads (default: the harness's per-worker count)."""
        nobox = cell.knowledge is Knowledge.NO_BOX
        batches = [
            (
                self.x[i].cpu(),
                torch.full_like(self.y[i].cpu(), -1) if nobox else self.y[i].cpu(),  # no labels
                target[i].cpu() if target is not None else None,
            )
            for i in idxs
        ]
        job = AttackJob(
            attack_cls=type(attack),
            attack_config=attack.config,
            knowledge=cell.knowledge.value,
            threat=cell.threat,
            seed=seed,
            device=str(self.device),
            batches=batches,
            threads=self.threads if threads is None else threads,
        )
        if cell.knowledge in (Knowledge.WHITE_BOX, Knowledge.TRANSFER):
            stream = derive_seed(cell.seed, (cell.gen_key or cell.key) + ":defense")
            job.models = [attacker_copy(m.model, stream, cell.attack.bpda) for m in models]
        if cell.knowledge is Knowledge.TRANSFER:
            job.surrogate_ids = tuple(s.id for s in cell.surrogates)
            job.train_x, job.train_y = self.train_x, self.train_y
        if cell.knowledge is Knowledge.QUERY:
            job.query = [(cell.attack.budget, self._oracle_mode(cell, attack))] * len(idxs)
        if cell.knowledge is Knowledge.NO_BOX:  # robench.run.nobox: disjointness proved first
            job.manifold = manifold_for(self, cell, attack)
            job.data, job.attack_set = attacker_clips(self), self.x.cpu()  # it attacks every clip
        return job

    @staticmethod
    def _oracle_mode(cell: Cell, attack: Any) -> str:
        return cell.attack.oracle or getattr(type(attack), "oracle_mode", "decision")

    def _oracles(self, cell: Cell, attack: Any, model: _Model, idxs: list) -> list[QueryOracle]:
        """One oracle per batch, owned here: the worker only ever holds a proxy. A randomized
        defense answers from a copy whose stream restarts at the cell's seed for every job."""
        mode = self._oracle_mode(cell, attack)
        net = attacker_copy(model.model, derive_seed(cell.seed, cell.key + ":oracle"), False)
        return [QueryOracle(net, len(i), cell.attack.budget, mode) for i in idxs]

    def _run_attack(
        self, cell: Cell, attack: Any, models: list[_Model], attacked, target, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The attacked samples, in batches, through an attack worker holding only the cell's grant;
        every returned batch judged here (:mod:`robench.run.judge`)."""
        bs = self.bench.batch_size
        idxs = [attacked[i : i + bs] for i in range(0, attacked.numel(), bs)]
        query = cell.knowledge is Knowledge.QUERY
        oracles = self._oracles(cell, attack, models[0], idxs) if query else None
        outs = run_job(self._job(cell, attack, models, idxs, target, seed), oracles)
        outs = [
            judge_batch(cell.threat, self.x[i], o, attack.name)
            for i, o in zip(idxs, outs, strict=True)
        ]
        if not type(attack).randomized and idxs:
            spot = [idxs[0][:SPOT_SAMPLES]]
            a, b = (
                run_job(  # single-threaded: see SPOT_THREADS
                    self._job(cell, attack, models, spot, target, s, SPOT_THREADS),
                    self._oracles(cell, attack, models[0], spot) if query else None,
                )[0]
                for s in (seed, derive_seed(seed, "spot-check"))
            )
            compare_spot(a, b, attack.name)
        x_adv = torch.cat(outs) if outs else self.x[:0].cpu()
        if not query:
            return x_adv, None
        counts = [o.queries.clone() for o in oracles]
        return x_adv, torch.cat(counts) if counts else torch.zeros(0, dtype=torch.int64)

    def _transfer_examples(
        self, cell: Cell, attack, surs: list[_Model], target, attacked: torch.Tensor
    ) -> tuple[torch.Tensor, float]:
        """x_adv of a shared generation (``attacked`` samples): memory, then DIR/cache, else
        generate and cache."""
        key = cell.gen_key
        if key in self._x_adv:
            got = self._x_adv[key]
            if isinstance(got, BaseException):  # the generation failed: same for every victim
                raise got
            return got
        ids = [self.ids[i] for i in attacked.tolist()]
        path = self.out_dir / "cache" / f"{cell.knowledge.value.replace('-', '')}-{key}.pt"
        code = generation_code(cell.knowledge, type(attack))
        got = _load_cache(path, ids, cell.threat, self.x[attacked], code)
        if got is None:
            t0 = time.perf_counter()
            try:
                x_adv, _ = self._run_attack(
                    cell, attack, surs, attacked, target, derive_seed(cell.seed, key)
                )
                self._refuse_copies(cell, attacked, x_adv, attack.name)
            except Exception as e:
                self._remember(key, e)
                raise
            secs = time.perf_counter() - t0
            payload = {
                "x_adv": x_adv.detach().cpu(),
                "ids": ids,
                "config": canonical_json(cell.gen_config),
                "code": code,
                "seconds": secs,
            }
            atomic_write(path, lambda p: torch.save(payload, p))
            got = (x_adv.to(self.device), secs)
        else:
            got = (got[0].to(self.device), got[1])
        self._remember(key, got)
        return got

    def _refuse_copies(
        self, cell: Cell, attacked: torch.Tensor, x_adv: torch.Tensor, name: str
    ) -> None:
        """A transfer generation must not contain, bit for bit, the adversarial example of the same
        clip from a white-box cell on another model (``DIR/cache/adv-*.pt``, kept for ``robench
        show``): a plugin that found and copied them would otherwise score white-box success as
        transfer. (White-box cells on a surrogate itself may legitimately coincide.)"""
        pos = {self.ids[i]: j for j, i in enumerate(attacked.tolist())}
        moved = (x_adv != self.x[attacked].cpu()).flatten(1).any(1)
        own = {s.id for s in cell.surrogates}
        others = [
            c.key
            for c in self.cells
            if c.knowledge is Knowledge.WHITE_BOX and c.victim.id not in own
        ]
        for key in others:
            path = self.out_dir / "cache" / f"adv-{key}.pt"
            if not path.exists():
                continue
            try:
                d = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - an unreadable example file cannot be copied either
                continue
            got = [(j, pos[s]) for j, s in enumerate(d.get("ids", [])) if s in pos]
            if not got or not isinstance(d.get("x_adv"), torch.Tensor):
                continue
            src, dst = (torch.tensor(v) for v in zip(*got, strict=True))
            same = (x_adv[dst] == d["x_adv"][src]).flatten(1).all(1) & moved[dst]
            if bool(same.any()):
                sid = self.ids[int(attacked[int(dst[same][0])])]
                raise ThreatViolation(
                    f"expected transfer examples made from the surrogates, got clip {sid!r} "
                    f"identical to a white-box cell's example ({path.name}) from attack {name!r}"
                )

    def _remember(self, key: str, got: Any) -> None:
        """Keep the last few generations in memory (one per concurrently running unit)."""
        self._x_adv[key] = got
        while len(self._x_adv) > 4:
            self._x_adv.pop(next(iter(self._x_adv)))


def _all_correct(models: list[_Model]) -> torch.Tensor:
    """(n,) bool: every model of ``models`` classifies the sample correctly."""
    out = models[0].correct.clone()
    for m in models[1:]:
        out &= m.correct
    return out


def _load_cache(
    path: Path, ids: list[str], threat: ThreatModel, x: torch.Tensor, code: str
) -> tuple[torch.Tensor, float] | None:
    """A cached generation if it exists, was made by the same code (``code_version`` of the attack's
    module and the shared ops), matches the ids and passes the threat check again."""
    if not path.exists():
        return None
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a corrupt cache is regenerated
        return None
    xa = d.get("x_adv") if isinstance(d, dict) else None
    if not isinstance(xa, torch.Tensor) or d.get("ids") != ids or xa.shape != x.shape:
        return None
    if d.get("code") != code:
        return None
    if threat.check(x.cpu(), xa):
        return None
    return xa, float(d.get("seconds", 0.0))


def _one_line(e: BaseException) -> str:
    s = " ".join(str(e).split())
    return s[:1000] or type(e).__name__


def prepare(bench: Benchmark, out_dir: str | Path, device: str | torch.device = "cpu") -> Plan:
    """Load the data set and subset, check the benchmark against them and expand the cells
    (``subset.json`` and ``benchmark.json`` are written by the executor, under the run lock)."""
    dev = resolve_device(device)
    out = Path(out_dir)
    data = bench.dataset.open()
    split = data.get_split(bench.split) if data.split else data
    ids = bench.subset.select(split.ids)
    sub = split.by_ids(ids)
    train = None
    if data.split and bench.split != "train" and "train" in set(data.split):
        train = data.get_split("train")
        train = train.by_ids(bench.attacker_data.select(train.ids, "attacker_data"))
    check_threats(bench, data)
    check_classes(bench, data)
    shash = subset_hash(ids)
    plan = Plan(
        bench=bench,
        out_dir=out,
        device=dev,
        data=data,
        ids=list(ids),
        x=sub.x.to(dev),
        y=sub.y.to(dev),
        train_x=train.x.to(dev) if train is not None else None,
        train_y=train.y.to(dev) if train is not None else None,
        dataset_hash=data.fingerprint(),
        subset_hash=shash,
        attacker_hash=subset_hash(train.ids) if train is not None else "",
        nobox_x=data.get_split("nobox").x.to(dev) if "nobox" in set(data.split or ()) else None,
    )
    plan.cells = expand_cells(plan)
    return plan


def board_meta(plan: Plan) -> dict[str, Any]:
    """The ``meta`` of :func:`robench.report.board.build_board` for this benchmark."""
    b = plan.bench
    return {
        "benchmark": b.id,
        "benchmark_version": b.version,
        "description": b.description,
        "dataset": plan.data.name,
        "dataset_hash": plan.dataset_hash,
        "subset_hash": plan.subset_hash,
        "subset_n": len(plan.ids),
        "threat_models": [t.to_dict() for t in b.threats],
        "victims": {v.key: victim_provenance(v.source, v.defense) for v in b.victims},
        **({"comparisons": [list(p) for p in b.comparisons]} if b.comparisons else {}),
    }


def write_meta(plan: Plan) -> None:
    """``DIR/subset.json`` (ids and hash) and ``DIR/benchmark.json`` (the resolved definition and
    the board meta, read back by :meth:`robench.run.store.Store.benchmark_meta`)."""
    atomic_write_text(
        plan.out_dir / "subset.json",
        json.dumps(
            {"split": plan.bench.split, "sha256": plan.subset_hash, "ids": plan.ids}, indent=1
        )
        + "\n",
    )
    doc = {**plan.bench.to_dict(), "board_meta": board_meta(plan)}
    atomic_write_text(
        plan.out_dir / "benchmark.json", json.dumps(doc, indent=2, default=str) + "\n"
    )


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu`` or ``cuda[:i]``; cuda when unavailable is a ConfigError."""
    s = str(device)
    if s == "cpu":
        return torch.device("cpu")
    if s.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"expected a device that exists, got {s!r} but CUDA is not available in option '--device' (use cpu)"
            )
        return torch.device(s)
    raise ConfigError(f"expected 'cpu' or 'cuda', got {s!r} in option '--device'")


def benchmark_frame(store: Store, plan_or_bench: Plan | Benchmark, status: str = "ok") -> Any:
    """``store.frame(status)`` restricted to the cells of this benchmark definition (stale cells of
    an older definition in the same folder are left out)."""
    plan = plan_or_bench if isinstance(plan_or_bench, Plan) else prepare(plan_or_bench, store.dir)
    keys = {c.key for c in plan.cells}
    df = store.frame(status)
    return df[df["cell_key"].isin(keys)].reset_index(drop=True)


snapshot_guards(globals())
