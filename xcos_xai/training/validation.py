"""The one validator of both recipes: a validation set's pairs through a scorer, sharded
across the ranks, then every score through the 10-fold protocol.

The recipes differ only in their scorer: ``(chips_a, chips_b) -> {name: (B,) scores}`` on
``(B, 3, H, W)`` uint8 chips (the paper/scratch engine: xCos, the identity cosine and the
teacher's cosine; head-only: xCos of the trained head and the frozen model's cosine).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist

from ..evaluation.protocol import ten_fold_accuracy
from .data import PairImages

__all__ = ["merge_shards", "protocol_results", "validation_scores"]

Scorer = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def merge_shards(gathered: list[dict], n: int) -> dict[str, np.ndarray]:
    """Every rank's ``{name: (indices, values)}`` validation scores to full ``(n,)`` arrays.

    A rank that got no pairs (fewer pairs than ranks) sends ``{}`` and contributes nothing.

    Example:
        >>> shards = [{"xcos": (np.array([0, 2]), np.array([0.1, 0.3]))},
        ...           {"xcos": (np.array([1]), np.array([0.2]))}, {}]
        >>> merge_shards(shards, 3)["xcos"].tolist()
        [0.1, 0.2, 0.3]
    """
    names = sorted({name for g in gathered for name in g})
    out = {}
    for name in names:
        full = np.full(n, np.nan)
        for g in gathered:
            if name in g:
                gi, gv = g[name]
                full[gi] = gv
        out[name] = full
    return out


@torch.no_grad()
def validation_scores(val_set, scorer: Scorer, size: tuple[int, int], batch_size: int,
                      workers: int = 0, rank: int = 0, world: int = 1) -> dict[str, np.ndarray]:
    """``{name: (N,) scores}`` of every pair of ``val_set`` (a
    :class:`~xcos_xai.training.data.PairList`): this rank scores pairs ``rank::world`` and,
    with several ranks (``torch.distributed`` initialised), all ranks get all scores."""
    idx = np.arange(len(val_set))[rank::world]
    loader = torch.utils.data.DataLoader(PairImages(val_set, idx, size), batch_size=batch_size,
                                         num_workers=workers, shuffle=False)
    parts: dict[str, list] = {}
    for chips_a, chips_b in loader:
        for name, s in scorer(chips_a, chips_b).items():
            parts.setdefault(name, []).append(s.float().cpu())
    local = {k: (idx, torch.cat(v).numpy()) for k, v in parts.items()}
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, local)
    else:
        gathered = [local]
    return merge_shards(gathered, len(val_set))


def protocol_results(scores: dict[str, np.ndarray], val_set) -> dict[str, dict]:
    """The 10-fold protocol of every score: ``{name: {acc, std, auc, tar_at_far_1e3,
    threshold}}`` (folds and labels: the validation set's)."""
    out = {}
    for key, s in scores.items():
        r = ten_fold_accuracy(s, val_set.same, val_set.folds)
        out[key] = {"acc": r.mean, "std": r.std, "auc": r.auc,
                    "tar_at_far_1e3": r.tar_at_far_1e3, "threshold": r.mean_threshold}
    return out
