"""Plotly views of benchmark numbers: accuracies of scorers, curves of explanation metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go


def accuracy_bars(table: pd.DataFrame, reference: float | None = None,
                  title: str = "10-fold accuracy on LFW View 2",
                  highlight: str | None = None) -> go.Figure:
    """Bars of ``accuracy_mean`` (%) with ``accuracy_std`` error bars, one per ``scorer``.

    ``reference`` draws a dashed line (e.g. the plugged model's own accuracy); ``highlight``
    colours that scorer's bar differently.
    """
    colours = ["#d6604d" if s == highlight else "#4393c3" for s in table["scorer"]]
    fig = go.Figure(go.Bar(
        x=table["scorer"], y=table["accuracy_mean"], marker_color=colours,
        error_y=dict(type="data", array=table["accuracy_std"]),
        text=[f"{v:.2f}" for v in table["accuracy_mean"]], textposition="outside",
        hovertemplate="%{x}: %{y:.2f} %<extra></extra>"))
    if reference is not None:
        fig.add_hline(y=reference, line_dash="dash",
                      annotation_text=f"model cosine {reference:.2f}")
    low = float(np.min(table["accuracy_mean"] - table["accuracy_std"]))
    fig.update_layout(title=title, height=360, template="plotly_white",
                      yaxis=dict(title="accuracy (%)", range=[max(0.0, low - 3), 100.5]),
                      margin=dict(l=10, r=10, t=60, b=10))
    return fig


def metric_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str,
                  x_title: str, y_title: str) -> go.Figure:
    """One line per method: ``{method: (x, y)}`` (e.g. deletion curves: fraction removed vs
    score)."""
    fig = go.Figure()
    for name, (x, y) in curves.items():
        fig.add_trace(go.Scatter(x=np.asarray(x), y=np.asarray(y), mode="lines+markers",
                                 name=name))
    fig.update_layout(title=title, height=360, template="plotly_white", xaxis_title=x_title,
                      yaxis_title=y_title, margin=dict(l=10, r=10, t=60, b=10))
    return fig
