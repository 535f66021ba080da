"""Paired comparisons of transfer attacks (robench/report/paired.py) on hand-built per-sample
frames: against I-FGSM on the same clips, declared pairs with verdicts, McNemar and the clustered
sign-flip test; expected numbers computed by hand."""

from __future__ import annotations

import math

import pytest
from test_aggregate import cell_rows, frame

from robench.errors import DataError
from robench.report.aggregate import aggregate, proportion


def test_transfer_attacks_are_paired_against_ifgsm_on_the_same_clips():
    """Surrogate u -> victim v and v -> u, 10 clips each, one not eligible. I-FGSM fools clips
    0-2 of uv; the other attack fools 1-6 of uv and 0 of vu; the diagonal (u -> u) never enters."""
    n = 10
    cc = [1] * n
    el = [1] * (n - 1) + [0]
    fool = lambda idx: [1 if i in idx else 0 for i in range(n)]  # noqa: E731
    tr = dict(knowledge="transfer", eligible=el)
    rows = [
        cell_rows("r-uv", "transfer-ifgsm", fool({0, 1, 2}), cc, surrogate="u", victim="v", **tr),
        cell_rows("r-vu", "transfer-ifgsm", fool(set()), cc, surrogate="v", victim="u", **tr),
        cell_rows(
            "a-uv", "tasar", fool({1, 2, 3, 4, 5, 6, 9}), cc, surrogate="u", victim="v", **tr
        ),
        cell_rows("a-vu", "tasar", fool({0}), cc, surrogate="v", victim="u", **tr),
        cell_rows("a-uu", "tasar", fool(set(range(n))), cc, surrogate="u", victim="u", **tr),
        cell_rows("r-uu", "transfer-ifgsm", fool(set()), cc, surrogate="u", victim="u", **tr),
    ]
    mats = {m["attack"]: m for m in aggregate(frame(*rows))["transfer"]}
    assert "vs_reference" not in mats["transfer-ifgsm"]
    v = mats["tasar"]["vs_reference"]
    # 18 eligible off-diagonal units over 9 clips (clip 9 is not eligible);
    # b = {3,4,5,6 of uv, 0 of vu}, c = {0 of uv}
    assert (v["n"], v["clips"], v["only_attack"], v["only_reference"]) == (18, 9, 5, 1)
    assert v["difference"] == pytest.approx(4 / 18)
    # clustered by clip: d = (0: -1 + 1, 3..6: +1 each, others 0), m = 2 units per clip
    d = [0, 0, 0, 1, 1, 1, 1, 0, 0]
    se = math.sqrt(9 / 8 * sum((di - 4 / 18 * 2) ** 2 for di in d)) / 18
    assert v["ci"] == pytest.approx([4 / 18 - 1.96 * se, 4 / 18 + 1.96 * se])
    # sign flips: |Σ s_i d_i| >= 4 only when the four non-zero clips share a sign: p = 2/16
    assert v["p_value"] == pytest.approx(2 / 16, abs=0.015)
    assert v["p_mcnemar"] == pytest.approx(2 * (1 + 6) / 2**6)  # exact binomial, 1 of 6 at 1/2
    assert v["reference"] == "transfer-ifgsm"
    assert mats["tasar"]["off_diagonal"] == proportion(7, 18)


def test_clustering_widens_the_interval_when_a_clips_pairs_agree():
    import numpy as np

    from robench.report.aggregate import clustered_test

    # 10 clips x 3 units, the attack alone fooling every unit of clips 0-3: agreeing pairs
    d = np.array([3.0] * 4 + [0.0] * 6)
    m = np.full(10, 3.0)
    se, p = clustered_test(d, m)
    diff = 12 / 30
    naive = math.sqrt(12 - 12**2 / 30) / 30  # the unit-level Wald se
    assert se == pytest.approx(math.sqrt(10 / 9 * float(((d - diff * m) ** 2).sum())) / 30)
    assert se > naive
    assert p == pytest.approx(2 / 16, abs=0.015)  # 4 clips: as strong as 4 coin flips, not 12
    assert clustered_test(np.zeros(5), np.ones(5)) == (0.0, 1.0)


