"""A static HTML report: the evaluation table, score plots and explained pairs.

It uses the same plotly views as the notebooks; plotly.js is inlined once, so the page works
offline.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .pair_figure import title_layout
from .writers import write_html


def score_histogram(scores: np.ndarray, same: np.ndarray, threshold: float,
                    title: str, threshold_label: str = "threshold") -> go.Figure:
    """Genuine and impostor score histograms with the threshold (a dashed line, labelled
    ``threshold_label`` above the plot)."""
    fig = go.Figure()
    for mask, label, colour in ((same, "genuine", "#2166ac"), (~same, "impostor", "#b2182b")):
        fig.add_trace(go.Histogram(x=scores[mask], name=label, opacity=0.6, nbinsx=80,
                                   marker_color=colour))
    fig.add_vline(x=threshold, line_dash="dash", line_color="black")
    # the label above the plot area, where no bar can be under it
    fig.add_annotation(x=threshold, y=1.0, yref="paper", yanchor="bottom", showarrow=False,
                       text=f"{threshold_label} {threshold:.3f}", font=dict(size=11))
    fig.update_layout(barmode="overlay", title=title_layout(title, 340), height=340,
                      template="plotly_white", xaxis_title="score", yaxis_title="pairs",
                      margin=dict(l=10, r=10, t=80, b=40),
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.12,
                                  yanchor="bottom"))
    return fig


def scatter_vs_model(xcos: np.ndarray, model_cos: np.ndarray, same: np.ndarray) -> go.Figure:
    """xCos against the plugged model's cosine, per pair."""
    fig = go.Figure()
    for mask, label, colour in ((same, "genuine", "#2166ac"), (~same, "impostor", "#b2182b")):
        fig.add_trace(go.Scattergl(x=model_cos[mask], y=xcos[mask], mode="markers", name=label,
                                   marker=dict(size=3, color=colour, opacity=0.5)))
    r = float(np.corrcoef(xcos, model_cos)[0, 1])
    fig.update_layout(title=f"xCos vs the model's cosine (Pearson r = {r:.4f})", height=380,
                      template="plotly_white", xaxis_title="model cosine",
                      yaxis_title="xCos")
    return fig


def write_report(path: str | Path, title: str, intro: str, table: pd.DataFrame | None,
                 figures: list[tuple[str, go.Figure]],
                 explanations: list[tuple[str, list]]) -> Path:
    """One HTML page (plotly.js inlined once, written atomically): an intro, a table,
    figures, and sections of explained pairs.

    ``explanations`` is a list of ``(section title, [(caption, PairExplanation), ...])``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>{html.escape(title)}</h1>", intro]
    if table is not None:
        parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4f}",
                                   border=0, classes="table", justify="left"))
    first = True

    def fig_html(fig):
        nonlocal first
        out = fig.to_html(full_html=False, include_plotlyjs=True if first else False)
        first = False
        return out

    for caption, fig in figures:
        parts.append(f"<h2>{html.escape(caption)}</h2>" + fig_html(fig))
    for section, items in explanations:
        parts.append(f"<h2>{html.escape(section)}</h2>")
        if not items:
            parts.append("<p>none</p>")
        for caption, expl in items:
            parts.append(f"<h3>{html.escape(caption)}</h3>" + expl._summary_html() +
                         fig_html(expl.figure()))
    style = ("body{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}"
             "table.table{border-collapse:collapse}table.table td,table.table th"
             "{padding:3px 10px;border-bottom:1px solid #ddd;white-space:nowrap}"
             "table.table td:nth-child(2){white-space:normal}")
    return write_html(path, f"<!doctype html><html><head><meta charset='utf-8'><title>"
                      f"{html.escape(title)}</title><style>{style}</style></head><body>"
                      + "\n".join(parts) + "</body></html>")
