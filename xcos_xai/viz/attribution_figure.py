"""Attribution maps of one pair, several methods side by side, over the faces.

Each row is one method (xCos first); each row's diverging colour scale is symmetric about 0
and clipped at that row's 99th percentile of absolute values (a few extreme pixels would
otherwise leave the rest of a gradient map uncoloured), with its own colour bar: rows are
comparable in shape, not in units (methods attribute different quantities). Blue supports
"same person", red opposes.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .pair_figure import DIVERGING, face_image, title_layout
from .writers import save_matplotlib

CLIP_PERCENTILE = 99.0


def symmetric_limit(*maps: np.ndarray, percentile: float = CLIP_PERCENTILE) -> float:
    """The colour limit ``L`` of a row (its scale is ``[-L, L]``): the ``percentile`` of the
    absolute values of all its maps, or their maximum when that percentile is 0.

    Example:
        >>> m = np.append(np.linspace(-1, 1, 101), 40.0)  # one outlier among 102 values
        >>> round(symmetric_limit(m), 6)  # the outlier saturates, the rest keeps its colour
        1.0
    """
    values = np.abs(np.concatenate([np.asarray(m, dtype=float).ravel() for m in maps]))
    limit = float(np.percentile(values, percentile))
    if limit <= 0:
        limit = float(values.max())
    return max(limit, 1e-12)


def attribution_figure(face_a: np.ndarray, face_b: np.ndarray,
                       rows: list[tuple[str, np.ndarray, np.ndarray]], opacity: float = 0.6,
                       height: int | None = None, title: str | None = None,
                       percentile: float = CLIP_PERCENTILE) -> go.Figure:
    """Faces A and B with each method's signed maps over them.

    Args:
        face_a, face_b: ``(h, w, 3)`` uint8 aligned faces.
        rows: ``[(method label, map_a, map_b), ...]`` with ``(h, w)`` signed maps (any
            resolution that divides the face evenly is drawn stretched over the face).
        opacity: of the maps over the faces (0: faces only, 1: maps only).
        percentile: each row's colours saturate at this percentile of its absolute values
            (100: at the maximum); hover shows the unclipped values.
    """
    if not rows:
        raise ValueError("attribution_figure needs at least one (label, map_a, map_b) row")
    n = len(rows)
    titles = [f"{label}: face {side}" for label, _, _ in rows for side in ("A", "B")]
    fig = make_subplots(rows=n, cols=2, horizontal_spacing=0.02, vertical_spacing=0.1,
                        subplot_titles=titles)
    h, w = face_a.shape[:2]
    for r, (label, map_a, map_b) in enumerate(rows, start=1):
        map_a, map_b = np.asarray(map_a, dtype=float), np.asarray(map_b, dtype=float)
        scale = symmetric_limit(map_a, map_b, percentile=percentile)
        y_domain = fig.get_subplot(r, 1).yaxis.domain
        for c, (face, m) in enumerate(((face_a, map_a), (face_b, map_b)), start=1):
            fig.add_trace(face_image(face, f"{label} face"), r, c)
            mh, mw = m.shape
            fig.add_trace(go.Heatmap(
                z=m, x0=w / mw / 2 - 0.5, dx=w / mw, y0=h / mh / 2 - 0.5, dy=h / mh,
                zmin=-scale, zmax=scale, colorscale=DIVERGING, opacity=float(opacity),
                showscale=c == 2, name=label,
                colorbar=dict(x=1.0, xanchor="left", xpad=6, y=sum(y_domain) / 2,
                              yanchor="middle", len=0.9 * (y_domain[1] - y_domain[0]),
                              thickness=10, tickformat=".2g", outlinewidth=0,
                              tickfont=dict(size=10)),
                hovertemplate=label + " %{z:+.3g}<extra></extra>"), r, c)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed")
    for i in range(1, 2 * n + 1):  # square pixels in every panel
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    height = height or 90 + 300 * n
    text = title or ("where each method finds the evidence (blue: same, red: different; "
                     f"colours saturate at each row's {percentile:g}th percentile)")
    fig.update_layout(height=height, template="plotly_white", title=title_layout(text, height),
                      margin=dict(l=10, r=60, t=90, b=10))
    return fig


def save_attribution_png(face_a: np.ndarray, face_b: np.ndarray,
                         rows: list[tuple[str, np.ndarray, np.ndarray]], path,
                         opacity: float = 0.6, title: str | None = None, dpi: int = 110,
                         percentile: float = CLIP_PERCENTILE) -> None:
    """The same rows as :func:`attribution_figure`, as a static PNG (matplotlib): each row
    clipped at its ``percentile`` (:func:`symmetric_limit`), with its colour bar."""
    # matplotlib (heavy: ~0.8 s with pyplot) is loaded only when a PNG is written.
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("save_attribution_png needs at least one (label, map_a, map_b) row")
    fig, axes = plt.subplots(len(rows), 2, figsize=(7.0, 3.2 * len(rows)), squeeze=False)
    h, w = face_a.shape[:2]
    for (label, map_a, map_b), pair in zip(rows, axes):
        map_a, map_b = np.asarray(map_a, dtype=float), np.asarray(map_b, dtype=float)
        scale = symmetric_limit(map_a, map_b, percentile=percentile)
        for ax, face, m, side in ((pair[0], face_a, map_a, "A"), (pair[1], face_b, map_b, "B")):
            ax.imshow(face)
            im = ax.imshow(m, cmap=DIVERGING, vmin=-scale, vmax=scale, alpha=opacity,
                           extent=(-0.5, w - 0.5, h - 0.5, -0.5))
            ax.set_title(f"{label}: face {side}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        bar = fig.colorbar(im, ax=list(pair), fraction=0.046, pad=0.02)
        bar.ax.tick_params(labelsize=8)
    fig.suptitle(title or ("blue: supports 'same person', red: opposes; colours saturate at "
                           f"each row's {percentile:g}th percentile"), fontsize=9)
    save_matplotlib(fig, path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
