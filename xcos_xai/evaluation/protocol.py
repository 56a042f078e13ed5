"""The one place for the verification protocol: thresholds, 10-fold accuracy, ROC numbers.

Scores are "higher means same person" (pass ``higher_is_same=False`` for distances).
Thresholds are exact: every midpoint between consecutive distinct scores is considered, and
the decision is ``score > threshold``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _validate(scores, same) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(same).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    if s.size == 0:
        raise ValueError("no pairs to evaluate")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf: every pair needs a finite score")
    return s, y


def best_threshold(scores, same) -> tuple[float, float]:
    """``(threshold, accuracy)`` maximising accuracy of ``score > threshold`` on these pairs.

    All cut points (below the minimum, between distinct scores, above the maximum) are
    tried; among equally good cuts, the median one (the upper of two) is taken.

    Example:
        >>> thr, acc = best_threshold([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
        >>> round(thr, 4), acc  # cuts 0.225 and 0.6 both give 3 of 4 right
        (0.6, 0.75)
    """
    s, y = _validate(scores, same)
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s_sorted) > 0)  # last index of each run but the final
    cuts_idx = np.concatenate([[-1], distinct, [len(s) - 1]])
    # Pairs at or below cut index i are called "different"; count the correct ones.
    neg_below = np.concatenate([[0], np.cumsum(~y_sorted)])[cuts_idx + 1]
    pos_above = y.sum() - np.concatenate([[0], np.cumsum(y_sorted)])[cuts_idx + 1]
    correct = neg_below + pos_above
    best = np.flatnonzero(correct == correct.max())
    pick = best[len(best) // 2]
    i = cuts_idx[pick]
    if i < 0:
        thr = s_sorted[0] - 1e-6
    elif i >= len(s) - 1:
        thr = s_sorted[-1] + 1e-6
    else:
        thr = 0.5 * (s_sorted[i] + s_sorted[i + 1])
    return float(thr), float(correct[pick] / len(s))


def accuracy_at(scores, same, threshold: float) -> float:
    s, y = _validate(scores, same)
    return float(((s > threshold) == y).mean())


def roc_auc(scores, same) -> float:
    """Area under the ROC curve (the probability a genuine pair outscores an impostor pair,
    ties counting half), by ranks."""
    s, y = _validate(scores, same)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both genuine and impostor pairs")
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    s_sorted = s[order]
    # average ranks for ties
    _, first, counts = np.unique(s_sorted, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tar_at_far(scores, same, far: float = 1e-3) -> float:
    """True accept rate at the lowest threshold whose false accept rate is at most ``far``.

    Decisions are ``score > threshold``; the threshold is the ``k``-th highest impostor score
    where ``k = floor(far * n_impostors)`` impostors may pass (so with 3000 impostors and
    FAR = 1e-3, 3 impostors may score above it).
    """
    s, y = _validate(scores, same)
    imp = np.sort(s[~y])[::-1]
    if len(imp) == 0 or y.sum() == 0:
        raise ValueError("TAR@FAR needs both genuine and impostor pairs")
    allowed = int(np.floor(far * len(imp)))
    thr = imp[allowed] if allowed < len(imp) else -np.inf
    return float((s[y] > thr).mean())


@dataclass
class ProtocolResult:
    """10-fold verification result; accuracies as fractions, std over folds (population)."""

    mean: float
    std: float
    fold_accuracies: list[float]
    thresholds: list[float]
    auc: float
    tar_at_far_1e3: float

    def as_dict(self) -> dict:
        return asdict(self)


def ten_fold_accuracy(scores, same, folds, higher_is_same: bool = True) -> ProtocolResult:
    """For each fold: the threshold that maximises accuracy on the other folds, applied to
    this fold. Returns the mean and population std of the fold accuracies, the thresholds
    (in the score's own sign), and ROC AUC and TAR at FAR = 1e-3 over all pairs."""
    s, y = _validate(scores, same)
    f = np.asarray(folds).ravel()
    if f.shape != s.shape:
        raise ValueError(f"folds and scores differ in length: {f.shape[0]} vs {s.shape[0]}")
    if not higher_is_same:
        s = -s
    fold_ids = np.unique(f)
    if len(fold_ids) < 2:
        raise ValueError("the protocol needs at least 2 folds")
    accs, thrs = [], []
    for k in fold_ids:
        test = f == k
        if y[test].all() or not y[test].any():
            raise ValueError(f"fold {k} has only one class: each fold needs genuine and "
                             "impostor pairs")
        thr, _ = best_threshold(s[~test], y[~test])
        accs.append(accuracy_at(s[test], y[test], thr))
        thrs.append(thr if higher_is_same else -thr)
    return ProtocolResult(float(np.mean(accs)), float(np.std(accs)), accs, thrs,
                          roc_auc(s, y), tar_at_far(s, y, 1e-3))
