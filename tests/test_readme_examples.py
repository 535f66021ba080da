"""The README's "Adding a victim" and "Adding an attack" examples run verbatim, each in a fresh
interpreter (the names they register never reach this process's registries), and end by passing
every contract check of :mod:`robench.testing`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from robench.attack import ATTACKS
from robench.testing import ATTACK_CHECKS, VICTIM_CHECKS
from robench.victim import VICTIMS

README = Path(__file__).resolve().parents[1] / "README.md"
# marker -> (README section holding it, name it registers, registry, checks it must run)
EXAMPLES = {
    "readme-victim": ("### Adding a victim", "tinytcn", VICTIMS, VICTIM_CHECKS),
    "readme-attack": ("### Adding an attack", "rs-fgsm", ATTACKS, ATTACK_CHECKS),
}


def section(text: str, heading: str) -> str:
    """The lines from ``heading`` to the next heading (outside code fences)."""
    lines = text.splitlines(keepends=True)
    start = lines.index(heading + "\n")
    fenced, end = False, len(lines)
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("```"):
            fenced = not fenced
        elif not fenced and lines[i].startswith("#"):
            end = i
            break
    return "".join(lines[start:end])


def example(tag: str) -> str:
    """The ```python block right after ``<!-- test: TAG -->``, inside its section."""
    heading = EXAMPLES[tag][0]
    text = README.read_text(encoding="utf-8")
    assert heading + "\n" in text, f"README.md has no section {heading!r}"
    found = re.findall(
        rf"<!-- test: {tag} -->\n```python\n(.*?)\n```\n", section(text, heading), re.S
    )
    assert len(found) == 1, (
        f"expected one ```python block after <!-- test: {tag} --> under {heading!r}"
    )
    return found[0] + "\n"


@pytest.mark.parametrize("tag", sorted(EXAMPLES))
def test_readme_example_runs_verbatim(tag: str, tmp_path: Path) -> None:
    _, name, registry, checks = EXAMPLES[tag]
    code = example(tag)
    call = "check_victim(" if registry is VICTIMS else "check_attack("
    assert call in code, f"the {tag} example must end by running robench.testing's {call}...)"
    script = tmp_path / f"{tag.replace('-', '_')}.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"README example {tag} failed:\n{proc.stdout}\n{proc.stderr}"
    ran = [n for n, _ in checks if repr(n) in proc.stdout]
    assert ran == [n for n, _ in checks], f"expected every check to run, got {proc.stdout!r}"
    assert name not in registry.names()  # registered in the subprocess only


def test_readme_evaluate_example_runs_verbatim(tmp_path: Path) -> None:
    """The Python-API block (three lines) under "## Python API" prints the evaluation summary."""
    EXAMPLES_API = {"readme-evaluate": ("## Python API",)}
    text = README.read_text(encoding="utf-8")
    (code,) = re.findall(
        r"<!-- test: readme-evaluate -->\n```python\n(.*?)\n```\n",
        section(text, EXAMPLES_API["readme-evaluate"][0]), re.S,
    )  # fmt: skip
    assert len([s for s in code.splitlines() if s.strip()]) == 3, "the README promises three lines"
    script = tmp_path / "readme_evaluate.py"
    script.write_text(code + "\n", encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "threat linf-eps0.01m, n = 32 clips" in out
    for row in ("clean", "fgsm", "pgd", "worst case"):  # the 3 lines run what they name
        assert re.search(rf"^{row}\s+\d+\.\d%\s+\[", out, re.M), (row, out)
