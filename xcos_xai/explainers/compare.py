"""``xcos-xai compare``: every pair explainer on the same LFW pairs, measured the same way.

For each selected LFW View-2 pair (balanced: genuine and impostor from every fold), with the
fold's held-out head (``load_pretrained(fold=k)``):

- every method explains the pair score (``target``) for both faces, timed against one plain
  verification forward of the same pair in the same process;
- deletion (11 steps, 0..100 %) and insertion (6 steps) of face A's 10x10-pixel units, in map
  order, towards a Gaussian-blurred copy of face A (the stated baseline); genuine pairs rank
  the supporting part first, impostor pairs the opposing part; the deletion scores give the
  replacement FNMR/FMR curves at the fold's fixed threshold;
- on a subset of genuine pairs, the localisation game: one facial region (eyes, nose or
  mouth, in turn) of face B is replaced with another identity's, and the opposing part of
  the hybrid's map must find it (pointing game, IoU, restored fraction to flip back);
- on small subsets, Captum's ``sensitivity_max`` and the cascading model-randomisation check;
- over all pairs, how much of each map sits on xCos's static cells (the attention shortcut).

Per-pair records are appended to ``records.jsonl`` as they finish, so an interrupted run
resumes where it stopped. The table goes to ``table.{csv,md,json}``, plots to ``*.html`` and
``*.png``.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .base import create_explainer, list_explainers, replacement_baseline
from .compare_field import (  # issue 14: the field's protocols, kept in their own module
    FIELD_COLUMNS,
    field_columns,
    field_method_kwargs,
    in_road_subset,
    mprt_measures,
    reseed_for_pair,
    road_measures,
    write_field_figures,
)
from .metrics import (
    curve_auc,
    deletion_curve,
    facial_region_mask,
    fixed_face_scorer,
    insertion_curve,
    make_hybrid,
    pointing_game,
    randomised_copy,
    rank_correlation,
    replacement_error_rates,
    restore_to_flip,
    sensitivity,
    stage_module_names,
    static_mass_share,
    top_iou,
    unit_values,
)

REGIONS = ("eyes", "nose", "mouth")


@dataclass
class CompareConfig:
    """Everything a comparison run depends on (saved beside its results)."""

    n_pairs: int = 300
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
    # --- issue 14: the field's methods and protocols (compare_field.py) ---
    corrrise_masks: int = 500
    n_road: int = 60
    road_fractions: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.5, 0.7,
                                                                  0.9])
    road_noise: float = 0.01
    mprt_layers: int = 4

    def method_kwargs(self, name: str) -> dict:
        kwargs = {"baseline": self.baseline}
        if name == "integrated_gradients":
            kwargs.update(n_steps=self.ig_steps)
        elif name == "smoothgrad":
            kwargs.update(nt_samples=self.smoothgrad_samples, stdev=self.smoothgrad_stdev,
                          seed=self.seed)
        elif name == "random":
            kwargs.update(seed=self.seed)
        kwargs.update(field_method_kwargs(self, name))  # issue 14
        return kwargs

    def fractions(self, step: float) -> np.ndarray:
        return np.linspace(0.0, 1.0, int(round(1 / step)) + 1)


# --------------------------------------------------------------------------- the pairs


def select_pairs(frame: pd.DataFrame, n_pairs: int, seed: int = 0) -> pd.DataFrame:
    """A balanced sample of View-2 pairs: ``n_pairs / 20`` genuine and as many impostor
    pairs from each of the 10 folds (seeded), in fold order.

    Returns the selected rows with their original row number in ``pair_id``.
    """
    if n_pairs < 20 or n_pairs % 20:
        raise ValueError(f"n_pairs={n_pairs}: give a multiple of 20 (the same number of "
                         "genuine and impostor pairs from each of the 10 folds)")
    per = n_pairs // 20
    rng = np.random.default_rng(seed)
    parts = []
    for fold in sorted(frame["fold"].unique()):
        for same in (True, False):
            rows = np.flatnonzero((frame["fold"] == fold).to_numpy()
                                  & (frame["same"] == same).to_numpy())
            if len(rows) < per:
                kind = "genuine" if same else "impostor"
                raise ValueError(f"fold {fold} has only {len(rows)} {kind} pairs, {per} "
                                 "asked: ask for fewer pairs")
            parts.append(np.sort(rng.choice(rows, per, replace=False)))
    chosen = np.concatenate(parts)
    out = frame.iloc[chosen].copy()
    out.insert(0, "pair_id", chosen)
    return out.reset_index(drop=True)


def build_jobs(lfw, pairs: pd.DataFrame, config: CompareConfig, workers: int = 1,
               progress: bool = True) -> list[dict]:
    """One job per pair: the aligned chips, and for localisation pairs the donor and region."""
    from .._env import cache_dir
    from ..data.align import FaceAligner

    aligner = FaceAligner.for_lfw(cache_dir=cache_dir() / "chips")
    paths = sorted(set(pairs["path_a"]) | set(pairs["path_b"]))
    faces = aligner.align_many([lfw.image_root / p for p in paths], workers=workers,
                               progress=progress)
    chip = {p: f.chip for p, f in zip(paths, faces)}
    rng = np.random.default_rng(config.seed + 1)
    jobs, n_loc, n_sens, n_rand, n_ex = [], 0, 0, 0, {True: 0, False: 0}
    per_fold = max(1, len(pairs) // 10)
    half = max(1, per_fold // 2)  # positions 0.. are genuine pairs, half.. impostor pairs
    loc_per_fold = -(-config.n_localisation // 10)
    for i, row in pairs.iterrows():
        same = bool(row["same"])
        job = {"i": int(i), "pair_id": int(row["pair_id"]), "fold": int(row["fold"]),
               "same": same, "path_a": row["path_a"], "path_b": row["path_b"],
               "chip_a": chip[row["path_a"]], "chip_b": chip[row["path_b"]]}
        k = i % per_fold  # position inside the fold
        if same and k < loc_per_fold and n_loc < config.n_localisation:
            # a donor of another identity from the same fold's impostor pairs
            donors = pairs[(pairs["fold"] == row["fold"]) & ~pairs["same"]
                           & (pairs["name_b"] != row["name_a"])]["path_b"].tolist()
            if donors:
                job["donor"] = chip[donors[int(rng.integers(len(donors)))]]
                job["region"] = REGIONS[n_loc % len(REGIONS)]
                n_loc += 1
        # subsets for the expensive checks: one genuine and one impostor pair per fold
        job["sensitivity"] = n_sens < config.n_sensitivity and k in (0, half)
        n_sens += job["sensitivity"]
        job["randomisation"] = (n_rand < config.n_randomisation
                                and k in (1 % per_fold, (half + 1) % per_fold))
        n_rand += job["randomisation"]
        job["road"] = in_road_subset(k, per_fold, half, config.n_road)  # issue 14
        job["example"] = n_ex[same] < config.n_examples // 2 and k in (0, half)
        n_ex[same] += job["example"]
        jobs.append(job)
    return jobs


# --------------------------------------------------------------------------- one pair


_WORKER: dict = {}


def _init_worker(config: CompareConfig, device: str = "cpu") -> None:
    torch.set_num_threads(config.threads)
    _WORKER.clear()
    _WORKER["config"] = config
    _WORKER["device"] = torch.device(device)  # issue 14: --device


def _models(fold: int | None):
    """The fold's model, its explainers and randomised copies (kept for the last fold)."""
    from ..pretrained import load_pretrained

    config = _WORKER["config"]
    key = fold if config.fold_heads else None
    if _WORKER.get("key", "none") != key:
        model = load_pretrained(fold=key).to(_WORKER.get("device", "cpu"))
        _WORKER.update(key=key, model=model, explainers={
            m: create_explainer(m, model, **config.method_kwargs(m)) for m in config.methods},
            randomised=None)
    return _WORKER["model"], _WORKER["explainers"]


