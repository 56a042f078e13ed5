"""The cell-pair matrix of the exact split: which region of face A matches which region of B.

The ``exact`` and ``exact_ref`` xCos maps split the model's cosine over pairs of cells,
``<p_A,i, p_B,j> / (|e_A| |e_B|)`` (``extras["cell_pairs"]`` of the explainer's result): row
``i`` is face A's cell, column ``j`` face B's, and the matrix sums to the cosine.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

__all__ = ["cell_labels", "cell_pair_figure", "top_cell_pairs"]


def cell_labels(grid: tuple[int, int]) -> list[str]:
    """``"row,col"`` of each cell, row-major (the order of the matrix).

    >>> cell_labels((2, 2))
    ['0,0', '0,1', '1,0', '1,1']
    """
    h, w = grid
    return [f"{r},{c}" for r in range(h) for c in range(w)]


def top_cell_pairs(matrix, grid: tuple[int, int], k: int = 5) -> list[tuple[str, str, float]]:
    """The ``k`` largest entries of one pair's ``(h*w, h*w)`` matrix: ``(A cell, B cell,
    share of the cosine)``, largest first.

    >>> m = np.zeros((4, 4)); m[1, 2] = 0.3; m[0, 0] = 0.1
    >>> top_cell_pairs(m, (2, 2), k=2)
    [('0,1', '1,0', 0.3), ('0,0', '0,0', 0.1)]
    """
    m = np.asarray(matrix, dtype=np.float64)
    n = grid[0] * grid[1]
    if m.shape != (n, n):
        raise ValueError(f"matrix of shape {m.shape} for a {grid[0]}x{grid[1]} grid: pass one "
                         f"pair's extras['cell_pairs'][i], ({n}, {n})")
    labels = cell_labels(grid)
    order = np.argsort(m, axis=None)[::-1][:k]
    return [(labels[i // n], labels[i % n], round(float(m.flat[i]), 6)) for i in order]


def cell_pair_figure(matrix, grid: tuple[int, int], title: str = "", height: int = 520
                     ) -> go.Figure:
    """Heatmap of one pair's cell-pair matrix (rows: face A's cells, columns: face B's), blue
    where a pair of cells adds to the cosine, red where it takes away, white at zero."""
    m = np.asarray(matrix, dtype=np.float64)
    top_cell_pairs(m, grid, k=0)  # the shape check
    labels = cell_labels(grid)
    limit = float(np.abs(m).max()) or 1.0
    fig = go.Figure(go.Heatmap(
        z=m, x=labels, y=labels, zmin=-limit, zmax=limit, zmid=0.0, colorscale="RdBu",
        colorbar={"title": {"text": "share of<br>the cosine"}},
        hovertemplate="A cell %{y} · B cell %{x}: %{z:.4f}<extra></extra>"))
    fig.update_layout(
        title={"text": title or f"Which cell of A matches which of B (sum: {m.sum():.4f})"},
        height=height, width=height + 80, margin={"l": 70, "r": 20, "t": 60, "b": 60},
        xaxis={"title": {"text": "face B cell (row,col)"}, "type": "category"},
        yaxis={"title": {"text": "face A cell (row,col)"}, "type": "category",
               "autorange": "reversed"})
    return fig
