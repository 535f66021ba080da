"""Knowledge levels, enforced by what the harness hands over.

- :class:`WhiteBox` holds the victim module (gradients allowed).
- :class:`Transfer` holds surrogate modules (and optionally the attacker's own labelled data); the
  victim object is never passed.
- :class:`Query` holds a :class:`QueryOracle` that returns labels (decision-based) or scores
  (score-based), counts queries per sample and refuses past the budget.
- :class:`NoBox` holds only unlabelled data disjoint from the victims' training data (in a benchmark:
  the data set's ``nobox`` split, or the built-in world's no-box clips), the attacker's own
  pretrained motion manifold (an encoder whose recorded pretraining data the harness has checked
  against the benchmark's data)
  and the unlabelled clips of the cell under attack (``attack_set``); the attacked batch's labels
  are withheld too, ``y`` is all -1.

Asking an access object for something its level does not grant (``transfer.victim``) raises an
:class:`~robench.errors.AccessError` naming the level that would grant it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import torch
from torch import nn

from robench.errors import AccessError, ConfigError, QueryBudgetExceeded


class Knowledge(str, Enum):
    WHITE_BOX = "white-box"
    TRANSFER = "transfer"
    QUERY = "query"
    NO_BOX = "no-box"


_GRANTS = {
    "victim": Knowledge.WHITE_BOX,
    "surrogates": Knowledge.TRANSFER,
    "oracle": Knowledge.QUERY,
    "data": Knowledge.NO_BOX,
    "manifold": Knowledge.NO_BOX,
    "attack_set": Knowledge.NO_BOX,
}


class Access:
    """Base of the access objects; attribute lookups outside the grant raise AccessError."""

    level: Knowledge

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails
        if name.startswith("__"):
            raise AttributeError(name)
        needed = _GRANTS.get(name)
        extra = f" (that needs {needed.value} access)" if needed else ""
        raise AccessError(
            f"expected the attack to use only what {self.level.value} access grants, got a request for "
            f"{name!r}{extra}"
        )


class WhiteBox(Access):
    level = Knowledge.WHITE_BOX

    def __init__(self, victim: nn.Module) -> None:
        self.victim = victim


class Transfer(Access):
    level = Knowledge.TRANSFER

    def __init__(
        self,
        surrogates: list[nn.Module] | tuple[nn.Module, ...],
        train_x: torch.Tensor | None = None,
        train_y: torch.Tensor | None = None,
        surrogate_ids: tuple[str, ...] = (),
    ) -> None:
        if len(surrogates) == 0:
            raise ConfigError("expected at least one surrogate, got none in transfer access")
        self.surrogates = tuple(surrogates)
        self.train_x = train_x
        self.train_y = train_y
        self.surrogate_ids = tuple(surrogate_ids)


class QueryOracle:
    """Black-box access to a model: labels (``mode='decision'``) or softmax scores (``'score'``).

    Every call counts one query for each sample it is asked about (``index`` selects which samples of
    the attacked batch the rows belong to: integers in ``[0, batch_size)``); a call that would take
    any sample past ``budget``, or the batch past ``budget × batch_size`` queries in all, raises
    :class:`QueryBudgetExceeded` and answers nothing. In a benchmark the oracle lives in the harness
    process; the attack's worker holds only a proxy (:class:`robench.run.worker.RemoteOracle`), so
    ``mode``, ``budget`` and the counters are out of its reach.
    """

    def __init__(
        self, model: nn.Module, batch_size: int, budget: int, mode: str = "decision"
    ) -> None:
        if mode not in ("decision", "score"):
            raise ConfigError(f"expected mode 'decision' or 'score', got {mode!r} in QueryOracle")
        if budget <= 0:
            raise ConfigError(f"expected a positive query budget, got {budget} in QueryOracle")
        self._model = model
        self.mode = mode
        self.budget = int(budget)
        self.queries = torch.zeros(batch_size, dtype=torch.int64)

    def __call__(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if index is None:
            index = torch.arange(x.shape[0])
        if index.dtype not in (torch.int64, torch.int32) or index.dim() != 1:
            raise ConfigError(
                f"expected a 1-D integer index, got {index.dtype} of shape {tuple(index.shape)} in QueryOracle call"
            )
        if index.numel() != x.shape[0]:
            raise ConfigError(
                f"expected {x.shape[0]} indices, got {index.numel()} in QueryOracle call"
            )
        n = self.queries.numel()
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ConfigError(
                f"expected indices in [0, {n}), got [{int(index.min())}, {int(index.max())}] in QueryOracle call"
            )
        counts = torch.bincount(index.long().cpu(), minlength=n)
        total = int(self.queries.sum()) + int(counts.sum())
        if bool(((self.queries + counts) > self.budget).any()) or total > self.budget * n:
            raise QueryBudgetExceeded(
                f"expected at most {self.budget} queries per sample, got a request past the budget"
            )
        self.queries += counts
        with torch.inference_mode():
            logits = self._model(x.detach())
        if self.mode == "decision":
            return logits.argmax(1).clone()
        return logits.softmax(1).clone()

    def remaining(self) -> torch.Tensor:
        return self.budget - self.queries


class Query(Access):
    level = Knowledge.QUERY

    def __init__(self, oracle: QueryOracle) -> None:
        self.oracle = oracle


class NoBox(Access):
    level = Knowledge.NO_BOX

    def __init__(
        self,
        data: torch.Tensor,
        manifold: nn.Module | None = None,
        attack_set: torch.Tensor | None = None,
    ) -> None:
        self.data = data
        self.manifold = manifold
        self.attack_set = attack_set
