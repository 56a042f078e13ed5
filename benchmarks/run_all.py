"""Run every benchmark (or some) one after the other, each in its own process.

    python benchmarks/run_all.py                 # full sizes (11 min on 2 shared cores)
    python benchmarks/run_all.py --quick         # small sizes: checks that all of them run
    python benchmarks/run_all.py explain_cost memory --threads 1

Each script writes ``benchmarks/results/<name>.json`` and ``.md``; this one then joins the
markdown tables into ``benchmarks/results/README.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _common import HERE, RESULTS

BENCHMARKS = ("explain_cost", "xcos_maps_cost", "captum_cost", "lfw_throughput",
              "training_overhead", "memory", "sface_cost")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}")
    p.add_argument("--quick", action="store_true", help="small sizes (< 1 min each)")
    p.add_argument("--threads", type=int, default=None, help="passed to every script")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="results folder, passed to every script (default benchmarks/results)")
    args = p.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)}")
    failed, walls = [], {}
    start = time.perf_counter()
    for name in names:
        cmd = [sys.executable, str(HERE / f"{name}.py")]
        cmd += ["--quick"] * args.quick + ["--no-progress"] * args.no_progress
        cmd += ["--out", str(args.out)]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(cmd).returncode
        walls[name] = (time.perf_counter() - t0, code)
        print(f"=== {name}: exit {code} after {walls[name][0]:.0f} s", flush=True)
        if code:
            failed.append(name)
    total = time.perf_counter() - start
    ran = ", ".join(f"`{n}` {w:.0f} s" + (f" (**failed**, exit {c}: its section below is "
                                           "from an earlier run)" if c else "")
                    for n, (w, c) in walls.items())
    parts = ["# Benchmark results", "",
             "Written by `python benchmarks/run_all.py`; each section comes from "
             "`benchmarks/results/<name>.md` (see `benchmarks/README.md` for what is measured). "
             "Each section's footer gives its run (full or quick), time, commit and load "
             "average.", "",
             f"Last `run_all.py{' --quick' * args.quick}` invocation: {ran}; total "
             f"{total / 60:.1f} min."]
    for name in BENCHMARKS:
        md = args.out / f"{name}.md"
        if md.exists():
            parts += ["", md.read_text().strip()]
    (args.out / "README.md").write_text("\n".join(parts) + "\n")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
