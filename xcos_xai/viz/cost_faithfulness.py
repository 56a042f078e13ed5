"""Cost against faithfulness: every explainer as a point, the Pareto front drawn (plotly).

A method is on the front when no other method is both cheaper (or as cheap) and more
faithful (or as faithful), with at least one of the two strictly better.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from .writers import save_matplotlib, write_html

__all__ = ["FIGURE_MEASURES", "cost_faithfulness_figure", "pareto_front",
           "save_cost_faithfulness_png", "write_cost_faithfulness"]

# faithfulness measures drawn against cost, with their direction (higher is better?)
FIGURE_MEASURES = (("road_gap", True), ("acc_del_auc", False), ("del_auc_genuine", False),
                   ("fnmr_mean_5_95", True))

MEASURE_TITLES = {"road_gap": "ROAD LeRF - MoRF gap",
                  "acc_del_auc": "verification-accuracy deletion AUC",
                  "del_auc_genuine": "deletion AUC, genuine pairs",
                  "fnmr_mean_5_95": "mean FNMR, 5-95 % replaced"}


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


def _measures(table) -> list[tuple[str, bool]]:
    return [(m, higher) for m, higher in FIGURE_MEASURES
            if m in table.columns and np.isfinite(table[m].to_numpy(dtype=np.float64)).any()]


def save_cost_faithfulness_png(path, table, cost: str = "time_s", title: str = "") -> Path:
    """The same figures as one static PNG (matplotlib; one panel per measure, log cost axis,
    the Pareto front dashed and its methods in red), for READMEs and reports."""
    # matplotlib (heavy: ~0.8 s with pyplot) is loaded only when PNGs are written.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = _measures(table)
    if not measures:
        raise ValueError(f"the table has none of {[m for m, _ in FIGURE_MEASURES]}: run "
                         "`xcos-xai compare` with the field protocols")
    cols = min(2, len(measures))
    rows = -(-len(measures) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.6 * rows), squeeze=False)
    x_all = table[cost].to_numpy(dtype=np.float64)
    names = table["method"].tolist()
    for (measure, higher), ax in zip(measures, axes.flat):
        y = table[measure].to_numpy(dtype=np.float64)
        front = pareto_front(x_all, y, higher)
        ax.scatter(x_all, y, c=np.where(front, "#d62728", "#1f77b4"), s=36, zorder=3)
        for xi, yi, name in zip(x_all, y, names):
            if np.isfinite(xi) and np.isfinite(yi):
                ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
        order = np.argsort(x_all[front])
        ax.plot(x_all[front][order], y[front][order], ls="--", c="#d62728", lw=1,
                label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(("seconds" if cost == "time_s" else cost) + " per pair (log)")
        ax.set_ylabel(MEASURE_TITLES.get(measure, measure) + (" ↑" if higher else " ↓"))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    for ax in list(axes.flat)[len(measures):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = save_matplotlib(fig, path, dpi=90)
    plt.close(fig)
    return out


def write_cost_faithfulness(out, table, cost: str = "time_s") -> list[Path]:
    """``OUT/cost_faithfulness.html`` (interactive) and ``cost_faithfulness.png`` (static):
    one cost-faithfulness figure (Pareto front drawn) per measure of :data:`FIGURE_MEASURES`
    the table has; returns the written paths (none when the table has none of them)."""
    parts = []
    for measure, higher in _measures(table):
        fig = cost_faithfulness_figure(table, measure, cost, higher)
        parts.append(fig.to_html(full_html=False, include_plotlyjs=not parts))
    if not parts:
        return []
    path = Path(out) / "cost_faithfulness.html"
    html = write_html(path, "<html><body>" + "\n".join(parts) + "</body></html>")
    return [html, save_cost_faithfulness_png(Path(out) / "cost_faithfulness.png", table, cost)]
