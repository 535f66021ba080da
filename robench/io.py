"""Atomic file and folder writes and hashing: nothing half-written survives a crash.

Write failures a user can fix are one-line :class:`~robench.errors.DataError` s naming the path: a
full disk ("the disk full"), a read-only or unwritable folder; other errors pass through.
"""

from __future__ import annotations

import errno
import hashlib
import os
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
    (``.NAME.tmp-PID-*``), which then replaces ``path`` by two renames (the old folder goes aside as
    ``.NAME.old-PID-*`` and is removed). A reader sees the old set or the new one, never a mix.

    ``owned``: the file names this folder may hold; an existing ``path`` with any other file is
    refused (nothing of the user's is ever swapped away). Leftovers of a killed writer (a dead
    process's ``.tmp``/``.old`` folders, per-file ``.*.tmp`` files) are cleaned first, and a folder
    lost between the two renames is restored from its ``.old`` copy.
    """
    path = Path(path)
    owned = set(owned)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_folder(path)
        if path.exists():
            if not path.is_dir():
                raise DataError(f"expected a folder, got a file at {path}")
            foreign = sorted(p.name for p in path.iterdir() if p.name not in owned)
            if foreign:
                raise DataError(
                    f"expected a folder holding only board files, got {', '.join(foreign[:3])} in "
                    f"{path}; pass an empty or new folder"
                )
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    except OSError as e:
        raise write_error(e, path) from None
    try:
        write(tmp)
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


def recover_folder(path: Path) -> None:
    """Clean what a killed :func:`atomic_folder` writer left beside ``path`` (see there)."""
    leftovers = sorted(path.parent.glob(f".{path.name}.tmp-*")) + sorted(
        path.parent.glob(f".{path.name}.old-*")
    )
    dead = [p for p in leftovers if not _alive(p.name)]
    olds = [p for p in dead if ".old-" in p.name]
    if not path.exists() and olds:
        os.rename(olds[-1], path)  # killed between the two renames: the previous complete set
        dead.remove(olds[-1])
    for p in dead:
        shutil.rmtree(p, ignore_errors=True)
    if path.is_dir():
        for p in path.glob(".*.tmp"):  # a per-file atomic write of an older robench, killed
            p.unlink(missing_ok=True)


def _alive(name: str) -> bool:
    """Whether the process whose pid is in a leftover's name (``.NAME.tmp-PID-...``) still runs."""
    try:
        pid = int(name.rsplit("-", 2)[-2])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return False
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
