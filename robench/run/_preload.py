"""Imported once by the attack workers' forkserver: torch, the core and the registered plugins, so
that each worker forks ready to run (and a broken plugin fails in its cell, not here)."""

import torch  # noqa: F401

from robench import registry as _registry_module
from robench.attack import ATTACKS
from robench.victim import VICTIMS

_registry_module.WARN = False  # the harness process already warned

for _registry in (ATTACKS, VICTIMS):
    try:
        _registry.load_plugins()
    except Exception:  # noqa: BLE001 - reported where the plugin is used
        pass


def _warm_up() -> None:
    """One tiny single-threaded forward+backward of the layer types victims use, so that each worker
    forks with the kernels' one-time initialisation done (single-threaded: no OpenMP thread pool
    exists yet, which keeps the fork safe; each worker sets its own thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.randn(2, 3, 8, 5, requires_grad=True)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, (3, 1), padding=(1, 0)),
            torch.nn.BatchNorm2d(4),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Linear(160, 3),
        ).eval()
        torch.autograd.grad(torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1])), x)
    finally:
        torch.set_num_threads(threads)


_warm_up()
