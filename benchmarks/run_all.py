"""Run every benchmark (or some) one after the other, each in its own process.

    python benchmarks/run_all.py                 # full sizes (11 min on 2 shared cores)
    python benchmarks/run_all.py --quick         # small sizes: checks that all of them run
    python benchmarks/run_all.py explain_cost memory --threads 1

Each script writes ``benchmarks/results/<name>.json`` and ``.md`` (runs with other options,
e.g. ``xcos_maps_cost.py --model sface``, write ``<name>_<variant>.md``); this one then joins
the markdown tables, each benchmark's variants after it, into ``benchmarks/results/README.md``.

    python benchmarks/run_all.py --index         # only rejoin the existing results
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
    p.add_argument("--index", action="store_true",
                   help="run nothing: rejoin the results already written into README.md")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="results folder, passed to every script (default benchmarks/results)")
    args = p.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)}")
    if args.index:
        write_index(args.out, None)
        return 0
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
    write_index(args.out, f"Last `run_all.py{' --quick' * args.quick}` invocation: {ran}; "
                          f"total {total / 60:.1f} min.")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def write_index(out: Path, last_run: str | None) -> Path:
    """``README.md`` of ``out``: every benchmark's markdown, each followed by its variants
    (``<name>_*.md``); ``last_run`` (or the line already there) says what ran last."""
    index = out / "README.md"
    if last_run is None:
        previous = index.read_text().splitlines() if index.exists() else []
        last_run = next((line for line in previous if line.startswith("Last `run_all.py")),
                        "Last `run_all.py` invocation: none recorded.")
    parts = ["# Benchmark results", "",
             "Written by `python benchmarks/run_all.py`; each section comes from "
             "`benchmarks/results/<name>.md` or a variant `<name>_*.md` (see "
             "`benchmarks/README.md` for what is measured). Each section's footer gives its "
             "run (full or quick), time, commit and load average.", "", last_run]
    taken = set()
    for name in BENCHMARKS:
        variants = sorted(p for p in out.glob(f"{name}_*.md")
                          if not any(p.stem == f"{other}" or p.stem.startswith(f"{other}_")
                                     for other in BENCHMARKS if other != name
                                     and other.startswith(f"{name}_")))
        for md in [out / f"{name}.md", *variants]:
            if md.exists() and md not in taken:
                taken.add(md)
                parts += ["", md.read_text().strip()]
    index.write_text("\n".join(parts) + "\n")
    return index


if __name__ == "__main__":
    sys.exit(main())
