"""Paired differences between two methods' per-pair measures, with bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xcos_xai.evaluation.differences import goal_margins, paired_difference


def _frame(values: dict[str, list[float]], measure: str = "del_auc", same=True) -> pd.DataFrame:
    rows = [{"i": i, "same": same, "method": m, measure: v}
            for m, vs in values.items() for i, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_paired_difference_by_hand():
    # differences 0, 0, 0, 0.4: mean 0.1; a resample's mean is 0.1 * (times pair 3 is drawn),
    # so every bound is a multiple of 0.1 between 0 and 0.4
    pp = _frame({"a": [0.5, 0.6, 0.7, 1.2], "b": [0.5, 0.6, 0.7, 0.8]})
    d = paired_difference(pp, "a", "b", "del_auc", n_boot=4000)
    assert d["n"] == 4
    assert d["mean"] == pytest.approx(0.75) and d["mean_reference"] == pytest.approx(0.65)
    assert d["difference"] == pytest.approx(0.1)
    assert d["low"] == pytest.approx(0.0) and d["high"] in (pytest.approx(0.3),
                                                            pytest.approx(0.4))
    # P(pair 3 never drawn in 4) = (3/4)^4 = 0.32 > 2.5 %: the low bound is exactly 0
    again = paired_difference(pp, "a", "b", "del_auc", n_boot=4000)
    assert again == d  # seeded
    # the pairs are paired: shifting both methods by a per-pair offset changes nothing
    offset = np.array([10.0, -3.0, 7.0, 0.5])
    shifted = _frame({"a": list(np.add([0.5, 0.6, 0.7, 1.2], offset)),
                      "b": list(np.add([0.5, 0.6, 0.7, 0.8], offset))})
    s = paired_difference(shifted, "a", "b", "del_auc", n_boot=4000)
    assert (s["difference"], s["low"], s["high"]) == pytest.approx(
        (d["difference"], d["low"], d["high"]))


def test_paired_difference_keeps_the_asked_pairs_and_names_bad_input():
    genuine = _frame({"a": [1.0, 1.0], "b": [0.0, 0.0]})
    impostor = _frame({"a": [0.0, 0.0], "b": [1.0, 1.0]}, same=False).assign(i=[2, 3, 2, 3])
    pp = pd.concat([genuine, impostor])
    assert paired_difference(pp, "a", "b", "del_auc", "genuine")["difference"] == 1.0
    assert paired_difference(pp, "a", "b", "del_auc", "impostor")["difference"] == -1.0
    assert paired_difference(pp, "a", "b", "del_auc", "all")["difference"] == 0.0
    with pytest.raises(ValueError, match="'lime' is not in the per-pair measures"):
        paired_difference(pp, "a", "lime", "del_auc")
    with pytest.raises(ValueError, match="measure 'auc' is not a per-pair column"):
        paired_difference(pp, "a", "b", "auc")
    with pytest.raises(ValueError, match="pairs='some'"):
        paired_difference(pp, "a", "b", "del_auc", "some")


def test_goal_verdicts_met_tied_missed_and_fnmr_as_a_rate():
    n = 40
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, n)
    noise -= noise.mean()  # xcos worse by exactly 0.001 on average, the pairs spread it
    rows = []
    for i in range(n):
        rows += [
            # deletion (lower is better): xcos 0.001 worse than IG with noisy pairs -> tied
            {"i": i, "same": True, "method": "xcos", "del_auc": 0.5 + noise[i] + 0.001,
             "ins_auc": 0.70, "accepted_at_30pct": float(i < 10),
             "pointing": float(i % 2) if i < 20 else np.nan, "iou": np.nan},
            {"i": i, "same": True, "method": "integrated_gradients", "del_auc": 0.5,
             "ins_auc": 0.0, "accepted_at_30pct": 1.0, "pointing": np.nan, "iou": np.nan},
            # insertion: occlusion better on every pair -> missed; FNMR: xcos 0.75 vs 0.5
            {"i": i, "same": True, "method": "occlusion", "del_auc": 0.0, "ins_auc": 0.71,
             "accepted_at_30pct": float(i % 2), "pointing": np.nan, "iou": np.nan},
            # pointing on 20 hybrids: xcos 0.5 vs SmoothGrad 0.25 -> met
            {"i": i, "same": True, "method": "smoothgrad", "del_auc": 0.0, "ins_auc": 0.0,
             "accepted_at_30pct": 1.0, "pointing": float(i % 4 == 0) if i < 20 else np.nan,
             "iou": np.nan}]
    goals = goal_margins(pd.DataFrame(rows)).set_index("measure")
    assert goals.loc["fnmr_at_30pct", "mean"] == pytest.approx(0.75)  # 30 of 40 rejected
    assert goals.loc["fnmr_at_30pct", "mean_reference"] == pytest.approx(0.5)
    assert goals.loc["fnmr_at_30pct", "difference"] == pytest.approx(0.25)
    assert goals.loc["fnmr_at_30pct", "ci_low"] <= 0.25 <= goals.loc["fnmr_at_30pct", "ci_high"]
    assert goals.loc["fnmr_at_30pct", "verdict"] == "met"
    assert goals.loc["ins_auc", "verdict"] == "missed"
    assert goals.loc["ins_auc", "difference"] == pytest.approx(-0.01)
    assert goals.loc["del_auc", "verdict"] == "tied"
    assert goals.loc["del_auc", "difference"] == pytest.approx(0.001)
    assert goals.loc["pointing", "pairs"] == 20 and goals.loc["pointing", "verdict"] == "met"
    assert goals.loc["pointing", "difference"] == pytest.approx(0.25)
    assert "iou" not in goals.index  # not measured: left out, not reported as a tie


def test_goals_md_adds_the_imitated_measurement_when_the_run_has_it():
    """With ``occlusion_blocks`` in the run, goals.md also judges that measurement by the
    same goals and the default map against it (by hand: xcos deletes 0.002 slower than its
    target on every pair, the target 0.003 faster than IG)."""
    from xcos_xai.apps.compare import CompareConfig, goals_markdown
    from xcos_xai.evaluation.differences import imitation_goals

    rows = []
    for i in range(10):
        base = 0.5 + 0.01 * i
        for method, d in (("xcos", base + 0.002), ("occlusion_blocks", base),
                          ("integrated_gradients", base + 0.003), ("occlusion", base)):
            rows.append({"i": i, "same": True, "method": method, "del_auc": d,
                         "ins_auc": 0.7, "accepted_at_30pct": 0.0})
    pp = pd.DataFrame(rows)
    target = goal_margins(pp, "occlusion_blocks").set_index("measure")
    assert target.loc["del_auc", "difference"] == pytest.approx(-0.003)
    assert target.loc["del_auc", "verdict"] == "met"
    imitation = goal_margins(pp, goals=imitation_goals("occlusion_blocks")).set_index("measure")
    assert imitation.loc["del_auc", "difference"] == pytest.approx(0.002)
    assert imitation.loc["del_auc", "verdict"] == "missed"  # every pair: no tie
    assert imitation.loc["ins_auc", "verdict"] == "met"  # equal counts as met
    text = goals_markdown(goal_margins(pp), CompareConfig(), target.reset_index(),
                          imitation.reset_index())
    assert "## The measurement the default map imitates (`occlusion_blocks`)" in text
    assert "| del_auc ≤ occlusion_blocks | 10 | 0.5470 | occlusion_blocks 0.5450 | " \
           "+0.0020 [+0.0020, +0.0020] | missed |" in text
    assert goals_markdown(goal_margins(pp), CompareConfig()).count("| goal |") == 1
