"""The verification protocol, checked against scikit-learn, brute force and a hand example."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score, roc_curve

from xcos_xai.evaluation.protocol import (
    ProtocolResult,
    accuracy_at,
    best_threshold,
    roc_auc,
    tar_at_far,
    ten_fold_accuracy,
    threshold_at_far,
)

# --------------------------------------------------------------------------- independent code


def brute_threshold(s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The documented rule, written out slowly: try every cut (below all scores, between
    each two consecutive distinct scores, above all), group the best cuts into runs of
    neighbours, take the middle run (upper of two) and the midpoint of its interval."""
    values = sorted(set(s.tolist()))
    n_cuts = len(values) + 1
    correct = []
    for c in range(n_cuts):
        called_same = s >= values[c] if c < len(values) else np.zeros(len(s), bool)
        correct.append(int(np.sum(called_same == y)))
    best = max(correct)
    runs, current = [], []
    for c in range(n_cuts):
        if correct[c] == best:
            current.append(c)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    run = runs[len(runs) // 2]
    span = values[-1] - values[0] if len(values) > 1 else 1.0
    low = values[run[0] - 1] if run[0] > 0 else values[0] - span
    high = values[run[-1]] if run[-1] < len(values) else values[-1] + span
    return (low + high) / 2, best / len(s)


def brute_ten_fold(s, y, folds):
    accs, thrs = [], []
    for k in sorted(set(folds.tolist())):
        train, test = folds != k, folds == k
        thr, _ = brute_threshold(s[train], y[train])
        accs.append(float(np.mean((s[test] > thr) == y[test])))
        thrs.append(thr)
    return accs, thrs


def sklearn_tar_at_far(s, y, far):
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return float(tpr[fpr <= far].max())


def lfw_like(rng, n_folds=10, per=30, sep=1.5, decimals=None):
    y = np.tile(np.repeat([True, False], per), n_folds)
    folds = np.repeat(np.arange(n_folds), 2 * per)
    s = rng.normal(y * sep, 1.0)
    if decimals is not None:
        s = np.round(s, decimals)
    return s, y, folds


# --------------------------------------------------------------------------- hand examples


def test_tiny_example_by_hand():
    # sorted: 0.1 (impostor), 0.35 (genuine), 0.4 (impostor), 0.8 (genuine)
    s, y = [0.1, 0.4, 0.35, 0.8], [False, False, True, True]
    thr, acc = best_threshold(s, y)
    # cuts: below 0.1 -> 2/4; (0.1, 0.35) -> 3/4; (0.35, 0.4) -> 2/4; (0.4, 0.8) -> 3/4;
    # above 0.8 -> 2/4. Two best intervals; the upper one's midpoint is 0.6.
    assert acc == 0.75 and thr == pytest.approx(0.6)
    assert accuracy_at(s, y, 0.2) == 0.75  # 0.1 rejected ok, 0.35 ok, 0.4 wrong, 0.8 ok
    assert accuracy_at(s, y, 0.35) == 0.5  # strict ">": 0.35 is rejected
    assert roc_auc(s, y) == 0.75  # 3 of the 4 genuine-impostor orderings are right
    assert tar_at_far(s, y, far=0.0) == 0.5  # threshold 0.4: only 0.8 passes
    assert tar_at_far(s, y, far=0.5) == 1.0  # one impostor may pass: threshold 0.1


def test_two_fold_example_by_hand():
    # fold 0: genuine 0.9, 0.6; impostor 0.5, 0.1    fold 1: genuine 0.7, 0.3; impostor 0.4, 0.2
    s = np.array([0.9, 0.6, 0.5, 0.1, 0.7, 0.3, 0.4, 0.2])
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    res = ten_fold_accuracy(s, y, folds)
    # Fold 0 is tested with a threshold chosen on fold 1 (0.2 0.3 0.4 0.7: F T F T):
    # best cuts (0.2, 0.3) and (0.4, 0.7) with 3/4; upper -> 0.55. On fold 0: 0.9 ok,
    # 0.6 ok, 0.5 ok, 0.1 ok -> 4/4.
    # Fold 1 is tested with fold 0's threshold (0.1 0.5 0.6 0.9: F F T T): the only best
    # cut is (0.5, 0.6) -> 0.55. On fold 1: 0.7 ok, 0.3 wrong, 0.4 ok, 0.2 ok -> 3/4.
    assert res.thresholds == pytest.approx([0.55, 0.55])
    assert res.fold_accuracies == [1.0, 0.75]
    assert res.mean == 0.875 and res.std == pytest.approx(0.125)
    assert res.mean_threshold == pytest.approx(0.55)
    assert res.fold_ids == [0, 1]
    # genuine > impostor orderings: 0.9, 0.7, 0.6 beat all 4; 0.3 beats 0.2, 0.1 -> 14/16
    assert res.auc == pytest.approx(14 / 16)


def test_all_equal_scores():
    thr, acc = best_threshold([0.5, 0.5, 0.5], [True, False, True])
    assert acc == pytest.approx(2 / 3) and thr < 0.5  # call everything "same"
    thr, acc = best_threshold([0.5, 0.5, 0.5], [False, False, True])
    assert acc == pytest.approx(2 / 3) and thr > 0.5


def test_edge_thresholds_scale_with_the_scores():
    # Huge scores: the "call everything same" threshold must still sit below the minimum.
    s = np.array([1e12, 2e12, 3e12])
    y = np.array([True, True, True])
    thr, acc = best_threshold(s, y)
    assert acc == 1.0 and thr < 1e12 and accuracy_at(s, y, thr) == 1.0
    # Adjacent floats: no number lies strictly between them, and ">" still separates them.
    a = 1.0
    b = np.nextafter(a, 2.0)
    thr, acc = best_threshold([a, b], [False, True])
    assert acc == 1.0 and accuracy_at([a, b], [False, True], thr) == 1.0


# --------------------------------------------------------------------------- brute force


@pytest.mark.parametrize("seed", range(6))
def test_best_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(200) < rng.uniform(0.2, 0.8)
    s = np.round(rng.normal(y * 1.2, 1.0), 1)  # rounded: many ties
    thr, acc = best_threshold(s, y)
    b_thr, b_acc = brute_threshold(s, y)
    assert acc == pytest.approx(b_acc)
    assert thr == pytest.approx(b_thr, abs=1e-12)
    assert accuracy_at(s, y, thr) == pytest.approx(acc)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-6, 6), st.booleans()), min_size=1, max_size=25))
