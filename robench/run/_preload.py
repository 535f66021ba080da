"""Imported once by the attack workers' forkserver: torch, the core and the registered plugins, so
that each worker forks ready to run (and a broken plugin fails in its cell, not here)."""

import torch  # noqa: F401

from robench.attack import ATTACKS
from robench.victim import VICTIMS

for _registry in (ATTACKS, VICTIMS):
    try:
        _registry.load_plugins()
    except Exception:  # noqa: BLE001 - reported where the plugin is used
        pass
