"""Knowledge levels: what each access object grants, and the query oracle's counting and budget."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robench.access import Knowledge, NoBox, Query, QueryOracle, Transfer, WhiteBox
from robench.errors import AccessError, ConfigError, QueryBudgetExceeded


def model(k: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 3 * 1, k)).eval()


def batch(n: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 4, 3, 1, generator=g)


def test_levels_grant_only_their_objects():
    m = model()
    assert WhiteBox(m).victim is m and WhiteBox(m).level is Knowledge.WHITE_BOX
    t = Transfer([m], surrogate_ids=("s",))
    assert t.surrogates == (m,) and t.level is Knowledge.TRANSFER
    with pytest.raises(AccessError, match="white-box"):
        t.victim  # noqa: B018
    with pytest.raises(AccessError, match="transfer"):
        WhiteBox(m).surrogates  # noqa: B018
    q = Query(QueryOracle(m, batch_size=3, budget=5))
    with pytest.raises(AccessError, match="white-box"):
        q.victim  # noqa: B018
    with pytest.raises(AccessError, match="query"):
        NoBox(batch()).oracle  # noqa: B018
    with pytest.raises(AccessError, match="no-box"):
        WhiteBox(m).data  # noqa: B018
    with pytest.raises(ConfigError, match="surrogate"):
        Transfer([])


def test_oracle_decision_and_score_outputs():
    m, x = model(), batch()
    with torch.no_grad():
        logits = m(x)
    labels = QueryOracle(m, 3, budget=10, mode="decision")(x)
    assert labels.dtype == torch.int64 and torch.equal(labels, logits.argmax(1))
    scores = QueryOracle(m, 3, budget=10, mode="score")(x)
    assert torch.allclose(scores, logits.softmax(1)) and torch.allclose(
        scores.sum(1), torch.ones(3)
    )
    with pytest.raises(ConfigError, match="mode"):
        QueryOracle(m, 3, budget=10, mode="logits")
    with pytest.raises(ConfigError, match="budget"):
        QueryOracle(m, 3, budget=0)


def test_oracle_counts_per_sample_and_refuses_past_budget_without_answering():
    calls = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape[0])
            return self.inner(x)

    x = batch()
    oracle = QueryOracle(Spy(), batch_size=3, budget=2)
    oracle(x)
    assert oracle.queries.tolist() == [1, 1, 1]
    oracle(x[[2, 2]][:1], index=torch.tensor([2]))  # sample 2 asked once more: at its budget
    assert oracle.queries.tolist() == [1, 1, 2] and oracle.remaining().tolist() == [1, 1, 0]
    with pytest.raises(QueryBudgetExceeded, match="at most 2"):
        oracle(x)  # sample 2 would go past the budget: nothing is answered or counted
    assert oracle.queries.tolist() == [1, 1, 2] and calls == [3, 1]
    with pytest.raises(QueryBudgetExceeded):
        oracle(x[:2].repeat(2, 1, 1, 1, 1), index=torch.tensor([0, 1, 0, 1]))  # 2 more each
    assert oracle.queries.tolist() == [1, 1, 2]
    oracle(x[:2], index=torch.tensor([0, 1]))
    assert oracle.queries.tolist() == [2, 2, 2] and calls == [3, 1, 2]
    with pytest.raises(ConfigError, match="indices"):
        oracle(x, index=torch.tensor([0]))
