"""What the widgets share: which explainers exist, pairs from cached maps, LFW lookup."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import plotly.graph_objects as go

from .._env import DataNotFoundError, dataset_dir
from ..data.lfw import LFW
from ..explainers import explainer_class, list_explainers

XCOS = "xcos"
# A pair figure's widget width (px): at the FigureWidget's default 700 px the five panels'
# titles and colour bars run into each other.
PAIR_FIGURE_WIDTH = 1000
# Controls' labels at their full width (ipywidgets' default cuts them at 80 px: "temperat...").
LABEL_STYLE = {"description_width": "initial"}


def available_methods() -> list[str]:
    """Explanation methods the widgets can show: ``"xcos"`` first, then the Captum ones."""
    names = [n for n in list_explainers() if n != XCOS]
    return [XCOS, *names]


def pair_figure_widget(figure):
    """A ``FigureWidget`` of a :func:`~xcos_xai.viz.pair_figure.pair_figure`, wide enough for
    its five panels (``sync_figure`` keeps the width)."""
    return go.FigureWidget(figure).update_layout(width=PAIR_FIGURE_WIDTH)


def method_label(name: str) -> str:
    """The explainer's ``short_label`` (its class says it), e.g. ``"Grad-CAM"``."""
    return explainer_class(name).short_label


def evidence_map(explanation, threshold: float | None = None) -> np.ndarray:
    """``(S - threshold) * W`` on the grid: sums to ``score - threshold``."""
    return explanation.evidence(threshold)


def with_attention(explanation, attention: np.ndarray):
    """The same pair and S with another attention W (score and S*W recomputed; the method's
    maps, made with the old W, are dropped)."""
    attention = np.asarray(attention, dtype=np.float32)
    contribution = np.asarray(explanation.cos_map) * attention
    score = float(contribution.sum())
    return replace(explanation, attention=attention, contribution=contribution, score=score,
                   same=score > explanation.threshold, map_a=None, map_b=None)


def lfw_or_none(root=None):
    """An :class:`~xcos_xai.data.lfw.LFW` when the data directory holds LFW, else ``None``."""
    try:
        path = root if root is not None else dataset_dir("lfw", required=False)
        return None if path is None else LFW(path)
    except (DataNotFoundError, FileNotFoundError, ValueError):
        return None
