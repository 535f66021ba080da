"""Performance ratios measured side by side in one process (``robench bench``).

Each measurement is a function ``() -> dict`` registered in :data:`BENCHMARKS` (use
``@register_bench("name")``); it returns at least ``ratio`` (float) and ``detail`` (str), and may give
``goal`` (str, e.g. "<= 1.10"). Ratios rather than seconds, because the machine (and whoever else
shares it) changes absolute times but hardly the ratio of two things timed alternately.

``harness-overhead``: the time of one 50-step PGD cell run through the harness — victim loaded from
its checkpoint, clean logits, the zero-gradient and forward-randomness checks, the attack in its own
worker process (fork, the pickled grant, the worker's checks), the harness's judgement (threat
re-check, pristine-model verification, stored-norm check), adversarial predictions, per-sample
metrics and the store transaction — divided by the time of 50 bare forward+backward passes (CE,
gradient w.r.t. the input) of the same victim on the same batch (the samples the attack runs on).
The detail line also gives the cell against the same PGD attack called in-process on that batch
(what the harness adds to the attack itself). The best of ``repeats`` alternating trials is taken.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from robench.errors import ConfigError

BENCHMARKS: dict[str, Callable[[], dict[str, Any]]] = {}


def register_bench(
    name: str,
) -> Callable[[Callable[[], dict[str, Any]]], Callable[[], dict[str, Any]]]:
    """Decorator adding a measurement to :data:`BENCHMARKS`; a duplicate name raises ConfigError."""

    def deco(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        if name in BENCHMARKS and BENCHMARKS[name] is not fn:
            raise ConfigError(f"expected a new bench name, got {name!r} twice in robench.run.bench")
        BENCHMARKS[name] = fn
        return fn

    return deco


def run_benchmarks(names: Iterable[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Run the named measurements (all when None), in registration order."""
    chosen = list(BENCHMARKS) if names is None else list(names)
    return [(n, BENCHMARKS[n]()) for n in chosen]


def _victim_source(tmp: Path) -> tuple[str, str]:
    """The zoo ST-GCN when shipped, else an untrained ST-GCN of the zoo recipe saved under ``tmp``."""
    from robench import zoo

    if "stgcn.synth_ntu25" in zoo.names():
        return "stgcn.synth_ntu25", "zoo stgcn.synth_ntu25"
    from robench.victim import build_victim
    from robench.zoo.checkpoint import save_victim

    cfg = zoo.recipe("stgcn")["config"]
    save_victim(build_victim("stgcn", num_classes=16, **cfg), tmp / "stgcn_untrained.pt")
    return str(tmp / "stgcn_untrained.pt"), "untrained stgcn (no zoo checkpoint)"


def harness_overhead(steps: int = 50, n: int = 32, repeats: int = 3) -> dict[str, Any]:
    """Harness PGD-``steps`` cell time / ``steps`` bare forward+backward passes (see module doc)."""
    from robench.run.benchmark import parse_benchmark
    from robench.run.harness import prepare
    from robench.run.worker import tune_malloc

    tune_malloc()  # the bare loop runs with the allocator settings the harness and workers use
    from robench.run.store import Store
    from robench.zoo import create_victim

    with tempfile.TemporaryDirectory(prefix="robench-bench-") as tmp_s:
        tmp = Path(tmp_s)
        source, what = _victim_source(tmp)
        bench = parse_benchmark(
            {
                "id": "bench-overhead",
                "dataset": {"name": "synth-ntu25", "seed": 0},
                "subset": {"n": n, "seed": 0},
                "victims": [source],
                "attacks": [{"name": "pgd", "params": {"steps": steps}}],
                "threats": [{"norm": "linf", "eps": 0.01}],
                "batch_size": n,
            },
            source="bench-overhead",
            base_dir=tmp,
        )
        plan = prepare(bench, tmp / "results")
        cell = plan.cells[0]
        net = create_victim(bench.victims[0].source).eval()
        with torch.inference_mode():
            correct = net(plan.x).argmax(1) == plan.y
        xb, yb = plan.x[correct], plan.y[correct]
        harness_t, bare_t, attack_t = [], [], []
        from robench.access import WhiteBox
        from robench.threat import ThreatModel

        attack, threat = cell.attack.build(), ThreatModel(eps=0.01)
        for r in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                xr = xb.detach().clone().requires_grad_(True)
                with torch.enable_grad():
                    loss = F.cross_entropy(net(xr), yb, reduction="sum")
                    torch.autograd.grad(loss, xr)
            bare_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            attack(WhiteBox(net), xb, yb, threat, torch.Generator().manual_seed(0))
            attack_t.append(time.perf_counter() - t0)
            plan._models.clear()
            with Store(tmp / f"results{r}") as store:
                t0 = time.perf_counter()
                rec = plan.run_cell(cell)
                store.write_cell(dict(rec["cell"], run_id=0), rec["samples"])
                harness_t.append(time.perf_counter() - t0)
            if rec["cell"]["status"] != "ok":
                raise ConfigError(
                    f"expected the benchmark cell to run, got {rec['cell']['status']}: {rec['cell']['error']} in harness-overhead"
                )
    h, b, a = min(harness_t), min(bare_t), min(attack_t)
    return {
        "ratio": h / b,
        "goal": "<= 1.10",
        "harness_s": h,
        "bare_s": b,
        "attack_s": a,
        "detail": (
            f"PGD-{steps} cell {h:.3f}s vs {steps} bare fwd+bwd {b:.3f}s on {int(correct.sum())} clips "
            f"({what}, {torch.get_num_threads()} threads, best of {repeats}); the same PGD called "
            f"in-process {a:.3f}s: harness/in-process attack {h / a:.3f}"
        ),
    }