def _randomised_models():
    if _WORKER.get("randomised") is None:
        model = _WORKER["model"]
        _WORKER["randomised"] = [(stage, randomised_copy(model, names, seed=1))
                                 for stage, names in stage_module_names(model)]
    return _WORKER["randomised"]


def _to_input(model, chip: np.ndarray) -> torch.Tensor:
    x = model.input_spec.normalize(torch.from_numpy(chip).permute(2, 0, 1)[None])
    return x.to(model.threshold.device)


def _unit_map(pixel_map: torch.Tensor, unit: int) -> torch.Tensor:
    return unit_values(pixel_map[0], unit)


def evaluate_pair(job: dict) -> dict:
    """All measurements of one pair (runs in a worker; returns plain data)."""
    config: CompareConfig = _WORKER["config"]
    model, explainers = _models(job["fold"])
    target = config.target
    threshold = float(model.threshold if target == "xcos" else model.model_threshold)
    x_a, x_b = _to_input(model, job["chip_a"]), _to_input(model, job["chip_b"])
    with torch.inference_mode():
        model(x_a, x_b)  # warm-up
        times = []
        for _ in range(2):
            start = time.perf_counter()
            out = model(x_a, x_b)
            times.append(time.perf_counter() - start)
    score = float(out.score[0] if target == "xcos" else out.model_cosine[0])
    record = {k: job[k] for k in ("i", "pair_id", "fold", "same", "path_a", "path_b")}
    record.update(score=score, xcos=float(out.score[0]), model_cosine=float(out.model_cosine[0]),
                  threshold=threshold, forward_s=float(np.median(times)),
                  cos_map=out.cos_map[0].tolist(), attention=out.attention[0].tolist(),
                  methods={})
    descending = job["same"]  # genuine: support first; impostor: opposition first
    base_a = replacement_baseline(x_a, config.baseline)
    score_fn = fixed_face_scorer(model, x_b, target, vary="a")
    del_f, ins_f = config.fractions(config.deletion_step), config.fractions(config.insertion_step)
    examples = {}
    loc = None
    if "donor" in job:
        region = facial_region_mask(job["region"], tuple(x_a.shape[-2:]))
        hybrid = make_hybrid(x_b, _to_input(model, job["donor"]), region)
        with torch.inference_mode():
            hybrid_out = model(x_a, hybrid)
        hybrid_score = float(hybrid_out.score[0] if target == "xcos"
                             else hybrid_out.model_cosine[0])
        loc = {"region": job["region"], "hybrid_score": hybrid_score,
               "flipped": bool(score > threshold >= hybrid_score)}
        record["localisation"] = loc
        hybrid_fn = fixed_face_scorer(model, x_a, target, vary="b")
    for name, explainer in explainers.items():
        reseed_for_pair(explainer, job["i"], config.seed)  # issue 14: shard-independent draws
        start = time.perf_counter()
        r = explainer.attribute(x_a, x_b, target=target)
        elapsed = time.perf_counter() - start
        m = {"time_s": elapsed,
             "deletion": deletion_curve(score_fn, x_a, base_a, r.map_a, del_f, config.unit,
                                        descending, seed=config.seed).tolist(),
             "insertion": insertion_curve(score_fn, x_a, base_a, r.map_a, ins_f, config.unit,
                                          descending, seed=config.seed).tolist(),
             "grid_abs": r.grid_a[0].abs().tolist()}
        if job["example"]:
            examples[name] = (r.map_a[0].cpu().numpy(), r.map_b[0].cpu().numpy())
        if loc is not None:
            h = explainer.attribute(x_a, hybrid, target=target)
            m["pointing"] = pointing_game(h.map_b, region, config.unit, seed=config.seed)
            m["iou"] = top_iou(h.map_b, region, config.unit, seed=config.seed)
            m["restore_to_flip"] = (restore_to_flip(hybrid_fn, hybrid, x_b, h.map_b, threshold,
                                                    del_f, config.unit, seed=config.seed)
                                    if loc["flipped"] else float("nan"))
        if job["sensitivity"]:
            m["sensitivity"] = float(sensitivity(
                explainer, x_a, x_b, target, radius=config.sensitivity_radius,
                n_samples=config.sensitivity_samples, seed=config.seed)[0])
        if job["randomisation"]:
            ref = torch.cat([_unit_map(r.map_a, config.unit).flatten(),
                             _unit_map(r.map_b, config.unit).flatten()])
            m["randomisation"] = {}
            for stage, rmodel in _randomised_models():
                kwargs = config.method_kwargs(name)
                if name == "random":  # fresh draws, or the floor would look model-bound
                    kwargs["seed"] = config.seed + 1000
                other = create_explainer(name, rmodel, **kwargs)
                rr = other.attribute(x_a, x_b, target=target)
                new = torch.cat([_unit_map(rr.map_a, config.unit).flatten(),
                                 _unit_map(rr.map_b, config.unit).flatten()])
                m["randomisation"][stage] = rank_correlation(ref, new)
        # --- issue 14: the field's protocols (compare_field.py) ---
        m["passes"] = explainer.pass_count(target)
        if job.get("road"):
            m.update(road_measures(score_fn, x_a, r.map_a[0], job["same"], config))
        if job["randomisation"] and config.mprt_layers:
            kwargs = config.method_kwargs(name)
            if name == "random":
                kwargs["seed"] = config.seed + 1000
            m.update(mprt_measures(model, lambda mm, n=name, kw=kwargs: create_explainer(
                n, mm, **kw), x_a, x_b, target, config))
        record["methods"][name] = m
    if examples:
        record["example_maps"] = {k: [a.tolist(), b.tolist()] for k, (a, b) in examples.items()}
    return record


