"""Atomic file and folder writes and hashing: nothing half-written survives a crash.

Write failures a user can fix are one-line :class:`~robench.errors.DataError` s naming the path: a
full disk ("the disk full"), a read-only or unwritable folder; other errors pass through.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from robench.errors import DataError


def write_error(e: BaseException, path: Path) -> BaseException:
    """The one-line error for a failed write of ``path`` (``e`` itself when it is not the user's)."""
    code = getattr(e, "errno", None)
    text = str(e)
    if (
        code == errno.ENOSPC
        or "No space left" in text
        or (isinstance(e, RuntimeError) and "inline_container" in text and _nearly_full(path))
    ):
        return DataError(f"expected free disk space, got the disk full writing {path}")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        what = "a read-only file system" if code == errno.EROFS else "no write permission"
        return DataError(f"expected a writable folder, got {what} writing {path}")
    return e


def _nearly_full(path: Path) -> bool:
    for p in (path, *path.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free < (16 << 20)
            except OSError:
                return False
    return False


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(e, path) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        err = write_error(e, path)
        if err is e:
            raise
        raise err from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_folder(path: str | Path, write: Callable[[Path], None], owned: Iterable[str]) -> Path:
    """Write a whole folder at once: ``write(tmp)`` fills a temporary folder beside ``path``
    (``.NAME.tmp-PID-XXXXXXXX``), whose files are fsynced; it then replaces ``path`` by two renames
    (the old folder goes aside as ``.NAME.old-PID-XXXXXXXX`` and is removed). A reader sees the old
    set, the new set, or (for the instant between the renames) no folder; never a mix.

    ``owned``: the file names this folder may hold. An existing ``path`` with any other file is
    refused before anything is touched (nothing of the user's is ever swapped away or cleaned).
    Leftovers of a killed writer are cleaned first (:func:`recover_folder`).
    """
    path = Path(path)
    owned = set(owned)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            if not path.is_dir():
                raise DataError(f"expected a folder, got a file at {path}")
            foreign = sorted(
                p.name for p in path.iterdir() if p.name not in owned and not _orphan(p.name, owned)
            )
            if foreign:
                raise DataError(
                    f"expected a folder holding only board files, got {', '.join(foreign[:3])} in "
                    f"{path}; pass an empty or new folder"
                )
        recover_folder(path, owned)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    except OSError as e:
        raise write_error(e, path) from None
    try:
        write(tmp)
        for f in tmp.iterdir():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-", dir=path.parent))
            os.rmdir(old)
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except (OSError, RuntimeError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        err = write_error(e, path)
        if err is e:
            raise
        raise err from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _leftover(name: str, folder: str) -> re.Match[str] | None:
    """``.FOLDER.tmp-PID-XXXXXXXX`` / ``.FOLDER.old-PID-XXXXXXXX`` as :func:`atomic_folder` names them."""
    return re.fullmatch(rf"\.{re.escape(folder)}\.(tmp|old)-(\d+)-[a-z0-9_]{{8}}", name)


def _orphan(name: str, owned: set[str]) -> bool:
    """A per-file temporary of :func:`atomic_write` (``.NAME.XXXXXXXX.tmp``) of an owned file."""
    m = re.fullmatch(r"\.(.+)\.[a-z0-9_]{8}\.tmp", name)
    return bool(m and m.group(1) in owned)


def recover_folder(path: Path, owned: Iterable[str]) -> None:
    """Clean what a killed :func:`atomic_folder` writer left beside ``path``: only folders named as
    it names them, whose writer process is gone and which hold nothing but ``owned`` files; a
    folder lost between the two renames is restored from the newest such ``.old`` copy; per-file
    temporaries of owned files inside ``path`` are removed."""
    owned = set(owned)
    dead = []
    for p in sorted(path.parent.iterdir()) if path.parent.is_dir() else []:
        m = _leftover(p.name, path.name)
        if m and p.is_dir() and not _alive(int(m.group(2))):
            if all(c.name in owned for c in p.iterdir()):
                dead.append((m.group(1), p))
    olds = [p for kind, p in dead if kind == "old"]
    if not path.exists() and olds:
        newest = max(olds, key=lambda p: p.stat().st_mtime)
        os.rename(newest, path)  # killed between the two renames: the previous complete set
        dead = [(k, p) for k, p in dead if p != newest]
    for _, p in dead:
        shutil.rmtree(p, ignore_errors=True)
    if path.is_dir():
        for p in path.iterdir():
            if _orphan(p.name, owned):
                p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` (this one included) still runs on this host."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tracked_files(folder: str | Path) -> list[Path]:
    """Files under ``folder`` that git tracks (empty when git is missing, the folder is not in a
    work tree, or it does not exist yet); paths as ``folder / relative``."""
    import subprocess

    folder = Path(folder)
    if not folder.is_dir():
        return []
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "-z", "--", "."],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [folder / p for p in out.stdout.decode(errors="replace").split("\0") if p]