def test_an_ensemble_meets_single_surrogate_ifgsm_once_per_member():
    """Ensemble u+w -> v on 4 clips (fools 0, 1, 2) against I-FGSM u -> v (fools 0) and w -> v
    (fools 3): 8 units over 4 clips; b = {1, 2 vs u; 0, 1, 2 vs w} = 5, c = {3 vs w} = 1. The
    diagonal victim u (a member of the ensemble) pairs with nothing."""
    cc = [1] * 4
    tr = dict(knowledge="transfer")
    rows = [
        cell_rows("r-u", "transfer-ifgsm", [1, 0, 0, 0], cc, surrogate="u", victim="v", **tr),
        cell_rows("r-w", "transfer-ifgsm", [0, 0, 0, 1], cc, surrogate="w", victim="v", **tr),
        cell_rows("r-wu", "transfer-ifgsm", [1, 1, 1, 1], cc, surrogate="w", victim="u", **tr),
        cell_rows("e", "ensemble", [1, 1, 1, 0], cc, surrogate="u+w", victim="v", **tr),
        cell_rows("e-u", "ensemble", [1, 1, 1, 1], cc, surrogate="u+w", victim="u", **tr),
    ]
    mats = {m["attack"]: m for m in aggregate(frame(*rows))["transfer"]}
    v = mats["ensemble"]["vs_reference"]
    assert (v["n"], v["clips"], v["only_attack"], v["only_reference"]) == (8, 4, 5, 1)
    assert v["attack_success"] == 6 / 8 and v["reference_success"] == 2 / 8
    # and the reverse direction explodes the reference's side the same way
    res = aggregate(frame(*rows), [["transfer-ifgsm", "ensemble"]])["comparisons"][0]["result"]
    assert (res["n"], res["only_attack"], res["only_reference"]) == (8, 1, 5)
    # two ensembles over the same surrogates pair unit for unit, without exploding
    rows.append(cell_rows("s", "svre", [0, 0, 1, 1], cc, surrogate="u+w", victim="v", **tr))
    res = aggregate(frame(*rows), [["svre", "ensemble"]])["comparisons"][0]["result"]
    assert (res["n"], res["clips"], res["only_attack"], res["only_reference"]) == (4, 4, 1, 2)


def test_declared_comparisons_follow_the_declaration_with_verdicts():
    from robench.report.paired import ALPHA, verdict

    n = 40
    cc = [1] * n
    tr = dict(knowledge="transfer", surrogate="u", victim="v")
    fool = lambda idx: [1 if i in idx else 0 for i in range(n)]  # noqa: E731
    rows = [
        cell_rows("a", "tasar", fool(set(range(20))), cc, **tr),
        cell_rows("b", "ba", fool(set(range(19))), cc, **tr),
        cell_rows("c", "transfer-ifgsm", fool(set()), cc, **tr),
        cell_rows("d", "mig", fool(set(range(1))), cc, **dict(tr, surrogate="x", victim="y")),
    ]
    out = aggregate(frame(*rows), [("tasar", "ba"), ("transfer-ifgsm", "ba"), ("mig", "ba")])
    got = out["comparisons"]
    assert [(c["attack"], c["reference"]) for c in got] == [
        ("tasar", "ba"), ("transfer-ifgsm", "ba"), ("mig", "ba")
    ]  # fmt: skip
    assert all(c["threat"] == "linf-eps0.01m" for c in got)
    one, two, none = (c["result"] for c in got)
    assert (one["only_attack"], one["only_reference"]) == (1, 0)
    assert verdict(one) == "not resolved"  # one clip: p = 1
    assert (two["only_attack"], two["only_reference"]) == (0, 19) and two["p_value"] < ALPHA
    assert verdict(two) == "reference > attack"
    assert none is None and verdict(none) == "not resolved"  # mig shares no unit with ba
    flipped = aggregate(frame(*rows), [("ba", "transfer-ifgsm")])["comparisons"][0]["result"]
    assert verdict(flipped) == "attack > reference"
    # the verdict needs both a small p and an interval on one side of zero
    assert verdict({"p_value": 0.01, "ci": [-0.01, 0.2]}) == "not resolved"
    assert verdict({"p_value": 0.2, "ci": [0.01, 0.2]}) == "not resolved"
    assert verdict({"p_value": 0.049, "ci": [0.01, 0.2]}) == "attack > reference"
    assert verdict({"p_value": 0.05, "ci": [0.01, 0.2]}) == "not resolved"
    assert "comparisons" not in aggregate(frame(*rows))  # only when declared


def test_mcnemar_p_values():
    from robench.report.aggregate import mcnemar_p

    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(3, 3) == pytest.approx(1.0)
    assert mcnemar_p(10, 2) == pytest.approx(2 * sum(math.comb(12, k) for k in range(3)) / 2**12)
    assert mcnemar_p(2, 10) == mcnemar_p(10, 2)
    assert mcnemar_p(0, 1) == 1.0 and mcnemar_p(0, 5) == pytest.approx(2 / 32)
    # large counts stay exact (no float overflow of 2**n)
    assert 0 < mcnemar_p(900, 1100) < 1e-4


def test_no_reference_run_means_no_paired_comparison():
    cc = [1, 1]
    rows = [cell_rows("a", "tasar", [1, 0], cc, knowledge="transfer", surrogate="u", victim="v")]
    (m,) = aggregate(frame(*rows))["transfer"]
    assert m["vs_reference"] is None


def test_a_clustered_p_at_its_floor_reads_as_a_bound():
    from robench.report.paired import SIGN_FLIPS, clustered_p_text

    assert clustered_p_text(1 / (1 + SIGN_FLIPS)) == "≤ 0.0001"
    assert clustered_p_text(0.0002) == "0.0002" and clustered_p_text(0.47) == "0.47"


