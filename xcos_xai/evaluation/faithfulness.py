"""Faithfulness of pair explanations: every measure of one pair, and the table over pairs.

For one pair and every explainer (:func:`measure_pair`):

- the explained pair score (``target``), timed against one plain verification forward;
- deletion and insertion of face A's ``unit`` x ``unit``-pixel units, in map order, towards
  the stated baseline (a Gaussian-blurred copy of face A); genuine pairs rank the supporting
  part first, impostor pairs the opposing part; the deletion scores give the replacement
  FNMR/FMR curves at the fixed threshold;
- optionally the localisation game (one facial region of face B replaced by another
  identity's; the opposing part of the hybrid's map must find it: pointing game, IoU,
  restored fraction to flip back), Captum's ``sensitivity_max`` and the cascading
  model-randomisation check;
- with the model's map statistics (``model.map_stats``), cell deletion in feature space: face
  A's grid cells replaced, in map order, by the mean face's local descriptors (every map
  judged at the grid's own resolution);
- the maps' mass on xCos's static cells (the attention shortcut), in :func:`summarize`;
- the field's protocols (:mod:`.field_protocols`): the explainer's passes per pair; ROAD
  MoRF/LeRF curves on a subset (``road=True``); cascading and independent layer
  randomisation (MPRT) with the randomisation check; verification-accuracy
  deletion/insertion and FNMR/FMR 5-95 % from the deletion and insertion curves.

:func:`summarize` turns the per-pair records into one row per method and the mean curves;
:func:`to_markdown` writes the table. The measures themselves are
:mod:`xcos_xai.explainers.metrics`; the run over LFW pairs is :mod:`xcos_xai.apps.compare`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..explainers import create_explainer
from ..explainers.base import explainer_class, list_explainers, replacement_baseline
from ..explainers.metrics import (
    cell_deletion_curve,
    curve_auc,
    deletion_curve,
    facial_region_mask,
    fixed_face_scorer,
    insertion_curve,
    make_hybrid,
    pointing_game,
    rank_correlation,
    replacement_error_rates,
    restore_to_flip,
    sensitivity,
    static_mass_share,
    top_iou,
    unit_values,
)
from .attention_stats import static_cells, summarize_attention, weight_against_variance
from .field_protocols import (
    FIELD_COLUMNS,
    field_columns,
    mprt_measures,
    reseed_for_pair,
    road_measures,
)

__all__ = ["COLUMNS", "RANDOMISATION_KEYS", "REGIONS", "CompareConfig", "decision_threshold",
           "face_a_replacement", "measure_pair", "randomisation_measures", "replacement_curves",
           "per_pair_measures", "summarize", "to_markdown", "before_after"]

REGIONS = ("eyes", "nose", "mouth")


@dataclass
class CompareConfig:
    """Everything a comparison run depends on (saved beside its results)."""

    n_pairs: int = 300
    bundle: str = "dlib-xcos"  # the model: a bundle of xcos_xai.pretrained (its fold heads)
    methods: list[str] = field(default_factory=list_explainers)
    target: str = "xcos"
    fold_heads: bool = True
    baseline: str = "blur"
    unit: int = 10
    deletion_step: float = 0.1
    insertion_step: float = 0.2
    ig_steps: int = 16
    smoothgrad_samples: int = 5
    smoothgrad_stdev: float = 0.1
    n_localisation: int = 30
    n_sensitivity: int = 6
    sensitivity_samples: int = 2
    sensitivity_radius: float = 0.02
    n_randomisation: int = 4
    n_examples: int = 4
    seed: int = 0
    threads: int = 1
    # the field's methods and protocols (issue 14, :mod:`.field_protocols`)
    corrrise_masks: int = 500
    n_road: int = 60
    road_fractions: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.5, 0.7,
                                                                  0.9])
    road_noise: float = 0.01
    mprt_layers: int = 4

    def stamp(self) -> dict:
        """The configuration as the run's records file keeps it (``asdict``; the default
        bundle is left out, so the records of runs made before there was a choice of model
        still resume)."""
        d = asdict(self)
        if d["bundle"] == "dlib-xcos":
            del d["bundle"]
        return d

    def method_kwargs(self, name: str) -> dict:
        """The options of explainer ``name`` in this run: the baseline, and the fields its
        class names in ``compare_options`` (e.g. Integrated Gradients' ``n_steps`` from
        ``ig_steps``)."""
        options = explainer_class(name).compare_options
        return {"baseline": self.baseline, **{k: getattr(self, f) for k, f in options.items()}}

    def fractions(self, step: float) -> np.ndarray:
        return np.linspace(0.0, 1.0, int(round(1 / step)) + 1)


# --------------------------------------------------------------------------- one pair


def _unit_map(pixel_map: torch.Tensor, unit: int) -> torch.Tensor:
    return unit_values(pixel_map[0], unit)


def decision_threshold(model, target: str = "xcos") -> float:
    """The model's fixed decision threshold of the explained score (``"xcos"``: xCos's,
    ``"model_cosine"``: the model's own cosine's): same person if ``score > threshold``."""
    return float(model.threshold if target == "xcos" else model.model_threshold)


def face_a_replacement(model, x_a: torch.Tensor, x_b: torch.Tensor, config: CompareConfig):
    """``(score_fn, baseline_a)``: the pair score of face-A variants against the fixed face B
    (:func:`~xcos_xai.explainers.metrics.fixed_face_scorer`) and the stated replacement of
    face A (``config.baseline``, :func:`~xcos_xai.explainers.base.replacement_baseline`)."""
    return (fixed_face_scorer(model, x_b, config.target, vary="a"),
            replacement_baseline(x_a, config.baseline))


def replacement_curves(score_fn, x_a: torch.Tensor, base_a: torch.Tensor,
                       map_a: torch.Tensor, same: bool, config: CompareConfig) -> dict:
    """Deletion (``deletion_step``) and insertion (``insertion_step``) score curves of face A
    in the order of its ``(H, W)`` map, as lists: genuine pairs rank the supporting part
    first, impostor pairs the opposing part (the deletion curve also gives the replacement
    FNMR/FMR at the fixed threshold)."""
    del_f, ins_f = config.fractions(config.deletion_step), config.fractions(config.insertion_step)
    descending = bool(same)  # genuine: support first; impostor: opposition first
    return {"deletion": deletion_curve(score_fn, x_a, base_a, map_a, del_f, config.unit,
                                       descending, seed=config.seed).tolist(),
            "insertion": insertion_curve(score_fn, x_a, base_a, map_a, ins_f, config.unit,
                                         descending, seed=config.seed).tolist()}


def measure_pair(model, explainers: dict, x_a: torch.Tensor, x_b: torch.Tensor, same: bool,
                 config: CompareConfig, donor: torch.Tensor | None = None,
                 region: str | None = None, check_sensitivity: bool = False,
                 randomised_models: Callable[[], list] | None = None,
                 keep_maps: bool = False, pair_index: int | None = None,
                 road: bool = False) -> dict:
    """Every measure of one pair, as plain data (JSON-ready).

    Args:
        model: the :class:`~xcos_xai.core.XCosModel` the explainers explain.
        explainers: ``{name: explainer}`` built on ``model``.
        x_a, x_b: ``(1, 3, H, W)`` the pair's normalised faces.
        same: whether the pair is genuine (genuine pairs rank the supporting part first).
        config: the run's :class:`CompareConfig` (target, steps, units, seed, ...).
        donor, region: for the localisation game: another identity's ``(1, 3, H, W)`` face
            and the facial region (``"eyes"``, ``"nose"``, ``"mouth"``) of face B it replaces.
        check_sensitivity: also measure Captum's ``sensitivity_max``.
        randomised_models: ``() -> [(stage, model), ...]`` for the model-randomisation check.
        keep_maps: also return the pixel maps (``example_maps``).
        pair_index: the pair's index in the run: explainers drawing from their own generator
            (the random floor) are re-seeded from it, so a pair's maps do not depend on the
            pairs a process ran before it (torchrun shards, resumed runs).
        road: also measure the ROAD MoRF/LeRF curves of face A (``road_fractions``).
    """
    target = config.target
    threshold = decision_threshold(model, target)
    with torch.inference_mode():
        model(x_a, x_b)  # warm-up
        times = []
        for _ in range(2):
            start = time.perf_counter()
            out = model(x_a, x_b)
            times.append(time.perf_counter() - start)
    score = float(out.score[0] if target == "xcos" else out.model_cosine[0])
    record = dict(score=score, xcos=float(out.score[0]), model_cosine=float(out.model_cosine[0]),
                  threshold=threshold, forward_s=float(np.median(times)),
                  cos_map=out.cos_map[0].tolist(), attention=out.attention[0].tolist(),
                  methods={})
    score_fn, base_a = face_a_replacement(model, x_a, x_b, config)
    del_f = config.fractions(config.deletion_step)
    examples = {}
    loc = None
    if donor is not None:
        region_name, region = region, facial_region_mask(region, tuple(x_a.shape[-2:]))
        hybrid = make_hybrid(x_b, donor, region)
        with torch.inference_mode():
            hybrid_out = model(x_a, hybrid)
        hybrid_score = float(hybrid_out.score[0] if target == "xcos"
                             else hybrid_out.model_cosine[0])
        loc = {"region": region_name, "hybrid_score": hybrid_score,
               "flipped": bool(score > threshold >= hybrid_score)}
        record["localisation"] = loc
        hybrid_fn = fixed_face_scorer(model, x_a, target, vary="b")
    stats = getattr(model, "map_stats", None)  # cell deletion in feature space needs it
    if stats is not None:
        with torch.no_grad():
            grids = model.grids(x_a, x_b)
    for name, explainer in explainers.items():
        if pair_index is not None:
            reseed_for_pair(explainer, pair_index, config.seed)
        start = time.perf_counter()
        r = explainer.attribute(x_a, x_b, target=target)
        elapsed = time.perf_counter() - start
        m = {"time_s": elapsed,
             **replacement_curves(score_fn, x_a, base_a, r.map_a[0], same, config),
             "grid_abs": r.grid_a[0].abs().tolist()}
        if stats is not None:
            # genuine: support first; impostor: opposition first
            m["cell_deletion"] = cell_deletion_curve(model, *grids, r.grid_a[0], stats.local_ref,
                                                     descending=same, seed=config.seed,
                                                     target=target).tolist()
        if keep_maps:
            examples[name] = (r.map_a[0].cpu().numpy(), r.map_b[0].cpu().numpy())
        if loc is not None:
            h = explainer.attribute(x_a, hybrid, target=target)
            m["pointing"] = pointing_game(h.map_b, region, config.unit, seed=config.seed)
            m["iou"] = top_iou(h.map_b, region, config.unit, seed=config.seed)
            m["restore_to_flip"] = (restore_to_flip(hybrid_fn, hybrid, x_b, h.map_b, threshold,
                                                    del_f, config.unit, seed=config.seed)
                                    if loc["flipped"] else float("nan"))
        if check_sensitivity:
            m["sensitivity"] = float(sensitivity(
                explainer, x_a, x_b, target, radius=config.sensitivity_radius,
                n_samples=config.sensitivity_samples, seed=config.seed)[0])
        m["passes"] = explainer.pass_count(target)
        if road:
            m.update(road_measures(score_fn, x_a, r.map_a[0], same, config))
        if randomised_models is not None:
            m.update(randomisation_measures(model, name, r, x_a, x_b, config,
                                            randomised_models))
        record["methods"][name] = m
    if examples:
        record["example_maps"] = {k: [a.tolist(), b.tolist()] for k, (a, b) in examples.items()}
    return record


RANDOMISATION_KEYS = ("randomisation", "mprt_cascading", "mprt_independent")


def randomisation_measures(model, name: str, attribution, x_a: torch.Tensor,
                           x_b: torch.Tensor, config: CompareConfig,
                           randomised_models: Callable[[], list]) -> dict:
    """The randomisation checks of method ``name`` on one pair (the keys of
    :data:`RANDOMISATION_KEYS`): the rank correlation of its map (``attribution``, on
    ``model``) with its map on each stage's randomised copy (``randomised_models()``), and the
    cascading and independent layer randomisation (MPRT, when ``config.mprt_layers``). Layers
    are re-initialised the way the model declares
    (:func:`~xcos_xai.explainers.metrics.randomisation_init`)."""
    target = config.target
    kwargs = config.method_kwargs(name)
    if explainer_class(name).control and "seed" in kwargs:
        kwargs["seed"] = config.seed + 1000  # fresh draws: a floor is model-free
    ref = torch.cat([_unit_map(attribution.map_a, config.unit).flatten(),
                     _unit_map(attribution.map_b, config.unit).flatten()])
    out = {"randomisation": {}}
    for stage, rmodel in randomised_models():
        rr = create_explainer(name, rmodel, **kwargs).attribute(x_a, x_b, target=target)
        new = torch.cat([_unit_map(rr.map_a, config.unit).flatten(),
                         _unit_map(rr.map_b, config.unit).flatten()])
        out["randomisation"][stage] = rank_correlation(ref, new)
    if config.mprt_layers:
        out.update(mprt_measures(model, lambda mm: create_explainer(name, mm, **kwargs),
                                 x_a, x_b, target, config))
    return out


# --------------------------------------------------------------------------- the table


def _nanmean(values) -> float:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    return float(np.nanmean(v)) if v.size and not np.all(np.isnan(v)) else float("nan")


def summarize(records: list[dict], config: CompareConfig,
              per_pair: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """The table (one row per method) and the mean curves; the AUCs are the means of
    :func:`per_pair_measures` (pass it when it is already computed)."""
    records = sorted(records, key=lambda r: r["i"])
    if per_pair is None:
        per_pair = per_pair_measures(records, config)
    same = np.array([r["same"] for r in records])
    thresholds = np.array([r["threshold"] for r in records])
    del_f, ins_f = config.fractions(config.deletion_step), config.fractions(config.insertion_step)
    cos_maps = np.array([r["cos_map"] for r in records])
    static = static_cells(cos_maps)
    forward = np.array([r["forward_s"] for r in records])
    rows, curves = [], {"deletion_fractions": del_f.tolist(),
                        "insertion_fractions": ins_f.tolist(), "methods": {}}
    for name in config.methods:
        ms = [r["methods"][name] for r in records]
        dele = np.array([m["deletion"] for m in ms])
        ins = np.array([m["insertion"] for m in ms])
        mine = per_pair[per_pair["method"] == name]  # in the records' order
        d_auc, i_auc = mine["del_auc"].to_numpy(), mine["ins_auc"].to_numpy()
        cell = mine["cell_del_auc"].to_numpy()
        # errors at the fixed threshold, each pair with its fold's threshold
        shifted = dele - thresholds[:, None]
        fnmr, fmr = replacement_error_rates(shifted[:, :-1], same, 0.0)  # all but 100 %
        at10, at30 = (int(np.argmin(np.abs(del_f - f))) for f in (0.1, 0.3))
        loc = [m for r, m in zip(records, ms) if "pointing" in m]
        rand = [m["randomisation"] for m in ms if "randomisation" in m]
        times = np.array([m["time_s"] for m in ms])
        row = {
            "method": name,
            "del_auc_genuine": d_auc[same].mean(),
            "ins_auc_genuine": i_auc[same].mean(),
            "del_auc_impostor": d_auc[~same].mean(),
            "ins_auc_impostor": i_auc[~same].mean(),
            "fnmr_at_10pct": fnmr[at10], "fnmr_at_30pct": fnmr[at30],
            "fmr_at_10pct": fmr[at10], "fmr_at_30pct": fmr[at30],
            "cell_del_auc_genuine": _nanmean(cell[same]),
            "cell_del_auc_impostor": _nanmean(cell[~same]),
            "pointing": _nanmean([float(m["pointing"]) for m in loc]),
            "iou": _nanmean([m["iou"] for m in loc]),
            "restore_to_flip": _nanmean([m["restore_to_flip"] for m in loc]),
            "sensitivity": _nanmean([m.get("sensitivity") for m in ms]),
            "rand_corr_head": _nanmean([d.get("head") for d in rand]),
            "rand_corr_all": _nanmean([d.get("all") for d in rand]),
            "static_share": static_mass_share(np.array([m["grid_abs"] for m in ms]), static),
            "time_s": times.mean(),
            "cost_x_forward": float(np.mean(times / forward)),
        }
        field_cols, field_curves = field_columns(records, name, config, same, thresholds,
                                                 del_f, ins_f)
        row.update(field_cols)
        rows.append(row)
        curves["methods"][name] = {
            "deletion_genuine": dele[same].mean(0).tolist(),
            "deletion_impostor": dele[~same].mean(0).tolist(),
            "insertion_genuine": ins[same].mean(0).tolist(),
            "insertion_impostor": ins[~same].mean(0).tolist(),
            "fnmr": fnmr.tolist(), "fmr": fmr.tolist(), **field_curves}
    table = pd.DataFrame(rows)
    loc_records = [r["localisation"] for r in records if "localisation" in r]
    attention = summarize_attention(np.array([r["attention"] for r in records]), cos_maps)
    curves["summary"] = {
        "pairs": len(records), "genuine": int(same.sum()), "impostor": int((~same).sum()),
        "folds": sorted({r["fold"] for r in records}),
        "localisation_pairs": len(loc_records),
        "localisation_flipped": int(sum(r["flipped"] for r in loc_records)),
        "sensitivity_pairs": int(sum("sensitivity" in r["methods"][config.methods[0]]
                                     for r in records)),
        "randomisation_pairs": int(sum("randomisation" in r["methods"][config.methods[0]]
                                       for r in records)),
        "road_pairs": int(sum("road_morf" in r["methods"][config.methods[0]]
                              for r in records)),
        "forward_s_mean": float(forward.mean()),
        "xcos_accuracy": float(np.mean((np.array([r["score"] for r in records])
                                        > thresholds) == same)),
        "static_cells": static.astype(int).tolist(),
        "xcos_attention": attention.as_dict(),
        "weight_against_variance": weight_against_variance(
            np.array([r["attention"] for r in records]), cos_maps),
    }
    return table, curves


COLUMNS = {  # column: (header, better)
    "method": ("method", ""),
    "del_auc_genuine": ("deletion AUC gen.", "lower"),
    "ins_auc_genuine": ("insertion AUC gen.", "higher"),
    "del_auc_impostor": ("deletion AUC imp.", "higher"),
    "ins_auc_impostor": ("insertion AUC imp.", "lower"),
    "fnmr_at_10pct": ("FNMR @10% replaced", "higher"),
    "fnmr_at_30pct": ("FNMR @30%", "higher"),
    "fmr_at_10pct": ("FMR @10% replaced", "higher"),
    "fmr_at_30pct": ("FMR @30%", "higher"),
    "cell_del_auc_genuine": ("cell deletion AUC gen. (feature space)", "lower"),
    "cell_del_auc_impostor": ("cell deletion AUC imp.", "higher"),
    "pointing": ("pointing game", "higher"),
    "iou": ("IoU with region", "higher"),
    "restore_to_flip": ("restored to flip", "lower"),
    "sensitivity": ("sensitivity max", "lower"),
    "rand_corr_head": ("rank corr. after head reset", "lower"),
    "rand_corr_all": ("rank corr. after full reset", "lower"),
    "static_share": ("mass on static cells", "lower"),
    "time_s": ("s / pair", "lower"),
    "cost_x_forward": ("cost (x forward)", "lower"),
    **FIELD_COLUMNS,
}


def per_pair_measures(records: list[dict], config: CompareConfig) -> pd.DataFrame:
    """One row per pair and method: the per-pair numbers behind :func:`summarize`'s means.

    Columns: ``i``, ``pair_id``, ``fold``, ``same``, ``method``, ``del_auc``, ``ins_auc``
    (face A's deletion and insertion AUC), ``cell_del_auc`` (feature space), ``accepted_at_30pct``
    (the pair still accepted at its threshold with 30 % of face A replaced: the FNMR at 30 %
    is 1 minus its mean over the genuine pairs), ``pointing``, ``iou`` (on the localisation
    hybrids, NaN elsewhere). :mod:`.differences` compares two methods pair by pair.
    """
    records = sorted(records, key=lambda r: r["i"])
    del_f, ins_f = config.fractions(config.deletion_step), config.fractions(config.insertion_step)
    at30 = int(np.argmin(np.abs(del_f - 0.3)))
    nan = float("nan")
    rows = []
    for r in records:
        for name in config.methods:
            m = r["methods"][name]
            cell = m.get("cell_deletion")
            rows.append({
                "i": r["i"], "pair_id": r["pair_id"], "fold": r["fold"], "same": r["same"],
                "method": name, "del_auc": curve_auc(del_f, m["deletion"]),
                "ins_auc": curve_auc(ins_f, m["insertion"]),
                "cell_del_auc": (curve_auc(np.linspace(0, 1, len(cell)), cell)
                                 if cell is not None else nan),
                "accepted_at_30pct": float(m["deletion"][at30] - r["threshold"] > 0),
                "pointing": float(m["pointing"]) if "pointing" in m else nan,
                "iou": float(m["iou"]) if "iou" in m else nan})
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub markdown table (no extra dependency), arrows saying which way is better."""
    arrow = {"lower": " ↓", "higher": " ↑", "": ""}
    cols = [c for c in COLUMNS if c in table.columns]
    head = [COLUMNS[c][0] + arrow[COLUMNS[c][1]] for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1))
             + "|"]
    for _, row in table.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, str):
                cells.append(v)
            elif v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("–")
            elif c == "cost_x_forward":
                cells.append(f"{v:.0f}" if v >= 10 else f"{v:.2f}")
            elif c == "passes":
                cells.append(f"{v:.0f}")
            elif c == "time_s":
                cells.append(f"{v:.2f}")
            else:
                cells.append(f"{v:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: before_after's rows: method of a compare table -> what a reader calls it
BEFORE_AFTER_ROWS = {"xcos_evidence": "(S - t) * W, the default before",
                     "xcos": "the default map now",
                     "xcos_contribution": "S * W, the paper's map",
                     "occlusion": "occlusion of the cells (Captum)",
                     "integrated_gradients": "Integrated Gradients",
                     "random": "random map (control)"}
BEFORE_AFTER_COLUMNS = {"del_auc_genuine": "deletion AUC ↓", "ins_auc_genuine": "insertion AUC ↑",
                        "fnmr_at_30pct": "FNMR at 30 % ↑", "pointing": "pointing ↑",
                        "iou": "IoU ↑", "cost_x_forward": "cost (x forward)"}


def before_after(table: pd.DataFrame | str) -> pd.DataFrame:
    """The default xCos map before (``(S - t) * W``) and after, beside the references, from a
    comparison's ``table.csv`` (a path or its frame): the rows of :data:`BEFORE_AFTER_ROWS` the
    run measured, the columns of :data:`BEFORE_AFTER_COLUMNS`, named for a reader.

    Example:
        >>> t = pd.DataFrame({"method": ["xcos", "xcos_evidence", "gradcam"],
        ...                   "del_auc_genuine": [0.88, 0.91, 0.9], "fnmr_at_30pct": [0.9, 0, 0]})
        >>> before_after(t).to_dict()
        {'deletion AUC ↓': {'(S - t) * W, the default before': 0.91, 'the default map now': 0.88}, \
'FNMR at 30 % ↑': {'(S - t) * W, the default before': 0.0, 'the default map now': 0.9}}
    """
    frame = pd.read_csv(table) if isinstance(table, (str, Path)) else table
    frame = frame.set_index("method")
    rows = [m for m in BEFORE_AFTER_ROWS if m in frame.index]
    columns = [c for c in BEFORE_AFTER_COLUMNS if c in frame.columns]
    out = frame.loc[rows, columns].rename(index=BEFORE_AFTER_ROWS, columns=BEFORE_AFTER_COLUMNS)
    out.index.name = None
    return out
