"""Attribution maps of one pair, several methods side by side, over the faces.

Each row is one method (xCos first); each row's diverging colour scale is symmetric about 0
and scaled to that row's largest absolute value, so rows are comparable in shape, not in
units (methods attribute different quantities). Blue supports "same person", red opposes.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .pair_figure import DIVERGING


def attribution_figure(face_a: np.ndarray, face_b: np.ndarray,
                       rows: list[tuple[str, np.ndarray, np.ndarray]], opacity: float = 0.6,
                       height: int | None = None, title: str | None = None) -> go.Figure:
    """Faces A and B with each method's signed maps over them.

    Args:
        face_a, face_b: ``(h, w, 3)`` uint8 aligned faces.
        rows: ``[(method label, map_a, map_b), ...]`` with ``(h, w)`` signed maps (any
            resolution that divides the face evenly is drawn stretched over the face).
        opacity: of the maps over the faces (0: faces only, 1: maps only).
    """
    if not rows:
        raise ValueError("attribution_figure needs at least one (label, map_a, map_b) row")
    n = len(rows)
    titles = [f"{label}: face {side}" for label, _, _ in rows for side in ("A", "B")]
    fig = make_subplots(rows=n, cols=2, horizontal_spacing=0.02, vertical_spacing=0.08,
                        subplot_titles=titles)
    h, w = face_a.shape[:2]
    for r, (label, map_a, map_b) in enumerate(rows, start=1):
        map_a, map_b = np.asarray(map_a, dtype=float), np.asarray(map_b, dtype=float)
        scale = max(float(np.abs(map_a).max()), float(np.abs(map_b).max()), 1e-12)
        for c, (face, m) in enumerate(((face_a, map_a), (face_b, map_b)), start=1):
            fig.add_trace(go.Image(z=face, name=f"{label} face", hoverinfo="skip"), r, c)
            mh, mw = m.shape
            fig.add_trace(go.Heatmap(
                z=m, x0=w / mw / 2 - 0.5, dx=w / mw, y0=h / mh / 2 - 0.5, dy=h / mh,
                zmin=-scale, zmax=scale, colorscale=DIVERGING, opacity=float(opacity),
                showscale=False, name=label,
                hovertemplate=label + " %{z:+.3g}<extra></extra>"), r, c)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed")
    for i in range(1, 2 * n + 1):  # square pixels in every panel
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_layout(height=height or 40 + 260 * n, template="plotly_white",
                      margin=dict(l=10, r=10, t=60, b=10),
                      title=title or "where each method finds the evidence (blue: same, red: "
                                     "different)")
    return fig


def save_attribution_png(face_a: np.ndarray, face_b: np.ndarray,
                         rows: list[tuple[str, np.ndarray, np.ndarray]], path,
                         opacity: float = 0.6, title: str | None = None, dpi: int = 110) -> None:
    """The same rows as :func:`attribution_figure`, as a static PNG (matplotlib)."""
    # matplotlib (heavy: ~0.8 s with pyplot) is loaded only when a PNG is written.
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("save_attribution_png needs at least one (label, map_a, map_b) row")
    fig, axes = plt.subplots(len(rows), 2, figsize=(6.4, 3.2 * len(rows)), squeeze=False)
    h, w = face_a.shape[:2]
    for (label, map_a, map_b), pair in zip(rows, axes):
        map_a, map_b = np.asarray(map_a, dtype=float), np.asarray(map_b, dtype=float)
        scale = max(float(np.abs(map_a).max()), float(np.abs(map_b).max()), 1e-12)
        for ax, face, m, side in ((pair[0], face_a, map_a, "A"), (pair[1], face_b, map_b, "B")):
            ax.imshow(face)
            ax.imshow(m, cmap=DIVERGING, vmin=-scale, vmax=scale, alpha=opacity,
                      extent=(-0.5, w - 0.5, h - 0.5, -0.5))
            ax.set_title(f"{label}: face {side}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title or "blue: supports 'same person', red: opposes", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