def test_best_threshold_property(rows):
    s = np.array([v / 2 for v, _ in rows], dtype=float)
    y = np.array([b for _, b in rows])
    thr, acc = best_threshold(s, y)
    b_thr, b_acc = brute_threshold(s, y)
    assert acc == b_acc and thr == pytest.approx(b_thr)
    assert accuracy_at(s, y, thr) == acc
    # No threshold at all does better: check every score and a bit around it.
    for t in np.concatenate([s, s - 0.01, s + 0.01]):
        assert accuracy_at(s, y, t) <= acc


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decimals", [None, 1])
def test_ten_fold_against_brute_force(seed, decimals):
    rng = np.random.default_rng(seed)
    s, y, folds = lfw_like(rng, per=15, decimals=decimals)
    res = ten_fold_accuracy(s, y, folds)
    accs, thrs = brute_ten_fold(s, y, folds)
    assert res.fold_accuracies == pytest.approx(accs)
    assert res.thresholds == pytest.approx(thrs)
    assert res.mean == pytest.approx(np.mean(accs))
    assert res.std == pytest.approx(np.std(accs))  # population std (ddof=0)
    assert res.mean_threshold == pytest.approx(np.mean(thrs))
    assert res.auc == pytest.approx(roc_auc_score(y, s))
    assert res.tar_at_far_1e3 == pytest.approx(sklearn_tar_at_far(s, y, 1e-3))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 5), st.integers(1, 6))
def test_ten_fold_property_any_folds(seed, n_folds, per):
    rng = np.random.default_rng(seed)
    s, y, folds = lfw_like(rng, n_folds=n_folds, per=per, sep=rng.uniform(0, 3), decimals=1)
    perm = rng.permutation(len(s))  # pair order must not matter
    res = ten_fold_accuracy(s[perm], y[perm], folds[perm])
    accs, thrs = brute_ten_fold(s, y, folds)
    assert res.fold_accuracies == pytest.approx(accs)
    assert res.thresholds == pytest.approx(thrs)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(-3, 3))
def test_ten_fold_is_invariant_to_increasing_affine_maps(seed, scale, shift):
    rng = np.random.default_rng(seed)
    s, y, folds = lfw_like(rng, per=5)
    s = np.round(s * 8)  # integers: the affine map is exact
    a = ten_fold_accuracy(s, y, folds)
    b = ten_fold_accuracy(scale * s + shift, y, folds)
    assert a.fold_accuracies == b.fold_accuracies and a.auc == b.auc
    assert b.thresholds == pytest.approx([scale * t + shift for t in a.thresholds])


def test_distances_are_negated_consistently():
    rng = np.random.default_rng(7)
    y = np.tile(np.repeat([True, False], 20), 10)
    folds = np.repeat(np.arange(10), 40)
    d = rng.normal(np.where(y, 0.4, 0.8), 0.2)
    a = ten_fold_accuracy(d, y, folds, higher_is_same=False)
    b = ten_fold_accuracy(-d, y, folds)
    assert a.mean == b.mean and a.fold_accuracies == b.fold_accuracies
    assert a.thresholds == pytest.approx([-t for t in b.thresholds])
    assert a.auc == b.auc and a.tar_at_far_1e3 == b.tar_at_far_1e3
    assert a.higher_is_same is False
    # distance thresholds decide "same" when distance < threshold
    for k, thr in enumerate(a.thresholds):
        test = folds == k
        assert np.mean((d[test] < thr) == y[test]) == pytest.approx(a.fold_accuracies[k])