# --------------------------------------------------------------------------- the table


def _nanmean(values) -> float:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    return float(np.nanmean(v)) if v.size and not np.all(np.isnan(v)) else float("nan")


def summarize(records: list[dict], config: CompareConfig) -> tuple[pd.DataFrame, dict]:
    """The table (one row per method) and the mean curves."""
    from ..evaluation.attention_stats import static_cells, summarize_attention

    records = sorted(records, key=lambda r: r["i"])
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
        d_auc = np.array([curve_auc(del_f, c) for c in dele])
        i_auc = np.array([curve_auc(ins_f, c) for c in ins])
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
                                                 del_f, ins_f)  # issue 14
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
    "pointing": ("pointing game", "higher"),
    "iou": ("IoU with region", "higher"),
    "restore_to_flip": ("restored to flip", "lower"),
    "sensitivity": ("sensitivity max", "lower"),
    "rand_corr_head": ("rank corr. after head reset", "lower"),
    "rand_corr_all": ("rank corr. after full reset", "lower"),
    "static_share": ("mass on static cells", "lower"),
    "time_s": ("s / pair", "lower"),
    "cost_x_forward": ("cost (x forward)", "lower"),
}
COLUMNS.update(FIELD_COLUMNS)  # issue 14


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


# --------------------------------------------------------------------------- plots


