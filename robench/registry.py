"""Decorator registries for plugins (victims, attacks, defenses).

A registry maps a name to a class. Plugins register themselves with a decorator
(``@register_victim("stgcn")``); the core never imports a plugin module by name: on first lookup the
registry imports every module of its plugin package (``robench.victims`` ...) and every entry point of
its group (``robench.victims`` for third-party packages), so adding a plugin is adding one file.
A duplicate name raises; an unknown name raises with the closest registered names.

A plugin that fails to import (a syntax error, a missing dependency, an entry point naming a missing
module, a duplicate name) is isolated: its names are unavailable, one warning line on stderr names
the file or entry point and the error (also kept in ``Registry.broken``), and every other plugin and
command keeps working. Looking up a name that only the broken plugin could have provided says so.

A plugin may also register a *family*: ``@ATTACKS.register_family("torchattacks")`` on a class whose
constructor takes the member's name first, so ``torchattacks:PGD`` resolves to that class built with
``"PGD"`` without the core naming the plugin module.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from robench.errors import ConfigError, UnknownNameError

T = TypeVar("T")
WARN = True  # print the one-line warning for a broken plugin (the attack workers' preload: False)


def suggest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The registered names closest to ``name`` (difflib ratio), best first."""
    cands = sorted(set(candidates))
    close = difflib.get_close_matches(name, cands, n=n, cutoff=0.4)
    if not close:
        close = [c for c in cands if name.split(".")[0] and c.startswith(name.split(".")[0])][:n]
    return close


class Registry(Generic[T]):
    """Name -> object registry with lazy plugin discovery."""

    def __init__(self, kind: str, package: str, group: str, how_to: str) -> None:
        self.kind = kind
        self.package = package
        self.group = group
        self.how_to = how_to
        self._items: dict[str, T] = {}
        self._families: dict[str, T] = {}
        self._loaded = False
        self.broken: list[str] = []  # one line per plugin that failed to load

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering an object under ``name``; a duplicate name raises ConfigError."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise ConfigError(f"expected a non-empty {self.kind} name, got {name!r}")

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ConfigError(
                    f"{self.kind} name {name!r} is already registered by {self._items[name]!r}"
                )
            self._items[name] = obj
            try:
                obj.registry_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return deco

    def register_family(self, prefix: str) -> Callable[[T], T]:
        """Decorator registering a class for every name ``prefix:MEMBER``; a duplicate raises."""
        if not isinstance(prefix, str) or not prefix.isidentifier():
            raise ConfigError(
                f"expected an identifier as {self.kind} family prefix, got {prefix!r}"
            )

        def deco(obj: T) -> T:
            if prefix in self._families and self._families[prefix] is not obj:
                raise ConfigError(
                    f"{self.kind} family {prefix!r} is already registered by {self._families[prefix]!r}"
                )
            self._families[prefix] = obj
            return obj

        return deco

    def family(self, name: str) -> tuple[T, str] | None:
        """``(class, member)`` when ``name`` is ``prefix:member`` of a registered family, else None."""
        prefix, sep, member = name.partition(":")
        if not sep:
            return None
        self.load_plugins()
        if prefix not in self._families:
            return None
        return self._families[prefix], member

    def load_plugins(self) -> None:
        """Import every module of the plugin package and every entry point of the group, once."""
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                where = f"{getattr(info.module_finder, 'path', self.package)}/{info.name}.py"
                self._guarded(
                    where, lambda n=info.name: importlib.import_module(f"{self.package}.{n}")
                )
        for ep in entry_points(group=self.group):
            self._guarded(f"entry point {ep.name} = {ep.value}", ep.load)

    def _guarded(self, where: str, load: Callable[[], object]) -> None:
        before, fams = set(self._items), set(self._families)
        try:
            load()
        except Exception as e:  # noqa: BLE001 - isolate the plugin, keep the others
            for name in set(self._items) - before:  # registered before it failed: unavailable too
                del self._items[name]
            for name in set(self._families) - fams:
                del self._families[name]
            first = (str(e).splitlines() or [""])[0]
            line = f"{self.kind} plugin {where} failed to load ({type(e).__name__}: {first}); its names are unavailable"
            self.broken.append(line)
            if WARN:
                print(f"robench: warning: {line}", file=sys.stderr)

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._items

    def get(self, name: str, extra_names: Iterable[str] = ()) -> T:
        """The object registered as ``name``; unknown names raise with the closest names."""
        self.load_plugins()
        if name in self._items:
            return self._items[name]
        raise self.unknown(name, extra_names)

    def unknown(self, name: str, extra_names: Iterable[str] = ()) -> UnknownNameError:
        pool = list(self._items) + list(extra_names)
        close = suggest(name, pool)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        if self.broken:
            hint += f"; {len(self.broken)} {self.kind} plugin(s) failed to load (see the warnings)"
        return UnknownNameError(
            f"unknown {self.kind} {name!r}{hint} (registered: {len(pool)}; list them with "
            f"`robench list {self.kind}s`; {self.how_to})"
        )
