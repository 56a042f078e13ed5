"""Peak resident memory of the LFW evaluation, each case in its own fresh process.

Cases (each a child process; its peak is read twice: ``VmHWM`` from its own
``/proc/self/status`` at exit, and ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` in this process,
which also covers the alignment worker processes it starts):

- ``baseline``: import xcos_xai, build dlib's network (what every case pays);
- ``evaluate``: the full ``run_lfw_evaluation`` (all 6000 View-2 pairs, every scorer, the
  tables and per-pair CSV) from this machine's feature cache, as ``xcos-xai evaluate`` runs;
- ``evaluate_report``: the same with the HTML report (``report=True``);
- ``features_N``: ``compute_features`` (feature cache off) on N and 2N LFW images, both
  more than one of its chunks (``8 * batch_size`` images), so the growth per image is what
  the pipeline keeps per image (streaming: the outputs only), extrapolated to LFW's 13233
  images. Chips come from this machine's chip cache (filled by the LFW job), to keep the
  run short; alignment workers are separate processes and do not add to this peak;
- ``features_cold_M``: the same on M images with an empty temporary chip cache
  (``XCOS_XAI_CACHE``): alignment in 2 worker processes (their peak is in ru_maxrss).

Goal: streaming, peak under 4 GB.

    XCOS_XAI_DATA=/path/to/data python benchmarks/memory.py
    XCOS_XAI_DATA=/path/to/data python benchmarks/memory.py --quick
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time

from _common import environment, md_table, parser, require_data, verdict, write_results

NAME = "memory"
LFW_IMAGES = 13233

CHILD_PREFIX = textwrap.dedent("""
    import json, os, sys, time
    import torch
    torch.set_num_threads({threads})
    def peak_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    t0 = time.perf_counter()
""")

CHILD_SUFFIX = textwrap.dedent("""
    print("RESULT " + json.dumps({{"vmhwm_mb": peak_mb(), "seconds": time.perf_counter() - t0}}))
""")

CASES = {
    "baseline": """
        import xcos_xai
        from xcos_xai.models.registry import create_backbone
        create_backbone("dlib_resnet_v1", pretrained=True)
    """,
    "evaluate": """
        from pathlib import Path
        from xcos_xai.apps.lfw_report import run_lfw_evaluation
        run_lfw_evaluation(Path({out!r}), workers=2, progress=False)
    """,
    "evaluate_report": """
        from pathlib import Path
        from xcos_xai.apps.lfw_report import run_lfw_evaluation
        run_lfw_evaluation(Path({out!r}), workers=2, report=True, progress=False)
    """,
    "features": """
        import numpy as np
        from pathlib import Path
        from xcos_xai.data.align import lfw_aligner
        from xcos_xai.data.lfw import LFW
        from xcos_xai.evaluation.features import compute_features
        from xcos_xai.models.registry import create_backbone
        images = LFW().images()
        paths = [images[i] for i in np.linspace(0, len(images) - 1, {n}).astype(int)]
        backbone = create_backbone("dlib_resnet_v1", pretrained=True)
        aligner = lfw_aligner()
        compute_features(backbone, paths, aligner, cache=False, workers=2, progress=False,
                         batch_size={batch})
    """,
}


def run_child(code: str, threads: int, env_extra: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; its peaks (VmHWM, and ru_maxrss over children)."""
    src = (CHILD_PREFIX.format(threads=threads) + textwrap.dedent(code)
           + CHILD_SUFFIX.format())
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                          env={**os.environ, **(env_extra or {})})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    # ru_maxrss (KiB on Linux) is the max over all waited-for children so far: it only
    # tells this child's peak when it exceeds every earlier one.
    res["ru_maxrss_children_mb"] = after / 1024 if after > before else None
    res["wall_s"] = wall
    return res


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--images", type=int, default=None,
                   help="N for the feature cases (full 1024, quick 64)")
    args = p.parse_args(argv)
    require_data()
    quick = args.quick
    n = args.images or (64 if quick else 1024)
    batch = 8 if quick else 64  # compute_features works in chunks of 8 * batch images
    if n <= 8 * batch:
        print(f"note: N={n} is not more than one chunk ({8 * batch} images): the growth "
              "per image then includes the second chunk's start", file=sys.stderr)
    cold = 64
    env = environment(args.threads)
    from tqdm.auto import tqdm

    results = {}
    with tempfile.TemporaryDirectory(prefix="xcos_bench_mem_") as tmp:
        jobs = [("baseline", CASES["baseline"], None),
                ("evaluate", CASES["evaluate"].format(out=f"{tmp}/eval"), None)]
        if not quick:
            jobs.append(("evaluate_report",
                         CASES["evaluate_report"].format(out=f"{tmp}/eval_report"), None))
        for k in (n, 2 * n):
            jobs.append((f"features_{k}", CASES["features"].format(n=k, batch=batch), None))
        if not quick:
            cache = f"{tmp}/cache_cold"
            jobs.append((f"features_cold_{cold}",
                         CASES["features"].format(n=cold, batch=batch),
                         {"XCOS_XAI_CACHE": cache}))  # lfw_aligner(): chips in <cache>/chips
        for name, code, extra in tqdm(jobs, desc="processes", disable=args.no_progress):
            results[name] = run_child(code, args.threads, extra)
    base = results["baseline"]["vmhwm_mb"]
    lo, hi = results[f"features_{n}"]["vmhwm_mb"], results[f"features_{2 * n}"]["vmhwm_mb"]
    per_image_kb = max(0.0, (hi - lo) / n * 1024)
    extrapolated = hi + per_image_kb * (LFW_IMAGES - 2 * n) / 1024
    peak_eval = max(results[k]["vmhwm_mb"] for k in results if k.startswith("evaluate"))
    goal = peak_eval < 4096 and extrapolated < 4096
    payload = {"name": NAME, "quick": quick, "environment": env, "cases": results,
               "feature_batch_size": batch,
               "growth_kb_per_image": per_image_kb,
               "extrapolated_to_lfw_mb": extrapolated, "goal_under_4gb": goal}
    rows = []
    for name, r in results.items():
        ru = r["ru_maxrss_children_mb"]
        rows.append([name, f"{r['vmhwm_mb']:.0f}", f"{r['vmhwm_mb'] - base:+.0f}",
                     "-" if ru is None else f"{ru:.0f}", f"{r['seconds']:.1f}"])
    md = [f"## Peak memory (`benchmarks/{NAME}.py`)", "",
          "Each case in a fresh process; peak resident set (VmHWM of the process; ru_maxrss "
          "over waited-for children when it is a new maximum, which includes alignment "
          "workers).", "",
          md_table(["case", "peak RSS (MB)", "over baseline (MB)",
                    "ru_maxrss children (MB)", "seconds in child"], rows), "",
          f"Feature pipeline: {per_image_kb:.1f} KB more peak per extra image "
          f"({n} -> {2 * n} images); extrapolated to all {LFW_IMAGES} LFW images: "
          f"{extrapolated:.0f} MB.", "",
          md_table(["goal", "value", "status"],
                   [["peak of the full LFW evaluation < 4 GB", f"{peak_eval:.0f} MB",
                     verdict(peak_eval < 4096)],
                    ["feature computation, all of LFW (extrapolated) < 4 GB",
                     f"{extrapolated:.0f} MB", verdict(extrapolated < 4096)]])]
    write_results(args.out, NAME, payload, "\n".join(md))


if __name__ == "__main__":
    main()
