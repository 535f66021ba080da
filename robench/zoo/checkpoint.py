"""Victim checkpoints: a state dict (``NAME.pt``) plus JSON metadata (``NAME.json``) beside it.

The metadata records the architecture and its config, the training data set and its fingerprint,
clean test accuracy, seed, epochs, torch version and the sha256 of the ``.pt`` file. Loading uses
``torch.load(weights_only=True)`` and refuses a file whose sha256 does not match its metadata, so a
leaderboard row always names exactly the weights that produced it.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from robench.config import make_config
from robench.errors import CheckpointError
from robench.io import atomic_write_bytes, atomic_write_text, sha256_bytes, sha256_file
from robench.victim import VICTIMS, Victim

METADATA_FORMAT = "robench.checkpoint/1"


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".pt", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".pt"), path.with_name(path.name + ".json")


def state_bytes(model: torch.nn.Module) -> bytes:
    """The serialised state dict (tensors made contiguous, on CPU)."""
    buf = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, buf)
    return buf.getvalue()


def save_victim(
    model: Victim, path: str | Path, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``PATH.pt`` (state dict) and ``PATH.json`` (metadata with its sha256), atomically."""
    if not isinstance(model, Victim) or not type(model).registry_name:
        raise CheckpointError(
            f"expected a registered Victim, got {type(model).__name__} in save_victim"
        )
    pt, js = _paths(path)
    data = state_bytes(model)
    meta: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "arch": type(model).registry_name,
        "config": model.config.to_dict(),
        "num_parameters": model.num_parameters,
        "torch_version": torch.__version__,
    }
    meta.update(metadata or {})
    meta["weights_sha256"] = sha256_bytes(data)
    meta["weights_file"] = pt.name
    atomic_write_bytes(pt, data)
    atomic_write_text(js, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (``PATH.json`` beside ``PATH.pt``)."""
    pt, js = _paths(path)
    if not js.exists():
        raise CheckpointError(
            f"expected metadata {js.name} beside {pt}, got no such file: cannot verify the weights"
        )
    try:
        meta = json.loads(js.read_text())
    except UnicodeDecodeError as e:
        raise CheckpointError(
            f"expected UTF-8 JSON, got a byte that is not at offset {e.start} in {js}"
        ) from None
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"expected valid JSON, got {e.msg} at line {e.lineno} in {js}"
        ) from None
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"expected a JSON object of metadata, got {type(meta).__name__} in {js}"
        )
    for key in ("arch", "config", "weights_sha256"):
        if key not in meta:
            raise CheckpointError(f"expected field {key!r}, got none in {js}")
    return meta


def load_victim(path: str | Path, map_location: str | torch.device = "cpu") -> Victim:
    """Build the victim named by the metadata and load its verified weights (eval mode)."""
    pt, js = _paths(path)
    if not pt.exists():
        raise CheckpointError(f"expected a checkpoint file, got no file at {pt}")
    meta = read_metadata(pt)
    digest = sha256_file(pt)
    if digest != meta["weights_sha256"]:
        raise CheckpointError(
            f"expected sha256 {meta['weights_sha256'][:16]}…, got {digest[:16]}… for {pt} "
            f"(the weights do not match {js.name}; refusing to load)"
        )
    cls = VICTIMS.get(meta["arch"])
    config = make_config(cls.Config, meta["config"], source=f"{js} field 'config'")
    model = cls(config)
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes: the error says enough
            warnings.simplefilter("ignore")
            state = torch.load(pt, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        first = (str(e).splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"expected a weights-only state dict (tensors only; pickled code is never run), got "
            f"{type(e).__name__}: {first} in {pt}"
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(
            f"expected state-dict keys of {meta['arch']}, got a mismatch ({first}) in {pt}"
        ) from None
    model.eval()
    model.checkpoint_metadata = meta  # type: ignore[attr-defined]
    model.weights_sha256 = digest  # type: ignore[attr-defined]
    return model