def test_paired_comparisons_cluster_every_seed_of_a_clip_together():
    """Two seeds of the same four clips: 8 units but 4 clusters (a clip's seeds are correlated)."""
    cc = [1] * 4
    tr = dict(knowledge="transfer", surrogate="u", victim="v")
    rows = []
    for seed in (0, 1):
        rows.append(cell_rows(f"r{seed}", "transfer-ifgsm", [0, 0, 0, 0], cc, seed=seed, **tr))
        rows.append(cell_rows(f"a{seed}", "tasar", [1, 1, 0, 0], cc, seed=seed, **tr))
    v = {m["attack"]: m for m in aggregate(frame(*rows))["transfer"]}["tasar"]["vs_reference"]
    assert (v["n"], v["clips"], v["only_attack"]) == (8, 4, 4)
    # per clip d = (2, 2, 0, 0), m = 2: se = sqrt(4/3 * (1 + 1 + 1 + 1)) / 8
    assert v["ci"][1] - v["difference"] == pytest.approx(1.96 * math.sqrt(4 / 3 * 4) / 8)


def test_two_outcomes_for_one_unit_are_refused_not_joined():
    """An attack with an ensemble cell u+w and a stale single cell u: exploding the ensemble would
    give unit (u, v, clip) two outcomes."""
    cc = [1, 1]
    tr = dict(knowledge="transfer", victim="v")
    rows = [
        cell_rows("r", "transfer-ifgsm", [1, 0], cc, surrogate="u", **tr),
        cell_rows("e", "ensemble", [1, 1], cc, surrogate="u+w", **tr),
        cell_rows("e-old", "ensemble", [0, 0], cc, surrogate="u", **tr),
    ]
    with pytest.raises(
        DataError,
        match=r"attack 'ensemble', got 2 repeated \(e.g. u -> v, clip s00\).*--definition",
    ):
        aggregate(frame(*rows))


def test_declared_comparisons_come_per_threat_and_exist_on_an_empty_frame():
    cc = [1, 1]
    rows = []
    for t, e in (("linf-eps0.02m", 0.02), ("linf-eps0.01m", 0.01)):
        for a in ("tasar", "ba"):
            rows.append(cell_rows(f"{a}{t}", a, [1, 0], cc, knowledge="transfer", surrogate="u",
                                  victim="v", threat=t, eps=e))  # fmt: skip
    got = aggregate(frame(*rows), [["tasar", "ba"], ["ba", "tasar"]])["comparisons"]
    assert [(c["threat"], c["attack"]) for c in got] == [
        ("linf-eps0.01m", "tasar"), ("linf-eps0.01m", "ba"),
        ("linf-eps0.02m", "tasar"), ("linf-eps0.02m", "ba"),
    ]  # fmt: skip
    assert all(c["verdict"] == "not resolved" for c in got)
    empty = frame(*rows).iloc[0:0]
    assert aggregate(empty, [["tasar", "ba"]])["comparisons"] == []
    assert "comparisons" not in aggregate(empty)


def test_clustered_test_edges_and_its_fixed_randomisation():
    import itertools

    import numpy as np

    from robench.report.paired import SIGN_FLIPS, clustered_test, mcnemar_p

    assert clustered_test(np.array([]), np.array([])) == (0.0, 1.0)  # no clip at all
    # two clips: the small-sample factor G/(G-1) = 2 (not capped)
    se, _ = clustered_test(np.array([2.0, 0.0]), np.array([2.0, 2.0]))
    assert se == pytest.approx(math.sqrt(2 * ((2 - 0.5 * 2) ** 2 + (0 - 0.5 * 2) ** 2)) / 4)
    # the sign flips come from a fixed generator (seed 0), so a board is reproducible to the digit:
    # this p is the Monte Carlo estimate of the exact enumeration below
    d = np.array([1.0, 1, 1, 0, -1, 0, 1, 0, 2, 0])
    _, p = clustered_test(d, np.full(10, 2.0))
    assert p == 0.1903
    nz = d[d != 0]
    exact = sum(abs(np.dot(s, nz)) >= abs(nz.sum())
                for s in itertools.product((-1, 1), repeat=len(nz))) / 2 ** len(nz)  # fmt: skip
    assert p == pytest.approx(exact, abs=0.01)
    # every clip the same way: no sign vector beats the observed sum, p is the floor 1/(1 + R)
    assert clustered_test(np.ones(30), np.ones(30))[1] == 1 / (1 + SIGN_FLIPS)
    assert mcnemar_p(0, 0) == 1.0


def test_a_verdict_needs_the_interval_strictly_off_zero():
    from robench.report.paired import verdict

    assert verdict({"p_value": 0.01, "ci": [0.0, 0.2]}) == "not resolved"
    assert verdict({"p_value": 0.01, "ci": [-0.2, 0.0]}) == "not resolved"
    assert verdict({"p_value": 0.01, "ci": [-0.2, -0.01]}) == "reference > attack"
