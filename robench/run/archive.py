"""Store archives: a results store's finished cells as one text file that git can carry.

A long benchmark (``robench run transfer`` takes many CPU hours) outlives a machine, and the SQLite
store under ``results/`` is not tracked. ``robench results DIR --export FILE`` writes the store's
``ok`` cells with all their per-sample rows to ``FILE`` (gzipped JSON lines when the name ends in
``.gz``); ``robench results DIR --import FILE`` merges such a file into a store, creating it if
needed, so the next ``robench run`` skips those cells. A committed archive beside a board also lets
anyone recompute the board and its paired tests from the per-sample rows.

Format ``robench.store-archive/1``: a header line ``{"format": ..., "cells": N}``, then one line per
cell, sorted by cell key: ``{"cell": {column: value, ...}, "samples": {column: [values, ...]}}``
(the store's columns; ``run_id`` is dropped, an imported cell belongs to the import's run). The
export is byte-for-byte deterministic (gzip with no timestamp), so re-exporting an unchanged store
changes no tracked file.

Import checks every line before it writes anything: the header and the line count, known columns
only, ``status`` ``ok``, per-sample columns complete and of the cell's length ``n``, sample ids
unique, and ``cell_key`` equal to the sha256 of the cell's ``config_json`` (a cell whose config was
edited after the run cannot pass as the original). A bad file is refused with one line naming the
file and line, and the store is untouched. A cell the store already holds as ``ok`` is kept as it is.
The archive carries the same trust as the store it came from: it records results, it does not
re-verify them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from robench.errors import DataError
from robench.run.store import CELL_COLUMNS, SAMPLE_COLUMNS, Store, _py

FORMAT = "robench.store-archive/1"
_CELL_NAMES = [c for c, _ in CELL_COLUMNS if c != "run_id"]
_SAMPLE_NAMES = [c for c, _ in SAMPLE_COLUMNS if c != "cell_key"]


def _lines(store: Store) -> list[str]:
    cells = store.cells("ok").sort_values("cell_key")
    out = []
    for row in cells.to_dict("records"):
        samples = store.samples(row["cell_key"])
        cell = {c: _plain(row.get(c)) for c in _CELL_NAMES}
        cols = {c: [_plain(v) for v in samples[c].tolist()] for c in _SAMPLE_NAMES}
        out.append(json.dumps({"cell": cell, "samples": cols}, sort_keys=True, allow_nan=False))
    return out


def _plain(v: Any) -> Any:
    """A JSON value for a store value (the store's own conversion), pandas' NaN for NULL as None."""
    v = _py(v)
    if isinstance(v, float) and v != v:
        return None
    return v


def export_store(store: Store, path: str | Path) -> int:
    """Write the store's ``ok`` cells to ``path`` (atomically); returns the number of cells."""
    from robench.io import atomic_write_bytes

    lines = _lines(store)
    text = "\n".join([json.dumps({"format": FORMAT, "cells": len(lines)}), *lines]) + "\n"
    data = text.encode()
    if str(path).endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as f:
            f.write(data)
        data = buf.getvalue()
    atomic_write_bytes(path, data)
    return len(lines)


def read_archive(path: str | Path) -> list[dict[str, Any]]:
    """The checked cells of an archive (each ``{"cell": ..., "samples": ...}``); one-line
    :class:`DataError` naming the file and line on anything malformed."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode()
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as e:
        raise DataError(
            f"expected a readable store archive, got {type(e).__name__} in {p}"
        ) from None
    lines = text.splitlines()
    if not lines:
        raise DataError(f"expected a {FORMAT} header, got an empty file in {p}")
    head = _json(lines[0], p, 1)
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        got = head.get("format") if isinstance(head, dict) else type(head).__name__
        raise DataError(f"expected format {FORMAT!r}, got {got!r} in {p} line 1")
    if head.get("cells") != len(lines) - 1:
        raise DataError(
            f"expected {head.get('cells')} cell lines (the header's count), got {len(lines) - 1} in {p}"
        )
    return [_check(_json(t, p, i), p, i) for i, t in enumerate(lines[1:], start=2)]


def _json(text: str, p: Path, line: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"expected JSON, got {e.msg} in {p} line {line}") from None


def _check(obj: Any, p: Path, line: int) -> dict[str, Any]:
    where = f"in {p} line {line}"
    if not isinstance(obj, dict) or set(obj) != {"cell", "samples"}:
        raise DataError(f"expected an object with 'cell' and 'samples', got something else {where}")
    cell, samples = obj["cell"], obj["samples"]
    if not isinstance(cell, dict) or not isinstance(samples, dict):
        raise DataError(f"expected 'cell' and 'samples' objects, got something else {where}")
    unknown = sorted(set(cell) - set(_CELL_NAMES)) + sorted(set(samples) - set(_SAMPLE_NAMES))
    if unknown:
        raise DataError(f"expected store columns, got unknown {unknown[0]!r} {where}")
    missing = [c for c in _SAMPLE_NAMES if c not in samples]
    if missing:
        raise DataError(f"expected sample column {missing[0]!r}, got none {where}")
    if cell.get("status") != "ok":
        raise DataError(f"expected status 'ok', got {cell.get('status')!r} {where}")
    config = cell.get("config_json")
    key = cell.get("cell_key")
    if not isinstance(config, str) or hashlib.sha256(config.encode()).hexdigest() != key:
        raise DataError(
            f"expected cell_key = sha256(config_json), got a mismatch for {key!r} {where}"
        )
    n = cell.get("n")
    for c in _SAMPLE_NAMES:
        if not isinstance(samples[c], list) or len(samples[c]) != n:
            raise DataError(
                f"expected {n} values (the cell's n) in {c!r}, got another count {where}"
            )
    if len(set(samples["sample_id"])) != n:
        raise DataError(f"expected unique sample ids, got repeats {where}")
    return obj


def import_archive(store: Store, path: str | Path) -> tuple[int, int]:
    """Merge an archive into ``store``: ``(cells added, cells already there as ok)``. Every line
    is checked before the first write; existing ``ok`` cells are never replaced."""
    return merge_cells(store, read_archive(path), path)


def merge_cells(store: Store, entries: list[dict[str, Any]], source: str | Path) -> tuple[int, int]:
    """Write checked archive ``entries`` (from :func:`read_archive`) into ``store``, skipping the
    cells it holds as ``ok``; one run row records ``source``."""
    have = store.cell_status(e["cell"]["cell_key"] for e in entries)
    new = [e for e in entries if have.get(e["cell"]["cell_key"]) != "ok"]
    if new:
        run_id = store.begin_run("import", ["results", "--import", str(source)])
        for e in new:
            store.write_cell({**e["cell"], "run_id": run_id}, e["samples"])
        store.finish_run(run_id)
    return len(new), len(entries) - len(new)
