"""Views of one explained pair: an interactive plotly figure and a static PNG.

Panels: face A and face B with the xCos grid drawn on them; the patch cosine map S on a
diverging scale centred at the decision threshold (blue: more similar than the threshold,
red: less); the attention W; and the evidence: the xCos explainer's map (its default,
``"amortised_fine"``, where the model has its map statistics: the predicted score drop when
each block of face A is blurred), or ``(S - threshold) * W`` per cell, which sums to
``score - threshold`` (positive cells push towards "same person"). Hover shows every value.
"""

from __future__ import annotations

import base64
import io
import textwrap

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from ..core.xcos import evidence_map
from ..explainers.xcos import VARIANTS
from .notes import detection_notes
from .writers import save_matplotlib

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


def cosine_range(cos_map: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(zmin, zmax)`` of S's colour scale: ``zmax = 1`` (a cosine cannot exceed it) and
    ``zmin`` the lower of ``2 * threshold - 1`` (symmetric about the threshold) and S's
    minimum, never below -1.

    Example:
        >>> cosine_range(np.array([0.85, 0.99]), 0.9)
        (0.8, 1.0)
        >>> cosine_range(np.array([0.3, 0.99]), 0.9)
        (0.3, 1.0)
    """
    tau = float(np.clip(threshold, -1.0, 1.0))
    low = min(2 * tau - 1, float(np.min(cos_map)))
    return round(max(-1.0, low), 12), 1.0


def centred_colorscale(zmin: float, zmax: float, centre: float,
                       scale: str = DIVERGING, steps: int = 6) -> list[list]:
    """A diverging colour scale over ``[zmin, zmax]`` whose middle colour (white for RdBu) sits
    at ``centre``: each side is the full half of ``scale``, stretched to its own range.

    Example:
        >>> cs = centred_colorscale(0.8, 1.0, 0.9)
        >>> [round(cs[k][0], 6) for k in (0, 5, -1)], cs[5][1]  # white at 0.9
        ([0.0, 0.5, 1.0], 'rgb(247, 247, 247)')
    """
    span = max(zmax - zmin, 1e-12)
    p = float(np.clip((centre - zmin) / span, 0.0, 1.0))
    stops = []
    if p > 0:
        stops += [[p * k / (steps - 1), 0.5 * k / (steps - 1)] for k in range(steps)]
    if p < 1:
        stops += [[p + (1 - p) * k / (steps - 1), 0.5 + 0.5 * k / (steps - 1)]
                  for k in range(0 if p == 0 else 1, steps)]
    colours = sample_colorscale(scale, [c for _, c in stops])
    return [[float(pos), colour] for (pos, _), colour in zip(stops, colours)]


def jpeg_source(image: np.ndarray, quality: int = 85) -> str:
    """An ``(h, w, 3)`` uint8 image as a JPEG ``data:`` URI, for ``go.Image(source=...)``: a
    150x150 face is about 8 kB instead of ~200 kB of JSON numbers in every figure and report."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
        buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def face_image(face: np.ndarray, name: str) -> go.Image:
    """A face as a compressed image trace (pixel coordinates as with ``z``)."""
    return go.Image(source=jpeg_source(face), name=name, hoverinfo="skip")


def cell_overlay(grid_map: np.ndarray, image_size: tuple[int, int], zmin: float, zmax: float,
                 opacity: float, name: str, colorscale: str = DIVERGING) -> go.Heatmap:
    """A ``(rows, cols)`` map drawn over an ``(h, w)`` image, one coloured square per cell."""
    rows, cols = np.asarray(grid_map).shape
    h, w = image_size
    dy, dx = h / rows, w / cols
    return go.Heatmap(z=grid_map, x0=dx / 2 - 0.5, dx=dx, y0=dy / 2 - 0.5, dy=dy, zmin=zmin,
                      zmax=zmax, colorscale=colorscale, opacity=opacity, showscale=False,
                      name=name, hovertemplate=name + " %{z:+.4f}<extra></extra>")


def horizontal_colorbar(domain, title: str, **extra) -> dict:
    """A colour bar laid flat under its panel (``domain``: the panel's x range in paper
    units): bars and tick labels never run into the next panel, whatever the width."""
    left, right = domain
    return dict(orientation="h", x=(left + right) / 2, xanchor="center", xref="paper",
                y=-0.04, yanchor="top", yref="paper", len=0.92 * (right - left),
                lenmode="fraction", thickness=9, title=dict(text=title, side="bottom",
                                                             font=dict(size=11)),
                tickfont=dict(size=10), outlinewidth=0, **extra)


def title_layout(text: str, height: int) -> dict:
    """The title below plotly's toolbar (which floats over the figure's top 30 px)."""
    return dict(text=text, x=0.01, xanchor="left", yref="container", y=1.0, yanchor="top",
                pad=dict(t=34), font=dict(size=15))


def shown_evidence(explanation, threshold: float):
    """``(title, map_a, map_b)``: the evidence the figure shows. The explainer's map when the
    explanation carries one other than ``(S - t) * W`` (``map_name``, ``map_grid_a/b``: one
    map per face, at its own resolution); otherwise ``(S - threshold) * W`` on both faces."""
    e = explanation
    name = getattr(e, "map_name", None)
    if name not in (None, "evidence") and getattr(e, "map_grid_a", None) is not None:
        return (f"evidence: {VARIANTS[name].short_label}", np.asarray(e.map_grid_a),
                np.asarray(e.map_grid_b))
    ev = evidence_map(np.asarray(e.cos_map), np.asarray(e.attention), threshold)
    return "evidence (S - t) * W", ev, ev


def pair_title(explanation, threshold: float) -> str:
    """``xCos <score> vs threshold <t>: <verdict> | model cosine <c>``."""
    e = explanation
    verdict = "same person" if e.score > threshold else "different people"
    return (f"xCos {e.score:.4f} vs threshold {threshold:.4f}: {verdict}  |  "
            f"model cosine {e.model_cosine:.4f}")


def pair_figure(explanation, title: str | None = None, height: int = 400,
                threshold: float | None = None, overlay_opacity: float | None = None
                ) -> go.Figure:
    """The plotly figure of a :class:`~xcos_xai.explain.PairExplanation`.

    S is drawn on ``[min(S, 2t - 1), 1]`` with white at the threshold t (a cosine never
    exceeds 1); W on ``[0, max W]``; the evidence symmetric about 0. The colour bars lie under
    their panels. Faces found with trouble (several faces, no face, a padding band) carry a
    badge (:mod:`xcos_xai.viz.notes`).

    Args:
        title: a heading; the score, threshold and verdict line follows it.
        threshold: decide and centre the colour scales at this threshold instead of the
            explanation's own (the widgets' threshold slider).
        overlay_opacity: also draw the evidence ``(S - threshold) * W`` over both faces with
            this opacity (0 to 1); ``None`` draws no overlay traces.
    """
    e = explanation
    s, w, c = np.asarray(e.cos_map), np.asarray(e.attention), np.asarray(e.contribution)
    tau = float(e.threshold if threshold is None else threshold)
    evidence = evidence_map(s, w, tau)
    ev_title, shown_a, shown_b = shown_evidence(e, tau)
    own = ev_title != "evidence (S - t) * W"  # the explainer's own map (per face)
    rows, cols = s.shape
    # two-line titles in a smaller font: one line overlaps its neighbours at a notebook's width
    fig = make_subplots(rows=1, cols=5, horizontal_spacing=0.025, subplot_titles=(
        "face A", "face B", "patch cosine S<br>(white at the threshold)",
        "attention W", (ev_title.replace(": ", " of face A<br>", 1) if own
                        else "evidence<br>(S - threshold) * W")))
    fig.update_annotations(font_size=13)
    fig.add_trace(face_image(e.face_a, "face A"), 1, 1)
    fig.add_trace(face_image(e.face_b, "face B"), 1, 2)
    custom = np.stack([s, w, c, evidence], axis=-1)
    hover = ("row %{y}, col %{x}<br>S = %{customdata[0]:.3f}<br>W = %{customdata[1]:.3f}"
             "<br>S*W = %{customdata[2]:.4f}<br>(S-t)*W = %{customdata[3]:+.4f}<extra></extra>")
    s_min, s_max = cosine_range(s, tau)
    d_e = _symmetric_range(np.concatenate([np.ravel(shown_a), np.ravel(shown_b)]), 0.0,
                           floor=1e-4)
    w_max = max(float(w.max()), 1e-6)
    s_ticks = dict(tickvals=[s_min, s_max], ticktext=[f"{s_min:.2f}", f"{s_max:.0f}"])
    maps = (
        (s, centred_colorscale(s_min, s_max, tau), s_min, s_max, 3,
         f"S (white: t = {tau:.3f})", s_ticks),
        (w, ATTENTION_SCALE, 0.0, w_max, 4, "W",
         dict(tickvals=[0.0, w_max / 2, w_max], tickformat=".2f")),
        (shown_a, DIVERGING, -d_e, d_e, 5, "+ same, - different" if own else "(S - t) * W",
         dict(tickvals=[-d_e, 0.0, d_e], tickformat="+.3f")),
    )
    domains = {col: fig.get_subplot(1, col).xaxis.domain for col in (3, 4, 5)}
    own_hover = "row %{y}, col %{x}<br>evidence = %{z:+.4f}<extra></extra>"
    for z, scale, zmin, zmax, col, label, ticks in maps:
        plain = own and col == 5  # another resolution than S and W: its own hover
        fig.add_trace(go.Heatmap(z=z, customdata=None if plain else custom,
                                 hovertemplate=own_hover if plain else hover, colorscale=scale,
                                 zmin=zmin, zmax=zmax, reversescale=False, name=label,
                                 colorbar=horizontal_colorbar(domains[col], label, **ticks)),
                      1, col)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{col}", row=1, col=col)
    size = e.face_a.shape[:2]
    if overlay_opacity is not None:
        for col, label, z in ((1, "evidence on A", shown_a), (2, "evidence on B", shown_b)):
            fig.add_trace(cell_overlay(z, size, -d_e, d_e, float(overlay_opacity),
                                       label), 1, col)
    for col in (1, 2):
        axis = "" if col == 1 else str(col)
        for shape in _grid_shapes(size, (rows, cols), f"x{axis}", f"y{axis}"):
            fig.add_shape(shape)
        fig.update_yaxes(scaleanchor=f"x{axis}", row=1, col=col)
    for col, (side, notes) in zip((1, 2), detection_notes(e).items()):
        if notes:  # a badge on the face: how it was found, in a few words
            axis = "" if col == 1 else str(col)
            fig.add_annotation(
                text="<br>".join(notes), x=0.5, y=0.0, xref=f"x{axis} domain",
                yref=f"y{axis} domain", xanchor="center", yanchor="bottom", showarrow=False,
                font=dict(size=10, color="black"), bgcolor="rgba(255,221,87,0.9)",
                borderpad=2, name=f"note face {side}")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    text = pair_title(e, tau)
    extra = 20 if title else 0
    if own and getattr(e, "map_note", ""):
        # wrapped: one long line is cut at a notebook's width; each further line gets room
        lines = textwrap.wrap(f"evidence: {e.map_note}", 110)
        text = f"{text}<br><span style='font-size:11px'>{'<br>'.join(lines)}</span>"
        extra += 14 * (len(lines) - 1)
    if title:
        text = f"{title}<br><span style='font-size:13px'>{text}</span>"
    fig.update_layout(
        title=title_layout(text, height), height=height + extra,
        margin=dict(l=10, r=10, t=105 + extra, b=75),
        template="plotly_white")
    return fig


def save_pair_png(explanation, path, dpi: int = 110) -> None:
    """A static PNG of the same panels and colour scales (matplotlib; no browser needed)."""
    # matplotlib (heavy: ~0.8 s with pyplot) is loaded only when a PNG is written.
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    e = explanation
    s, w = np.asarray(e.cos_map), np.asarray(e.attention)
    tau = float(e.threshold)
    ev_title, evidence, _ = shown_evidence(e, tau)
    own = ev_title != "evidence (S - t) * W"
    fig, axes = plt.subplots(1, 5, figsize=(17, 4.3))
    rows, cols = s.shape
    notes = detection_notes(e)
    for ax, face, side in ((axes[0], e.face_a, "A"), (axes[1], e.face_b, "B")):
        ax.imshow(face)
        h, wd = face.shape[:2]
        for i in range(1, rows):
            ax.axhline(i * h / rows - 0.5, color="red", lw=0.8)
        for j in range(1, cols):
            ax.axvline(j * wd / cols - 0.5, color="red", lw=0.8)
        ax.set_title(f"face {side}")
        if notes[side]:
            ax.text(0.5, 0.01, "\n".join(notes[side]), transform=ax.transAxes, ha="center",
                    va="bottom", fontsize=8, bbox=dict(facecolor="#ffdd57", alpha=0.9, lw=0))
    s_min, s_max = cosine_range(s, tau)
    d_e = _symmetric_range(evidence, 0.0, floor=1e-4)
    rdbu = "RdBu"  # ColorBrewer's, as plotly's: red low, blue high
    s_norm = TwoSlopeNorm(min(max(tau, s_min + 1e-9), s_max - 1e-9), s_min, s_max)
    panels = ((axes[2], s, rdbu, s_norm, f"patch cosine S (white: t = {tau:.3f})",
               ([s_min, s_max], "{:.2f}")),
              (axes[3], w, "YlGn", None, "attention W", None),
              (axes[4], evidence, rdbu, TwoSlopeNorm(0.0, -d_e, d_e),
               ev_title.replace(": ", " of face A\n", 1) if own else ev_title,
               ([-d_e, 0.0, d_e], "{:+.3f}")))
    w_max = max(float(w.max()), 1e-6)
    for ax, z, cmap, norm, label, ticks in panels:
        im = ax.imshow(z, cmap=cmap, norm=norm, vmin=None if norm else 0.0,
                       vmax=None if norm else w_max)
        bar = fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.05, pad=0.04)
        ticks, fmt = ticks or ([0.0, w_max / 2, w_max], "{:.2f}")
        bar.set_ticks(ticks, labels=[fmt.format(v) for v in ticks])
        ax.set_title(label)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    note = getattr(e, "map_note", "") if own else ""
    note = "\n".join(textwrap.wrap(f"evidence: {note}", 120)) if note else ""
    fig.suptitle(pair_title(e, tau) + (f"\n{note}" if note else ""))
    save_matplotlib(fig, path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
