"""The one place for the verification protocol: thresholds, 10-fold accuracy, ROC numbers.

Every function takes plain arrays: ``scores`` (one finite number per pair) and ``same``
(``True`` for a genuine pair, ``False`` for an impostor pair; 0/1 also accepted).

Conventions, used everywhere in this module:

* Scores are "higher means same person". :func:`ten_fold_accuracy` takes
  ``higher_is_same=False`` for distances and negates them internally; the thresholds it
  reports are then in distance units again (decide "same" when ``distance < threshold``).
* A pair is called "same" when ``score > threshold`` (strictly).
* Thresholds are exact. The accuracy of ``score > t`` only changes when ``t`` crosses a
  score, so every cut between two consecutive distinct scores (and below the lowest and
  above the highest) is tried, with no grid.
* Ties are broken deterministically. The cuts that reach the best accuracy form one or
  more *intervals* of thresholds, each running from the score just below its first cut to
  the score just above its last. The middle interval is taken (the upper of the two
  middle ones when their number is even), and the threshold is that interval's midpoint.
  An interval that is open to one side (below the lowest or above the highest score) is
  closed one score range ``max - min`` beyond the data (or 1.0 when all scores are equal).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "ProtocolResult",
    "accuracy_at",
    "best_threshold",
    "roc_auc",
    "tar_at_far",
    "ten_fold_accuracy",
    "threshold_at_far",
]


# --------------------------------------------------------------------------- validation


def _validate(scores, same) -> tuple[np.ndarray, np.ndarray]:
    """Finite float64 scores and boolean labels of one length, or one clear ValueError."""
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"scores must be numbers, one per pair: {err}") from None
    y_raw = np.asarray(same)
    if s.ndim != 1:
        raise ValueError(f"scores must be a 1-D array (one score per pair), got shape "
                         f"{s.shape}; flatten it first")
    if y_raw.ndim != 1:
        raise ValueError(f"same must be a 1-D array (one label per pair), got shape "
                         f"{y_raw.shape}; flatten it first")
    if s.shape != y_raw.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} scores vs "
                         f"{y_raw.shape[0]} labels; give one label per scored pair")
    if s.size == 0:
        raise ValueError("no pairs to evaluate: scores and labels are empty")
    if np.isnan(s).any():
        raise ValueError(f"scores contain {int(np.isnan(s).sum())} NaN value(s): every pair "
                         "needs a finite score (check for failed face detections or 0/0)")
    if not np.isfinite(s).all():
        raise ValueError("scores contain inf: every pair needs a finite score")
    if y_raw.dtype == bool:
        y = y_raw
    else:
        try:
            y_num = y_raw.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"same must hold booleans or 0/1, got dtype {y_raw.dtype}") from None
        if not np.isin(y_num, (0.0, 1.0)).all():
            raise ValueError("same must hold booleans or 0/1 (genuine = True/1, impostor = "
                             "False/0); other values (or NaN) were found")
        y = y_num.astype(bool)
    return s, y


def _both_classes(y: np.ndarray, what: str) -> tuple[int, int]:
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"{what} needs both genuine and impostor pairs, got {n_pos} genuine "
                         f"and {n_neg} impostor")
    return n_pos, n_neg


# --------------------------------------------------------------------------- thresholds


def _midpoint(low: float, high: float) -> float:
    """A threshold strictly inside ``(low, high)`` if one exists (else ``low``, which still
    separates them under ``score > threshold``)."""
    mid = 0.5 * low + 0.5 * high
    if low < mid < high and np.isfinite(mid):
        return float(mid)
    return float(low)


def _best_cut(s: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """``(threshold, n_correct)`` of the best cut; see the module notes for the tie rule."""
    values, inverse = np.unique(s, return_inverse=True)
    m = len(values)
    pos = np.bincount(inverse, weights=y.astype(np.float64), minlength=m)
    neg = np.bincount(inverse, weights=(~y).astype(np.float64), minlength=m)
    # Cut c calls values[:c] "different" and values[c:] "same" (c = 0..m).
    neg_below = np.concatenate([[0.0], np.cumsum(neg)])
    pos_below = np.concatenate([[0.0], np.cumsum(pos)])
    correct = neg_below + (pos_below[-1] - pos_below)
    best = correct.max()
    is_best = correct == best
    # Runs of consecutive optimal cuts: each run is one interval of optimal thresholds.
    edges = np.diff(np.concatenate([[0], is_best.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1  # inclusive
    r = len(starts) // 2
    first, last = int(starts[r]), int(ends[r])
    span = float(values[-1] - values[0]) if m > 1 else 1.0
    low = float(values[first - 1]) if first > 0 else float(values[0]) - span
    high = float(values[last]) if last < m else float(values[-1]) + span
    return _midpoint(low, high), int(round(best))


def best_threshold(scores, same) -> tuple[float, float]:
    """``(threshold, accuracy)``: the threshold maximising the accuracy of
    ``score > threshold`` on these pairs, exactly (ties: see the module notes).

    Example:
        >>> thr, acc = best_threshold([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
        >>> round(thr, 4), acc  # the intervals (0.1, 0.35) and (0.4, 0.8) both get 3 of 4
        (0.6, 0.75)
    """
    s, y = _validate(scores, same)
    thr, correct = _best_cut(s, y)
    return thr, correct / len(s)


def accuracy_at(scores, same, threshold: float) -> float:
    """Fraction of pairs decided right by ``score > threshold``."""
    s, y = _validate(scores, same)
    threshold = float(threshold)
    if np.isnan(threshold):
        raise ValueError("threshold is NaN")
    return float(((s > threshold) == y).mean())


# --------------------------------------------------------------------------- ROC numbers


def roc_auc(scores, same) -> float:
    """Area under the ROC curve: the probability that a random genuine pair scores above a
    random impostor pair, ties counting one half (Mann-Whitney U / (n_genuine n_impostor))."""
    s, y = _validate(scores, same)
    n_pos, n_neg = _both_classes(y, "ROC AUC")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    first_rank = np.concatenate([[0], np.cumsum(counts)[:-1]]) + 1  # 1-based
    mid_rank = first_rank + (counts - 1) / 2.0
    rank_sum = float(mid_rank[inverse][y].sum())
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _far_threshold(s: np.ndarray, y: np.ndarray, far: float) -> float:
    far = float(far)
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be a rate in [0, 1], got {far}")
    _both_classes(y, "TAR@FAR")
    impostors = np.sort(s[~y])[::-1]
    n = len(impostors)
    # The most impostors allowed to pass, k, is the largest with k / n <= far, compared in
    # floating point exactly as an ROC curve's FPR would be.
    allowed = min(int(np.floor(far * n)), n)
    while allowed < n and (allowed + 1) / n <= far:
        allowed += 1
    while allowed > 0 and allowed / n > far:
        allowed -= 1
    if allowed >= n:
        return float("-inf")
    return float(impostors[allowed])


def threshold_at_far(scores, same, far: float = 1e-3) -> float:
    """The lowest threshold ``t`` whose false accept rate (fraction of impostor pairs with
    ``score > t``) is at most ``far``: the ``(k+1)``-th highest impostor score with
    ``k = floor(far * n_impostors)``; ``-inf`` when ``far`` lets every impostor pass."""
    s, y = _validate(scores, same)
    return _far_threshold(s, y, far)


def tar_at_far(scores, same, far: float = 1e-3) -> float:
    """True accept rate at false accept rate ``far``.

    Defined as the highest TAR (fraction of genuine pairs with ``score > t``) over all
    thresholds ``t`` whose FAR (fraction of impostor pairs with ``score > t``) is at most
    ``far``. TAR falls as ``t`` rises, so this is the TAR at the *lowest* admissible
    threshold, :func:`threshold_at_far`; equivalently the ROC point with the largest FAR not
    above ``far``. With 3000 impostor pairs and ``far=1e-3``, at most 3 impostors may pass.
    It equals ``max(tpr[fpr <= far])`` of scikit-learn's ``roc_curve`` (whose points use
    ``>=`` at the scores themselves), ties included.
    """
    s, y = _validate(scores, same)
    thr = _far_threshold(s, y, far)
    return float((s[y] > thr).mean())


# --------------------------------------------------------------------------- 10-fold


@dataclass
class ProtocolResult:
    """Result of :func:`ten_fold_accuracy`. Accuracies are fractions; ``std`` is the
    population standard deviation over folds (``ddof=0``, as in the LFW literature);
    ``thresholds[i]`` is the threshold chosen for fold ``fold_ids[i]`` on the other folds,
    in the scores' own units (for distances: "same" when ``distance < threshold``);
    ``auc`` and ``tar_at_far_1e3`` are computed over all pairs at once."""

    mean: float
    std: float
    fold_accuracies: list[float]
    thresholds: list[float]
    auc: float
    tar_at_far_1e3: float
    mean_threshold: float
    fold_ids: list
    higher_is_same: bool = True

    def as_dict(self) -> dict:
        """Plain Python types only (JSON-serialisable)."""
        return asdict(self)


def ten_fold_accuracy(scores, same, folds, higher_is_same: bool = True) -> ProtocolResult:
    """The LFW verification protocol (any number of folds >= 2, usually 10).

    For each fold ``k``: the accuracy-maximising threshold is chosen exactly on the pairs of
    all *other* folds (see the module notes), then applied to fold ``k``. Returns the mean
    and population std of those fold accuracies, the per-fold thresholds and their mean,
    and ROC AUC and TAR at FAR = 1e-3 over all pairs.

    Args:
        scores: one finite score per pair.
        same: one label per pair (genuine ``True``).
        folds: one fold id per pair (any sortable ids; results follow ``sorted(ids)``).
        higher_is_same: ``False`` for distances (negated internally).
    """
    s, y = _validate(scores, same)
    f = np.asarray(folds)
    if f.ndim != 1 or f.shape != s.shape:
        raise ValueError(f"folds must be 1-D with one id per pair: got shape {f.shape} for "
                         f"{s.shape[0]} scores")
    if f.dtype.kind == "f" and np.isnan(f).any():
        raise ValueError("folds contain NaN: every pair needs a fold id")
    sign = 1.0 if higher_is_same else -1.0
    s = sign * s
    fold_ids = np.unique(f)
    if len(fold_ids) < 2:
        raise ValueError(f"the protocol needs at least 2 folds, got {len(fold_ids)}: pass the "
                         "pair folds (e.g. LFW's 10 folds of pairs.txt)")
    accs, thrs = [], []
    for k in fold_ids.tolist():
        test = f == k
        n_pos, n_neg = int(y[test].sum()), int((~y[test]).sum())
        if n_pos == 0 or n_neg == 0:
            raise ValueError(f"fold {k!r} has only one class ({n_pos} genuine, {n_neg} "
                             "impostor pairs): each fold needs both")
        thr, _ = _best_cut(s[~test], y[~test])
        accs.append(float(((s[test] > thr) == y[test]).mean()))
        thrs.append(sign * thr)
    return ProtocolResult(
        mean=float(np.mean(accs)), std=float(np.std(accs)), fold_accuracies=accs,
        thresholds=[float(t) for t in thrs], auc=roc_auc(s, y),
        tar_at_far_1e3=float((s[y] > _far_threshold(s, y, 1e-3)).mean()),
        mean_threshold=float(np.mean(thrs)), fold_ids=fold_ids.tolist(),
        higher_is_same=bool(higher_is_same))
