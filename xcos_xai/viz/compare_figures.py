"""Figures of a comparison of pair explainers (``xcos-xai compare``): mean curves and
example maps, as plotly HTML and static PNGs (written atomically; the pages work offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .writers import save_matplotlib, write_figure_html

__all__ = ["curve_figure", "pair_curve_figure", "save_curves_png", "save_example_maps"]


def curve_figure(curves: dict, controls=()):
    """The mean deletion/insertion and FNMR/FMR curves of every method (plotly, 2x3 panels),
    and the panels ``[(curve key, x, title)]``; ``controls`` (e.g. random maps) are dotted.

    ``curves``: as :func:`~xcos_xai.evaluation.faithfulness.summarize` returns them.
    """
    del_f = np.array(curves["deletion_fractions"])
    ins_f = np.array(curves["insertion_fractions"])
    panels = [("deletion_genuine", del_f, "deletion, genuine (↓ better)"),
              ("insertion_genuine", ins_f, "insertion, genuine (↑)"),
              ("deletion_impostor", del_f, "deletion, impostor (↑)"),
              ("insertion_impostor", ins_f, "insertion, impostor (↓)"),
              ("fnmr", del_f[:-1], "FNMR vs replaced (genuine, ↑)"),
              ("fmr", del_f[:-1], "FMR vs replaced (impostor, ↑)")]
    fig = make_subplots(rows=2, cols=3, subplot_titles=[p[2] for p in panels])
    colours = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#666666",
               "#a6761d", "#1f78b4"]
    for k, name in enumerate(curves["methods"]):
        c = curves["methods"][name]
        for p, (key, x, _) in enumerate(panels):
            fig.add_trace(go.Scatter(x=x, y=c[key], name=name, legendgroup=name,
                                     showlegend=p == 0, mode="lines",
                                     line=dict(color=colours[k % len(colours)],
                                               dash="dot" if name in controls else "solid")),
                          p // 3 + 1, p % 3 + 1)
    fig.update_xaxes(title_text="fraction of face A replaced")
    fig.update_layout(height=650, template="plotly_white",
                      title="Faithfulness of pair explanations (mean over pairs)")
    return fig, panels


PAIR_CURVE_COLOURS = ("#d95f02", "#1b9e77", "#666666")  # method A, method B, the control


def pair_curve_figure(curves: list[tuple[str, np.ndarray, np.ndarray]],
                      controls: tuple[int, ...] = (), threshold: float | None = None,
                      flips: list[float | None] | None = None, title: str = "",
                      x_title: str = "fraction of face A replaced", y_title: str = "score",
                      height: int = 420) -> go.Figure:
    """One pair's protocol curves on one axis: ``[(legend name, fractions, scores), ...]``
    (e.g. method A, method B and the random control), the curves at positions ``controls``
    dotted, the pair's decision ``threshold`` as a dashed line, and a ringed marker on each
    curve where its decision flips (``flips[i]``: a fraction of ``fractions``, or ``None``).

    Always ``2 * len(curves) + 1`` traces (curves, flip markers, threshold; empty ones when
    not given), so a ``FigureWidget`` can be updated in place.
    """
    fig = go.Figure()
    flips = list(flips) if flips is not None else [None] * len(curves)
    for k, (name, x, y) in enumerate(curves):
        colour = PAIR_CURVE_COLOURS[k % len(PAIR_CURVE_COLOURS)]
        fig.add_trace(go.Scatter(x=np.asarray(x, dtype=float), y=np.asarray(y, dtype=float),
                                 mode="lines+markers", name=name, legendgroup=str(k),
                                 line=dict(color=colour, dash="dot" if k in controls else "solid",
                                           width=2),
                                 marker=dict(size=6),
                                 hovertemplate="%{x:.0%}: %{y:.4f}<extra>" + name + "</extra>"))
    for k, (name, x, y) in enumerate(curves):
        f = flips[k]
        at = [] if f is None else [float(f)]
        y_at = [] if f is None else [float(np.asarray(y)[int(np.argmin(np.abs(
            np.asarray(x, dtype=float) - f)))])]
        fig.add_trace(go.Scatter(x=at, y=y_at, mode="markers", showlegend=False,
                                 legendgroup=str(k), name=f"{name}: decision flips",
                                 marker=dict(size=15, symbol="circle-open", line=dict(width=2.5),
                                             color=PAIR_CURVE_COLOURS[k % len(
                                                 PAIR_CURVE_COLOURS)]),
                                 hovertemplate="decision flips at %{x:.0%}<extra></extra>"))
    xs = [float(v) for _, x, _ in curves for v in np.asarray(x, dtype=float)]
    span = [min(xs), max(xs)] if xs and threshold is not None else []
    label = "" if threshold is None else f"decision threshold {threshold:.3f}"
    fig.add_trace(go.Scatter(x=span, y=[threshold] * len(span), mode="lines", name=label,
                             showlegend=threshold is not None,
                             line=dict(color="black", dash="dash", width=1),
                             hovertemplate="threshold %{y:.4f}<extra></extra>"))
    fig.update_layout(height=height, template="plotly_white",
                      title=dict(text=title, x=0.01, xanchor="left", font=dict(size=14)),
                      xaxis=dict(title=x_title, tickformat=".0%", range=[-0.02, 1.02]),
                      yaxis=dict(title=y_title),
                      legend=dict(orientation="h", x=0, xanchor="left", y=-0.2, yanchor="top"),
                      margin=dict(l=60, r=20, t=80, b=10))
    return fig


def save_curves_png(curves: dict, panels, path: Path, controls=()) -> None:
    """The same panels as a static PNG (matplotlib)."""
    # matplotlib (heavy: ~0.8 s with pyplot) is loaded only when PNGs are written.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for (key, x, title), ax in zip(panels, axes.flat):
        for name, c in curves["methods"].items():
            ax.plot(x, c[key], ls=":" if name in controls else "-", label=name)
        ax.set_title(title)
        ax.set_xlabel("fraction of face A replaced")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    save_matplotlib(fig, path, dpi=90)
    plt.close(fig)


def save_example_maps(records: list[dict], chips: dict, out: Path) -> list[Path]:
    """Side-by-side maps of the example pairs (records with ``example_maps``): one column per
    method, faces A and B; ``example_<i>_<kind>.png`` and ``.html`` in ``out``. The pages
    load one shared ``plotly.min.js`` written beside them (offline, and one copy of
    plotly.js for all the examples instead of one each).

    ``chips``: ``{record["i"]: (chip_a, chip_b)}``, the ``(h, w, 3)`` uint8 faces.
    """
    # matplotlib (heavy: ~0.8 s with pyplot) is loaded only when PNGs are written.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    for r in records:
        if "example_maps" not in r:
            continue
        maps = r["example_maps"]
        names = list(maps)
        chip_a, chip_b = chips[r["i"]]
        fig, axes = plt.subplots(2, len(names) + 1, figsize=(2.2 * (len(names) + 1), 4.6))
        axes[0, 0].imshow(chip_a)
        axes[1, 0].imshow(chip_b)
        axes[0, 0].set_title("A" + (" (genuine)" if r["same"] else " (impostor)"), fontsize=8)
        axes[1, 0].set_title(f"B, score {r['score']:.3f}", fontsize=8)
        pfig = make_subplots(rows=2, cols=len(names), subplot_titles=names * 2,
                             vertical_spacing=0.08)
        for j, name in enumerate(names):
            for row, m in enumerate(maps[name]):
                m = np.asarray(m)
                lim = float(np.abs(m).max()) or 1.0
                ax = axes[row, j + 1]
                ax.imshow([chip_a, chip_b][row], alpha=1.0)
                ax.imshow(m, cmap="RdBu", vmin=-lim, vmax=lim, alpha=0.6)
                if row == 0:
                    ax.set_title(name, fontsize=8)
                pfig.add_trace(go.Heatmap(z=m[::-1], zmin=-lim, zmax=lim, colorscale="RdBu",
                                          showscale=False), row + 1, j + 1)
        for ax in axes.flat:
            ax.axis("off")
        fig.suptitle("blue: supports 'same person', red: opposes", fontsize=9)
        fig.tight_layout()
        stem = f"example_{r['i']:03d}_{'genuine' if r['same'] else 'impostor'}"
        save_matplotlib(fig, out / f"{stem}.png", dpi=80)
        plt.close(fig)
        pfig.update_layout(height=520, title=f"{r['path_a']} vs {r['path_b']} "
                                             f"(score {r['score']:.3f})")
        write_figure_html(pfig, out / f"{stem}.html", shared_plotlyjs=True)
        written += [out / f"{stem}.png", out / f"{stem}.html"]
    return written
