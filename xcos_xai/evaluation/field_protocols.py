"""The field's protocols in the comparison of pair explainers (issue 14): the per-pair
measures :func:`~.faithfulness.measure_pair` adds, and the table columns and mean curves
:func:`~.faithfulness.summarize` adds (the pure functions are
:mod:`xcos_xai.explainers.protocols`).

- **ROAD** (:func:`~.protocols.road_impute`): face A's units are removed most- (MoRF) and
  least-relevant-first (LeRF) and noisily imputed from their neighbours, on a balanced
  subset of pairs (the sparse solves cost ~0.1-0.3 s each on a 150-pixel face).
- **Verification accuracy** against the fraction removed / restored (CorrRISE, FGGB): from
  the run's deletion and insertion curves, which already rank genuine pairs by support and
  impostor pairs by opposition, at each pair's fold threshold.
- **Replacement FNMR / FMR, 5 % to 95 %** (xSSAB): from the deletion curves; the map order
  is the method's row, the random order the ``random`` row.
- **Layer randomisation, cascading and independent** (MPRT) on the randomisation subset:
  every layer is re-initialised from the top down (cascading) and the map is measured after
  ``mprt_layers`` of them spread from the top to the stem; independent resets those layers
  one at a time.
"""

from __future__ import annotations

import numpy as np
import torch

from ..explainers.metrics import curve_auc, unit_values
from ..explainers.protocols import (
    decision_accuracy,
    layer_randomisation,
    perturbation_curve,
    randomisable_layers,
)

FIELD_COLUMNS = {  # column: (header, better), appended to compare's table
    "acc_del_auc": ("accuracy deletion AUC", "lower"),
    "acc_ins_auc": ("accuracy insertion AUC", "higher"),
    "fnmr_mean_5_95": ("mean FNMR 5-95 %", "higher"),
    "fmr_mean_5_95": ("mean FMR 5-95 %", "higher"),
    "road_morf_auc": ("ROAD MoRF AUC gen.", "lower"),
    "road_lerf_auc": ("ROAD LeRF AUC gen.", "higher"),
    "road_gap": ("ROAD LeRF - MoRF (imp.: MoRF - LeRF)", "higher"),
    "mprt_cascading_last": ("MPRT cascading, rank corr. at stem", "lower"),
    "mprt_independent_mean": ("MPRT independent, mean rank corr.", "lower"),
    "passes": ("passes / pair", "lower"),
}


