"""robench: adversarial-robustness benchmark suite for skeleton-based human action recognition.

The public Python surface, importable from the top level (loaded on first use, so ``import
robench`` stays cheap and pulls in neither torch nor a plugin until a name is touched)::

    import robench
    victim = robench.create_victim("stgcn.synth_ntu25")          # a shipped, trained checkpoint
    test = robench.open_dataset("synth-ntu25").get_split("test")
    result = robench.evaluate(victim, test.x[:64], test.y[:64], attacks=["fgsm", "pgd"], threat="linf:0.01")

Names: :func:`evaluate` / :class:`EvaluationResult` (AutoAttack-style per-sample evaluation),
:func:`create_victim`, :func:`load_victim`, :func:`save_victim`, :func:`create_attack`,
:func:`create_defense`, :class:`ThreatModel`, :func:`open_dataset`, :class:`SkeletonSet`, the
access classes (:class:`WhiteBox`, :class:`Transfer`, :class:`Query`, :class:`NoBox`,
:class:`QueryOracle`, :class:`Knowledge`), the plugin bases (:class:`Victim`, :class:`Attack`,
:class:`Defense` with their ``*Config`` dataclasses), the registries (``VICTIMS``, ``ATTACKS``,
``DEFENSES``) and their decorators (:func:`register_victim`, :func:`register_attack`,
:func:`register_defense`), and :class:`RobenchError`. Contract checks for plugin authors live in
:mod:`robench.testing`.
"""

from __future__ import annotations

import importlib
from typing import Any

from robench.errors import RobenchError

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "evaluate": "robench.run.evaluate",
    "EvaluationResult": "robench.run.evaluate",
    "create_victim": "robench.zoo",
    "load_victim": "robench.zoo.checkpoint",
    "save_victim": "robench.zoo.checkpoint",
    "create_attack": "robench.attack",
    "create_defense": "robench.defense",
    "ThreatModel": "robench.threat",
    "open_dataset": "robench.data",
    "SkeletonSet": "robench.data.dataset",
    "Knowledge": "robench.access",
    "Access": "robench.access",
    "WhiteBox": "robench.access",
    "Transfer": "robench.access",
    "Query": "robench.access",
    "NoBox": "robench.access",
    "QueryOracle": "robench.access",
    "Victim": "robench.victim",
    "VictimConfig": "robench.victim",
    "VICTIMS": "robench.victim",
    "register_victim": "robench.victim",
    "Attack": "robench.attack",
    "AttackConfig": "robench.attack",
    "ATTACKS": "robench.attack",
    "register_attack": "robench.attack",
    "Defense": "robench.defense",
    "DefenseConfig": "robench.defense",
    "DefenseKind": "robench.defense",
    "DEFENSES": "robench.defense",
    "register_defense": "robench.defense",
}

__all__ = ["RobenchError", "__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'robench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
