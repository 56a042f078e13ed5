"""Shared pieces of the benchmark scripts: arguments, interleaved timing, paired ratios, output.

Every benchmark compares things measured side by side in ONE run: the cases take turns inside
one loop (the order rotates each repetition), each repetition gives one ratio per case pair,
and the reported number is the median of those paired ratios. On a machine shared with other
jobs, absolute times move by large factors from minute to minute; a ratio of two neighbours
in time moves much less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sizes and few repetitions (< 1 min): checks that it runs")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: on a CPU shared with other jobs, "
                        "2 threads can be 10x slower than 1, see benchmarks/README.md)")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="folder for <name>.json and <name>.md (default benchmarks/results)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p


def setup_torch(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))


def require_data() -> Path:
    """``$XCOS_XAI_DATA`` (with ``lfw/``), or exit with one clear sentence."""
    value = os.environ.get("XCOS_XAI_DATA")
    if not value or not (Path(value) / "lfw").is_dir():
        sys.exit("this benchmark needs LFW: set XCOS_XAI_DATA to the folder holding lfw/ "
                 "(e.g. XCOS_XAI_DATA=/work/shared/data)")
    return Path(value)


def environment(threads: int) -> dict:
    """What the numbers depend on: versions, threads, cores, load, commit, time."""
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "xcos_xai"],
                                    cwd=REPO, capture_output=True, text=True,
                                    timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", None
    return {
        "utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "git_commit": commit, "xcos_xai_uncommitted_changes": dirty,
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": threads, "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
    }


def interleave(cases: dict[str, Callable[[], object]], reps: int, warmup: int = 1,
               progress: bool = True, desc: str = "timing") -> dict[str, list[float]]:
    """Seconds per call of every case, the cases taking turns (order rotated each repetition).

    ``warmup`` untimed rounds come first (first-call costs: allocator, oneDNN primitives).
    """
    from tqdm.auto import tqdm

    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in tqdm(range(reps), desc=desc, disable=not progress, leave=False):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def paired_ratio(num: list[float], den: list[float]) -> dict:
    """Per-repetition ratios ``num[i] / den[i]``: median, spread, and the ratio of medians."""
    ratios = sorted(a / b for a, b in zip(num, den))
    q = _quartiles(ratios)
    return {"median": statistics.median(ratios), "q1": q[0], "q3": q[1],
            "min": ratios[0], "max": ratios[-1], "n": len(ratios),
            "ratio_of_medians": statistics.median(num) / statistics.median(den)}


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return values[0], values[-1]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "n": len(times)}


def md_table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_ratio(r: dict, digits: int = 2) -> str:
    """``1.03 (1.01-1.05)``: median paired ratio and its interquartile range."""
    return f"{r['median']:.{digits}f} ({r['q1']:.{digits}f}-{r['q3']:.{digits}f})"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def write_results(out: Path, name: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """``<out>/<name>.json`` and ``<out>/<name>.md``; the environment goes into both."""
    out.mkdir(parents=True, exist_ok=True)
    env = payload.get("environment", {})
    env["load_average_at_end"] = list(os.getloadavg())
    payload["environment"] = env
    js = out / f"{name}.json"
    md = out / f"{name}.md"
    js.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    mode = "quick" if payload.get("quick") else "full"
    dirty = " + uncommitted xcos_xai changes" if env.get("xcos_xai_uncommitted_changes") else ""
    load = (f"{_load(env.get('load_average_at_start'))} -> "
            f"{_load(env.get('load_average_at_end'))}")
    foot = (f"\n\n_{mode} run, {env.get('utc', '?')} UTC, commit {env.get('git_commit', '?')}"
            f"{dirty}, torch {env.get('torch', '?')}, {env.get('torch_threads', '?')} "
            f"thread(s), {env.get('cpu_count', '?')} CPUs, load average {load}_\n")
    md.write_text(markdown.rstrip() + foot)
    print(markdown.rstrip() + foot)
    print(f"wrote {js} and {md}")
    return js, md


def _load(values) -> str:
    return "?" if not values else f"{values[0]:.1f}"
