"""Aggregation on hand-built per-sample frames; expected numbers computed by hand."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from robench.errors import DataError
from robench.report.aggregate import aggregate, proportion, threat_family


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval written out independently of robench.run.metrics."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cell_rows(
    key: str,
    attack: str,
    adv_pred: list[int],
    clean_correct: list[int],
    labels: list[int] | None = None,
    *,
    knowledge: str = "white-box",
    surrogate: str | None = None,
    victim: str = "v",
    defense: str | None = None,
    threat: str = "linf-eps0.01m",
    eps: float = 0.01,
    seed: int = 0,
    eligible: list[int] | None = None,
    zero_grad_frac: float | None = 0.0,
    forward_random: int = 0,
    linf: list[float] | None = None,
    queries: list[int] | None = None,
    status: str = "ok",
    config_json: str = "{}",
) -> list[dict]:
    """One cell's per-sample rows joined with its cell columns (the Store.frame() layout)."""
    n = len(adv_pred)
    labels = labels or [0] * n
    eligible = eligible if eligible is not None else clean_correct
    linf = linf or [eps] * n
    queries = queries or [-1] * n
    out = []
    for i in range(n):
        out.append(
            dict(
                cell_key=key, run_id=1, benchmark="b", dataset="synth-ntu25", victim=victim,
                defense=defense, attack=attack, knowledge=knowledge, surrogate=surrogate,
                threat=threat, norm="linf", eps=eps, seed=seed, subset_hash="subsethash",
                config_json=config_json, weights_sha256=f"sha-{victim}", status=status, error=None,
                seconds=1.0, n=n, zero_grad_frac=zero_grad_frac, forward_random=forward_random,
                sample_id=f"s{i:02d}", label=labels[i], target=-1,
                clean_pred=labels[i] if clean_correct[i] else labels[i] + 1, adv_pred=adv_pred[i],
                clean_correct=bool(clean_correct[i]), eligible=bool(eligible[i]),
                success=bool(eligible[i]) and adv_pred[i] != labels[i], margin_clean=1.0,
                margin_adv=-1.0, linf=linf[i], l2=10 * linf[i], joint_disp_cm=0.5,
                bone_dev_pct=1.0, accel_dev=0.001, queries=queries[i],
            )
        )  # fmt: skip
    return out


