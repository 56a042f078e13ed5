"""``AttentionAblation``: what the learned attention W is worth, over LFW and on one pair.

Variants of W, all on the same patch cosines S of the same held-out fold heads:

- ``learned``: ``softmax(logits / T)``; the slider moves the temperature T.
- ``uniform``: ``1 / (H*W)``: xCos becomes the mean patch cosine.
- ``prior``: one fixed map per fold, the mean learned W over the other nine folds' pairs.
- ``learned, top-k masked``: the learned W with each pair's k highest cells set to 0 and the
  rest renormalised (how much rests on the few cells the attention likes most?).

Accuracies come from the feature cache through the one 10-fold protocol, so moving a slider
re-scores 6000 pairs in well under a second.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import replace

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from IPython.display import display
from torch import nn

from ..core import MaskedAttention, PriorAttention, UniformAttention, patch_cosine_map
from ..core.attention import softmax_cells
from ..evaluation.protocol import ten_fold_accuracy
from ..pretrained import bundle_metadata, load_head
from ..viz.benchmark_figures import accuracy_bars
from ..viz.pair_figure import pair_figure
from ._common import LABEL_STYLE, pair_figure_widget
from ._lfw import HeldOutEvaluation
from .pair_explorer import sync_figure

VARIANTS = ("learned", "uniform", "prior", "learned, top-k masked")


class CachedLogitsAttention(nn.Module):
    """The learned attention replayed from its cached ``(N, H, W)`` logits:
    ``softmax(logits / T)`` over the cells, as :class:`~xcos_xai.core.XCosAttention` computes
    it (the grids only give the batch its shape)."""

    def __init__(self, logits: torch.Tensor, temperature: float):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.logits, self.temperature = logits, float(temperature)

    def forward(self, grid_a: torch.Tensor, grid_b: torch.Tensor) -> torch.Tensor:
        return softmax_cells(self.logits, self.temperature)


def softmax_cells_np(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``(N, H, W)`` logits to weights summing to 1 over each pair's cells (float64)."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    return CachedLogitsAttention(z, temperature)(None, None).numpy()


def top_k_keep_mask(weights: np.ndarray, k: int) -> np.ndarray:
    """``(N, H, W)`` booleans: ``False`` on each pair's ``k`` largest cells (ties: the first
    cell in row-major order goes first), ``True`` elsewhere.

    Example:
        >>> top_k_keep_mask(np.array([[[0.1, 0.4], [0.3, 0.2]]]), 2).astype(int).tolist()
        [[[1, 0], [0, 1]]]
    """
    w = np.asarray(weights)
    n, cells = w.shape[0], int(np.prod(w.shape[1:]))
    if not 0 <= k < cells:
        raise ValueError(f"k must be in [0, {cells - 1}] (keep at least one cell), got {k}")
    order = np.argsort(-w.reshape(n, cells), axis=1, kind="stable")[:, :k]
    keep = np.ones((n, cells), dtype=bool)
    np.put_along_axis(keep, order, False, axis=1)
    return keep.reshape(w.shape)


def ablated_attention(variant: str, logits: np.ndarray, temperature: float = 1.0,
                      prior: np.ndarray | None = None, k: int = 0) -> np.ndarray:
    """``(N, H, W)`` attention of one variant (see the module docstring), float64, computed
    by the :mod:`xcos_xai.core` attention modules on the cached logits."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    grid = z.new_zeros(z.shape[0], 1, *z.shape[1:])  # the modules read only its shape
    learned = CachedLogitsAttention(z, temperature)
    if variant == "learned":
        module = learned
    elif variant == "uniform":
        module = UniformAttention()
    elif variant == "prior":
        if prior is None:
            raise ValueError('variant "prior" needs prior=<(H, W) or (N, H, W) map>')
        module = PriorAttention(torch.as_tensor(np.asarray(prior, dtype=np.float64)))
    elif variant == "learned, top-k masked":
        keep = top_k_keep_mask(learned(grid, grid).numpy(), k)
        module = MaskedAttention(learned, torch.from_numpy(keep))
    else:
        raise ValueError(f"unknown variant {variant!r}: choose one of {VARIANTS}")
    with torch.no_grad():
        return module(grid, grid).numpy()


