"""``xcos-xai compare`` under ``torchrun``: each rank a shard of the pairs, rank 0 merging.

Each rank ``r`` of ``W`` runs the pairs ``i % W == r`` on its own device (GPU ``LOCAL_RANK``
with CUDA, else the CPU) and appends its records to ``OUT/rank<r>/records.jsonl`` (resumable
as a one-process run is). After a barrier (gloo on CPU, NCCL on GPUs), rank 0 merges the
shards' records into ``OUT`` (:func:`~.compare.summarize_records`): the same table a
one-process run of the same configuration writes, but for the measured times.

    torchrun --standalone --nproc_per_node 2 -m xcos_xai.cli compare --pairs 300 --out OUT
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import torch.distributed as dist

from ..core.device import resolve_device
from .compare import run_compare, summarize_records

__all__ = ["run_compare_distributed"]


def run_compare_distributed(out, root=None, config=None, device: str = "auto",
                            workers: int = 1, progress: bool = True, images=None):
    """:func:`~.compare.run_compare`, sharded over the torchrun ranks when ``WORLD_SIZE > 1``.

    Returns ``(table, curves)`` on rank 0 (and in a one-process run), ``(None, None)`` on
    the other ranks.
    """
    device = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return run_compare(out, root=root, config=config, workers=workers, progress=progress,
                           device=device, images=images)
    rank = int(os.environ["RANK"])
    out = Path(out)
    own_group = not dist.is_initialized()
    if own_group:  # long shards: a barrier may wait for hours
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                timeout=datetime.timedelta(hours=48))
    try:
        run_compare(out / f"rank{rank}", root=root, config=config, workers=workers,
                    progress=progress and rank == 0, shard=(rank, world), device=device,
                    images=images)
        dist.barrier()
        result = (None, None)
        if rank == 0:
            result = summarize_records(out / "rank0", dest=out,
                                       also=[out / f"rank{k}" for k in range(1, world)])
        dist.barrier()
    finally:
        if own_group:
            dist.destroy_process_group()
    return result
