"""Statistics of attention maps: how spread they are and whether they take a shortcut.

A learned attention can "explain" nothing: on dlib's 8x8 grid it was seen to put most of its
weight on one border cell whose patch cosine is about 1 for every pair, a constant offset
that reproduces the model's high impostor cosines. These statistics detect that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def effective_cells(attention: np.ndarray) -> np.ndarray:
    """``exp(entropy(W))`` per pair: ``H*W`` for uniform weights, 1 for a single cell.

    Example:
        >>> effective_cells(np.full((1, 2, 2), 0.25)).round(6).tolist()
        [4.0]
    """
    w = np.asarray(attention, dtype=np.float64).reshape(len(attention), -1)
    w = w / w.sum(axis=1, keepdims=True)
    entropy = -(w * np.log(np.clip(w, 1e-300, None))).sum(axis=1)
    return np.exp(entropy)


def static_cells(cos_maps: np.ndarray, rel_threshold: float = 0.25) -> np.ndarray:
    """``(H, W)`` booleans: cells whose patch cosine barely varies across pairs.

    A cell is static when the standard deviation of its patch cosine over the pairs is below
    ``rel_threshold`` times the median standard deviation over all cells. Weight on such a
    cell acts as a constant offset, not as evidence about the pair.
    """
    s = np.asarray(cos_maps, dtype=np.float64)
    std = s.std(axis=0)
    return std < rel_threshold * np.median(std)


@dataclass
class AttentionSummary:
    mean_effective_cells: float
    n_cells: int
    mean_max_weight: float
    static_cell_share: float  # mean attention weight on static cells
    n_static_cells: int
    argmax_mode_share: float  # share of pairs whose arg-max is the most common arg-max cell

    def as_dict(self) -> dict:
        return asdict(self)


def summarize_attention(attention: np.ndarray, cos_maps: np.ndarray,
                        rel_threshold: float = 0.25) -> AttentionSummary:
    """Summary over pairs of ``(P, H, W)`` attention maps and their patch cosine maps."""
    w = np.asarray(attention, dtype=np.float64)
    static = static_cells(cos_maps, rel_threshold)
    flat = w.reshape(len(w), -1)
    argmax = flat.argmax(axis=1)
    mode_share = np.bincount(argmax).max() / len(argmax)
    return AttentionSummary(
        mean_effective_cells=float(effective_cells(w).mean()),
        n_cells=int(flat.shape[1]),
        mean_max_weight=float(flat.max(axis=1).mean()),
        static_cell_share=float((w * static).reshape(len(w), -1).sum(axis=1).mean()),
        n_static_cells=int(static.sum()),
        argmax_mode_share=float(mode_share),
    )
