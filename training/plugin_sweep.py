"""Which plug-in head on dlib's frozen network is best? Measured on LFW, fold-held-out.

Every configuration is trained 10 times (once per View-2 fold, on the other folds' people)
and scored on the held-out fold's pairs; the 6000 scores go through the 10-fold protocol.
Results (accuracy, correlation with the model's cosine, attention statistics, time) are
printed and written to ``training/results/plugin_sweep.{json,md}``.

    python training/plugin_sweep.py                      # all configurations below
    python training/plugin_sweep.py --only spec-4x4 deep-4x4
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from xcos_xai._io import atomic_save_safetensors
from xcos_xai.apps.lfw_benchmark import held_out_xcos, lfw_features, model_scores
from xcos_xai.evaluation.attention_stats import summarize_attention
from xcos_xai.evaluation.protocol import ten_fold_accuracy
from xcos_xai.training.plugin import PluginConfig

CONFIGS = {
    "spec-4x4": PluginConfig(grid="4x4"),
    "offset-4x4": PluginConfig(grid="4x4", cell_offset=True),
    "wide-4x4": PluginConfig(grid="4x4", channels=64),
    "deep-4x4": PluginConfig(grid="4x4", context_channels=64),
    # the feasibility study's schedule: 10 x 40k pairs, batch 256, Adam 1e-3 (1560 steps)
    "long-4x4": PluginConfig(grid="4x4", epochs=10, batch_size=256, lr=1e-3),
    "long-wide-4x4": PluginConfig(grid="4x4", channels=64, epochs=10, batch_size=256, lr=1e-3),
    "long-offset-4x4": PluginConfig(grid="4x4", cell_offset=True, epochs=10, batch_size=256,
                                    lr=1e-3),
    # dlib's descriptor split over the 4x4 cells (local descriptors, no adapter): the
    # attention weighs each cell by its descriptor norms (learned exponent and bias), with
    # or without the paper's learned attention on top; 800 steps of 256 pairs. (Uniform
    # weights on the same grid need no training: the "uniform-W" column of these runs.)
    "local-norm-4x4": PluginConfig(grid="4x4-local", channels=None, attention="norm",
                                   epochs=5, pairs_per_epoch=40_960, batch_size=256, lr=1e-2),
    "local-norm-learned-4x4": PluginConfig(grid="4x4-local", channels=None,
                                           attention="norm_learned", epochs=5,
                                           pairs_per_epoch=40_960, batch_size=256, lr=1e-3),
    # The same two on SFace's embedding split over its 7x7 cells (49 local descriptors).
    "local-norm-7x7": PluginConfig(grid="7x7-local", channels=None, attention="norm",
                                   epochs=5, pairs_per_epoch=40_960, batch_size=256, lr=1e-2),
    "local-norm-learned-7x7": PluginConfig(grid="7x7-local", channels=None,
                                           attention="norm_learned", epochs=5,
                                           pairs_per_epoch=40_960, batch_size=256, lr=1e-3),
    # No training at all: W proportional to |e_A,c| |e_B,c| (power 1, no bias), xCos =
    # sum_c <e_A,c, e_B,c> / sum_c |e_A,c| |e_B,c|. On SFace it beats both trained variants
    # (fold-held-out LFW: 98.78 against 98.27 and 97.67): the bundled sface-xcos head.
    "local-norm-untrained-7x7": PluginConfig(grid="7x7-local", channels=None, attention="norm",
                                             epochs=0),
    "spec-8x8": PluginConfig(grid="8x8", epochs=3),
    "deep-8x8": PluginConfig(grid="8x8", context_channels=64, epochs=3),
}


def save_fold_heads(heads, path: Path) -> None:
    """The ten fold heads, for ``build_pretrained.py --from-sweep`` (no retraining)."""
    tensors = {f"fold{k}.head.{n}": v for k, head in enumerate(heads)
               for n, v in head.state_dict().items()}
    atomic_save_safetensors(tensors, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None, help="configuration names")
    parser.add_argument("--epochs", type=int, default=None, help="override epochs")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args(argv)
    _, features, index = lfw_features()
    base = model_scores(features, index)
    results = {}
    ref = ten_fold_accuracy(base["model_cosine"], index.same, index.pair_fold)
    print(f"model cosine: {100 * ref.mean:.2f} +- {100 * ref.std:.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.only or CONFIGS:
        config = CONFIGS[name]
        if args.epochs:
            config.epochs = args.epochs
        t0 = time.perf_counter()
        res = held_out_xcos(features, index, config, name=name, keep_heads=True)
        save_fold_heads(res.heads, out / f"heads_{name}.safetensors")
        elapsed = time.perf_counter() - t0
        learned = ten_fold_accuracy(res.scores, index.same, index.pair_fold)
        uniform = ten_fold_accuracy(res.uniform_scores, index.same, index.pair_fold)
        summary = summarize_attention(res.attention, res.cos_maps)
        r = float(np.corrcoef(res.scores, base["model_cosine"])[0, 1])
        results[name] = {
            "config": asdict(config), "acc": 100 * learned.mean, "std": 100 * learned.std,
            "acc_uniform_swap": 100 * uniform.mean, "pearson_r": r,
            "rmse": float(np.sqrt(np.mean((res.scores - base["model_cosine"]) ** 2))),
            "attention": summary.as_dict(), "seconds": elapsed,
            "final_mse": [h[-1]["mse"] for h in res.histories],
        }
        print(f"{name}: xCos {100 * learned.mean:.2f} +- {100 * learned.std:.2f} | uniform-W "
              f"{100 * uniform.mean:.2f} | r {r:.4f} | eff. cells "
              f"{summary.mean_effective_cells:.1f}/{summary.n_cells} | static share "
              f"{summary.static_cell_share:.3f} | {elapsed:.0f} s", flush=True)
        (out / f"plugin_sweep{args.tag}.json").write_text(json.dumps(
            {"model_cosine": {"acc": 100 * ref.mean, "std": 100 * ref.std},
             "configs": results}, indent=1))
    lines = ["| config | xCos acc | uniform-W acc | r vs model | eff. cells | static share |"
             " time (s) |", "|---|---|---|---|---|---|---|",
             f"| model cosine | {100 * ref.mean:.2f} ± {100 * ref.std:.2f} | | 1 | | | |"]
    for name, r in results.items():
        a = r["attention"]
        lines.append(f"| {name} | {r['acc']:.2f} ± {r['std']:.2f} | {r['acc_uniform_swap']:.2f}"
                     f" | {r['pearson_r']:.4f} | {a['mean_effective_cells']:.1f}/{a['n_cells']}"
                     f" | {a['static_cell_share']:.3f} | {r['seconds']:.0f} |")
    (out / f"plugin_sweep{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
