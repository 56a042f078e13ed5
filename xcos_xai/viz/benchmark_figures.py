"""Plotly views of benchmark numbers: accuracies of scorers, curves of explanation metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go


def accuracy_bars(table: pd.DataFrame, reference: float | None = None,
                  title: str = "10-fold accuracy on LFW View 2",
                  highlight: str | None = None, y_range: tuple[float, float] | None = None,
                  highlight_label: str = "highlighted") -> go.Figure:
    """Bars of ``accuracy_mean`` (%) with ``accuracy_std`` error bars, one per ``scorer``.

    ``reference`` draws a dashed line (e.g. the plugged model's own accuracy), named in the
    legend; ``highlight`` colours that scorer's bar red, named ``highlight_label`` in the
    legend. The values are written at the foot of the bars (where the axis starts), clear of
    the error bars and the line. ``y_range`` fixes the axis (a widget keeps it while its bars
    change).
    """
    colours = ["#d6604d" if s == highlight else "#4393c3" for s in table["scorer"]]
    fig = go.Figure(go.Bar(
        x=table["scorer"], y=table["accuracy_mean"], marker_color=colours,
        error_y=dict(type="data", array=table["accuracy_std"], color="#444"), showlegend=False,
        hovertemplate="%{x}: %{y:.2f} % ± %{error_y.array:.2f}<extra></extra>"))
    if highlight is not None:  # legend entry only
        fig.add_trace(go.Bar(x=[None], y=[None], marker_color="#d6604d", name=highlight_label))
    if reference is not None:
        fig.add_hline(y=reference, line_dash="dash", line_color="black")
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=(
            f"model cosine {reference:.2f} %"), line=dict(dash="dash", color="black")))
    if y_range is None:
        low = float(np.min(table["accuracy_mean"] - table["accuracy_std"]))
        y_range = (max(0.0, np.floor(low) - 2), 100.5)
    for scorer, value in zip(table["scorer"], table["accuracy_mean"]):
        # at the foot of the visible bar (the axis does not start at 0)
        fig.add_annotation(x=scorer, y=max(float(y_range[0]), 0.0), yanchor="bottom", yshift=4,
                           text=f"{value:.2f}", showarrow=False, name="value",
                           font=dict(color="white", size=13))
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left", yref="container", y=1.0,
                                 yanchor="top", pad=dict(t=34)),
                      height=400, template="plotly_white",
                      yaxis=dict(title="accuracy (%)", range=list(y_range)),
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.02,
                                  yanchor="bottom"),
                      margin=dict(l=10, r=10, t=100, b=10))
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
