"""Declared dependencies match the imports, and the project cites nothing outside the repository.

- Every third-party top-level module imported (``ast`` scan) by the shipped packages (robench/,
  victims/, attacks/, defenses/) belongs to a distribution declared in ``pyproject.toml``'s
  ``dependencies`` (or, for torchattacks, its ``torchattacks`` extra); every module imported by the
  tests belongs to one of those or to the ``test`` extra.
- Every runtime requirement is imported by the shipped packages, every extra's by them or the
  tests, or the requirement sits in :data:`NOT_IMPORTED` with its reason.
- ``.ci/setup`` installs torchattacks after robench, with ``--no-deps`` and the extra's pin.
- No file cites the team's notes outside the repository (their file names are built below so that
  this file does not match itself).

Offline and fast: reads files and the installed distributions' metadata only.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("robench", "victims", "attacks", "defenses")
OWN = {"robench", "victims", "attacks", "defenses"}

# Declared requirements that no project file imports, each with the reason it is declared.
NOT_IMPORTED = {
    "scipy": "`import torchattacks` imports scipy (tifgsm.py, the one-pixel attack's differential "
    "evolution) and .ci/setup installs torchattacks with --no-deps",
    "ruff": "the linter the code is kept to ([tool.ruff] in pyproject.toml); a tool, never imported",
}
# Third-party modules imported only through an extra, and that extra's name.
VIA_EXTRA = {"torchattacks": "torchattacks"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    assert m, f"unparsable requirement {req!r}"
    return _norm(m.group(1))


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _imports(dirs: tuple[str, ...]) -> dict[str, set[str]]:
    """Top-level module -> files importing it (absolute imports only; relative ones are own)."""
    found: dict[str, set[str]] = {}
    for d in dirs:
        for path in sorted((ROOT / d).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _test_modules() -> set[str]:
    """The tests' own modules (conftest, test_*), imported by sibling tests."""
    return {p.stem for p in (ROOT / "tests").glob("*.py")}


def _third_party(found: dict[str, set[str]], local: set[str]) -> dict[str, set[str]]:
    skip = set(sys.stdlib_module_names) | OWN | local | {"__future__"}
    return {m: files for m, files in found.items() if m not in skip}


@functools.cache
def _module_owners() -> dict[str, list[str]]:
    return md.packages_distributions()


def _distribution(module: str, files: set[str]) -> str:
    dists = _module_owners().get(module)
    assert dists, (
        f"expected an installed distribution providing module {module!r} (imported by "
        f"{sorted(files)}), got none; run `bash .ci/setup`"
    )
    return _norm(dists[0])


def test_shipped_imports_are_declared(project: dict) -> None:
    declared = {_req_name(r) for r in project["dependencies"]}
    extras = {k: {_req_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    undeclared = []
    for module, files in sorted(_third_party(_imports(SHIPPED), set()).items()):
        dist = _distribution(module, files)
        extra = VIA_EXTRA.get(module)
        ok = dist in declared or (extra is not None and dist in extras.get(extra, set()))
        if not ok:
            undeclared.append(f"{module} (distribution {dist}, imported by {sorted(files)})")
    assert not undeclared, f"expected every imported module declared, got undeclared: {undeclared}"


def test_test_imports_are_declared(project: dict) -> None:
    allowed = {_req_name(r) for r in project["dependencies"]}
    for reqs in project["optional-dependencies"].values():
        allowed |= {_req_name(r) for r in reqs}
    undeclared = [
        f"{m} ({_distribution(m, f)}, imported by {sorted(f)})"
        for m, f in sorted(_third_party(_imports(("tests",)), _test_modules()).items())
        if _distribution(m, f) not in allowed
    ]
    assert not undeclared, f"expected every test import declared, got undeclared: {undeclared}"


def test_every_declared_requirement_is_used(project: dict) -> None:
    shipped = _third_party(_imports(SHIPPED), set())
    used_shipped = {_distribution(m, f) for m, f in shipped.items()}
    tested = _third_party(_imports(("tests",)), _test_modules())
    used = used_shipped | {_distribution(m, f) for m, f in tested.items()}
    runtime = {_req_name(r) for r in project["dependencies"]}
    extra = {_req_name(r) for v in project["optional-dependencies"].values() for r in v}
    unused = sorted((runtime - used_shipped) | (extra - used))
    unused = [name for name in unused if name not in NOT_IMPORTED]
    assert not unused, (
        "expected every runtime requirement imported by the shipped packages (an extra's by them or "
        f"the tests), or listed in NOT_IMPORTED with a reason, got unused: {unused}"
    )
    stale = sorted(set(NOT_IMPORTED) - runtime - extra)
    assert not stale, f"expected NOT_IMPORTED to name declared requirements only, got {stale}"
    also_used = sorted(set(NOT_IMPORTED) & used)
    assert not also_used, f"expected NOT_IMPORTED entries to be really unimported, got {also_used}"


def test_scipy_reason_holds() -> None:
    """The allow-list's reason for scipy: the installed torchattacks imports it at import time."""
    try:
        dist = md.distribution("torchattacks")
    except md.PackageNotFoundError:
        pytest.skip("torchattacks is not installed")
    sources = [f for f in dist.files or [] if f.name in ("tifgsm.py", "_differential_evolution.py")]
    assert sources, "expected torchattacks' tifgsm.py and _differential_evolution.py"
    for f in sources:
        text = Path(dist.locate_file(f)).read_text()
        assert re.search(r"^from scipy[ .]", text, re.M), f"expected a scipy import in {f}"
    init = Path(dist.locate_file("torchattacks/__init__.py")).read_text()
    assert "tifgsm" in init and "onepixel" in init, "expected torchattacks/__init__ to import both"


def test_setup_installs_torchattacks_last_without_deps(project: dict) -> None:
    setup = (ROOT / ".ci" / "setup").read_text()
    pin = project["optional-dependencies"]["torchattacks"][0]
    ta = re.search(r'^\s*pipq --no-deps "(torchattacks==[^"]+)"', setup, re.M)
    robench = re.search(r'^\s*pipq -e "\.\[test\]"', setup, re.M)
    assert ta and robench, "expected .ci/setup to install robench and torchattacks"
    assert ta.group(1) == pin, f"expected .ci/setup to install {pin}, got {ta.group(1)}"
    # after robench, so that no resolver run sees torchattacks' unmet requirements
    assert ta.start() > robench.start(), (
        "expected .ci/setup to install torchattacks after robench, got it before (pip then prints a "
        "resolver ERROR about torchattacks' torchvision and requests requirements)"
    )


NOTES = ("ALGORITHMS" + ".md", "DESIGN" + ".md", ".." + "/shared")


def test_no_reference_to_files_outside_the_repository() -> None:
    paths = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for d in (*SHIPPED, "tests", ".ci"):
        paths += [p for p in (ROOT / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    hits = []
    for path in paths:
        data = path.read_bytes()
        hits += [f"{path.relative_to(ROOT)}: {n}" for n in NOTES if n.encode() in data]
    assert not hits, f"expected no citation of files outside the repository, got {hits}"
