"""LFW evaluation throughput: the end-to-end feature pipeline against the raw backbone, the
alignment cache's effect, and a full re-evaluation from the feature cache.

Part 1, on a subset of LFW images (default 256, spread over the whole set), each repetition
runs, back to back:

- ``cold``: ``compute_features`` exactly as the LFW job runs it (decode, detect, landmarks,
  chip, normalise, ``forward_all``), with a fresh, empty chip cache in a new temporary
  folder (``XCOS_XAI_CACHE`` points there too) and the feature cache off;
- ``warm``: the same call again, chips now read from that cache;
- ``raw``: ``backbone.forward_all`` alone on the same images as ready normalised tensors,
  same batch size.

Reported: images/s of each, ``cold / raw`` and ``warm / raw`` throughput, ``warm / cold``.

Part 2: a full re-evaluation with a new head from the cached features of this machine
(``lfw_features()`` is called once first; it computes them if they are missing): score all
6000 View-2 pairs with one newly built head, then the 10-fold protocol; and the job's own
step, the ten bundled fold heads (``bundled_fold_scores``) plus the protocol. Goal: under 5 s.

    XCOS_XAI_DATA=/path/to/data python benchmarks/lfw_throughput.py   # 256 images, 5 reps
    XCOS_XAI_DATA=/path/to/data python benchmarks/lfw_throughput.py --quick
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import (
    environment,
    fmt_ratio,
    md_table,
    paired_ratio,
    parser,
    require_data,
    setup_torch,
    summary,
    verdict,
    write_results,
)

NAME = "lfw_throughput"


class temporary_cache:
    """A fresh ``XCOS_XAI_CACHE`` folder for the duration of a ``with`` block."""

    def __enter__(self) -> Path:
        self.old = os.environ.get("XCOS_XAI_CACHE")
        self.path = Path(tempfile.mkdtemp(prefix="xcos_bench_cache_"))
        os.environ["XCOS_XAI_CACHE"] = str(self.path)
        return self.path

    def __exit__(self, *exc) -> None:
        if self.old is None:
            os.environ.pop("XCOS_XAI_CACHE", None)
        else:
            os.environ["XCOS_XAI_CACHE"] = self.old
        shutil.rmtree(self.path, ignore_errors=True)


def pipeline_part(n_images: int, reps: int, workers: int, batch_size: int,
                  progress: bool) -> dict:
    from tqdm.auto import tqdm

    from xcos_xai.data.align import FaceAligner, MultipleFacesWarning, faces_to_tensor
    from xcos_xai.data.lfw import LFW
    from xcos_xai.evaluation.features import compute_features
    from xcos_xai.models.registry import create_backbone

    warnings.simplefilter("ignore", MultipleFacesWarning)  # a count per call, not news here
    lfw = LFW()
    images = lfw.images()
    paths = [images[i] for i in np.linspace(0, len(images) - 1, n_images).astype(int)]
    backbone = create_backbone("dlib_resnet_v1", pretrained=True).eval()
    spec = backbone.input_spec
    times = {"cold": [], "warm": [], "raw": []}
    ready = None
    for _ in tqdm(range(reps), desc="cold/warm/raw", disable=not progress, leave=False):
        with temporary_cache() as tmp:
            aligner = FaceAligner.for_lfw(cache_dir=tmp / "chips")
            for case in ("cold", "warm"):
                t0 = time.perf_counter()
                compute_features(backbone, paths, aligner, cache=False, progress=False,
                                 workers=workers, batch_size=batch_size)
                times[case].append(time.perf_counter() - t0)
            if ready is None:
                faces = aligner.align_many(paths, progress=False)
                chips = faces_to_tensor(faces)
                ready = spec.normalize(chips).contiguous()
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s in range(0, len(ready), batch_size):
                backbone.forward_all(ready[s:s + batch_size])
        times["raw"].append(time.perf_counter() - t0)
    per_s = {k: n_images / summary(v)["median_s"] for k, v in times.items()}
    return {
        "images": n_images, "workers": workers, "batch_size": batch_size, "times_s": times,
        "images_per_s_median": per_s,
        "throughput_cold_over_raw": paired_ratio(times["raw"], times["cold"]),
        "throughput_warm_over_raw": paired_ratio(times["raw"], times["warm"]),
        "warm_speedup_over_cold": paired_ratio(times["cold"], times["warm"]),
    }


def reevaluation_part(reps: int, progress: bool) -> dict:
    from xcos_xai.apps.lfw_benchmark import bundled_fold_scores, lfw_features, score_pairs
    from xcos_xai.evaluation.protocol import ten_fold_accuracy
    from xcos_xai.training.plugin import PluginConfig

    t0 = time.perf_counter()
    _, features, index = lfw_features(progress=progress)
    load_s = time.perf_counter() - t0
    grids = features.grids["4x4"]

    def new_head():
        torch.manual_seed(0)
        head = PluginConfig().build_head(grids.shape[1], tuple(grids.shape[-2:]))
        scores = score_pairs(head, grids, index.pair_a, index.pair_b)[0]
        return ten_fold_accuracy(scores, index.same, index.pair_fold)

    def fold_heads():
        result = bundled_fold_scores(features, index)
        return ten_fold_accuracy(result.scores, index.same, index.pair_fold)

    from _common import interleave

    times = interleave({"new_head": new_head, "bundled_fold_heads": fold_heads}, reps,
                       warmup=1, progress=progress, desc="re-evaluation")
    return {"pairs": len(index.same), "feature_cache_load_s": load_s,
            "feature_cache": str(features.meta.get("cache")), "times_s": times,
            "median_s": {k: summary(v)["median_s"] for k, v in times.items()},
            "goal_under_5s": {k: summary(v)["median_s"] < 5.0 for k, v in times.items()}}


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--images", type=int, default=None, help="subset size (full 256, quick 32)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (full 5, quick 1)")
    p.add_argument("--workers", type=int, default=2,
                   help="alignment processes, as the LFW job (default 2)")
    args = p.parse_args(argv)
    setup_torch(args.threads)
    require_data()
    quick = args.quick
    n = args.images or (32 if quick else 256)
    reps = args.reps or (1 if quick else 5)
    env = environment(args.threads)
    progress = not args.no_progress
    pipe = pipeline_part(n, reps, args.workers, 64, progress)
    reeval = reevaluation_part(2 if quick else 5, progress)
    payload = {"name": NAME, "quick": quick, "environment": env, "pipeline": pipe,
               "reevaluation": reeval}
    ips = pipe["images_per_s_median"]
    rows = [
        ["end-to-end, cold chip cache (decode + align + embed)", f"{ips['cold']:.1f}",
         fmt_ratio(pipe["throughput_cold_over_raw"], 3)],
        ["end-to-end, warm chip cache (read chips + embed)", f"{ips['warm']:.1f}",
         fmt_ratio(pipe["throughput_warm_over_raw"], 2)],
        ["raw `forward_all` on ready tensors", f"{ips['raw']:.1f}", "1"],
    ]
    r2 = reeval["median_s"]
    rows2 = [
        ["one new head: score 6000 pairs + 10-fold protocol", f"{r2['new_head']:.2f}", "< 5",
         verdict(reeval["goal_under_5s"]["new_head"])],
        ["the job's ten bundled fold heads + 10-fold protocol",
         f"{r2['bundled_fold_heads']:.2f}", "< 5",
         verdict(reeval["goal_under_5s"]["bundled_fold_heads"])],
        ["(once before) `lfw_features()` from the feature cache",
         f"{reeval['feature_cache_load_s']:.1f}", "-", "-"],
    ]
    md = [f"## LFW evaluation throughput (`benchmarks/{NAME}.py`)", "",
          f"{n} LFW images spread over the set, {reps} repetition(s) of cold, warm and raw "
          f"back to back; {args.workers} alignment processes, batches of 64. Throughput "
          "ratios are medians of per-repetition ratios (interquartile range in brackets).", "",
          md_table(["pipeline", "images/s (median)", "throughput / raw forward"], rows), "",
          f"Chip cache: warm is {fmt_ratio(pipe['warm_speedup_over_cold'], 1)}x faster than "
          "cold.", "",
          f"Re-evaluation of all {reeval['pairs']} pairs from the cached features (median of "
          f"{len(reeval['times_s']['new_head'])} interleaved repetitions):", "",
          md_table(["step", "seconds", "goal", "status"], rows2)]
    write_results(args.out, NAME, payload, "\n".join(md))


if __name__ == "__main__":
    main()
