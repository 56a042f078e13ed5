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

import torch


def resolve_device(preference: str = "auto") -> str:
    """``"auto"``: CUDA when present, else the CPU; under torchrun a CUDA rank takes GPU
    ``LOCAL_RANK``.

    Example:
        >>> resolve_device("cpu")
        'cpu'
    """
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {preference!r} asked but CUDA is not available: install "
                             "a CUDA build of PyTorch or pass --device cpu")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return preference if ":" in preference else "cuda:0"
    return preference


def run_compare_distributed(out, root=None, config=None, device: str = "auto",
                            workers: int = 1, progress: bool = True):
    """:func:`~.compare.run_compare`, sharded over the torchrun ranks when ``WORLD_SIZE > 1``.

    Returns ``(table, curves)`` on rank 0 (and in a one-process run), ``(None, None)`` on
    the other ranks.
    """
    import torch.distributed as dist

    from .compare import run_compare, summarize_records

    device = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return run_compare(out, root=root, config=config, workers=workers, progress=progress,
                           device=device)
    rank = int(os.environ["RANK"])
    out = Path(out)
    own_group = not dist.is_initialized()
    if own_group:  # long shards: a barrier may wait for hours
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                timeout=datetime.timedelta(hours=48))
    try:
        run_compare(out / f"rank{rank}", root=root, config=config, workers=workers,
                    progress=progress and rank == 0, shard=(rank, world), device=device)
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
