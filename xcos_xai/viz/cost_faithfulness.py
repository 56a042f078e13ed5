"""Cost against faithfulness: every explainer as a point, the Pareto front drawn (plotly).

A method is on the front when no other method is both cheaper (or as cheap) and more
faithful (or as faithful), with at least one of the two strictly better.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from .writers import write_html

__all__ = ["FIGURE_MEASURES", "cost_faithfulness_figure", "pareto_front",
           "write_cost_faithfulness"]

# faithfulness measures drawn against cost, with their direction (higher is better?)
FIGURE_MEASURES = (("road_gap", True), ("acc_del_auc", False), ("del_auc_genuine", False),
                   ("fnmr_mean_5_95", True))


def pareto_front(cost, quality, higher_is_better: bool = True) -> np.ndarray:
    """``(N,)`` booleans: the points no other point dominates (lower cost and better
    quality, one of them strictly). NaN points are never on the front.

    Example:
        >>> pareto_front([1, 2, 3, 4], [0.1, 0.5, 0.4, 0.9]).tolist()
        [True, True, False, True]
    """
    c = np.asarray(cost, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    q = q if higher_is_better else -q
    valid = np.isfinite(c) & np.isfinite(q)
    front = np.zeros(len(c), dtype=bool)
    for i in np.flatnonzero(valid):
        others = valid & (np.arange(len(c)) != i)
        dominated = others & (c <= c[i]) & (q >= q[i]) & ((c < c[i]) | (q > q[i]))
        front[i] = not dominated.any()
    return front


def cost_faithfulness_figure(table, quality: str, cost: str = "time_s",
                             higher_is_better: bool = True, title: str | None = None):
    """A plotly scatter of ``table[cost]`` (log x) against ``table[quality]``, one labelled
    point per method, the Pareto front as a line.

    Args:
        table: a compare table (a pandas DataFrame with a ``method`` column).
        quality: the faithfulness column (e.g. ``"road_gap"``, ``"acc_del_auc"``).
        cost: ``"time_s"`` (measured seconds per pair) or ``"passes"`` (passes per pair).
        higher_is_better: the direction of ``quality``.
    """
    for col in ("method", quality, cost):
        if col not in table.columns:
            raise ValueError(f"the table has no column {col!r}: choose from "
                             f"{list(table.columns)}")
    x = table[cost].to_numpy(dtype=np.float64)
    y = table[quality].to_numpy(dtype=np.float64)
    front = pareto_front(x, y, higher_is_better)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=y, mode="markers+text", text=table["method"].tolist(),
                             textposition="top center", name="methods",
                             marker={"size": 10, "color": np.where(front, "#d62728",
                                                                   "#1f77b4").tolist()}))
    order = np.argsort(x[front])
    fig.add_trace(go.Scatter(x=x[front][order], y=y[front][order], mode="lines",
                             name="Pareto front", line={"color": "#d62728", "dash": "dash"}))
    arrow = "↑" if higher_is_better else "↓"
    fig.update_layout(title=title or f"cost against faithfulness ({quality})",
                      xaxis_title=f"{cost} per pair (log)", yaxis_title=f"{quality} {arrow}",
                      template="plotly_white", height=480)
    fig.update_xaxes(type="log")
    return fig


def write_cost_faithfulness(out, table, cost: str = "time_s") -> list[Path]:
    """``OUT/cost_faithfulness.html``: one cost-faithfulness figure (Pareto front drawn) per
    measure of :data:`FIGURE_MEASURES` the table has; returns the written paths (none when
    the table has none of them)."""
    parts = []
    for measure, higher in FIGURE_MEASURES:
        if measure in table.columns and np.isfinite(table[measure]).any():
            fig = cost_faithfulness_figure(table, measure, cost, higher)
            parts.append(fig.to_html(full_html=False, include_plotlyjs=not parts))
    if not parts:
        return []
    path = Path(out) / "cost_faithfulness.html"
    return [write_html(path, "<html><body>" + "\n".join(parts) + "</body></html>")]
