"""Deliberately cheating attacks: ``Attack.__call__`` must catch every one and name the violation.

The attacks are defined here and instantiated directly (no ``register_attack``), so the global
registry is not polluted.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robench.access import Knowledge, Transfer, WhiteBox
from robench.attack import ATTACKS, Attack
from robench.data.skeleton import presence_mask
from robench.errors import AccessError, ThreatViolation
from robench.threat import ThreatModel

T, V, M, K = 4, 25, 2, 5
THREAT = ThreatModel(norm="linf", eps=0.01)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * T * V * M, K)).eval()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 3, T, 25, 2): the second body absent, the last frame of sample 1 padding."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(3, 3, T, V, M)
    x[..., 0] = torch.randn(3, 3, T, V, generator=g) * 0.2 + 1.0
    x[1, :, -1] = 0
    return x, torch.tensor([0, 1, 2])


class Honest(Attack):
    """One FGSM step, projected: the control that must pass."""

    knowledge = Knowledge.WHITE_BOX

    def run(self, access, x, y, threat, generator, target):
        xa = x.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(access.victim(xa), y)
        (g,) = torch.autograd.grad(loss, xa)
        return threat.project(x, x + threat.eps * g.sign())


class ExceedsEps(Attack):
    knowledge = Knowledge.WHITE_BOX

    def run(self, access, x, y, threat, generator, target):
        present = presence_mask(x).to(x.dtype)
        return x + 2 * threat.eps * present


class PerturbsPadding(Attack):
    knowledge = Knowledge.WHITE_BOX

    def run(self, access, x, y, threat, generator, target):
        absent = (~presence_mask(x)).to(x.dtype)
        return x + 0.5 * threat.eps * absent  # inside the ball, but padding is not zero any more


class MutatesInput(Attack):
    knowledge = Knowledge.WHITE_BOX

    def run(self, access, x, y, threat, generator, target):
        x_adv = threat.project(x, x + threat.eps)
        x.mul_(1.0001)  # tamper with the reference the result is checked against
        return x_adv


class TransferPeeksAtVictim(Attack):
    knowledge = Knowledge.TRANSFER

    def run(self, access, x, y, threat, generator, target):
        access.victim(x)  # not granted: transfer access holds surrogates only
        return x.clone()


class ReturnsNaN(Attack):
    knowledge = Knowledge.WHITE_BOX

    def run(self, access, x, y, threat, generator, target):
        x_adv = x.clone()
        x_adv[0, 0, 0, 0, 0] = float("nan")
        return x_adv


def test_cheaters_are_not_registered():
    for cls in (
        Honest,
        ExceedsEps,
        PerturbsPadding,
        MutatesInput,
        TransferPeeksAtVictim,
        ReturnsNaN,
    ):
        assert cls not in ATTACKS._items.values()


def test_honest_attack_passes_and_moves():
    x, y = batch()
    x_adv = Honest()(WhiteBox(model()), x, y, THREAT)
    assert THREAT.check(x, x_adv) == []
    assert (x_adv - x).abs().max() == pytest.approx(0.01, rel=1e-5)


@pytest.mark.parametrize(
    "attack,pattern",
    [
        (ExceedsEps(), r"linf norm 0\.02\d* exceeds eps 0\.01"),
        (PerturbsPadding(), "padding / absent body modified"),
        (MutatesInput(), "modified in place"),
        (ReturnsNaN(), "non-finite"),
    ],
)
def test_threat_cheats_raise_named_violation(attack, pattern):
    x, y = batch()
    reference = x.clone()
    with pytest.raises(ThreatViolation, match=pattern) as e:
        attack(WhiteBox(model()), x, y, THREAT)
    assert type(attack).__name__ in str(e.value)
    assert torch.equal(x, reference)  # the caller's batch is never touched


def test_transfer_attack_reaching_for_the_victim():
    x, y = batch()
    with pytest.raises(AccessError, match="'victim'.*white-box"):
        TransferPeeksAtVictim()(Transfer([model()]), x, y, THREAT)


def test_white_box_attack_handed_transfer_access():
    x, y = batch()
    with pytest.raises(AccessError, match="expected white-box access.*got transfer"):
        Honest()(Transfer([model()]), x, y, THREAT)
