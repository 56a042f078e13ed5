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


def weight_against_variance(attention: np.ndarray, cos_maps: np.ndarray) -> dict:
    """Each cell's mean attention weight against the spread of its patch cosine S.

    The static-cell detector counts only cells far below the median spread; a milder lean
    (much weight on cells whose S hardly varies) shows here: cells sorted from the lowest
    std of S up, the cumulative share of W on them against a uniform map's ``k / n``.

    Returns ``{"cells": [{"cell": (r, c), "s_std": .., "weight": ..}, ..] (lowest std
    first), "cumulative_weight": [..], "uniform": [..], "low_half_share": .. (W on the
    half of the cells with the lowest std of S; 0.5 for a uniform map), "spearman": ..
    (rank correlation of a cell's weight with its std of S, over the cells)}``.

    Example:
        >>> s = np.array([[[0.9, 0.1]], [[0.9, 0.9]]])  # cell 0 static, cell 1 varies
        >>> w = np.array([[[0.75, 0.25]], [[0.75, 0.25]]])
        >>> r = weight_against_variance(w, s)
        >>> r["low_half_share"], r["cumulative_weight"], r["spearman"]
        (0.75, [0.75, 1.0], -1.0)
    """
    w = np.asarray(attention, dtype=np.float64).mean(axis=0)
    std = np.asarray(cos_maps, dtype=np.float64).std(axis=0)
    order = np.argsort(std.ravel(), kind="stable")
    n = order.size
    cum = np.cumsum(w.ravel()[order]) / w.sum()
    rank_w = np.argsort(np.argsort(w.ravel())).astype(np.float64)
    rank_s = np.argsort(np.argsort(std.ravel())).astype(np.float64)
    rank_w -= rank_w.mean()
    rank_s -= rank_s.mean()
    denom = np.sqrt((rank_w ** 2).sum() * (rank_s ** 2).sum())
    cells = [{"cell": [int(i // std.shape[1]), int(i % std.shape[1])],
              "s_std": float(std.ravel()[i]), "weight": float(w.ravel()[i])} for i in order]
    return {"cells": cells, "cumulative_weight": [round(float(c), 6) for c in cum],
            "uniform": [(k + 1) / n for k in range(n)],
            "low_half_share": round(float(cum[n // 2 - 1]), 6),
            "spearman": float((rank_w * rank_s).sum() / denom) if denom else float("nan")}


@dataclass
class AttentionSummary:
    mean_effective_cells: float
    n_cells: int
    mean_max_weight: float
    static_cell_share: float  # mean attention weight on static cells
    n_static_cells: int
    argmax_mode_share: float  # share of pairs whose arg-max is the most common arg-max cell
    low_variance_half_share: float = float("nan")  # W on the half of cells with least S spread
    weight_variance_spearman: float = float("nan")  # rank corr. of a cell's W with its S std

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
    lean = weight_against_variance(w, cos_maps)
    return AttentionSummary(
        mean_effective_cells=float(effective_cells(w).mean()),
        n_cells=int(flat.shape[1]),
        mean_max_weight=float(flat.max(axis=1).mean()),
        static_cell_share=float((w * static).reshape(len(w), -1).sum(axis=1).mean()),
        n_static_cells=int(static.sum()),
        argmax_mode_share=float(mode_share),
        low_variance_half_share=lean["low_half_share"],
        weight_variance_spearman=lean["spearman"],
    )
