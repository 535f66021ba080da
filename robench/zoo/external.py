"""Your own model as a victim: a model robench does not define, pinned by the sha256 of its file.

Two kinds, written as a *source* string (what a benchmark entry or ``robench attack`` VICTIM turns
into; every consumer of a victim source goes through :func:`load_external` and
:func:`external_metadata`):

- ``torchscript:PATH#SHA256``: a TorchScript file (``torch.jit.save``), loaded with
  ``torch.jit.load`` on the CPU;
- ``module:pkg.mod:factory@PATH#SHA256``: ``factory()`` imported from ``pkg.mod`` (on
  ``sys.path``) builds the ``nn.Module``; PATH is its state dict (``torch.save(model.state_dict())``),
  loaded with ``weights_only=True`` and ``strict=True``.

The file's sha256 is checked before anything is loaded; a mismatch refuses the model. The model
must map (N, 3, T, V, M) clips to (N, K) logits; K, V and M are checked against the data set on the
first forward (the harness compares the logits' width with the class count). There is no
metadata file: provenance is the source string and the sha256.
"""

from __future__ import annotations

import importlib
import io
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robench.errors import CheckpointError, ConfigError

_SHA = re.compile(r"^[0-9a-f]{64}$")


def is_external(source: str) -> bool:
    return source.startswith(("torchscript:", "module:"))


def external_source(kind: str, path: str, sha256: str, factory: str | None = None) -> str:
    """The source string of an external model (module docstring); checks the sha's form."""
    if not isinstance(sha256, str) or not _SHA.match(sha256.lower()):
        raise ConfigError(f"expected a sha256 of 64 hex digits, got {sha256!r} in field 'sha256'")
    if kind == "torchscript":
        return f"torchscript:{path}#{sha256.lower()}"
    if not isinstance(factory, str) or factory.count(":") != 1 or not all(factory.split(":")):
        raise ConfigError(f"expected 'package.module:factory', got {factory!r} in field 'module'")
    return f"module:{factory}@{path}#{sha256.lower()}"


def parse_external(source: str) -> tuple[str, str | None, Path, str]:
    """(kind, factory or None, file path, sha256) of an external source string."""
    kind, _, rest = source.partition(":")
    body, _, sha = rest.rpartition("#")
    factory = None
    if kind == "module":
        factory, _, body = body.partition("@")
    if kind not in ("torchscript", "module") or not body or not _SHA.match(sha):
        raise ConfigError(
            f"expected 'torchscript:PATH#SHA256' or 'module:pkg.mod:factory@PATH#SHA256', got {source!r}"
        )
    return kind, factory, Path(body), sha


def external_metadata(source: str) -> dict[str, Any]:
    """What stands in for checkpoint metadata: the architecture (the factory, or ``torchscript``),
    the declared weights sha256, an empty config (nothing to check before the first forward)."""
    kind, factory, path, sha = parse_external(source)
    return {"arch": factory or "torchscript", "weights_sha256": sha, "config": {},
            "weights_file": path.name, "external": kind}  # fmt: skip


def _from_script_bytes(data: bytes, training: bool) -> TorchScriptVictim:
    m = TorchScriptVictim(torch.jit.load(io.BytesIO(data), map_location="cpu"))
    return m.train(training)


class TorchScriptVictim(nn.Module):
    """A TorchScript model as an ordinary module that pickles (an attack's worker receives its
    models pickled; a ScriptModule alone does not pickle): it travels as its ``torch.jit.save``
    bytes."""

    def __init__(self, script: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.script = script

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.script(x)

    def __reduce__(self) -> tuple:
        buf = io.BytesIO()
        torch.jit.save(self.script, buf)
        return (_from_script_bytes, (buf.getvalue(), self.training))


def load_external(source: str) -> nn.Module:
    """The model of an external source, its file verified by sha256 first (eval mode)."""
    from robench.io import sha256_file

    kind, factory, path, sha = parse_external(source)
    if not path.exists():
        raise CheckpointError(f"expected a model file, got no file at {path}")
    got = sha256_file(path)
    if got != sha:
        raise CheckpointError(
            f"expected sha256 {sha[:16]}…, got {got[:16]}… for {path} (refusing to load it)"
        )
    if kind == "torchscript":
        try:
            return TorchScriptVictim(torch.jit.load(str(path), map_location="cpu")).eval()
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"expected a TorchScript file, got {first} in {path}") from None
    mod_name, _, fn_name = str(factory).partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"expected an importable factory {factory!r}, got {e} in field 'module'"
        ) from None
    model = fn()
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"expected {factory!r} to return an nn.Module, got {type(model).__name__} in field 'module'"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(
            f"expected a state dict of {factory!r}, got {first} in {path}"
        ) from None
    return model.eval()