def reseed_for_pair(explainer, pair_index: int, seed: int) -> None:
    """Re-seed an explainer that draws from its own generator (the random floor) from the
    pair's index, so a pair's maps do not depend on which process ran which pairs before it
    (torchrun shards, resumed runs)."""
    generator = getattr(explainer, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(int(seed) * 1_000_003 + int(pair_index))


def in_road_subset(k: int, per_fold: int, half: int, n_road: int) -> bool:
    """Is the pair at position ``k`` of its fold (genuine ``< half``, impostor after) among
    the first ``ceil(n_road / 20)`` genuine and impostor pairs of the fold?"""
    r = -(-n_road // 20)
    return k < min(r, half) or half <= k < half + r


def spread_layers(layers: list[str], n: int) -> list[str]:
    """``n`` layers evenly spread over ``layers`` (always the first and the last).

    Example:
        >>> spread_layers(list("abcdefg"), 3)
        ['a', 'd', 'g']
    """
    if n <= 0:
        return []
    if n >= len(layers):
        return list(layers)
    idx = np.unique(np.round(np.linspace(0, len(layers) - 1, n)).astype(int))
    return [layers[i] for i in idx]


def road_measures(score_fn, x_a, map_a, same: bool, config) -> dict:
    """ROAD MoRF and LeRF score curves of face A (``road_fractions``)."""
    fractions = list(config.road_fractions)
    common = {"unit": config.unit, "noise_std": config.road_noise, "seed": config.seed}
    morf = perturbation_curve(score_fn, x_a, map_a, fractions, "road",
                              most_relevant_first=same, **common)
    lerf = perturbation_curve(score_fn, x_a, map_a, fractions, "road",
                              most_relevant_first=not same, **common)
    return {"road_morf": morf.tolist(), "road_lerf": lerf.tolist()}


def mprt_measures(model, make_explainer, x_a, x_b, target: str, config) -> dict:
    """Cascading and independent layer randomisation: ``{layer: rank correlation}`` each,
    of the two faces' unit maps (as in compare's own randomisation check)."""
    layers = randomisable_layers(model)
    measured = spread_layers(layers, config.mprt_layers)

    def explain(m):
        r = make_explainer(m).attribute(x_a, x_b, target=target)
        return torch.cat([unit_values(r.map_a[0], config.unit).flatten(),
                          unit_values(r.map_b[0], config.unit).flatten()])

    out = {}
    for mode in ("cascading", "independent"):
        out[f"mprt_{mode}"] = dict(layer_randomisation(model, explain, layers, mode,
                                                       seed=config.seed + 1,
                                                       measure_at=measured))
    return out


def field_columns(records: list[dict], name: str, config, same, thresholds, del_f,
                  ins_f) -> tuple[dict, dict]:
    """The table columns and mean curves of method ``name`` for the field's protocols."""
    ms = [r["methods"][name] for r in records]
    dele = np.array([m["deletion"] for m in ms])
    ins = np.array([m["insertion"] for m in ms])
    acc_del = decision_accuracy(dele, same, thresholds)
    acc_ins = decision_accuracy(ins, same, thresholds)
    shifted = dele - np.asarray(thresholds)[:, None]
    keep = (del_f > 0.025) & (del_f < 0.975)  # 5 % .. 95 %
    accept = shifted[:, keep] > 0
    fnmr = 1 - accept[same].mean(0) if same.any() else np.full(keep.sum(), np.nan)
    fmr = accept[~same].mean(0) if (~same).any() else np.full(keep.sum(), np.nan)
    cols = {"acc_del_auc": curve_auc(del_f, acc_del), "acc_ins_auc": curve_auc(ins_f, acc_ins),
            "fnmr_mean_5_95": float(np.mean(fnmr)) if keep.any() else float("nan"),
            "fmr_mean_5_95": float(np.mean(fmr)) if keep.any() else float("nan")}
    curves = {"accuracy_deletion": acc_del.tolist(), "accuracy_insertion": acc_ins.tolist(),
              "fractions_5_95": del_f[keep].tolist(), "fnmr_5_95": np.asarray(fnmr).tolist(),
              "fmr_5_95": np.asarray(fmr).tolist()}
    road = [(m, s) for m, s in zip(ms, same) if "road_morf" in m]
    if road:
        # genuine pairs lose their most similar units first (MoRF): the score should fall
        # faster than LeRF; impostor pairs lose their most dissimilar units first: the score
        # should rise faster. The gap is signed so that larger is more faithful for both.
        rf = list(config.road_fractions)
        morf = np.array([curve_auc(rf, m["road_morf"]) for m, _ in road])
        lerf = np.array([curve_auc(rf, m["road_lerf"]) for m, _ in road])
        genuine = np.array([bool(s) for _, s in road])
        sign = np.where(genuine, 1.0, -1.0)
        nan = float("nan")
        cols.update(road_morf_auc=morf[genuine].mean() if genuine.any() else nan,
                    road_lerf_auc=lerf[genuine].mean() if genuine.any() else nan,
                    road_gap=float(np.mean(sign * (lerf - morf))))
        curves.update(road_fractions=rf,
                      road_morf_genuine=np.mean([m["road_morf"] for m, s in road if s]
                                                if genuine.any() else [], 0).tolist(),
                      road_lerf_genuine=np.mean([m["road_lerf"] for m, s in road if s]
                                                if genuine.any() else [], 0).tolist())
    casc = [m["mprt_cascading"] for m in ms if "mprt_cascading" in m]
    if casc:
        layers = list(casc[0])
        cols["mprt_cascading_last"] = float(np.nanmean([c[layers[-1]] for c in casc]))
        indep = [m["mprt_independent"] for m in ms if "mprt_independent" in m]
        cols["mprt_independent_mean"] = float(np.nanmean([list(c.values()) for c in indep]))
        curves.update(mprt_layers=layers,
                      mprt_cascading=np.nanmean([[c[k] for k in layers] for c in casc],
                                                0).tolist(),
                      mprt_independent=np.nanmean([[c[k] for k in layers] for c in indep],
                                                  0).tolist())
    passes = [m["passes"] for m in ms if m.get("passes") is not None]
    cols["passes"] = float(np.mean(passes)) if passes else float("nan")
    return cols, curves


__all__ = ["FIELD_COLUMNS", "field_columns", "in_road_subset", "mprt_measures", "reseed_for_pair",
           "road_measures", "spread_layers"]