def fold_priors(attention: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """``(N, H, W)``: for each pair, the mean attention over the pairs of the OTHER folds."""
    folds = np.asarray(folds)
    out = np.empty_like(np.asarray(attention, dtype=np.float64))
    for f in np.unique(folds):
        out[folds == f] = attention[folds != f].mean(axis=0)
    return out


def fold_maps(features, index, name: str = "dlib-xcos") -> tuple[np.ndarray, np.ndarray, float]:
    """``(S, logits, T)`` of every LFW pair from its held-out fold head (no backbone run)."""
    grids = features.grids[bundle_metadata(name)["config"]["grid"]]
    n = len(index.same)
    h, w = grids.shape[-2:]
    cos_maps, logits = np.zeros((n, h, w), np.float32), np.zeros((n, h, w), np.float32)
    temperature = 1.0
    with torch.no_grad():
        for k in range(10):
            head, _, _ = load_head(name, fold=k)
            temperature = float(head.attention.temperature)
            sel = np.flatnonzero(index.pair_fold == k)
            fa = head.adapt(grids[index.pair_a[sel]].float())
            fb = head.adapt(grids[index.pair_b[sel]].float())
            cos_maps[sel] = patch_cosine_map(fa, fb).numpy()
            logits[sel] = head.attention.logits(fa, fb).numpy()
    return cos_maps, logits, temperature


class AttentionAblation:
    """Accuracy of each attention variant over a benchmark, and its effect on one pair.

    Args:
        cos_maps: ``(N, H, W)`` patch cosines S (held-out heads).
        logits: ``(N, H, W)`` the learned attention's logits for the same pairs.
        temperature: the learned attention's own temperature (the slider's start).
        same, folds: ``(N,)`` labels and protocol folds.
        model_cosine: ``(N,)`` the plugged model's cosine (a reference bar), optional.
        explain: ``(pair, attention (H, W)) -> PairExplanation`` for the one-pair view.
        captions: ``pair -> str``.

    Widgets: ``k``, ``temperature``, ``variant``, ``pair``; views: ``table`` (DataFrame),
    ``bars`` and ``figure`` (FigureWidgets), ``pair_scores`` (HTML).
    """

    def __init__(self, cos_maps, logits, temperature: float, same, folds, explain: Callable,
                 model_cosine=None, captions=None, start: int = 0):
        self.cos_maps = np.asarray(cos_maps, dtype=np.float64)
        self.logits = np.asarray(logits, dtype=np.float64)
        self.same, self.folds = np.asarray(same, dtype=bool), np.asarray(folds)
        self.base_temperature = float(temperature)
        self.model_cosine = None if model_cosine is None else np.asarray(model_cosine)
        self.priors = fold_priors(softmax_cells_np(self.logits, temperature), self.folds)
        self._explain, self._captions = explain, captions or (lambda i: f"pair {i}")
        cells = int(np.prod(self.cos_maps.shape[1:]))
        self.k = W.IntSlider(value=1, min=0, max=cells - 1, description="top-k masked",
                             continuous_update=False, style=LABEL_STYLE,
                             layout=W.Layout(width="420px"))
        self.temperature = W.FloatLogSlider(value=self.base_temperature, base=10, min=-1.5,
                                            max=1.5, step=0.05, description="temperature T",
                                            readout_format=".3g", continuous_update=False,
                                            style=LABEL_STYLE, layout=W.Layout(width="420px"))
        self.variant = W.Dropdown(options=VARIANTS, value="learned", description="one pair",
                                  style=LABEL_STYLE, layout=W.Layout(width="320px"))
        self.pair = W.BoundedIntText(value=start, min=0, max=len(self.same) - 1,
                                     description="pair #", style=LABEL_STYLE,
                                     layout=W.Layout(width="180px"))
        self.pair_scores = W.HTML()
        self._y_range = (85.0, 100.5)
        self._recompute()
        self.bars = go.FigureWidget(self._bars())
        self.figure = pair_figure_widget(pair_figure(self._pair_explanation(),
                                                      overlay_opacity=0.0))
        self._update_pair_text()
        for control in (self.k, self.temperature):
            control.observe(self._on_slider, "value")
        for control in (self.variant, self.pair):
            control.observe(self._on_pair, "value")
        self.widget = W.VBox([W.HBox([self.k, self.temperature]), self.bars,
                              W.HBox([self.pair, self.variant]), self.pair_scores, self.figure])

    @classmethod
    def from_lfw(cls, evaluation=None, start: int = 0) -> AttentionAblation:
        """dlib's bundled fold heads on LFW View 2 (fold-held-out, from the feature cache).

        dlib's only: its W is learned (logits and a temperature to move). SFace's bundled W
        is the untrained norm weighting, with neither (and no trained attention to ablate).
        """
        ev = evaluation or HeldOutEvaluation.load()
        if ev.bundle != "dlib-xcos":
            raise ValueError(f"the attention ablation needs dlib's learned attention, got an "
                             f"evaluation of {ev.bundle!r}: use HeldOutEvaluation.load() "
                             "(model='dlib')")
        s, logits, t = fold_maps(ev.features, ev.index)
        ablation = cls(s, logits, t, ev.index.same, ev.index.pair_fold,
                       explain=lambda i, w: ev.explanation(i, attention=w),
                       model_cosine=ev.model_cosine, captions=ev.caption, start=start)
        ablation.evaluation = ev
        return ablation

    def _ipython_display_(self):
        display(self.widget)

    # ------------------------------------------------------------------ numbers

    def attention(self, variant: str) -> np.ndarray:
        """``(N, H, W)`` W of ``variant`` at the current k and temperature."""
        return ablated_attention(variant, self.logits, self.temperature.value, self.priors,
                                 self.k.value)

    def _recompute(self) -> None:
        rows, self.scores, self.thresholds = [], {}, {}
        for variant in VARIANTS:
            scores = (self.cos_maps * self.attention(variant)).sum(axis=(1, 2))
            res = ten_fold_accuracy(scores, self.same, self.folds)
            self.scores[variant], self.thresholds[variant] = scores, np.asarray(res.thresholds)
            label = variant.replace("top-k", f"top-{self.k.value}")
            if variant in ("learned", "learned, top-k masked"):
                label += f", T={self.temperature.value:.3g}"
            rows.append({"scorer": label, "variant": variant, "accuracy_mean": 100 * res.mean,
                         "accuracy_std": 100 * res.std, "roc_auc": res.auc})
        self.table = pd.DataFrame(rows)

    def _bars(self) -> go.Figure:
        ref = None
        if self.model_cosine is not None:
            ref = 100 * ten_fold_accuracy(self.model_cosine, self.same, self.folds).mean
        # one y axis for every slider position (widened, never narrowed, when a bar needs it)
        low = float((self.table["accuracy_mean"] - self.table["accuracy_std"]).min())
        self._y_range = (min(self._y_range[0], 5 * np.floor((low - 1) / 5)), 100.5)
        return accuracy_bars(self.table, reference=ref, highlight=self.table["scorer"][
            list(VARIANTS).index(self.variant.value)], y_range=self._y_range,
            highlight_label="the variant shown on one pair below",
            title="10-fold accuracy with each attention (held-out heads)")

    def _pair_explanation(self):
        i, v = self.pair.value, self.variant.value
        e = self._explain(i, self.attention(v)[i].astype(np.float32))
        t = float(self.thresholds[v][self.folds[i]])
        return replace(e, threshold=t, same=e.score > t)

    def _update_pair_text(self) -> None:
        i = self.pair.value
        cells = []
        for v in VARIANTS:
            s, t = self.scores[v][i], self.thresholds[v][self.folds[i]]
            verdict = "same" if s > t else "different"
            right = verdict == ("same" if self.same[i] else "different")
            cells.append(f"<tr><td>{html.escape(v)}</td><td>{s:.4f}</td><td>{t:.4f}</td>"
                         f"<td style='color:{'#2166ac' if right else '#b2182b'}'>{verdict}"
                         "</td></tr>")
        style = ("<style>.xcos-pair-scores td,.xcos-pair-scores th{padding:2px 14px 2px 0;"
                 "text-align:left}</style>")
        self.pair_scores.value = (
            f"{style}<b>{html.escape(self._captions(i))}</b><table class='xcos-pair-scores'>"
            "<tr><th>attention</th><th>xCos</th><th>fold threshold</th><th>decision</th></tr>"
            + "".join(cells) + "</table>")

    # ------------------------------------------------------------------ callbacks

    def _on_slider(self, _change=None) -> None:
        self._recompute()
        sync_figure(self.bars, self._bars())
        self._on_pair()

    def _on_pair(self, _change=None) -> None:
        sync_figure(self.figure, pair_figure(self._pair_explanation(), overlay_opacity=0.0))
        sync_figure(self.bars, self._bars())
        self._update_pair_text()
