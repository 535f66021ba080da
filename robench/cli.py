"""The ``robench`` command line: one group; commands live in ``robench/commands/*.py``."""

from __future__ import annotations

import errno
import importlib
import pkgutil
import sqlite3
import sys

import click

from robench import __version__
from robench.errors import RobenchError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="robench")
def cli() -> None:
    """Adversarial-robustness benchmark for skeleton-based action recognition."""


def _add_commands() -> None:
    import robench.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"robench.commands.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            cli.add_command(command)


_add_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line on stderr and exit 2."""
    try:
        rv = cli.main(args=argv, prog_name="robench", standalone_mode=False)
        if isinstance(rv, int) and not isinstance(
            rv, bool
        ):  # a command's ctx.exit(code) / Exit(code)
            return rv
    except RobenchError as e:
        click.echo(f"robench: error: {e}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("robench: aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except (BrokenPipeError, ConnectionError, TimeoutError):
        raise
    except OSError as e:  # a file, folder or disk the user can fix: one line, never a traceback
        click.echo(f"robench: error: {_os_text(e)}", err=True)
        return 2
    except sqlite3.Error as e:
        click.echo(f"robench: error: results database: {_sqlite_text(e)}", err=True)
        return 2
    return 0


def _os_text(e: OSError) -> str:
    where = e.filename or "?"
    if e.errno == errno.ENOSPC:
        return f"expected free disk space, got the disk full at {where}"
    if e.errno == errno.EROFS:
        return f"expected a writable folder, got a read-only file system at {where}"
    return f"expected to read or write {where}, got {e.strerror or type(e).__name__}"


def _sqlite_text(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "disk is full" in text:
        return "expected free disk space, got the disk full"
    return text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
