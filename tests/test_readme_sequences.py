"""The README's shell sequences for your own data and your own model run as written (bash, the
installed ``robench`` on PATH) in a folder holding the files they name, made here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def block(tag: str) -> str:
    found = re.findall(rf"<!-- test: {tag} -->\n```bash\n(.*?)\n```\n", README.read_text(), re.S)
    assert len(found) == 1, f"expected one ```bash block after <!-- test: {tag} --> in README.md"
    return found[0]


def run(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def write_folder(d: Path) -> None:
    """Two actions of a 5-joint arm (raise vs swing), 6 performers, 8 clips each, 10-16 frames."""
    (d / "clips").mkdir()
    rng = np.random.default_rng(0)
    rows = ["id,label,split,subject"]
    for p in range(1, 7):
        for r in range(8):
            label = ("raise", "swing")[r % 2]
            t = rng.integers(10, 17)
            phase = np.linspace(0, 1, t)[:, None]
            arm = np.zeros((t, 5, 3))
            arm[:, :, 1] = np.arange(5) * 0.3  # a chain of 30 cm bones along y
            if label == "raise":
                arm[:, 2:, 2] += phase * 0.4 * np.arange(1, 4)
            else:
                arm[:, 2:, 0] += np.sin(6 * phase) * 0.2 * np.arange(1, 4)
            arm += rng.normal(0, 0.01, arm.shape) + [0.1 * p, 0, 1.0]
            np.save(d / "clips" / f"p{p}_r{r}.npy", arm.astype(np.float32))
            rows.append(f"p{p}_r{r},{label},{'train' if p <= 4 else 'test'},{p}")
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    topo = {"name": "arm5", "joint_names": ["root", "a", "b", "c", "d"],
            "parents": [-1, 0, 1, 2, 3], "center": 0}  # fmt: skip
    (d / "my_skeleton.json").write_text(json.dumps(topo))


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    d = tmp_path_factory.mktemp("own-data")
    write_folder(d)
    return d, run(block("readme-own-data"), d)


def test_own_data_sequence_runs_as_written(own_data):
    d, proc = own_data
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "48 clips" in out and "topology arm5 (5 joints)" in out
    assert "bone lengths (m): median 0.3" in out
    assert out.count("nearest centroid, time-averaged pose") == 2 and "McNemar p" in out
    assert "success" in out and (d / "my_stgcn.pt").exists() and (d / "my_stgcn.json").exists()
    meta = json.loads((d / "my_stgcn.json").read_text())
    assert meta["train"]["val_fraction"] == 0.2 and meta["train"]["augment"] is True


def test_own_model_sequence_runs_as_written(own_data):
    from robench.zoo.checkpoint import load_victim

    d, first = own_data
    assert first.returncode == 0, first.stderr
    model = load_victim(d / "my_stgcn.pt").eval()
    example = torch.zeros(2, 3, 16, 5, 1)
    example[:, :, :10] = torch.randn(2, 3, 10, 5, 1)
    torch.jit.save(torch.jit.trace(model, example), str(d / "my_model.ts"))
    proc = run(block("readme-own-model"), d)
    assert proc.returncode == 0, proc.stderr
    assert "success" in proc.stdout and "torchscript" in proc.stdout
