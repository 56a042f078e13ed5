"""``FailureBrowser``: the pairs the 10-fold evaluation gets wrong, each with its explanation."""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from IPython.display import display

from ..viz.notes import is_alignment_failure, notes_line
from ..viz.pair_figure import pair_figure
from ..viz.report import score_histogram
from ._common import LABEL_STYLE, pair_figure_widget
from ._lfw import HeldOutEvaluation
from .pair_explorer import model_label, sync_figure

KINDS = {"all failures": None, "false accepts": "false accept", "false rejects": "false reject"}
ORDERS = ("worst miss first", "closest miss first")


def failure_table(scores, same, thresholds, captions=None) -> pd.DataFrame:
    """The misclassified pairs at per-pair thresholds, worst miss first.

    A pair is decided "same" when ``score > threshold``. A false accept is an impostor pair
    decided same; a false reject a genuine pair decided different. ``miss`` is how far the
    score is on the wrong side: ``|score - threshold|``.

    Example:
        >>> t = failure_table([0.9, 0.2, 0.6, 0.4], [False, True, True, False], [0.5] * 4)
        >>> t[["pair", "kind", "miss"]].round(2).values.tolist()
        [[0, 'false accept', 0.4], [1, 'false reject', 0.3]]
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(same, dtype=bool)
    t = np.broadcast_to(np.asarray(thresholds, dtype=float), s.shape)
    decided = s > t
    wrong = np.flatnonzero(decided != y)
    frame = pd.DataFrame({
        "pair": wrong,
        "kind": np.where(y[wrong], "false reject", "false accept"),
        "score": s[wrong], "threshold": t[wrong], "miss": np.abs(s[wrong] - t[wrong]),
    })
    if captions is not None:
        frame["caption"] = [captions(int(i)) for i in wrong]
    return frame.sort_values(["miss", "pair"], ascending=[False, True],
                             ignore_index=True)


class FailureBrowser:
    """Browse false accepts and false rejects; sort by how far they miss the threshold.

    Args:
        scores, same, thresholds: per pair (thresholds: the one that decides each pair).
        explain: ``pair index -> PairExplanation`` for the selected failure.
        captions: ``pair index -> str``.
        title: of the score histogram.

        notes: ``pair index -> str``: how its faces were found when not cleanly (e.g. "face
            B: no face found: fixed box"), ``""`` otherwise, in the table's ``alignment``
            column; alignment failures (no face found, a black band) are marked "⚠" in the
            list and ``True`` in the ``alignment_failure`` column.

    Widgets: ``kind`` (all / false accepts / false rejects), ``order``, ``failure`` (the
    selected pair index), and the figures ``figure`` (the explanation) and ``histogram``.
    """

    def __init__(self, scores, same, thresholds, explain: Callable, captions=None,
                 title: str = "xCos (held-out fold heads)", notes: Callable | None = None):
        self.scores = np.asarray(scores, dtype=float)
        self.same = np.asarray(same, dtype=bool)
        self.table = failure_table(scores, same, thresholds, captions or (lambda i: f"pair {i}"))
        if self.table.empty:
            raise ValueError("no failures to browse: every pair is decided correctly")
        self.table["alignment"] = [notes(int(i)) if notes else "" for i in self.table["pair"]]
        self.table["alignment_failure"] = self.table["alignment"].map(is_alignment_failure)
        self._explain = explain
        self._cache: dict[int, object] = {}
        self.kind = W.ToggleButtons(options=list(KINDS), value="all failures")
        self.order = W.Dropdown(options=ORDERS, value=ORDERS[0], description="order",
                                style=LABEL_STYLE, layout=W.Layout(width="260px"))
        self.failure = W.Select(options=self._options(), rows=8,
                                layout=W.Layout(width="100%"))
        self.summary = W.HTML()
        self.explanation = self._get(self.failure.value)
        self.figure = pair_figure_widget(pair_figure(self.explanation, overlay_opacity=0.0))
        hist = score_histogram(self.scores, self.same, float(np.mean(thresholds)), title,
                               "mean threshold")
        hist.add_trace(go.Scatter(x=[self.explanation.score], y=[0], mode="markers",
                                  name="selected pair",
                                  marker=dict(symbol="triangle-up", size=16, color="black")))
        self.histogram = go.FigureWidget(hist)
        self.kind.observe(self._on_filter, "value")
        self.order.observe(self._on_filter, "value")
        self.failure.observe(self._on_select, "value")
        self._update_text()
        counts = self.table["kind"].value_counts()
        suspect = int(self.table["alignment_failure"].sum())
        self.header = W.HTML(
            f"<b>{len(self.table)}</b> failures of {len(self.scores)} pairs: "
            f"{counts.get('false accept', 0)} false accepts, "
            f"{counts.get('false reject', 0)} false rejects"
            + (f"; ⚠ {suspect} alignment failures (no face found, or a black band)"
               if suspect else ""))
        self.widget = W.VBox([self.header, W.HBox([self.kind, self.order]), self.failure,
                              self.summary, self.figure, self.histogram])

    @classmethod
    def from_lfw(cls, evaluation=None, model: str = "dlib") -> FailureBrowser:
        """The failures of a model's bundled fold heads on LFW View 2 (10-fold protocol).

        Args:
            evaluation: a :class:`HeldOutEvaluation` (its model wins), or ``None`` to load
                ``model``'s.
            model: ``"dlib"`` (default) or ``"sface"`` (or a bundle name).

        Cost: the scores of all 6000 pairs need the model's features of all 13,233 LFW
        photos. From the feature cache that takes seconds; without it they are computed
        once: about 5 minutes on 2 CPU cores for dlib, about 20 for SFace. (The notebooks
        browse dlib's failures; the pair explorer shows SFace on any single pair in a
        fraction of a second.)
        """
        ev = evaluation or HeldOutEvaluation.load(model=model)
        title = f"xCos, {model_label(ev.bundle)} (held-out fold heads)"
        browser = cls(ev.result.scores, ev.index.same, ev.pair_thresholds, ev.explanation,
                      captions=ev.caption, notes=ev.alignment_notes, title=title)
        browser.evaluation = ev
        return browser

    def _ipython_display_(self):
        display(self.widget)

    def visible(self) -> pd.DataFrame:
        """The failures the current filter and order show, in order."""
        kind = KINDS[self.kind.value]
        rows = self.table if kind is None else self.table[self.table["kind"] == kind]
        if self.order.value == ORDERS[1]:
            rows = rows.iloc[::-1]
        return rows

    def _options(self) -> list[tuple[str, int]]:
        return [(f"{'⚠ ' if r.alignment_failure else ''}{r.kind}, misses by {r.miss:.4f}: "
                 f"{r.caption}", int(r.pair)) for r in self.visible().itertuples(index=False)]

    def _get(self, i: int):
        if i not in self._cache:
            self._cache[i] = self._explain(int(i))
        return self._cache[i]

    def _update_text(self) -> None:
        row = self.table[self.table["pair"] == self.failure.value].iloc[0]
        e = self.explanation
        agree = ("the model's own cosine gets it right" if (e.model_same != (row.kind ==
                 "false accept")) else "the model's own cosine makes the same mistake")
        note = notes_line(e)
        self.summary.value = (f"<b>{html.escape(row.kind)}</b>: {html.escape(row.caption)}"
                              f"<br>xCos {row.score:.4f} vs threshold {row.threshold:.4f} "
                              f"(misses by {row.miss:.4f}); model cosine {e.model_cosine:.4f} "
                              f"vs {e.model_threshold:.4f}: {agree}"
                              + (f"<br><span style='background:#ffdd57;padding:0 4px'>"
                                 f"{'⚠ ' if is_alignment_failure(note) else ''}"
                                 f"{html.escape(note)}</span>" if note else ""))

    def _on_filter(self, _change=None) -> None:
        options, before = self._options(), self.failure.value
        values = [v for _, v in options]
        # new options reset the selection to the first: keep the pair when it is still listed
        self.failure.options = options
        if values:
            self.failure.value = before if before in values else values[0]

    def _on_select(self, change) -> None:
        if change["new"] is None:
            return
        self.explanation = self._get(change["new"])
        sync_figure(self.figure, pair_figure(self.explanation, overlay_opacity=0.0))
        self.histogram.data[-1].x = [self.explanation.score]
        self._update_text()