register_bench("harness-overhead")(harness_overhead)


# ---------------------------------------------------------------- TASAR / motion model rows
def _small_stgcn(num_classes: int = 16) -> torch.nn.Module:
    from robench.victim import build_victim

    return build_victim("stgcn", num_classes=num_classes, width=16, depth=6).eval()


def tasar_vs_ifgsm(n: int = 16, iters: int = 5, repeats: int = 3) -> dict[str, Any]:
    """One TASAR iteration (K=3 heads × S=20 posterior samples, motion term on) / one I-FGSM iteration.

    Both on the same small ST-GCN (width 16, depth 6, untrained) and the same ``n`` synth-ntu25 clips;
    I-FGSM's iteration is one forward+backward (CE, gradient w.r.t. the input). TASAR's per-iteration
    time is ``(t(1 + iters) - t(1)) / iters`` of whole attack calls, so the AR fit, the cache lookup
    and the (prebuilt, small-budget) post-training are excluded. Best of ``repeats``.
    """
    from robench.access import Transfer
    from robench.attack import create_attack
    from robench.data.synth import generate
    from robench.threat import ThreatModel

    data = generate(seed=0, n_train=64, n_test=n)
    train, test = data.get_split("train"), data.get_split("test")
    net = _small_stgcn()
    access = Transfer([net], train.x, train.y)
    threat = ThreatModel(eps=0.01)
    with tempfile.TemporaryDirectory(prefix="robench-bench-") as tmp:
        small = {"post_steps": 5, "snapshots": 5, "inner_steps": 2, "cache_dir": tmp}
        one, more = (create_attack("tasar", iterations=k, **small) for k in (1, 1 + iters))
        one(access, test.x, test.y, threat)  # builds the posterior once (memory + tmp cache)
        tasar_t, ifgsm_t = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(iters):
                xr = test.x.detach().clone().requires_grad_(True)
                with torch.enable_grad():
                    torch.autograd.grad(F.cross_entropy(net(xr), test.y, reduction="sum"), xr)
            ifgsm_t.append((time.perf_counter() - t0) / iters)
            t0 = time.perf_counter()
            one(access, test.x, test.y, threat)
            t1 = time.perf_counter()
            more(access, test.x, test.y, threat)
            tasar_t.append(max((time.perf_counter() - t1) - (t1 - t0), 0.0) / iters)
    a, b = min(tasar_t), min(ifgsm_t)
    return {
        "ratio": a / b,
        "goal": "<= 3",
        "tasar_iter_s": a,
        "ifgsm_iter_s": b,
        "detail": (
            f"TASAR iteration {1000 * a:.1f} ms vs I-FGSM iteration {1000 * b:.1f} ms on {n} clips, "
            f"stgcn width 16 depth 6 ({torch.get_num_threads()} threads, best of {repeats})"
        ),
    }


