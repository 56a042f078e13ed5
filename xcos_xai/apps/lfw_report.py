"""The LFW evaluation job: table (CSV, JSON), per-pair scores (CSV) and the HTML report."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import atomic_path
from ..core.device import resolve_device
from ..evaluation.attention_stats import summarize_attention
from ..evaluation.dlib_reference import reference_distances
from ..evaluation.protocol import ten_fold_accuracy
from ..evaluation.sface_reference import reference_cosines
from .lfw_benchmark import bundled_fold_scores, lfw_features, model_scores
from .lfw_html import write_lfw_report

DESCRIPTIONS = {
    "model_cosine": "plugged model (dlib ResNet): descriptor cosine",
    "model_neg_l2": "plugged model (dlib ResNet): descriptor L2 distance",
    "xcos": "xCos of the bundled fold heads (their grid and attention: MODEL_CARD.md)",
    "xcos_uniform": "xCos, same heads with uniform attention",
    "dlib_reference": "dlib's own pipeline (dlib-bin compute_face_descriptor), L2",
    "sface_reference": "OpenCV Zoo's own SFace pipeline (YuNet, alignCrop, onnxruntime), cosine",
}

MODELS = {
    # --model name: (registry backbone, bundled head, name in the descriptions)
    "dlib": ("dlib_resnet_v1", "dlib-xcos", "dlib ResNet"),
    "sface": ("sface", "sface-xcos", "SFace"),
}
"""The models ``evaluate`` takes: each a registry backbone with a bundled xCos head."""


def protocol_table(scores: dict[str, np.ndarray], same: np.ndarray,
                   folds: np.ndarray, model: str = "dlib") -> pd.DataFrame:
    rows = []
    for name, values in scores.items():
        res = ten_fold_accuracy(values, same, folds)
        description = DESCRIPTIONS.get(name, name)
        if model != "dlib" and name.startswith("model_"):
            description = description.replace("dlib ResNet", MODELS[model][2]).replace(
                "descriptor", "embedding")
        rows.append({"scorer": name, "description": description,
                     "accuracy_mean": 100 * res.mean, "accuracy_std": 100 * res.std,
                     "roc_auc": res.auc, "tar_at_far_1e-3": res.tar_at_far_1e3,
                     "mean_threshold": float(np.mean(res.thresholds))})
    return pd.DataFrame(rows)


def run_lfw_evaluation(out: Path, root=None, workers: int = 2, reference: bool = False,
                       report: bool = False, progress: bool = True,
                       images=None, model: str = "dlib", device: str = "auto",
                       batch_size: int = 64) -> pd.DataFrame:
    """Evaluate every scorer on all 6000 LFW View-2 pairs and write the results to ``out``.

    ``root``, ``images``: the LFW folder and its image folder (see :class:`LFW`).
    ``model``: a key of :data:`MODELS` (``"dlib"``, ``"sface"``). With ``reference``, the
    model's own end-to-end pipeline is scored too (dlib-bin, or OpenCV + onnxruntime).
    ``device``: where the backbone (``batch_size`` images per forward) and the fold heads
    (pairs in batches) run, in float32 (``"auto"``: CUDA when present; the feature cache
    is shared by every device). Every file is written atomically.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} for the LFW evaluation: choose one of "
                         f"{sorted(MODELS)}")
    if batch_size < 1:
        raise ValueError(f"batch size {batch_size} for the LFW evaluation: give at least 1 "
                         "(--batch-size)")
    device = resolve_device(device)  # before any work: a wrong --device fails at once
    backbone_name, bundle, _ = MODELS[model]
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.perf_counter()
    lfw, features, index = lfw_features(root=root, workers=workers, progress=progress,
                                        images=images, model=backbone_name,
                                        batch_size=batch_size, device=device)
    timings["features_s"] = time.perf_counter() - t0
    scores = model_scores(features, index)
    t1 = time.perf_counter()
    xcos = bundled_fold_scores(features, index, name=bundle, device=device)
    timings["xcos_heads_s"] = time.perf_counter() - t1
    scores["xcos"] = xcos.scores
    scores["xcos_uniform"] = xcos.uniform_scores
    if reference:
        t2 = time.perf_counter()
        paths = [lfw.image_root / k for k in features.keys]
        if model == "dlib":
            scores["dlib_reference"] = -reference_distances(paths, index, workers=workers,
                                                            progress=progress)
        else:
            scores["sface_reference"] = reference_cosines(paths, index, workers=workers,
                                                          progress=progress)
        timings["reference_s"] = time.perf_counter() - t2
    table = protocol_table(scores, index.same, index.pair_fold, model=model)
    summary = summarize_attention(xcos.attention, xcos.cos_maps)
    pairs = index.frame[["fold", "same", "name_a", "index_a", "name_b", "index_b"]].copy()
    for name, values in scores.items():
        pairs[name] = values
    with atomic_path(out / "pair_scores.csv") as tmp:
        pairs.to_csv(tmp, index=False)
    with atomic_path(out / "table.csv") as tmp:
        table.to_csv(tmp, index=False)
    timings["total_s"] = time.perf_counter() - t0
    r = float(np.corrcoef(scores["xcos"], scores["model_cosine"])[0, 1])
    info = {
        "protocol": "LFW View 2, 10 folds: threshold chosen on 9 folds, accuracy on the 10th",
        "model": model, "backbone": backbone_name, "bundle": bundle,
        "scorers": table.to_dict(orient="records"),
        "attention": summary.as_dict(), "xcos_vs_model_pearson_r": r, "timings": timings,
        "device": device,
    }
    with atomic_path(out / "table.json") as tmp:
        tmp.write_text(json.dumps(info, indent=1), encoding="utf-8")
    if report:
        write_lfw_report(out / "report.html", lfw, features, index, scores, table, summary,
                         bundle=bundle)
    return table
