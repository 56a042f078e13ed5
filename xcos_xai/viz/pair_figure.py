"""Views of one explained pair: an interactive plotly figure and a static PNG.

Panels: face A and face B with the xCos grid drawn on them; the patch cosine map S on a
diverging scale centred at the decision threshold (blue: more similar than the threshold,
red: less); the attention W; and the evidence ``(S - threshold) * W`` per cell, which sums to
``score - threshold`` (positive cells push towards "same person"). Hover shows every value.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..core.xcos import evidence_map

DIVERGING = "RdBu"
ATTENTION_SCALE = "YlGn"


def _grid_shapes(size: tuple[int, int], grid: tuple[int, int], xref: str, yref: str):
    h, w = size
    rows, cols = grid
    shapes = []
    for i in range(rows + 1):
        y = i * h / rows - 0.5
        shapes.append(dict(type="line", x0=-0.5, x1=w - 0.5, y0=y, y1=y, xref=xref, yref=yref,
                           line=dict(color="rgba(255,60,60,0.8)", width=1)))
    for j in range(cols + 1):
        x = j * w / cols - 0.5
        shapes.append(dict(type="line", x0=x, x1=x, y0=-0.5, y1=h - 0.5, xref=xref, yref=yref,
                           line=dict(color="rgba(255,60,60,0.8)", width=1)))
    return shapes


def _symmetric_range(values: np.ndarray, centre: float, floor: float = 0.05) -> float:
    return max(float(np.abs(values - centre).max()), floor)


def cell_overlay(grid_map: np.ndarray, image_size: tuple[int, int], zmin: float, zmax: float,
                 opacity: float, name: str, colorscale: str = DIVERGING) -> go.Heatmap:
    """A ``(rows, cols)`` map drawn over an ``(h, w)`` image, one coloured square per cell."""
    rows, cols = np.asarray(grid_map).shape
    h, w = image_size
    dy, dx = h / rows, w / cols
    return go.Heatmap(z=grid_map, x0=dx / 2 - 0.5, dx=dx, y0=dy / 2 - 0.5, dy=dy, zmin=zmin,
                      zmax=zmax, colorscale=colorscale, opacity=opacity, showscale=False,
                      name=name, hovertemplate=name + " %{z:+.4f}<extra></extra>")


def pair_figure(explanation, title: str | None = None, height: int = 330,
                threshold: float | None = None, overlay_opacity: float | None = None
                ) -> go.Figure:
    """The plotly figure of a :class:`~xcos_xai.explain.PairExplanation`.

    Args:
        threshold: decide and centre the colour scales at this threshold instead of the
            explanation's own (the widgets' threshold slider).
        overlay_opacity: also draw the evidence ``(S - threshold) * W`` over both faces with
            this opacity (0 to 1); ``None`` draws no overlay traces.
    """
    e = explanation
    s, w, c = np.asarray(e.cos_map), np.asarray(e.attention), np.asarray(e.contribution)
    tau = float(e.threshold if threshold is None else threshold)
    evidence = evidence_map(s, w, tau)
    rows, cols = s.shape
    # two-line titles in a smaller font: one line overlaps its neighbours at a notebook's width
    fig = make_subplots(rows=1, cols=5, horizontal_spacing=0.03, subplot_titles=(
        "face A", "face B", f"patch cosine S<br>(centred at {tau:.3f})",
        "attention W", "evidence<br>(S - threshold) * W"))
    fig.update_annotations(font_size=13)
    fig.add_trace(go.Image(z=e.face_a, name="face A"), 1, 1)
    fig.add_trace(go.Image(z=e.face_b, name="face B"), 1, 2)
    custom = np.stack([s, w, c, evidence], axis=-1)
    hover = ("row %{y}, col %{x}<br>S = %{customdata[0]:.3f}<br>W = %{customdata[1]:.3f}"
             "<br>S*W = %{customdata[2]:.4f}<br>(S-t)*W = %{customdata[3]:+.4f}<extra></extra>")
    d_s = _symmetric_range(s, tau)
    d_e = _symmetric_range(evidence, 0.0, floor=1e-4)
    maps = (
        (s, DIVERGING, tau - d_s, tau + d_s, 3, 0.585),
        (w, ATTENTION_SCALE, 0.0, float(w.max()), 4, 0.79),
        (evidence, DIVERGING, -d_e, d_e, 5, 1.0),
    )
    for z, scale, zmin, zmax, col, bar_x in maps:
        fig.add_trace(go.Heatmap(z=z, customdata=custom, hovertemplate=hover, colorscale=scale,
                                 zmin=zmin, zmax=zmax, reversescale=False,
                                 colorbar=dict(x=bar_x, len=0.8, thickness=10)), 1, col)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{col}", row=1, col=col)
    size = e.face_a.shape[:2]
    if overlay_opacity is not None:
        for col, label in ((1, "evidence on A"), (2, "evidence on B")):
            fig.add_trace(cell_overlay(evidence, size, -d_e, d_e, float(overlay_opacity),
                                       label), 1, col)
    for col in (1, 2):
        axis = "" if col == 1 else str(col)
        for shape in _grid_shapes(size, (rows, cols), f"x{axis}", f"y{axis}"):
            fig.add_shape(shape)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    verdict = "same person" if e.score > tau else "different people"
    fig.update_layout(
        title=title or (f"xCos {e.score:.4f} vs threshold {tau:.4f}: {verdict}  |  "
                        f"model cosine {e.model_cosine:.4f}"),
        height=height, margin=dict(l=10, r=10, t=90, b=10), template="plotly_white")
    return fig


def save_pair_png(explanation, path, dpi: int = 110) -> None:
    """A static PNG of the same panels (matplotlib; no browser needed)."""
    # matplotlib (heavy: ~0.8 s with pyplot) is loaded only when a PNG is written.
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    e = explanation
    s, w = np.asarray(e.cos_map), np.asarray(e.attention)
    tau = float(e.threshold)
    evidence = evidence_map(s, w, tau)
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))
    rows, cols = s.shape
    for ax, face, label in ((axes[0], e.face_a, "face A"), (axes[1], e.face_b, "face B")):
        ax.imshow(face)
        h, wd = face.shape[:2]
        for i in range(1, rows):
            ax.axhline(i * h / rows - 0.5, color="red", lw=0.8)
        for j in range(1, cols):
            ax.axvline(j * wd / cols - 0.5, color="red", lw=0.8)
        ax.set_title(label)
    d_s = _symmetric_range(s, tau)
    d_e = _symmetric_range(evidence, 0.0, floor=1e-4)
    panels = ((axes[2], s, "RdBu", TwoSlopeNorm(tau, tau - d_s, tau + d_s), "S (centre = thr)"),
              (axes[3], w, "YlGn", None, "attention W"),
              (axes[4], evidence, "RdBu", TwoSlopeNorm(0.0, -d_e, d_e), "(S - thr) * W"))
    for ax, z, cmap, norm, label in panels:
        im = ax.imshow(z, cmap=cmap, norm=norm)
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_title(label)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    verdict = "same person" if e.same else "different people"
    fig.suptitle(f"xCos {e.score:.4f} vs threshold {tau:.4f}: {verdict} | model cosine "
                 f"{e.model_cosine:.4f}")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
