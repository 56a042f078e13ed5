"""Training overheads: the data pipeline over a raw model step, and 2-process DDP over 1 process.

Part 1, the engine (``xcos_xai/training/engine.py``) on synthetic identities
(``xcos_xai.training.synthetic``), read either from PNG identity folders written to a
temporary folder (``write_identity_folders`` -> ``IdentityFolders``: a file open and a PNG
decode per image) or from memory (``synthetic_source`` -> ``ArrayImages``: the same pixels
and labels as arrays, fetched a whole batch at a time by ``PairDataset.__getitems__``; the
"synthetic tensors" case). The Trainer is built on the folders; for the in-memory cases its
DataLoader's data set gets the in-memory source instead (same sampler, DataLoader, collate).
Blocks of ``K`` optimiser steps alternate:

- ``pipeline``: the loop body of ``Trainer.fit``: ``next()`` on the engine's DataLoader
  (``AnchorPairSampler`` -> ``PairDataset``: load, chip, flip, collate), then
  ``Trainer._step`` (normalise, teacher cosine, forward, backward, optimiser steps);
- ``raw``: ``Trainer._step`` on one batch already in memory (the same tensors every step).

The DataLoader's start (``iter()``: worker processes; once per epoch in ``fit``) is timed
apart and left out of the per-step numbers. Overhead = ``pipeline / raw - 1`` per block pair,
median. Models: dlib's face ResNet with the CPU demo's layout (``training/configs/
lfw_dlib_cpu_demo.toml``: paper recipe, frozen teacher, the last three units fine-tuned) and
``tiny_facenet`` from scratch at 32 px (a tiny model: the worst case for the pipeline).
Reference ("before") cases, measured in the same run: the in-memory source read image by
image (no ``__getitems__``), and the PNG folders with non-persistent loader workers (the
engine's DataLoader before ``persistent_workers``).

Part 2, the plug-in trainer (``train_plugin_head`` on cached features, synthetic tensors of
the LFW feature shapes): a whole ``train_plugin_head`` run of ``K`` steps against a bare loop
of the same head, optimiser and schedule on one fixed batch (the goal's ratio). Diagnostic: the
same bare loop cycling over 4 distinct pre-gathered batches (about 100 MB, more than the L3
cache, like the real loop's fresh batches): how much of the gap is the inputs' cache
residency rather than the pipeline's own work (pair sampling, gather, fp16 -> fp32).

Part 3, DDP: ``torchrun --nproc_per_node 2`` (gloo on CPU) against one process at the same
global batch, on the same synthetic data and model; throughput (pairs/s) from the engine's
own ``log.jsonl``, the first logging window (warm-up) left out. Runs alternate.

Goal (parts 1, 2): overhead at most 10 %.

    python benchmarks/training_overhead.py
    python benchmarks/training_overhead.py --quick
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import (
    REPO,
    environment,
    fmt_ratio,
    md_table,
    paired_ratio,
    parser,
    setup_torch,
    verdict,
    write_results,
)

import xcos_xai.testing  # noqa: F401  (registers the tiny_facenet test backbone)

NAME = "training_overhead"
# training/configs/lfw_dlib_cpu_demo.toml: everything up to unit 9 frozen
DLIB_FREEZE = ["trunk.stem_conv"] + [f"trunk.units.{i}." for i in range(10)]


def model_section(kind: str) -> tuple[str, dict, int]:
    """``(recipe, [model] table, image size)`` of a benchmark model."""
    if kind == "dlib":
        return "paper", {"backbone": "dlib_resnet_v1", "pretrained": True,
                         "backbone_kwargs": {"grid": "4x4"}, "channels": 32,
                         "margin": "cosface", "freeze": DLIB_FREEZE}, 150
    return "scratch", {"backbone": "tiny_facenet", "margin": "cosface", "channels": 8}, 32


def train_config(kind: str, data_root: Path, out: Path, batch: int, workers: int,
                 max_steps: int = 0, log_every: int = 10**6) -> dict:
    recipe, model, _ = model_section(kind)
    return {"run": {"out": str(out), "recipe": recipe, "seed": 0, "device": "cpu"},
            "model": model,
            "data": {"format": "folders", "root": str(data_root), "workers": workers},
            "optim": {"epochs": 1000, "max_steps": max_steps, "batch_size": batch,
                      "lr": 0.01, "milestones": [1000]},
            "engine": {"checkpoint_every": 10**6, "log_every": log_every,
                       "tensorboard": False, "progress": False},
            "val": {"every": 0, "sets": []}}


def synthetic_folders(root: Path, kind: str, identities: int, images: int) -> Path:
    from xcos_xai.training.synthetic import write_identity_folders

    size = model_section(kind)[2]
    return write_identity_folders(root / f"syn_{kind}", identities, images, size=size)


# ----------------------------------------------------------------------------- part 1


class _ItemByItem:
    """An in-memory source without ``chips()``: ``PairDataset`` reads it image by image."""

    def __init__(self, source):
        self.labels, self.num_classes = source.labels, source.num_classes
        self.load = source.load

    def __len__(self) -> int:
        return len(self.labels)


def _non_persistent(loader):
    """The engine's DataLoader as it was before ``persistent_workers`` (workers re-spawned
    at every ``iter()``)."""
    return torch.utils.data.DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=loader.sampler,
        num_workers=loader.num_workers, pin_memory=loader.pin_memory,
        drop_last=loader.drop_last, persistent_workers=False)


def engine_overhead(kind: str, data_root: Path, tmp: Path, batch: int, workers: int,
                    steps: int, blocks: int, progress: bool, source: str = "png",
                    persistent: bool = True, synthetic: tuple[int, int] | None = None) -> dict:
    """``source``: ``png`` (the folders), ``memory`` (``ArrayImages``, batched fetch) or
    ``memory_items`` (the same, image by image); ``persistent=False``: the DataLoader
    without persistent workers; ``synthetic``: ``(identities, images)`` of the folders."""
    from tqdm.auto import tqdm

    from xcos_xai.training.config import config_from_dict
    from xcos_xai.training.engine import Trainer
    from xcos_xai.training.synthetic import synthetic_source

    out = tmp / f"run_{kind}_{workers}_{source}_{int(persistent)}"
    cfg = config_from_dict(train_config(kind, data_root, out, batch, workers))
    trainer = Trainer(cfg)
    trainer.module.train()
    if source != "png":
        mem = synthetic_source(*synthetic, size=model_section(kind)[2])
        if not (mem.labels == trainer.source.labels).all():
            raise RuntimeError("the in-memory source does not match the folders")
        trainer.source = mem if source == "memory" else _ItemByItem(mem)
        trainer.loader.dataset.source = trainer.source
    if not persistent and workers > 0:
        trainer.loader = _non_persistent(trainer.loader)
    epoch = 0

    def loader_iter():
        nonlocal epoch
        trainer.sampler.set_epoch(epoch)
        epoch += 1
        return iter(trainer.loader)

    it = loader_iter()
    fixed = [t.clone() for t in next(it)]
    del it
    trainer._step([fixed])  # warm-up: allocator, oneDNN primitives, optimiser state

    pipe, raw, starts = [], [], []
    for b in tqdm(range(blocks), desc=f"engine {kind} w{workers}", disable=not progress,
                  leave=False):
        for case in (("pipeline", "raw") if b % 2 == 0 else ("raw", "pipeline")):
            if case == "pipeline":
                t0 = time.perf_counter()
                it = loader_iter()
                first = next(it)
                t1 = time.perf_counter()
                trainer._step([first])
                for _ in range(steps - 1):
                    trainer._step([next(it)])
                t2 = time.perf_counter()
                del it
                starts.append(t1 - t0)
                pipe.append((t2 - t1) / steps)
            else:
                t0 = time.perf_counter()
                for _ in range(steps):
                    trainer._step([fixed])
                raw.append((time.perf_counter() - t0) / steps)
    ratio = paired_ratio(pipe, raw)
    trainer.loader = None  # persistent workers end with their DataLoader
    return {"model": kind, "workers": workers, "source": source,
            "persistent_workers": workers > 0 and persistent, "batch_pairs": batch,
            "steps_per_block": steps, "blocks": blocks, "pipeline_step_s": pipe,
            "raw_step_s": raw, "loader_start_s": starts, "pipeline_over_raw": ratio,
            "overhead_pct": 100 * (ratio["median"] - 1),
            "loader_start_in_raw_steps": statistics.median(starts) / statistics.median(raw),
            "first_loader_start_in_raw_steps": starts[0] / statistics.median(raw),
            "goal_at_most_10pct": ratio["median"] <= 1.10}


# ----------------------------------------------------------------------------- part 2


def plugin_overhead(steps: int, reps: int, progress: bool, rotating: int = 4) -> dict:
    """``train_plugin_head`` against a bare loop on one fixed batch (the goal's ratio), and,
    as a diagnostic, a bare loop cycling over ``rotating`` distinct pre-gathered batches
    (together larger than the L3 cache, as the real loop's fresh batches are)."""
    from _common import interleave

    from xcos_xai.training.plugin import PairSampler, PluginConfig, train_plugin_head

    g = torch.Generator().manual_seed(0)
    n, batch = 13233, 512
    grids = torch.randn(n, 256, 4, 4, generator=g).relu().half()  # the cache's dtype
    embeddings = torch.randn(n, 128, generator=g)
    labels = torch.randint(0, 2000, (n,), generator=g)
    config = PluginConfig(epochs=1, pairs_per_epoch=steps * batch, batch_size=batch)

    def plugin():
        train_plugin_head(grids, embeddings, labels, config, progress=False)

    unit = F.normalize(embeddings.float(), dim=1)
    pairs = PairSampler(labels, generator=torch.Generator().manual_seed(1))
    batches = []
    for _ in range(rotating):
        a, b = pairs.sample(batch)
        batches.append((grids[a].float(), grids[b].float(), (unit[a] * unit[b]).sum(1)))

    def bare(k: int):
        torch.manual_seed(config.seed)
        head = config.build_head(grids.shape[1], tuple(grids.shape[-2:])).train()
        opt = torch.optim.Adam(head.parameters(), lr=config.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        for i in range(steps):
            ga, gb, target = batches[i % k]
            loss = F.mse_loss(head(ga, gb).score, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss.item()

    times = interleave({"plugin": plugin, "raw": lambda: bare(1),
                        "raw_rotating": lambda: bare(rotating)}, reps, warmup=1,
                       progress=progress, desc="plug-in")
    ratio = paired_ratio(times["plugin"], times["raw"])
    return {"steps": steps, "batch_pairs": batch, "rotating_batches": rotating,
            "times_s": times, "plugin_over_raw": ratio,
            "plugin_over_raw_rotating": paired_ratio(times["plugin"], times["raw_rotating"]),
            "raw_rotating_over_raw": paired_ratio(times["raw_rotating"], times["raw"]),
            "overhead_pct": 100 * (ratio["median"] - 1),
            "goal_at_most_10pct": ratio["median"] <= 1.10}


# ----------------------------------------------------------------------------- part 3


def ddp_run(kind: str, data_root: Path, tmp: Path, tag: str, procs: int, threads: int,
            global_batch: int, steps: int, log_every: int) -> dict:
    out = tmp / f"ddp_{tag}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = train_config(kind, data_root, out, global_batch // procs, 0, steps, log_every)
    from xcos_xai.training.config import config_from_dict

    cfg_file = tmp / f"ddp_{tag}.toml"
    cfg_file.write_text(config_from_dict(cfg).to_toml())
    script = str(REPO / "training" / "train.py")
    if procs == 1:
        cmd = [sys.executable, script, "--import", "xcos_xai.testing", str(cfg_file)]
    else:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        cmd = [torchrun, "--standalone", f"--nproc_per_node={procs}", script,
               "--import", "xcos_xai.testing", str(cfg_file)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rates = [r["pairs_per_s"] for r in recs if r.get("type") == "train"]
    steady = rates[1:] or rates
    return {"procs": procs, "threads_per_proc": threads, "wall_s": wall,
            "window_pairs_per_s": rates, "pairs_per_s": statistics.median(steady)}


def ddp_part(kind: str, data_root: Path, tmp: Path, global_batch: int, steps: int,
             log_every: int, layouts: list[tuple[int, int]], reps: int,
             progress: bool) -> dict:
    from tqdm.auto import tqdm

    runs: dict[str, list[dict]] = {f"{p}x{t}": [] for p, t in layouts}
    for r in tqdm(range(reps), desc="ddp runs", disable=not progress, leave=False):
        order = layouts[r % len(layouts):] + layouts[:r % len(layouts)]
        for p, t in order:
            runs[f"{p}x{t}"].append(ddp_run(kind, data_root, tmp, f"{p}x{t}_{r}", p, t,
                                            global_batch, steps, log_every))
    rate = {k: [v["pairs_per_s"] for v in vs] for k, vs in runs.items()}
    ratios = {}
    for k in rate:
        if k.startswith("2x"):
            for base in rate:
                if base.startswith("1x"):
                    ratios[f"{k}_over_{base}"] = paired_ratio(rate[k], rate[base])
    return {"model": kind, "global_batch_pairs": global_batch, "steps": steps,
            "log_every": log_every, "runs": runs,
            "median_pairs_per_s": {k: statistics.median(v) for k, v in rate.items()},
            "throughput_ratios": ratios}


# ----------------------------------------------------------------------------- main


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--skip-ddp", action="store_true", help="leave out part 3")
    args = p.parse_args(argv)
    setup_torch(args.threads)
    quick = args.quick
    progress = not args.no_progress
    env = environment(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="xcos_bench_train_"))
    try:
        # (model, pairs/step, loader workers, steps/block, blocks, source, persistent)
        if quick:
            engine_runs = [("tiny", 32, 0, 5, 2, "png", True),
                           ("tiny", 32, 0, 5, 2, "memory", True),
                           ("tiny", 32, 1, 5, 2, "memory", True)]
            plugin_steps, plugin_reps = 20, 2
            ddp = ("tiny", 32, 6, 2, [(1, 1), (2, 1)], 1)
        else:
            t = ("tiny", 64)
            engine_runs = [(*t, 0, 20, 12, "png", True), (*t, 1, 20, 12, "png", False),
                           (*t, 1, 20, 12, "png", True), (*t, 0, 20, 12, "memory_items", True),
                           (*t, 0, 20, 12, "memory", True), (*t, 1, 20, 12, "memory", True),
                           ("dlib", 8, 0, 4, 6, "png", True), ("dlib", 8, 1, 4, 6, "png", True),
                           ("dlib", 8, 0, 4, 6, "memory", True)]
            plugin_steps, plugin_reps = 100, 9
            ddp = ("dlib", 8, 8, 2, [(1, 1), (1, 2), (2, 1)], 4)
        # enough images that an epoch outlasts a block of steps (an epoch end would stop it)
        need: dict[str, int] = {ddp[0]: ddp[1] * (ddp[2] + 1)}
        for kind, batch, _, steps, *_ in engine_runs:
            need[kind] = max(need.get(kind, 0), batch * (steps + 2))
        shapes = {k: (max(40, -(-n // 8)), 8) for k, n in need.items()}
        roots = {k: synthetic_folders(tmp, k, *shape) for k, shape in shapes.items()}
        engine = [engine_overhead(kind, roots[kind], tmp, batch, workers, steps, blocks,
                                  progress, source, persistent, shapes[kind])
                  for kind, batch, workers, steps, blocks, source, persistent in engine_runs]
        plugin = plugin_overhead(plugin_steps, plugin_reps, progress)
        ddp_res = None
        if not args.skip_ddp:
            kind, gb, steps, log_every, layouts, reps = ddp
            ddp_res = ddp_part(kind, roots[kind], tmp, gb, steps, log_every, layouts, reps,
                               progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    payload = {"name": NAME, "quick": quick, "environment": env, "engine": engine,
               "plugin": plugin, "ddp": ddp_res}
    names = {"dlib": "dlib ResNet, CPU demo layout (paper recipe)",
             "tiny": "tiny_facenet 32 px, scratch"}
    sources = {"png": "PNG folders", "memory": "in memory (`ArrayImages`), batched fetch",
               "memory_items": "in memory, image by image (before: no `__getitems__`)"}

    def source_cell(e):
        cell = sources[e["source"]]
        if e["workers"] and not e["persistent_workers"]:
            cell += ", workers re-spawned every epoch (before: not persistent)"
        return cell

    rows = [[names[e["model"]], source_cell(e), e["batch_pairs"], e["workers"],
             fmt_ratio(e["pipeline_over_raw"], 3), f"{e['overhead_pct']:+.1f} %",
             f"{e['loader_start_in_raw_steps']:.2f} ({e['first_loader_start_in_raw_steps']:.2f})",
             verdict(e["goal_at_most_10pct"])]
            for e in engine]
    rows.append(["plug-in head on cached features (`train_plugin_head`)", "in memory",
                 plugin["batch_pairs"], "-", fmt_ratio(plugin["plugin_over_raw"], 3),
                 f"{plugin['overhead_pct']:+.1f} %", "-",
                 verdict(plugin["goal_at_most_10pct"])])
    rows.append([f"diagnostic: the same / a bare loop cycling over {plugin['rotating_batches']}"
                 " distinct batches (inputs not cache-resident)", "in memory",
                 plugin["batch_pairs"], "-", fmt_ratio(plugin["plugin_over_raw_rotating"], 3),
                 f"{100 * (plugin['plugin_over_raw_rotating']['median'] - 1):+.1f} %", "-",
                 "-"])
    sizes = ", ".join(f"{names[e['model']].split(',')[0]}: {e['blocks']} blocks of "
                      f"{e['steps_per_block']} steps"
                      for e in {e["model"]: e for e in engine}.values())
    sizes += (f"; plug-in: {len(plugin['times_s']['raw'])} repetitions of "
              f"{plugin['steps']} steps")
    md = [f"## Training overhead (`benchmarks/{NAME}.py`)", "",
          "Data pipeline + loop vs a raw model step on tensors already in memory; blocks of "
          "steps alternate, median of paired block ratios (interquartile range in brackets); "
          f"{sizes} per case. Synthetic identities, as PNG folders or in memory (the same "
          "pixels). Loader start: `iter()` of the DataLoader, median over blocks (first "
          "block in brackets), in raw steps; not part of the per-step numbers.",
          "",
          md_table(["trainer", "images from", "pairs/step", "loader workers",
                    "time / raw step", "overhead", "loader start (raw steps)",
                    "goal <= 10 %"], rows)]
    if ddp_res is not None:
        drows = []
        for k, r in ddp_res["throughput_ratios"].items():
            a, b = k.split("_over_")
            drows.append([f"{a[0]} processes x {a[2:]} thread(s) / {b[0]} process x {b[2:]} "
                          f"thread(s)", fmt_ratio(r, 2)])
        rates = ", ".join(f"{k.replace('x', ' proc x ')} thr {v:.2f}"
                          for k, v in ddp_res["median_pairs_per_s"].items())
        md += ["", f"DDP on CPU (torchrun, gloo), {names[ddp_res['model']]}, global batch "
               f"{ddp_res['global_batch_pairs']} pairs, {ddp_res['steps']} steps per run, "
               f"runs alternating ({len(next(iter(ddp_res['runs'].values())))} each):", "",
               md_table(["layout", "throughput ratio (pairs/s)"], drows), "",
               f"Median pairs/s (scale only): {rates}."]
    write_results(args.out, NAME, payload, "\n".join(md))


if __name__ == "__main__":
    main()
