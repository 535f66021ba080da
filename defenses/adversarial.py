"""Adversarial training: new weights, fine-tuned from a clean victim on the defender's training data.

- ``pgd-at``: PGD adversarial training (Madry, Makelov, Schmidt, Tsipras and Vladu, ICLR 2018):
  minimise ``CE(f(x'), y)`` where x' is PGD's iterate inside the benchmark's threat model (L∞,
  ``eps`` = 1 cm in metres): a uniform random start in the ball, ``steps`` = 10 sign steps of
  α = 2.5·ε/steps (the step rule of robench's PGD), projected back after each step.
- ``trades``: TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui and Jordan, ICML 2019): minimise
  ``CE(f(x), y) + β·KL(f(x) ‖ f(x'))`` with β = 6, x' maximising the KL term by ``steps`` = 10 sign
  steps of α = ε/4 from ``x + 0.001·N(0, 1)`` (the paper's code), projected to the ε-ball.
  The coordinates are never clamped to a range (skeletons have none; the TASAR benchmark's TRADES
  clamps them to [0, 1], a bug for metric data).

Both perturb only the present joints of present bodies (padding and absent bodies stay zero), run
the inner maximisation with the model in eval mode (batch-norm statistics are not updated by
adversarial batches of the inner loop) and fine-tune a copy with the zoo's SGD recipe
(:func:`robench.zoo.train.fit`: Nesterov SGD, cosine decay, yaw/scale augmentation), from the given
clean checkpoint, for ``epochs`` = 5 at ``lr`` = 0.01 without warm-up. Departures, for a 2-core CPU:
the papers train from scratch for 100+ epochs; here the clean victim is fine-tuned for a few epochs.
``robench defend VICTIM NAME`` writes the result as a checkpoint with its recipe in the metadata.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robench.data.skeleton import presence_mask
from robench.defense import Defense, DefenseConfig, DefenseKind, register_defense
from robench.errors import ConfigError
from robench.ops.transfer import require_float, require_int


@dataclass(frozen=True)
class AdvTrainConfig(DefenseConfig):
    """``eps`` (0.01, data units), inner ``steps`` (10), ``alpha_rel`` (step α = alpha_rel·ε; None:
    the defense's rule), ``epochs`` (5), ``lr`` (0.01), ``batch_size`` (32), ``seed`` (0)."""

    eps: float = 0.01
    steps: int = 10
    alpha_rel: float | None = None
    epochs: int = 5
    lr: float = 0.01
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        src = "defense adversarial training"
        require_float(self.eps, "eps", src, low_open=True)
        require_int(self.steps, "steps", src)
        require_int(self.epochs, "epochs", src)
        require_int(self.batch_size, "batch_size", src)
        require_float(self.lr, "lr", src, low_open=True)
        if self.alpha_rel is not None:
            require_float(self.alpha_rel, "alpha_rel", src, low_open=True)


@dataclass(frozen=True)
class TradesConfig(AdvTrainConfig):
    """``beta`` (6.0): the weight of the KL term; the rest as :class:`AdvTrainConfig`."""

    beta: float = 6.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require_float(self.beta, "beta", "defense 'trades'")


def _sign_ascent(
    model: nn.Module,
    x: torch.Tensor,
    start: torch.Tensor,
    objective: Any,
    eps: float,
    alpha: float,
    steps: int,
) -> torch.Tensor:
    """``steps`` sign-gradient ascent steps on ``objective(logits)`` from ``start``, each projected
    to the L∞ ε-ball around x; padding (zero slots of x) stays zero."""
    mask = presence_mask(x).to(x.dtype)
    x_adv = x + ((start - x) * mask).clamp(-eps, eps)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(objective(model(x_adv)), x_adv)
        x_adv = x_adv.detach() + alpha * g.sign() * mask
        x_adv = x + (x_adv - x).clamp(-eps, eps)
    return x_adv.detach()


class _AdversarialTraining(Defense):
    kind = DefenseKind.WEIGHTS
    randomized = False
    differentiable = True

    def defend(self, victim: nn.Module, train: Any, generator: torch.Generator) -> nn.Module:
        from robench.zoo.train import TrainConfig, fit

        if train is None or not hasattr(train, "x"):
            raise ConfigError(
                f"expected the defender's training data (a SkeletonSet), got {type(train).__name__} "
                f"for defense {self.name!r}"
            )
        c = self.config
        torch.manual_seed(c.seed)  # dropout draws from the global stream
        model = copy.deepcopy(victim)
        for p in model.parameters():
            p.requires_grad_(True)
        tc = TrainConfig(
            epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, warmup_epochs=0, seed=c.seed
        )
        gen = torch.Generator().manual_seed(c.seed)

        def loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            m.eval()
            x_adv = self.inner(m, x, y, gen)
            m.train()
            return self.outer(m, x, x_adv, y)

        self.seconds = fit(model, train, tc, loss, gen, f"defend {self.name}", self.progress)
        return model.eval()

    progress = False
    seconds = 0.0

    def inner(
        self, m: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def outer(
        self, m: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@register_defense("pgd-at")
class PGDAdversarialTraining(_AdversarialTraining):
    """PGD adversarial training (Madry et al., ICLR 2018): CE on PGD iterates (module docstring)."""

    Config = AdvTrainConfig

    def inner(self, m, x, y, gen):
        c = self.config
        alpha = (c.alpha_rel if c.alpha_rel is not None else 2.5 / c.steps) * c.eps
        start = x + (torch.rand(x.shape, generator=gen, dtype=x.dtype) * 2 - 1) * c.eps

        def ce(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, y, reduction="sum")

        return _sign_ascent(m, x, start, ce, c.eps, alpha, c.steps)

    def outer(self, m, x, x_adv, y):
        return F.cross_entropy(m(x_adv), y)


@register_defense("trades")
class Trades(_AdversarialTraining):
    """TRADES (Zhang et al., ICML 2019): CE + β·KL(f(x) ‖ f(x')), x' maximising the KL term."""

    Config = TradesConfig

    def inner(self, m, x, y, gen):
        c = self.config
        alpha = (c.alpha_rel if c.alpha_rel is not None else 0.25) * c.eps
        with torch.no_grad():
            p_clean = m(x).softmax(1)
        start = x + 0.001 * torch.randn(x.shape, generator=gen, dtype=x.dtype)

        def kl(logits: torch.Tensor) -> torch.Tensor:
            return F.kl_div(logits.log_softmax(1), p_clean, reduction="sum")

        return _sign_ascent(m, x, start, kl, c.eps, alpha, c.steps)

    def outer(self, m, x, x_adv, y):
        logits = m(x)
        kl = F.kl_div(m(x_adv).log_softmax(1), logits.softmax(1), reduction="batchmean")
        return F.cross_entropy(logits, y) + self.config.beta * kl