def s2mifgsm_vs_ifgsm(n: int = 16, iters: int = 5, repeats: int = 3) -> dict[str, Any]:
    """One S²MI-FGSM iteration (the no-box attack on the zoo manifold's recipe: ST-GCN encoder width
    16, depth 4, 128-d; InfoNCE with batch and centroid negatives; SMI transform) / one white-box
    I-FGSM iteration (forward+backward of the victim, a small ST-GCN of the zoo recipe: width 16,
    depth 6) on the same ``n`` synth-ntu60 clips. Per-iteration time of the attack is
    ``(t(1 + iters) - t(1)) / iters`` of whole calls, so the AR fit and the k-means are excluded.
    Best of ``repeats``."""
    from robench.access import NoBox
    from robench.attack import create_attack
    from robench.data.synth import generate
    from robench.manifold import RECIPE
    from robench.manifold.encoders import graph_encoder
    from robench.manifold.pretrain import PretrainConfig
    from robench.threat import ThreatModel

    data = generate(seed=0, n_train=0, n_test=n, world="synth-ntu60")
    x, y = data.x, data.y
    net = _small_stgcn(60)
    cfg = PretrainConfig(**RECIPE)
    enc = graph_encoder(cfg.dim, cfg.width, cfg.depth).eval()
    access = NoBox(x, enc, x)
    threat = ThreatModel(eps=0.01)
    one, more = (create_attack("s2mi-fgsm", steps=k) for k in (1, 1 + iters))
    one(access, x, torch.full_like(y, -1), threat)
    attack_t, ifgsm_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            xr = x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                torch.autograd.grad(F.cross_entropy(net(xr), y, reduction="sum"), xr)
        ifgsm_t.append((time.perf_counter() - t0) / iters)
        t0 = time.perf_counter()
        one(access, x, torch.full_like(y, -1), threat)
        t1 = time.perf_counter()
        more(access, x, torch.full_like(y, -1), threat)
        attack_t.append(max((time.perf_counter() - t1) - (t1 - t0), 0.0) / iters)
    a, b = min(attack_t), min(ifgsm_t)
    return {
        "ratio": a / b,
        "goal": "<= 2",
        "s2mifgsm_iter_s": a,
        "ifgsm_iter_s": b,
        "detail": (
            f"S2MI-FGSM iteration {1000 * a:.1f} ms vs white-box I-FGSM iteration {1000 * b:.1f} ms "
            f"on {n} clips ({torch.get_num_threads()} threads, best of {repeats})"
        ),
    }


def tvar_fit_256x64(repeats: int = 2) -> dict[str, Any]:
    """Seconds to fit the time-varying AR(2)+AR(1) motion model to 256 clips of 64 frames (25×3×2)."""
    from robench.ops.motion import fit_tvar

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, 64, 25, 2, generator=g).cumsum(2) * 0.01  # random-walk trajectories
    x[1::2, :, :, :, 1] = 0  # absent second bodies
    x[:, :, 56:] *= (torch.arange(256) % 4 != 0).view(-1, 1, 1, 1, 1)  # some padded tails
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit_tvar(x)
        times.append(time.perf_counter() - t0)
    s = min(times)
    return {
        "ratio": s,
        "goal": "<= 3 (seconds)",
        "seconds": s,
        "detail": f"fit_tvar on (256, 3, 64, 25, 2): {s:.2f}s ({torch.get_num_threads()} threads, best of {repeats})",
    }


def ntu_import(n: int = 100, frames: int = 100, repeats: int = 2) -> dict[str, Any]:
    """Clips per second of ``import_ntu`` on ``n`` raw ``.skeleton`` files of the real layout
    (``frames`` frames, every other clip an interaction of two bodies, as in NTU-60), written once
    by :func:`~robench.data.formats.ntu_skeleton.write_skeleton`; the best of ``repeats`` reads."""
    import numpy as np

    from robench.data.formats.ntu_skeleton import import_ntu, write_skeleton

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="robench-bench-") as tmp_s:
        tmp = Path(tmp_s)
        for i in range(n):
            walk = lambda: rng.normal(0, 0.01, (frames, 25, 3)).cumsum(0) + [0, 0, 3]  # noqa: E731
            bodies = {"72057594037931101": walk().astype(np.float32)}
            if i % 2:
                bodies["72057594037931102"] = walk().astype(np.float32)
            write_skeleton(tmp / f"S001C001P{i % 40 + 1:03d}R001A{i % 60 + 1:03d}.skeleton", bodies)
        size = sum(f.stat().st_size for f in tmp.iterdir())
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            import_ntu([tmp])
            times.append(time.perf_counter() - t0)
    s = min(times)
    return {
        "ratio": n / s,
        "goal": ">= 20 (clips per second)",
        "seconds": s,
        "detail": f"import_ntu on {n} files of {frames} frames ({size / 1e6:.1f} MB, half with two "
        f"bodies): {s:.2f}s = {n / s:.0f} clips/s, {size / 1e6 / s:.1f} MB/s (best of {repeats}; "
        f"NTU-60's 56,880 files would take {56880 / (n / s) / 60:.0f} min)",
    }


register_bench("tasar-vs-ifgsm")(tasar_vs_ifgsm)
register_bench("tvar-fit-256x64")(tvar_fit_256x64)
register_bench("s2mifgsm-vs-ifgsm")(s2mifgsm_vs_ifgsm)
register_bench("ntu-import")(ntu_import)
