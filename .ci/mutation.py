#!/usr/bin/env python
"""Mutation testing of the attack update rules and the aggregation (outside the fast suite).

For each target (a source file, the functions in it that implement documented behaviour, and the
test files that pin it) every mutation point in those functions is enumerated from the AST:

- ``delete``: a statement (assignment, augmented assignment, expression call) replaced by ``pass``;
- ``arith``: ``+`` <-> ``-``, ``*`` <-> ``/``;
- ``compare``: ``<`` -> ``<=``, ``<=`` -> ``<``, ``>`` -> ``>=``, ``>=`` -> ``>``, ``==`` <-> ``!=``;
- ``const``: a numeric literal ``c`` -> ``c + 1`` (integers) or ``2 * c`` (floats, ``1.0`` for 0);
- ``bool``: ``True`` <-> ``False``, ``not e`` -> ``e``, unary ``-e`` -> ``e``.

Each mutant is written over the source file (the original is restored afterwards, also on Ctrl-C),
the target's tests run with ``pytest -x``, and the mutant is *killed* when they fail (or time out)
and *survives* when they pass. ``--sample N`` runs a deterministic sample of N mutants per target
(seed ``--seed``); the report (``--out``, JSON) lists every survivor with its line and mutation.
Targets in ``SLOW`` (their tests run whole benchmarks) run only when named with ``--only``.

    .venv/bin/python .ci/mutation.py --sample 40 --out mutation.json
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGETS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "gradient": (
        "attacks/gradient.py",
        ("_momentum_attack", "_iterate", "_direction", "_l1_normalise", "_mean_abs_normalise",
         "_random_start", "FGSM.run", "BIM.run", "PGD.run", "_TasarIterative.run"),
        ("tests/test_attacks_whitebox.py", "tests/test_behaviour_whitebox.py",
         "tests/test_behaviour_edges.py", "tests/test_fragility.py"),
    ),
    "smart": (
        "attacks/smart.py",
        ("perceptual_loss", "joint_weights", "SMART.run"),
        ("tests/test_attacks_whitebox.py", "tests/test_behaviour_whitebox.py",
         "tests/test_behaviour_edges.py"),
    ),
    "ciasa": (
        "attacks/ciasa.py",
        ("spatial_skeleton_realignment", "bone_cosine_features", "gan_loss", "CIASA.run"),
        ("tests/test_attacks_whitebox.py", "tests/test_behaviour_whitebox.py",
         "tests/test_behaviour_edges.py"),
    ),
    "transfer": (
        "attacks/transfer.py",
        ("TransferIFGSM.run", "TransferMIFGSM.run", "Ensemble.run", "SVRE.run", "DIM.run"),
        ("tests/test_transfer.py", "tests/test_behaviour_transfer.py", "tests/test_behaviour_edges.py"),
    ),
    "transfer-ops": (
        "robench/ops/transfer.py",
        ("mean_abs_normalize", "l1_normalize", "attack_objective", "fused_logits",
         "ensemble_objective", "ascent_step", "momentum_iterate", "svre_inner_gradient"),
        ("tests/test_transfer.py", "tests/test_behaviour_transfer.py", "tests/test_behaviour_edges.py"),
    ),
    "tasar": (
        "attacks/tasar.py",
        ("posterior_gradients", "TASAR.run"),
        ("tests/test_tasar.py", "tests/test_behaviour_transfer.py"),
    ),
    "samplers": (
        "robench/ops/samplers.py",
        ("flat_gradient", "SGAdaHMC.step", "DiagonalSWAG.update", "swag_std", "swag_sample"),
        ("tests/test_tasar.py", "tests/test_ba.py", "tests/test_behaviour_transfer.py",
         "tests/test_behaviour_edges.py"),
    ),
    "aggregate": (
        "robench/report/aggregate.py",
        ("prepare", "cell_summary", "_per_sample_worst", "aggregate", "_beats_white_box",
         "transfer_matrices", "proportion", "config_part", "attack_config_sha256"),
        ("tests/test_aggregate.py", "tests/test_board.py"),
    ),
    "paired": (
        "robench/report/paired.py",
        ("mcnemar_p", "clustered_test", "clustered_p_text", "_outcomes", "_is_ensemble",
         "paired_comparison", "declared_comparisons", "verdict"),
        ("tests/test_paired.py", "tests/test_aggregate.py", "tests/test_board.py"),
    ),
    "render": (
        "robench/report/render.py",
        ("eps_display", "threat_label", "family_label", "budget", "board_sections", "_headline",
         "_attack_table", "_comparison_table", "_declared_table", "_transfer_section"),
        ("tests/test_board.py", "tests/test_defense_pairs.py"),
    ),
    "figures": (
        "robench/report/figures.py",
        ("transfer_heatmap", "robust_vs_eps", "_unit"),
        ("tests/test_board.py",),
    ),
    "evaluate": (
        "robench/run/evaluate.py",
        ("parse_threat", "_build_attacks", "evaluate"),
        ("tests/test_evaluate.py",),
    ),
    "cli": (
        "robench/commands/run.py",
        ("_broken", "run_cmd"),
        ("tests/test_cli_conventions.py",),
    ),
}  # fmt: skip

SLOW = {"cli", "evaluate"}  # whole benchmark runs per mutant: only with --only

_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
        ast.NotEq: ast.Eq}  # fmt: skip


def _functions(tree: ast.Module, names: tuple[str, ...]) -> list[ast.AST]:
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            out.append(node)
        if isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef) and f"{node.name}.{sub.name}" in names:
                    out.append(sub)
    return out


def mutation_points(tree: ast.Module, names: tuple[str, ...]) -> list[tuple[str, tuple, int, str]]:
    """``(operator, path, line, description)``; ``path`` locates the node in ``tree``."""
    points = []

    def walk(node: ast.AST, path: tuple) -> None:
        for field, value in ast.iter_fields(node):
            items = value if isinstance(value, list) else [value]
            for i, child in enumerate(items):
                if not isinstance(child, ast.AST):
                    continue
                p = (*path, (field, i if isinstance(value, list) else None))
                line = getattr(child, "lineno", 0)
                if isinstance(child, ast.Assign | ast.AugAssign | ast.AnnAssign) or (
                    isinstance(child, ast.Expr) and isinstance(child.value, ast.Call)
                ):
                    points.append(("delete", p, line, ast.unparse(child)[:80]))
                if isinstance(child, ast.BinOp) and type(child.op) in _ARITH:
                    points.append(("arith", p, line, ast.unparse(child)[:80]))
                if isinstance(child, ast.Compare) and type(child.ops[0]) in _CMP:
                    points.append(("compare", p, line, ast.unparse(child)[:80]))
                if isinstance(child, ast.Constant) and type(child.value) in (int, float):
                    points.append(("const", p, line, repr(child.value)))
                if isinstance(child, ast.Constant) and type(child.value) is bool:
                    points.append(("bool", p, line, repr(child.value)))
                if isinstance(child, ast.UnaryOp) and isinstance(child.op, ast.Not | ast.USub):
                    points.append(("bool", p, line, ast.unparse(child)[:80]))
                walk(child, p)

    for fn in _functions(tree, names):
        body_start = 1 if ast.get_docstring(fn) else 0
        idx = tree.body.index(fn) if fn in tree.body else None
        base: tuple = (("body", idx),) if idx is not None else _class_path(tree, fn)
        for j, stmt in enumerate(fn.body[body_start:], start=body_start):
            p = (*base, ("body", j))
            if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign) or (
                isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            ):
                points.append(("delete", p, stmt.lineno, ast.unparse(stmt)[:80]))
            walk(stmt, p)
    return points


def _class_path(tree: ast.Module, fn: ast.FunctionDef) -> tuple:
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.ClassDef) and fn in node.body:
            return (("body", i), ("body", node.body.index(fn)))
    raise ValueError(fn.name)


def _resolve(tree: ast.AST, path: tuple) -> tuple[ast.AST, str, int | None]:
    node = tree
    for field, i in path[:-1]:
        node = getattr(node, field)[i] if i is not None else getattr(node, field)
    field, i = path[-1]
    return node, field, i


def mutate(tree: ast.Module, op: str, path: tuple) -> ast.Module:
    t = copy.deepcopy(tree)
    parent, field, i = _resolve(t, path)
    node = getattr(parent, field)[i] if i is not None else getattr(parent, field)
    new: ast.AST
    if op == "delete":
        new = ast.Pass()
    elif op == "arith":
        new = ast.BinOp(node.left, _ARITH[type(node.op)](), node.right)
    elif op == "compare":
        new = ast.Compare(node.left, [_CMP[type(node.ops[0])](), *node.ops[1:]], node.comparators)
    elif op == "const":
        v = node.value
        new = ast.Constant(v + 1 if isinstance(v, int) else (2 * v if v else 1.0))
    elif isinstance(node, ast.Constant):
        new = ast.Constant(not node.value)
    else:
        new = node.operand
    ast.copy_location(new, node)
    if i is not None:
        getattr(parent, field)[i] = new
    else:
        setattr(parent, field, new)
    return ast.fix_missing_locations(t)


def run_tests(tests: tuple[str, ...], timeout: float) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if r.returncode == 0 else "killed"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=sorted(TARGETS), help="targets to run")
    ap.add_argument("--sample", type=int, default=0, help="mutants per target (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's tests")
    ap.add_argument("--out", default="mutation.json")
    args = ap.parse_args()
    report: dict = {"targets": {}, "started": time.time()}
    for name in args.only or sorted(set(TARGETS) - SLOW):
        rel, funcs, tests = TARGETS[name]
        tests = tuple(t for t in tests if (ROOT / t).exists())
        path = ROOT / rel
        original = path.read_text()
        tree = ast.parse(original)
        points = mutation_points(tree, funcs)
        if args.sample and len(points) > args.sample:
            points = sorted(random.Random(f"{args.seed}:{name}").sample(points, args.sample),
                            key=lambda p: p[2])  # fmt: skip
        res = {"file": rel, "tests": list(tests), "tried": 0, "killed": 0, "survived": []}

        def restore(*_: object, path: Path = path, original: str = original) -> None:
            path.write_text(original)

        old = signal.signal(signal.SIGINT, lambda *a: (restore(), sys.exit(130)))
        try:
            for op, p, line, what in points:
                try:
                    path.write_text(ast.unparse(mutate(tree, op, p)) + "\n")
                except (ValueError, TypeError, AttributeError):  # not mutable this way
                    continue
                verdict = run_tests(tests, args.timeout)
                res["tried"] += 1
                if verdict == "survived":
                    res["survived"].append({"line": line, "op": op, "code": what})
                else:
                    res["killed"] += 1
                print(f"{name}:{line} {op:<8} {verdict:<8} {what}", flush=True)
        finally:
            restore()
            signal.signal(signal.SIGINT, old)
        report["targets"][name] = res
        Path(args.out).write_text(json.dumps(report, indent=1))
    tried = sum(r["tried"] for r in report["targets"].values())
    killed = sum(r["killed"] for r in report["targets"].values())
    report["summary"] = {"tried": tried, "killed": killed, "survived": tried - killed}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"mutants: {tried} tried, {killed} killed, {tried - killed} survived")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