def frame(*cells: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([r for c in cells for r in c])


def counts(k: int, n: int) -> tuple[list[int], list[int]]:
    """adv_pred, clean_correct for n clean-correct samples of which k survive (label 0)."""
    return [0] * k + [1] * (n - k), [1] * n


def only_entry(agg: dict) -> dict:
    assert len(agg["entries"]) == 1
    return agg["entries"][0]


def test_worst_case_is_per_sample_not_minimum_of_attacks():
    # 4 samples, label 0; s3 is misclassified on clean input.
    # pgd breaks s2 -> robust {s0, s1}; cw breaks s0 -> robust {s1, s2}.
    # min of per-attack accuracies = 2/4, per-sample worst case = {s1} = 1/4.
    df = frame(
        cell_rows("a", "pgd", [0, 0, 1, 1], [1, 1, 1, 0]),
        cell_rows("b", "cw", [1, 0, 0, 1], [1, 1, 1, 0]),
    )
    e = only_entry(aggregate(df))
    assert e["clean_accuracy"]["value"] == 0.75 and e["clean_accuracy"]["n"] == 4
    for key in ("pgd", "cw"):
        assert e["attacks"][key]["robust_accuracy"]["value"] == 0.5
        sr = e["attacks"][key]["success_rate"]
        assert sr["value"] == pytest.approx(1 / 3) and sr["n"] == 3
        assert sr["ci"] == pytest.approx(list(wilson(1, 3)))
    assert e["worst_case"]["value"] == 0.25 and e["worst_case"]["n"] == 4
    assert e["worst_case"]["ci"] == pytest.approx(list(wilson(1, 4)))
    assert e["clean_accuracy"]["ci"] == pytest.approx(list(wilson(3, 4)))
    assert e["flags"] == []


def test_transfer_cells_keyed_by_surrogate_and_enter_only_full_worst_case():
    df = frame(
        cell_rows("a", "pgd", [0, 0, 1, 1], [1, 1, 1, 0]),
        cell_rows(
            "t",
            "tasar",
            [1, 0, 0, 1],
            [1, 1, 1, 0],
            knowledge="transfer",
            surrogate="u",
            eligible=[1, 1, 0, 0],
        ),  # fmt: skip
    )
    e = only_entry(aggregate(df))
    assert set(e["attacks"]) == {"pgd", "tasar<-u"}
    t = e["attacks"]["tasar<-u"]
    assert t["knowledge"] == "transfer" and t["surrogate"] == "u"
    assert t["success_rate"]["value"] == 0.5 and t["success_rate"]["n"] == 2
    assert e["worst_case"]["value"] == 0.25  # only s1 survives both
    assert e["worst_case_white_box"]["value"] == 0.5  # pgd alone


def test_stats_over_successful_and_eligible_samples():
    df = frame(
        cell_rows(
            "q",
            "square",
            [1, 0, 1, 1],
            [1, 1, 1, 0],
            knowledge="query",
            linf=[0.01, 0.002, 0.004, 0.0],
            queries=[10, 100, 30, -1],
        ),  # fmt: skip
    )
    s = only_entry(aggregate(df))["attacks"]["square"]["stats"]
    assert s["over_success"]["linf"] == pytest.approx((0.01 + 0.004) / 2)
    assert s["over_eligible"]["linf"] == pytest.approx((0.01 + 0.002 + 0.004) / 3)
    assert s["over_success"]["queries"] == pytest.approx(20.0)
    assert s["over_eligible"]["queries"] == pytest.approx(140 / 3)
    assert s["over_success"]["l2"] == pytest.approx(10 * (0.01 + 0.004) / 2)


def test_transfer_matrix_hand_built():
    rows = []
    # surrogate a -> victim a: 4 eligible, 3 successes
    rows.append(
        cell_rows(
            "aa",
            "tasar",
            [1, 1, 1, 0],
            [1, 1, 1, 1],
            knowledge="transfer",
            surrogate="a",
            victim="a",
        )
    )
    # a -> b: seed 0: 2 eligible, 1 success; seed 1: 2 eligible, 2 successes -> pooled 3/4
    rows.append(cell_rows("ab0", "tasar", [1, 0, 0, 0], [1, 1, 0, 0], knowledge="transfer", surrogate="a",
                          victim="b", eligible=[1, 1, 0, 0]))  # fmt: skip
    rows.append(cell_rows("ab1", "tasar", [1, 1, 0, 0], [1, 1, 0, 0], knowledge="transfer", surrogate="a",
                          victim="b", seed=1, eligible=[1, 1, 0, 0]))  # fmt: skip
    # b -> b: 3 eligible, 0 successes; b -> a not run
    rows.append(
        cell_rows(
            "bb",
            "tasar",
            [0, 0, 0, 1],
            [1, 1, 1, 0],
            knowledge="transfer",
            surrogate="b",
            victim="b",
        )
    )
    agg = aggregate(frame(*rows))
    (m,) = agg["transfer"]
    assert m["attack"] == "tasar" and m["surrogates"] == ["a", "b"] and m["victims"] == ["a", "b"]
    sr = m["success_rate"]
    assert (sr[0][0]["value"], sr[0][0]["n"]) == (0.75, 4)
    assert (sr[0][1]["value"], sr[0][1]["n"]) == (0.75, 4)
    assert sr[1][0] is None
    assert (sr[1][1]["value"], sr[1][1]["n"]) == (0.0, 3)
    assert sr[1][1]["ci"] == pytest.approx(list(wilson(0, 3)))
    # two seeds of one attack on one victim get separate keys
    eb = next(e for e in agg["entries"] if e["victim"] == "b")
    assert set(eb["attacks"]) == {"tasar<-a@seed0", "tasar<-a@seed1", "tasar<-b"}


def test_flags_trigger_on_hand_built_cases():
    n = 40
    adv_wb, cc = counts(30, n)  # white-box leaves 30/40
    adv_tr, _ = counts(5, n)  # transfer leaves 5/40: CI upper ~0.26 < 0.75
    df = frame(
        cell_rows("w", "pgd", adv_wb, cc, zero_grad_frac=0.8, forward_random=1),
        cell_rows("t", "tasar", adv_tr, cc, knowledge="transfer", surrogate="u"),
        cell_rows("q", "square", adv_tr, cc, knowledge="query"),
    )
    codes = {f["code"] for f in only_entry(aggregate(df))["flags"]}
    assert codes == {
        "zero-gradients",
        "random-forward",
        "transfer-beats-white-box",
        "query-beats-white-box",
    }


@pytest.mark.parametrize("field", ["eot", "eot_samples", "eot_iter"])
def test_random_forward_is_not_flagged_once_an_attack_uses_eot(field):
    n = 40
    adv, cc = counts(30, n)

    def cfg(k: int) -> str:
        return json.dumps({"attack": {"name": "pgd", "config": {field: k}}})

    naive = cell_rows("w", "pgd", adv, cc, forward_random=1, config_json=cfg(1))
    eot = cell_rows("e", "pgd-eot", adv, cc, forward_random=1, config_json=cfg(4))
    codes = {f["code"] for f in only_entry(aggregate(frame(naive)))["flags"]}
    assert "random-forward" in codes
    codes = {f["code"] for f in only_entry(aggregate(frame(naive, eot)))["flags"]}
    assert "random-forward" not in codes


def test_flags_do_not_trigger_on_clean_cases():
    n = 40
    adv_wb, cc = counts(20, n)
    adv_tr, _ = counts(17, n)  # below white-box, but within the interval
    df = frame(
        cell_rows("w", "pgd", adv_wb, cc, zero_grad_frac=0.5),
        cell_rows("t", "tasar", adv_tr, cc, knowledge="transfer", surrogate="u"),
        cell_rows("w2", "pgd", *counts(10, n), threat="linf-eps0.02m", eps=0.02),
        cell_rows(
            "t2",
            "tasar",
            *counts(9, n),
            threat="linf-eps0.02m",
            eps=0.02,
            knowledge="transfer",
            surrogate="u",
        ),
    )
    agg = aggregate(df)
    assert len(agg["entries"]) == 2
    assert all(e["flags"] == [] for e in agg["entries"])


def test_non_monotone_eps_flags_the_larger_eps():
    n = 40
    df = frame(
        cell_rows("e1", "pgd", *counts(5, n), threat="linf-eps0.01m", eps=0.01),
        cell_rows("e2", "pgd", *counts(30, n), threat="linf-eps0.02m", eps=0.02),
        cell_rows("e3", "pgd", *counts(3, n), threat="linf-eps0.04m", eps=0.04),
    )
    agg = aggregate(df)
    flags = {e["threat"]: [f["code"] for f in e["flags"]] for e in agg["entries"]}
    assert flags == {
        "linf-eps0.01m": [],
        "linf-eps0.02m": ["non-monotone-eps"],
        "linf-eps0.04m": [],
    }
    (curve,) = agg["eps_curves"]
    assert curve["attack"] == "pgd" and curve["family"] == "linf-eps*"
    assert [p["eps"] for p in curve["points"]] == [0.01, 0.02, 0.04]
    assert [p["robust_accuracy"]["value"] for p in curve["points"]] == [5 / 40, 30 / 40, 3 / 40]


def test_worst_case_eps_curve_uses_the_attacks_common_to_every_eps():
    # fgsm runs only at eps 0.01 (the primary threat); pgd is swept. The worst-case curve needs at
    # least two common attacks, so it appears only once cw is swept too.
    base = [
        cell_rows("p1", "pgd", [0, 0, 1, 1], [1, 1, 1, 1], threat="linf-eps0.01m", eps=0.01),
        cell_rows("f1", "fgsm", [1, 0, 0, 1], [1, 1, 1, 1], threat="linf-eps0.01m", eps=0.01),
        cell_rows("p2", "pgd", [0, 1, 1, 1], [1, 1, 1, 1], threat="linf-eps0.02m", eps=0.02),
    ]
    assert [c["attack"] for c in aggregate(frame(*base))["eps_curves"]] == ["pgd"]
    extra = [
        cell_rows("c1", "cw", [0, 1, 0, 1], [1, 1, 1, 1], threat="linf-eps0.01m", eps=0.01),
        cell_rows("c2", "cw", [0, 1, 1, 1], [1, 1, 1, 1], threat="linf-eps0.02m", eps=0.02),
    ]
    curves = {c["attack"]: c for c in aggregate(frame(*base, *extra))["eps_curves"]}
    wc = curves["worst-case"]
    assert wc["suite"] == ["cw", "pgd"]
    # eps 0.01: pgd robust {s0, s1}, cw robust {s0, s2} -> {s0}; eps 0.02: {s0} and {s0} -> {s0}
    assert [p["robust_accuracy"]["value"] for p in wc["points"]] == [0.25, 0.25]


def test_threat_family():
    assert threat_family("linf-eps0.01m") == "linf-eps*"
    assert threat_family("l2-eps0.5m-bones1%-j0,3") == "l2-eps*-bones1%-j0,3"
    assert threat_family("linf-eps1e-05u-f0:32") == "linf-eps*-f0:32"
    cfg = json.dumps({"threat": {"norm": "linf", "eps": 0.02, "unit": "m"}})
    assert json.loads(threat_family("ignored", cfg)) == {"norm": "linf", "unit": "m"}


def test_proportion_and_bad_frames():
    assert proportion(0, 0) == {"value": None, "n": 0, "ci": [0.0, 1.0]}
    p = proportion(7, 10)
    assert p["value"] == 0.7 and p["ci"] == pytest.approx(list(wilson(7, 10)))
    with pytest.raises(DataError, match="adv_pred"):
        aggregate(frame(cell_rows("a", "pgd", [0], [1])).drop(columns=["adv_pred"]))
    with pytest.raises(DataError, match="status"):
        aggregate(frame(cell_rows("a", "pgd", [0], [1], status="invalid")))


def test_diagonal_transfer_cells_are_labelled_and_kept_out_of_the_worst_case():
    """Victim v: white-box PGD fools s00; the diagonal transfer cell (surrogate v, also in an
    ensemble "u+v") fools s01; the off-diagonal transfer from u fools s02. Worst case: robust only
    to the non-diagonal cells -> s03 and s01 survive: 2/4 (with the diagonal it would be 1/4)."""
    cc = [1, 1, 1, 1]
    rows = [
        cell_rows("wb", "pgd", [1, 0, 0, 0], cc, victim="v"),
        cell_rows("vv", "mi", [0, 1, 0, 0], cc, knowledge="transfer", surrogate="v", victim="v"),
        cell_rows(
            "ens", "ens", [0, 1, 0, 0], cc, knowledge="transfer", surrogate="u+v", victim="v"
        ),
        cell_rows("uv", "mi", [0, 0, 1, 0], cc, knowledge="transfer", surrogate="u", victim="v"),
    ]
    (e,) = aggregate(frame(*rows))["entries"]
    assert (e["worst_case"]["value"], e["worst_case"]["n"]) == (0.5, 4)
    assert e["attacks"]["mi<-v"]["diagonal"] and e["attacks"]["ens<-u+v"]["diagonal"]
    assert not e["attacks"]["mi<-u"]["diagonal"] and not e["attacks"]["pgd"]["diagonal"]
    assert e["attacks"]["mi<-v"]["robust_accuracy"]["value"] == 0.75  # still reported
    assert (e["worst_case_incl_diagonal"]["value"], e["worst_case_incl_diagonal"]["n"]) == (0.25, 4)
    fams = e["families"]
    assert set(fams) == {"white-box", "transfer"}
    assert fams["white-box"] == {"worst_case": proportion(3, 4), "attacks": 1}
    # transfer family: only the off-diagonal cell mi<-u (fools s02) -> 3/4
    assert fams["transfer"] == {"worst_case": proportion(3, 4), "attacks": 1}


def test_transfer_matrix_marks_the_diagonal_and_pools_the_off_diagonal_mean():
    """Surrogates u, v; victims u, v. Diagonal cells fool 4/4, off-diagonal ones 1/4 and 0/4."""
    cc = [1, 1, 1, 1]
    rows = [
        cell_rows("uu", "mi", [1, 1, 1, 1], cc, knowledge="transfer", surrogate="u", victim="u"),
        cell_rows("vv", "mi", [1, 1, 1, 1], cc, knowledge="transfer", surrogate="v", victim="v"),
        cell_rows("uv", "mi", [1, 0, 0, 0], cc, knowledge="transfer", surrogate="u", victim="v"),
        cell_rows("vu", "mi", [0, 0, 0, 0], cc, knowledge="transfer", surrogate="v", victim="u"),
    ]
    (m,) = aggregate(frame(*rows))["transfer"]
    assert m["surrogates"] == ["u", "v"] and m["victims"] == ["u", "v"]
    assert m["diagonal"] == [[0, 0], [1, 1]]
    assert m["off_diagonal"] == proportion(1, 8)
    assert m["success_rate"][0][0] == proportion(4, 4)


def test_attack_config_hash_ignores_the_label_and_follows_the_config():
    from robench.report.aggregate import attack_config_sha256

    a = json.dumps({"attack": {"id": "pgd-10", "name": "pgd", "config": {"steps": 10}}})
    b = json.dumps({"attack": {"id": "my-pgd", "name": "pgd", "config": {"steps": 10}}})
    c = json.dumps({"attack": {"id": "pgd-10", "name": "pgd", "config": {"steps": 11}}})
    assert attack_config_sha256(a) == attack_config_sha256(b) != attack_config_sha256(c)
    assert len(attack_config_sha256(a)) == 64
    assert attack_config_sha256("{}") is None and attack_config_sha256("not json") is None
    assert attack_config_sha256(None) is None
    rows = cell_rows("k", "pgd", [1, 0], [1, 1])
    for r in rows:
        r["config_json"] = a
    (e,) = aggregate(frame(rows))["entries"]
    assert e["attacks"]["pgd"]["config_sha256"] == attack_config_sha256(a)


def test_families_count_their_attacks_and_exist_only_where_run():
    cc = [1, 1, 1, 1]
    rows = [
        cell_rows("a1", "pgd", [1, 0, 0, 0], cc, victim="v"),
        cell_rows("a2", "fgsm", [0, 1, 0, 0], cc, victim="v"),
        cell_rows("a3", "mi", [0, 0, 1, 0], cc, knowledge="transfer", surrogate="u", victim="v"),
        cell_rows("b1", "pgd", [0, 0, 0, 0], cc, victim="w"),  # w: white-box only
    ]
    entries = {e["victim"]: e for e in aggregate(frame(*rows))["entries"]}
    assert entries["v"]["families"]["white-box"] == {"worst_case": proportion(2, 4), "attacks": 2}
    assert entries["v"]["families"]["transfer"] == {"worst_case": proportion(3, 4), "attacks": 1}
    assert set(entries["w"]["families"]) == {"white-box"}


def test_entries_are_sorted_by_threat_victim_defense_whatever_the_cell_keys():
    cc = [1, 1]
    rows = [
        cell_rows("0-late", "pgd", [1, 0], cc, victim="zz"),
        cell_rows("9-early", "pgd", [1, 1], cc, victim="aa"),
    ]
    assert [e["victim"] for e in aggregate(frame(*rows))["entries"]] == ["aa", "zz"]


def test_flags_are_sorted_by_code_then_message():
    rows = cell_rows("k", "pgd", [1, 0], [1, 1], zero_grad_frac=0.9, forward_random=1)
    (e,) = aggregate(frame(rows))["entries"]
    codes = [f["code"] for f in e["flags"]]
    assert codes == sorted(codes) and codes == ["random-forward", "zero-gradients"]