# --------------------------------------------------------------------------- scikit-learn


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decimals", [None, 1])
def test_auc_against_sklearn(seed, decimals):
    rng = np.random.default_rng(seed)
    y = rng.random(1500) < 0.4
    s = rng.normal(y * 1.0, 1.0)
    if decimals is not None:
        s = np.round(s, decimals)  # ties count one half in both
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.booleans()), min_size=2, max_size=40)
       .filter(lambda rows: len({b for _, b in rows}) == 2),
       st.floats(0, 1))
def test_auc_and_tar_property_against_sklearn(rows, far):
    s = np.array([v for v, _ in rows], dtype=float)
    y = np.array([b for _, b in rows])
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert tar_at_far(s, y, far) == sklearn_tar_at_far(s, y, far)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("far", [0.0, 1e-3, 1e-2, 0.1, 0.5])
def test_tar_at_far_against_sklearn_roc_curve(seed, far):
    rng = np.random.default_rng(seed)
    y = rng.random(4000) < 0.5
    s = rng.normal(y * 2.0, 1.0)
    if seed % 2:
        s = np.round(s, 2)
    assert tar_at_far(s, y, far) == sklearn_tar_at_far(s, y, far)
    thr = threshold_at_far(s, y, far)
    assert np.mean(s[~y] > thr) <= far
    assert np.mean(s[y] > thr) == tar_at_far(s, y, far)


def test_tar_at_far_counts_allowed_impostors():
    # 3000 impostors, FAR 1e-3: exactly 3 may pass, the 4th highest is the threshold.
    rng = np.random.default_rng(0)
    imp = rng.permutation(np.arange(3000, dtype=float))
    gen = np.array([2996.5, 2995.5, 2997.5, 5000.0])
    s = np.concatenate([imp, gen])
    y = np.concatenate([np.zeros(3000, bool), np.ones(4, bool)])
    assert threshold_at_far(s, y, 1e-3) == 2996.0
    assert tar_at_far(s, y, 1e-3) == 0.75
    assert threshold_at_far(s, y, 1.0) == -np.inf and tar_at_far(s, y, 1.0) == 1.0


# --------------------------------------------------------------------------- result, speed


def test_result_as_dict_is_json():
    rng = np.random.default_rng(1)
    s, y, folds = lfw_like(rng)
    res = ten_fold_accuracy(s, y, folds)
    assert isinstance(res, ProtocolResult)
    d = res.as_dict()
    assert set(d) >= {"mean", "std", "fold_accuracies", "thresholds", "auc",
                      "tar_at_far_1e3", "mean_threshold"}
    assert json.loads(json.dumps(d)) == d
    assert len(d["thresholds"]) == 10 and len(d["fold_accuracies"]) == 10


def test_six_thousand_pairs_are_fast():
    rng = np.random.default_rng(2)
    s, y, folds = lfw_like(rng, per=300)
    start = time.perf_counter()
    res = ten_fold_accuracy(s, y, folds)
    assert time.perf_counter() - start < 1.0
    assert 0.7 < res.mean < 0.9


# --------------------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        best_threshold([0.1, np.nan], [True, False])
    with pytest.raises(ValueError, match="inf"):
        roc_auc([0.1, np.inf], [True, False])
    with pytest.raises(ValueError, match="differ in length: 2 scores vs 1 labels"):
        best_threshold([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="1-D"):
        best_threshold([[0.1, 0.2]], [[True, False]])
    with pytest.raises(ValueError, match="empty"):
        best_threshold([], [])
    with pytest.raises(ValueError, match="0/1"):
        best_threshold([0.1, 0.2], [2, 0])
    with pytest.raises(ValueError, match="0/1"):
        best_threshold([0.1, 0.2], [np.nan, 1.0])
    with pytest.raises(ValueError, match="numbers"):
        best_threshold(["a", "b"], [0, 1])
    with pytest.raises(ValueError, match="at least 2 folds"):
        ten_fold_accuracy([0.1, 0.2], [True, False], [0, 0])
    with pytest.raises(ValueError, match="one id per pair"):
        ten_fold_accuracy([0.1, 0.2], [True, False], [0, 1, 1])
    with pytest.raises(ValueError, match="fold 1 has only one class"):
        ten_fold_accuracy([0.1, 0.2, 0.3, 0.4], [True, False, True, True], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        ten_fold_accuracy([0.1, 0.2, 0.3, 0.4], [True, False, True, False],
                          [0, 0, 1, np.nan])
    with pytest.raises(ValueError, match="both genuine and impostor"):
        roc_auc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="both genuine and impostor"):
        tar_at_far([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tar_at_far([0.1, 0.2], [True, False], far=1.5)
    assert best_threshold([0.1, 0.9], [0, 1])[1] == 1.0  # 0/1 labels are fine
