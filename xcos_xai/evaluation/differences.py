"""Is one map more faithful than another on these pairs? Paired differences with bootstrap
confidence intervals, from the per-pair measures of a comparison (``per_pair.csv``).

A table of means over 150 genuine pairs cannot say whether a gap of 0.0002 in deletion AUC is
a difference between two methods or the pairs that were drawn. Both methods are measured on
the same pairs, so the per-pair differences are what varies: :func:`paired_difference`
resamples the pairs (a percentile bootstrap of the mean difference, seeded) and returns the
difference with its 95 % interval; :func:`goal_margins` does it for the faithfulness goals of
the default xCos map (issue 13): FNMR at 30 % replaced and genuine insertion AUC against
occlusion of the cells, genuine deletion AUC against Integrated Gradients, pointing game and
IoU against SmoothGrad.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["GOALS", "goal_margins", "imitation_goals", "paired_difference"]

#: (measure, reference method, "higher"/"lower" is better, the pairs it is measured on)
GOALS = (
    ("accepted_at_30pct", "occlusion", "lower", "genuine"),  # FNMR = 1 - accepted
    ("ins_auc", "occlusion", "higher", "genuine"),
    ("del_auc", "integrated_gradients", "lower", "genuine"),
    ("pointing", "smoothgrad", "higher", "localisation"),
    ("iou", "smoothgrad", "higher", "localisation"),
)


def imitation_goals(target: str) -> tuple[tuple[str, str, str, str], ...]:
    """The replacement goals of :data:`GOALS` with ``target`` as every reference: how close a
    map comes to the measurement it imitates (the default xCos map and ``occlusion_blocks``).

    >>> goals = imitation_goals("occlusion_blocks")
    >>> [g[0] for g in goals], {g[1] for g in goals}
    (['accepted_at_30pct', 'ins_auc', 'del_auc'], {'occlusion_blocks'})
    """
    return tuple((m, target, better, pairs) for m, _, better, pairs in GOALS
                 if pairs == "genuine")


def paired_difference(per_pair: pd.DataFrame, method: str, reference: str, measure: str,
                      pairs: str = "genuine", n_boot: int = 10000, seed: int = 0,
                      level: float = 0.95) -> dict:
    """Mean of ``measure`` for ``method`` minus ``reference`` over the pairs both measured.

    Args:
        per_pair: rows ``(i, same, method, <measures>)`` (``per_pair.csv`` of a comparison).
        pairs: ``"genuine"``, ``"impostor"``, ``"all"``, or ``"localisation"`` (the pairs
            where ``measure`` is not NaN, e.g. the hybrids of the pointing game).
        n_boot: bootstrap resamples of the pairs; ``seed`` makes them repeatable.

    Returns ``{"n", "method", "reference", "mean", "mean_reference", "difference", "low",
    "high"}``: ``low``/``high`` bound the ``level`` percentile interval of the mean difference.

    Example (every pair 0.1 better: the interval collapses onto the difference):
        >>> pp = pd.DataFrame({"i": [0, 1, 0, 1], "same": True, "method": list("aabb"),
        ...                    "del_auc": [0.5, 0.7, 0.6, 0.8]})
        >>> d = paired_difference(pp, "a", "b", "del_auc")
        >>> round(d["difference"], 6), round(d["low"], 6), round(d["high"], 6)
        (-0.1, -0.1, -0.1)
    """
    for name in (method, reference):
        if name not in set(per_pair["method"]):
            raise ValueError(f"method {name!r} is not in the per-pair measures (it has "
                             f"{sorted(set(per_pair['method']))}): run the comparison with it")
    if measure not in per_pair.columns:
        raise ValueError(f"measure {measure!r} is not a per-pair column: choose one of "
                         f"{[c for c in per_pair.columns if c not in ('i', 'same', 'method')]}")
    frame = per_pair
    if pairs in ("genuine", "impostor"):
        frame = frame[frame["same"].astype(bool) == (pairs == "genuine")]
    elif pairs not in ("all", "localisation"):
        raise ValueError(f"pairs={pairs!r}: choose genuine, impostor, all or localisation")
    wide = frame.pivot(index="i", columns="method", values=measure)[[method, reference]]
    wide = wide.astype(float).dropna()
    if wide.empty:
        raise ValueError(f"no {pairs} pair has {measure!r} for both {method} and {reference}")
    diff = (wide[method] - wide[reference]).to_numpy()
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"n": int(len(diff)), "method": method, "reference": reference,
            "mean": float(wide[method].mean()), "mean_reference": float(wide[reference].mean()),
            "difference": float(diff.mean()), "low": float(low), "high": float(high)}


def goal_margins(per_pair: pd.DataFrame, method: str = "xcos", n_boot: int = 10000,
                 seed: int = 0, goals=GOALS) -> pd.DataFrame:
    """The faithfulness goals of ``method`` (``goals``: :data:`GOALS` or
    :func:`imitation_goals`), one row each: its mean, the
    reference's, the difference with its 95 % interval, and the verdict: ``"met"`` (the
    mean is at least as good), ``"tied"`` (worse, but the interval includes no difference),
    ``"missed"`` (worse, and the whole interval says so). FNMR is reported as a rate (the
    per-pair measure is whether the genuine pair is still accepted). Goals whose reference
    or measure the run lacks are left out."""
    rows = []
    for measure, reference, better, pairs in goals:
        if measure not in per_pair.columns:
            continue
        measured = per_pair[per_pair[measure].notna()]
        if not {method, reference} <= set(measured["method"]):
            continue  # a run without either method, or without the localisation game
        d = paired_difference(per_pair, method, reference, measure, pairs, n_boot, seed)
        if measure == "accepted_at_30pct":  # as FNMR: 1 - accepted, better when higher
            d.update(mean=1 - d["mean"], mean_reference=1 - d["mean_reference"],
                     difference=-d["difference"], low=-d["high"], high=-d["low"])
            measure, better = "fnmr_at_30pct", "higher"
        sign = 1.0 if better == "higher" else -1.0
        good = sign * d["difference"] >= 0
        covers = d["low"] <= 0 <= d["high"]
        rows.append({"measure": measure, "better": better, "pairs": d["n"],
                     "method": method, "mean": d["mean"], "reference": reference,
                     "mean_reference": d["mean_reference"], "difference": d["difference"],
                     "ci_low": d["low"], "ci_high": d["high"],
                     "verdict": "met" if good else ("tied" if covers else "missed")})
    return pd.DataFrame(rows)
