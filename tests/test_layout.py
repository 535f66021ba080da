"""The shape of the core: modules stay small, the core's import graph has no cycle, and the core
never imports a plugin module by name (registries find plugins)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "robench"
PLUGIN_DIRS = {
    "victims": ROOT / "victims",
    "attacks": ROOT / "attacks",
    "defenses": ROOT / "defenses",
}
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Core modules imported anywhere in ``path`` (top level and inside functions)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from robench.ops import posterior`` imports the submodule robench.ops.posterior
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for n in names:
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n:
                out.add(n)
    return out


def graph() -> dict[str, set[str]]:
    mods = core_modules()
    known = set(mods)
    g = {m: imports_of(p, known) - {m} for m, p in mods.items()}
    # a package's __init__ importing its own submodules is not a cycle: drop package -> child edges
    return {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in g.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle_in_the_core():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_sees_function_level_imports():
    g = graph()
    # DatasetSpec.open imports open_dataset inside the method; the harness imports cells at the top
    assert "robench.data" in g["robench.run.spec"]
    assert "robench.run.cells" in g["robench.run.harness"]
    # and a package's own submodules are not edges of its __init__
    assert "robench.zoo.checkpoint" not in g["robench.zoo"]


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")) + sorted(ROOT.glob("*/[a-z]*.py")))
def test_modules_stay_under_the_line_limit(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines (> {MAX_LINES}): split it"


def test_core_never_imports_a_plugin_module_by_name():
    plugin_prefixes = tuple(f"robench.{k}." for k in PLUGIN_DIRS)
    offenders = []
    for m, p in core_modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            offenders += [f"{m} imports {x}" for x in mods if x.startswith(plugin_prefixes)]
    assert not offenders, offenders
