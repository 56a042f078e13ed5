"""Build a bundled xCos head (``xcos_xai/pretrained/``) for dlib's face ResNet or SFace.

    python training/build_pretrained.py --config local-norm-learned-4x4
    python training/build_pretrained.py --model sface --config local-norm-untrained-7x7

Trains, on cached features of LFW (no augmentation, frozen network):
- ten fold heads: head k on the people of ``people.txt`` folds other than k, so that
  ``xcos-xai evaluate`` scores fold k's pairs with a head that never saw their people;
- the default head, on all 5,749 LFW people, for use on other data.
The thresholds are the 10-fold protocol's (fold k's chosen on the other folds' held-out
scores; the default head's is their mean). Writes ``dlib_xcos.safetensors`` (heads and a
JSON metadata block; ``sface_xcos.safetensors`` for SFace) and prints the metrics.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from xcos_xai._io import atomic_save_safetensors
from xcos_xai.apps.lfw_benchmark import held_out_xcos, lfw_features, model_scores
from xcos_xai.evaluation.attention_stats import summarize_attention
from xcos_xai.evaluation.protocol import ten_fold_accuracy
from xcos_xai.training.plugin import train_plugin_head

sys.path.insert(0, str(Path(__file__).parent))
from plugin_sweep import CONFIGS  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "xcos_xai" / "pretrained"
MODELS = {  # --model: (registry backbone, bundle file, how the faces are aligned)
    "dlib": ("dlib_resnet_v1", "dlib_xcos.safetensors",
             "LFW deep-funneled, dlib chips (HOG + 5 landmarks, 150 px)"),
    "sface": ("sface", "sface_xcos.safetensors",
              "LFW deep-funneled, YuNet (score 0.6, retry 0.3) + ArcFace 5-point template, "
              "112 px"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="spec-4x4", choices=sorted(CONFIGS))
    parser.add_argument("--model", default="dlib", choices=sorted(MODELS))
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--workers", type=int, default=2, help="processes for face alignment")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared CPU, 2 spinning threads were "
                             "several times slower)")
    args = parser.parse_args(argv)
    config = CONFIGS[args.config]
    backbone, filename, data = MODELS[args.model]
    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    _, features, index = lfw_features(model=backbone, workers=args.workers)
    base = model_scores(features, index)
    res = held_out_xcos(features, index, config, name=args.config, keep_heads=True)
    learned = ten_fold_accuracy(res.scores, index.same, index.pair_fold)
    uniform = ten_fold_accuracy(res.uniform_scores, index.same, index.pair_fold)
    model = ten_fold_accuracy(base["model_cosine"], index.same, index.pair_fold)
    grids = features.grids[config.grid]
    head, history = train_plugin_head(grids, features.embeddings,
                                      torch.from_numpy(index.image_label), config)
    tensors = {f"head.{k}": v for k, v in head.state_dict().items()}
    for k, fold_head in enumerate(res.heads):
        tensors.update({f"fold{k}.head.{n}": v for n, v in fold_head.state_dict().items()})
    summary = summarize_attention(res.attention, res.cos_maps)
    r = float(np.corrcoef(res.scores, base["model_cosine"])[0, 1])
    meta = {
        "backbone": backbone, "config_name": args.config, "config": asdict(config),
        "in_channels": int(grids.shape[1]),  # a head without adapter or learned attention
        # (the untrained norm weighting) has no weight to read it from
        "thresholds": {"xcos": float(np.mean(learned.thresholds)),
                       "model_cosine": float(np.mean(model.thresholds))},
        "fold_thresholds": [{"xcos": a, "model_cosine": b}
                            for a, b in zip(learned.thresholds, model.thresholds)],
        "metrics": {
            "lfw_10fold_xcos": [100 * learned.mean, 100 * learned.std],
            "lfw_10fold_xcos_uniform_attention": [100 * uniform.mean, 100 * uniform.std],
            "lfw_10fold_model_cosine": [100 * model.mean, 100 * model.std],
            "xcos_auc": learned.auc, "xcos_tar_at_far_1e-3": learned.tar_at_far_1e3,
            "pearson_r_xcos_vs_model_cosine": r, "attention": summary.as_dict(),
        },
        "training": {"data": data,
                     "default_head_final_mse": history[-1]["mse"] if history else None,
                     "command": ("python training/build_pretrained.py --model "
                                 f"{args.model} --config {args.config}"),
                     "seconds": time.perf_counter() - t0, "torch": torch.__version__,
                     "python": platform.python_version()},
    }
    out = Path(args.out)
    atomic_save_safetensors(tensors, out / filename, metadata={"bundle": json.dumps(meta)})
    print(json.dumps(meta["metrics"], indent=1))
    print(f"wrote {out / filename} in {meta['training']['seconds']:.0f} s")


if __name__ == "__main__":
    main()