def _curve_figures(curves: dict):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    del_f = np.array(curves["deletion_fractions"])
    ins_f = np.array(curves["insertion_fractions"])
    panels = [("deletion_genuine", del_f, "deletion, genuine (↓ better)"),
              ("insertion_genuine", ins_f, "insertion, genuine (↑)"),
              ("deletion_impostor", del_f, "deletion, impostor (↑)"),
              ("insertion_impostor", ins_f, "insertion, impostor (↓)"),
              ("fnmr", del_f[:-1], "FNMR vs replaced (genuine, ↑)"),
              ("fmr", del_f[:-1], "FMR vs replaced (impostor, ↑)")]
    fig = make_subplots(rows=2, cols=3, subplot_titles=[p[2] for p in panels])
    colours = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#666666",
               "#a6761d", "#1f78b4"]
    for k, name in enumerate(curves["methods"]):
        c = curves["methods"][name]
        for p, (key, x, _) in enumerate(panels):
            fig.add_trace(go.Scatter(x=x, y=c[key], name=name, legendgroup=name,
                                     showlegend=p == 0, mode="lines",
                                     line=dict(color=colours[k % len(colours)],
                                               dash="dot" if name == "random" else "solid")),
                          p // 3 + 1, p % 3 + 1)
    fig.update_xaxes(title_text="fraction of face A replaced")
    fig.update_layout(height=650, template="plotly_white",
                      title="Faithfulness of pair explanations (mean over pairs)")
    return fig, panels


def _save_curves_png(curves: dict, panels, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for (key, x, title), ax in zip(panels, axes.flat):
        for name, c in curves["methods"].items():
            ax.plot(x, c[key], ls=":" if name == "random" else "-", label=name)
        ax.set_title(title)
        ax.set_xlabel("fraction of face A replaced")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _save_examples(records: list[dict], jobs_chips: dict, out: Path) -> list[Path]:
    """Side-by-side maps of the example pairs: one row per method, faces A and B."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    written = []
    for r in records:
        if "example_maps" not in r:
            continue
        maps = r["example_maps"]
        names = list(maps)
        chip_a, chip_b = jobs_chips[r["i"]]
        fig, axes = plt.subplots(2, len(names) + 1, figsize=(2.2 * (len(names) + 1), 4.6))
        axes[0, 0].imshow(chip_a)
        axes[1, 0].imshow(chip_b)
        axes[0, 0].set_title("A" + (" (genuine)" if r["same"] else " (impostor)"), fontsize=8)
        axes[1, 0].set_title(f"B, score {r['score']:.3f}", fontsize=8)
        pfig = make_subplots(rows=2, cols=len(names), subplot_titles=names * 2,
                             vertical_spacing=0.08)
        for j, name in enumerate(names):
            for row, m in enumerate(maps[name]):
                m = np.asarray(m)
                lim = float(np.abs(m).max()) or 1.0
                ax = axes[row, j + 1]
                ax.imshow([chip_a, chip_b][row], alpha=1.0)
                ax.imshow(m, cmap="RdBu", vmin=-lim, vmax=lim, alpha=0.6)
                if row == 0:
                    ax.set_title(name, fontsize=8)
                pfig.add_trace(go.Heatmap(z=m[::-1], zmin=-lim, zmax=lim, colorscale="RdBu",
                                          showscale=False), row + 1, j + 1)
        for ax in axes.flat:
            ax.axis("off")
        fig.suptitle("blue: supports 'same person', red: opposes", fontsize=9)
        fig.tight_layout()
        stem = f"example_{r['i']:03d}_{'genuine' if r['same'] else 'impostor'}"
        fig.savefig(out / f"{stem}.png", dpi=80)
        plt.close(fig)
        pfig.update_layout(height=520, title=f"{r['path_a']} vs {r['path_b']} "
                                             f"(score {r['score']:.3f})")
        pfig.write_html(out / f"{stem}.html", include_plotlyjs="cdn")
        written += [out / f"{stem}.png", out / f"{stem}.html"]
    return written


def write_outputs(out: Path, table: pd.DataFrame, curves: dict, config: CompareConfig,
                  extra: dict | None = None) -> dict[str, Path]:
    """``table.csv``, ``table.md``, ``table.json`` (with the config and the summary),
    ``curves.html``, ``curves.png``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "table.csv", "md": out / "table.md", "json": out / "table.json",
             "html": out / "curves.html", "png": out / "curves.png"}
    table.to_csv(paths["csv"], index=False, float_format="%.5f")
    s = curves["summary"]
    note = (f"{s['pairs']} LFW View-2 pairs ({s['genuine']} genuine, {s['impostor']} "
            f"impostor, folds {s['folds'][0]}-{s['folds'][-1]}), target `{config.target}`, "
            f"{'fold-held-out heads' if config.fold_heads else 'the default head'}; "
            f"replacement baseline: Gaussian-blurred face A ({config.baseline}); units "
            f"{config.unit}x{config.unit} px; localisation on {s['localisation_pairs']} "
            f"hybrids ({s['localisation_flipped']} flipped the decision); sensitivity on "
            f"{s['sensitivity_pairs']} pairs, randomisation on {s['randomisation_pairs']}.\n\n")
    paths["md"].write_text(note + to_markdown(table), encoding="utf-8")
    payload = {"config": asdict(config), "summary": s, "table": table.to_dict("records"),
               "curves": {k: v for k, v in curves.items() if k != "summary"},
               **(extra or {})}
    paths["json"].write_text(json.dumps(payload, indent=1, default=float), encoding="utf-8")
    fig, panels = _curve_figures(curves)
    fig.write_html(paths["html"], include_plotlyjs=True)
    _save_curves_png(curves, panels, paths["png"])
    for path in write_field_figures(out, table):  # issue 14: cost against faithfulness
        paths[path.stem] = path
    return paths


# --------------------------------------------------------------------------- the run


def run_compare(out: str | Path, root=None, config: CompareConfig | None = None,
                workers: int = 1, progress: bool = True, reverse: bool = False,
                device: str = "cpu",
                skip_done_in: list[str | Path] = (), first: int = 0,
                shard: tuple[int, int] | None = None
                ) -> tuple[pd.DataFrame, dict]:
    """Run every method on ``config.n_pairs`` LFW View-2 pairs and write the results.

    Args:
        out: output folder (``records.jsonl`` there makes the run resumable).
        root: the LFW folder (default ``$XCOS_XAI_DATA/lfw``; a clear error when absent).
        config: a :class:`CompareConfig`.
        workers: processes, each running ``config.threads`` torch threads.
        reverse: work from the last pair backwards (a second process on another machine
            or core can then share a run: see ``skip_done_in`` and :func:`summarize_records`).
        skip_done_in: other output folders of the same configuration whose finished pairs
            are not recomputed (checked once at the start).
        first: start at this pair index (another process takes the pairs before it).
        shard: ``(rank, world)``: only the pairs ``i % world == rank`` (issue 14: one shard
            per torchrun rank, see :mod:`.compare_distributed`); only the records are
            written, and ``(None, None)`` is returned.
        device: where the models and faces go (``"cpu"``, ``"cuda:0"``...).
    """
    from tqdm.auto import tqdm

    from ..data.lfw import LFW

    config = config or CompareConfig()
    unknown = [m for m in config.methods if m not in list_explainers()]
    if unknown:
        raise ValueError(f"unknown explainer(s) {unknown}: choose from {list_explainers()}")
    if config.target not in ("xcos", "model_cosine"):
        raise ValueError(f"target must be 'xcos' or 'model_cosine', got {config.target!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lfw = LFW(root)  # DataNotFoundError names the folder and the fix
    pairs = select_pairs(lfw.pairs_frame(), config.n_pairs, config.seed)
    jobs = build_jobs(lfw, pairs, config, workers=workers, progress=progress)
    records_path = out / "records.jsonl"
    stamp = json.dumps(asdict(config), sort_keys=True)
    done: dict[int, dict] = {}
    if records_path.exists():
        lines = records_path.read_text(encoding="utf-8").splitlines()
        if lines and lines[0] == stamp:
            for line in lines[1:]:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by an interruption
                    continue
                done[rec["i"]] = rec
        else:
            records_path.unlink()
    if not records_path.exists():
        records_path.write_text(stamp + "\n", encoding="utf-8")
    elsewhere = set()
    for other in skip_done_in:
        other_config, other_records = read_records(other)
        if asdict(other_config) == asdict(config):
            elsewhere |= {r["i"] for r in other_records}
    todo = [j for j in jobs if j["i"] not in done and j["i"] not in elsewhere
            and j["i"] >= first and (shard is None or j["i"] % shard[1] == shard[0])]
    if reverse:
        todo = todo[::-1]
    start = time.perf_counter()
    with open(records_path, "a", encoding="utf-8") as fh, \
            tqdm(total=len(jobs), initial=len(done), desc="compare", unit="pair",
                 disable=not progress) as bar:
        def keep(rec):
            done[rec["i"]] = rec
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            bar.update(1)

        if workers <= 1:
            _init_worker(config, device)
            for job in todo:
                keep(evaluate_pair(job))
        else:
            # fold-ordered chunks: each worker keeps its fold's model between pairs
            with ProcessPoolExecutor(workers, initializer=_init_worker,
                                     initargs=(config, device)) as pool:
                for rec in pool.map(evaluate_pair, todo, chunksize=1):
                    keep(rec)
    wall = time.perf_counter() - start
    if shard is not None and shard[1] > 1:  # a torchrun rank: rank 0 merges the shards
        return None, None
    records = [done[j["i"]] for j in jobs if j["i"] in done
               and (shard is None or j["i"] % shard[1] == shard[0])]
    table, curves = summarize(records, config)
    write_outputs(out, table, curves, config,
                  extra={"wall_time_s": wall, "workers": workers,
                         "cpu_count": os.cpu_count(), "resumed_pairs": len(jobs) - len(todo)})
    _save_examples(records, {j["i"]: (j["chip_a"], j["chip_b"]) for j in jobs}, out)
    return table, curves


def read_records(out: str | Path) -> tuple[CompareConfig, list[dict]]:
    """The configuration and the finished pair records of a (possibly running) comparison."""
    path = Path(out) / "records.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no comparison records at {path}: run `xcos-xai compare "
                                f"--out {out}` first")
    lines = path.read_text(encoding="utf-8").splitlines()
    config = CompareConfig(**json.loads(lines[0]))
    records = {}
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # the line being written
            continue
        records[rec["i"]] = rec
    return config, [records[i] for i in sorted(records)]


def summarize_records(out: str | Path, dest: str | Path | None = None,
                      also: list[str | Path] = ()):
    """Table and curves from the records written so far (e.g. of an unfinished run), merged
    with the records of other folders ``also`` that ran the same configuration."""
    config, records = read_records(out)
    merged = {r["i"]: r for r in records}
    for other in also:
        other_config, other_records = read_records(other)
        if asdict(other_config) != asdict(config):
            raise ValueError(f"{other} ran another configuration than {out}: not merged")
        for r in other_records:
            merged.setdefault(r["i"], r)
    records = [merged[i] for i in sorted(merged)]
    table, curves = summarize(records, config)
    write_outputs(Path(dest or out), table, curves, config,
                  extra={"partial": len(records) < config.n_pairs})
    return table, curves


# --------------------------------------------------------------------------- command line


def add_compare_arguments(parser) -> None:
    """The ``xcos-xai compare`` options (kept here, beside the code they drive)."""
    d = CompareConfig()
    parser.add_argument("--lfw", default=None, help="LFW folder (default: $XCOS_XAI_DATA/lfw)")
    parser.add_argument("--out", default="outputs/compare", help="output folder")
    parser.add_argument("--pairs", type=int, default=d.n_pairs,
                        help="pairs, a multiple of 20 (balanced per fold and class)")
    parser.add_argument("--methods", default=",".join(d.methods),
                        help="comma-separated explainers (default: all registered)")
    parser.add_argument("--target", default=d.target, choices=["xcos", "model_cosine"],
                        help="the explained pair score")
    parser.add_argument("--default-head", action="store_true",
                        help="use the default head for every pair instead of the fold heads")
    parser.add_argument("--deletion-step", type=float, default=d.deletion_step,
                        help="replaced fraction per deletion step (0.05: 21 points, 0..100 %%)")
    parser.add_argument("--insertion-step", type=float, default=d.insertion_step,
                        help="restored fraction per insertion step")
    parser.add_argument("--ig-steps", type=int, default=d.ig_steps)
    parser.add_argument("--smoothgrad-samples", type=int, default=d.smoothgrad_samples)
    parser.add_argument("--localisation", type=int, default=d.n_localisation,
                        help="genuine pairs used for the localisation game")
    parser.add_argument("--sensitivity", type=int, default=d.n_sensitivity,
                        help="pairs for Captum's sensitivity_max")
    parser.add_argument("--randomisation", type=int, default=d.n_randomisation,
                        help="pairs for the model-randomisation check")
    # issue 14: the field's methods and protocols
    parser.add_argument("--corrrise-masks", type=int, default=d.corrrise_masks,
                        help="CorrRISE's random masks per face")
    parser.add_argument("--road", type=int, default=d.n_road,
                        help="pairs for the ROAD (noisy linear imputation) curves")
    parser.add_argument("--mprt-layers", type=int, default=d.mprt_layers,
                        help="layers for cascading/independent randomisation (0: off)")
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present), cpu, cuda, cuda:N; under torchrun "
                             "each CUDA rank takes GPU LOCAL_RANK")
    parser.add_argument("--workers", type=int, default=1, help="processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--seed", type=int, default=d.seed)


def main_compare(args) -> int:
    config = CompareConfig(
        n_pairs=args.pairs, methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        target=args.target, fold_heads=not args.default_head, ig_steps=args.ig_steps,
        deletion_step=args.deletion_step, insertion_step=args.insertion_step,
        smoothgrad_samples=args.smoothgrad_samples, n_localisation=args.localisation,
        n_sensitivity=args.sensitivity, n_randomisation=args.randomisation, seed=args.seed,
        threads=args.threads, corrrise_masks=args.corrrise_masks, n_road=args.road,
        mprt_layers=args.mprt_layers)
    start = time.perf_counter()
    from .compare_distributed import run_compare_distributed  # issue 14: torchrun shards

    table, curves = run_compare_distributed(args.out, root=args.lfw, config=config,
                                            device=args.device, workers=args.workers)
    if table is None:  # a torchrun rank other than 0: rank 0 prints the merged table
        return 0
    print(to_markdown(table))
    print(f"compare took {time.perf_counter() - start:.1f} s; results in {args.out} "
          "(table.csv, table.md, table.json, curves.html, curves.png, example_*.png)")
    return 0
