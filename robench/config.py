"""Plugin configuration: immutable dataclasses built from user values, with one-line errors.

Every plugin kind (victim, attack, defense) carries its hyper-parameters as a frozen dataclass
``Config`` with the paper's defaults; these helpers build and check one the same way for all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from robench.errors import ConfigError


def make_config(cls: type, values: dict[str, Any], source: str = "config") -> Any:
    """Build dataclass ``cls`` from ``values``; unknown or ill-typed fields raise a ConfigError
    (a ``bool`` field takes only ``True``/``False``)."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"expected one of {sorted(names)}, got unknown field {key!r} in {source}"
            )
        if names[key].type in (bool, "bool") and not isinstance(value, bool):
            # a YAML "false" (a string) or a 0 must not switch a flag on
            raise ConfigError(f"expected true or false, got {value!r} in {source} field {key!r}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"expected valid values, got {e} in {source}") from None


def plugin_config(
    owner: type, config: Any, overrides: dict[str, Any], source: Callable[[], str]
) -> Any:
    """The config of a plugin instance of class ``owner``: ``config`` (with ``overrides`` replaced)
    or ``owner.Config`` built from ``overrides``; it must be an instance of ``owner.Config``.
    ``source()`` names the config in error messages (called only when it is needed)."""
    if config is None:
        config = make_config(owner.Config, overrides, source=source())
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    if not isinstance(config, owner.Config):
        raise ConfigError(
            f"expected {owner.Config.__name__}, got {type(config).__name__} in {owner.__name__}"
        )
    return config


class Plugin:
    """What every attack and defense instance shares: its registered name and its config."""

    registry_name: ClassVar[str] = ""

    def _set_config(self, config: Any, overrides: dict[str, Any], kind: str) -> None:
        self.config = plugin_config(
            type(self), config, overrides, lambda: f"{kind} {self.name!r} config"
        )

    @property
    def name(self) -> str:
        return type(self).registry_name or type(self).__name__
