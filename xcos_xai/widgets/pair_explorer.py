"""``PairExplorer``: one pair, its xCos maps, a threshold to move and other methods beside it."""

from __future__ import annotations

import hashlib
import html
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from IPython.display import display

from ..apps.photo_demo import shipped_photos
from ..data.align import faces_to_tensor
from ..data.aligners import lfw_aligner_for
from ..data.images import load_image
from ..explain import explain_pair
from ..explainers import create_explainer
from ..pretrained import (
    BUNDLE_LABELS,
    MODEL_BUNDLES,
    bundle_input_spec,
    bundle_name,
    load_pretrained,
)
from ..viz.attribution_figure import attribution_figure
from ..viz.notes import notes_line
from ..viz.pair_figure import pair_figure
from ._common import (
    LABEL_STYLE,
    XCOS,
    available_methods,
    evidence_map,
    lfw_or_none,
    method_label,
    pair_figure_widget,
)


@dataclass
class PairSource:
    """One pair to explore: two photos (paths or ``(h, w, 3)`` arrays) and where from.

    ``fold`` is the LFW View-2 fold of the pair, so that it is explained by the head that
    never saw its people; ``None`` uses the head trained on all LFW people.
    """

    label: str
    a: object
    b: object
    fold: int | None = None
    same: bool | None = None


def _photo_key(photo) -> tuple:
    """What a photo *is*, for the explanation cache: a file by its resolved path, size and
    modification time; an array by its shape, dtype and a hash of its pixels."""
    if isinstance(photo, (str, os.PathLike)):
        path = Path(photo).expanduser()
        try:
            stat = path.stat()
        except OSError:  # not a file (yet): its name; explaining it fails and caches nothing
            return ("file", str(path))
        return ("file", str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    array = np.ascontiguousarray(np.asarray(photo))
    return ("array", array.shape, array.dtype.str,
            hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest())


def source_key(source: PairSource) -> tuple:
    """The cache key of a pair: its two photos' content and its fold (which picks the head).

    Not ``id(source)``: a short-lived ``PairSource`` (a typed pair of files) is freed when the
    next one replaces it, and CPython gives the next new object that same id.
    """
    return (_photo_key(source.a), _photo_key(source.b), source.fold)


def sync_figure(widget: go.FigureWidget, figure: go.Figure) -> None:
    """Copy a freshly built figure into a live ``FigureWidget`` with the same traces."""
    if len(widget.data) != len(figure.data) or any(
            a.type != b.type for a, b in zip(widget.data, figure.data)):
        raise ValueError("the new figure has other traces than the widget: rebuild the widget")
    with widget.batch_update():
        for old, new in zip(widget.data, figure.data):
            props = new.to_plotly_json()
            props.pop("type", None)
            old.update(props, overwrite=True)
        widget.layout.update(figure.layout.to_plotly_json(), overwrite=True)


def photo_pairs() -> list[PairSource]:
    """Pairs of the photos that installed packages ship (used when LFW is absent)."""
    (name_a, path_a), (name_b, path_b) = shipped_photos().items()
    img_a, img_b = load_image(path_a), load_image(path_b)
    short_a, short_b = name_a.split(" (")[0], name_b.split(" (")[0]
    return [
        PairSource(f"{short_a} vs {short_b}", path_a, path_b, same=False),
        PairSource(f"{short_a} vs her mirror image", img_a,
                   np.ascontiguousarray(img_a[:, ::-1]), same=True),
        PairSource(f"{short_b} vs her mirror image", img_b,
                   np.ascontiguousarray(img_b[:, ::-1]), same=True),
    ]


def lfw_pairs(lfw) -> list[PairSource]:
    """LFW View 2's 6000 pairs in file order, each with its fold."""
    frame = lfw.pairs_frame()
    return [PairSource(f"pair {i} (fold {r.fold}, {'genuine' if r.same else 'impostor'}): "
                       f"{r.name_a} #{r.index_a} vs {r.name_b} #{r.index_b}",
                       lfw.image_root / r.path_a, lfw.image_root / r.path_b, int(r.fold),
                       bool(r.same))
            for i, r in enumerate(frame.itertuples(index=False))]


class PairExplorer:
    """Explore one pair at a time: faces with the grid, S, W and evidence; threshold; methods.

    Args:
        pairs: the pairs to choose from (:func:`lfw_pairs`, :func:`photo_pairs`).
        model: the model shown first: ``"dlib"`` (dlib's face ResNet, 150x150 faces, 4x4
            grid), ``"sface"`` (OpenCV Zoo's SFace, 112x112 faces, 7x7 grid) or a bundle name
            (``"sface-xcos"``); the ``model`` menu switches between them.
        model_for: ``(bundle, fold) -> XCosModel``; default: the bundle's head of that fold
            (``load_pretrained(bundle, fold=...)``: the head trained without that LFW fold's
            people), loaded once per bundle and fold.
        aligner_for: ``bundle -> aligner`` for dataset pairs (those with a fold), e.g.
            :func:`lfw_aligner` (the model's LFW preset on the chip cache); default: the
            aligner :func:`~xcos_xai.explain.explain_pair` picks for the model. Typed photos
            and photos without a fold always get that default.
        methods: explanation methods offered beside xCos (default: :func:`available_methods`).
        start: the index of the pair shown first.

    The widgets are attributes (``pair``, ``model``, ``threshold``, ``opacity``, ``method``,
    ``path_a``, ``path_b``, ``explain_files``) so that code and tests can set them as a
    reader would; ``files_status`` (beside the button) and ``status`` (beside ``method`` and
    ``model``) show errors. Switching ``model`` re-aligns the pair with that model's aligner,
    explains it with that model's head (its fold's, for LFW pairs), redraws both figures and
    moves the threshold to that model's; explanations are cached per model and pair.
    """

    def __init__(self, pairs: list[PairSource], model: str = "dlib",
                 model_for: Callable | None = None, aligner_for: Callable | None = None,
                 methods: list[str] | None = None, start: int = 0):
        if not pairs:
            raise ValueError("PairExplorer needs at least one pair")
        self.pairs = list(pairs)
        self.bundle = bundle_name(model)  # an unknown name: one error naming the choices
        self._model_for = model_for or _default_model
        self._aligner_for = aligner_for
        self._models: dict = {}
        self._aligners: dict = {}
        self._explanations: dict = {}
        self._attributions: dict = {}
        self._quiet = False
        methods = methods or available_methods()
        self.current: PairSource = self.pairs[start]
        self.explanation = self._explain(self.current)

        self.pair = W.BoundedIntText(value=start, min=0, max=len(self.pairs) - 1,
                                     description="pair #", style=LABEL_STYLE,
                                     layout=W.Layout(width="180px"))
        self.pair_label = W.HTML()
        self.model = W.Dropdown(options=[(model_label(b), m) for m, b in MODEL_BUNDLES.items()],
                                value=MODEL_NAMES[self.bundle], description="model",
                                style=LABEL_STYLE, layout=W.Layout(width="260px"))
        self.path_a = W.Text(description="photo A", placeholder="path to a photo",
                             style=LABEL_STYLE, layout=W.Layout(width="48%"))
        self.path_b = W.Text(description="photo B", placeholder="path to a photo",
                             style=LABEL_STYLE, layout=W.Layout(width="48%"))
        self.explain_files = W.Button(description="explain these two photos",
                                      icon="search", layout=W.Layout(width="auto"))
        self.files_status = W.HTML()  # next to the button: what went wrong with the photos
        t = float(self.explanation.threshold)
        self.threshold = W.FloatSlider(value=t, min=max(-1.0, t - 0.5), max=min(1.0, t + 0.5),
                                       step=0.001, readout_format=".3f",
                                       description="threshold", continuous_update=False,
                                       style=LABEL_STYLE, layout=W.Layout(width="420px"))
        self.opacity = W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05,
                                     description="overlay", continuous_update=False,
                                     style=LABEL_STYLE, layout=W.Layout(width="360px"))
        self.method = W.Dropdown(options=[(method_label(m), m) for m in methods], value=XCOS,
                                 description="beside xCos", style=LABEL_STYLE,
                                 layout=W.Layout(width="320px"))
        self.summary = W.HTML()
        self.status = W.HTML()
        self.model_status = W.HTML()  # beside the model menu: a model that failed to load
        self.figure = pair_figure_widget(self._pair_figure())
        self.method_figure = go.FigureWidget(self._method_figure())
        self._method_box = W.Box([self.method_figure])

        self.pair.observe(self._on_pair, "value")
        self.model.observe(self._on_model, "value")
        self.threshold.observe(self._on_threshold, "value")
        self.opacity.observe(self._on_opacity, "value")
        self.method.observe(self._on_method, "value")
        self.explain_files.on_click(self._on_files)
        self._update_text()
        self.widget = W.VBox([
            W.HBox([self.model, self.pair, self.pair_label, self.model_status],
                   layout=W.Layout(align_items="center")),
            W.HBox([self.path_a, self.path_b]),
            W.HBox([self.explain_files, self.files_status],
                   layout=W.Layout(align_items="center")),
            W.HBox([self.threshold, self.opacity]), self.summary, self.figure,
            W.HBox([self.method, self.status], layout=W.Layout(align_items="center")),
            self._method_box,
        ])

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def auto(cls, **kwargs) -> PairExplorer:
        """LFW View 2 when the data directory has it, else the shipped photos."""
        lfw = lfw_or_none()
        if lfw is None:
            return cls(photo_pairs(), **kwargs)
        kwargs.setdefault("aligner_for", lfw_aligner)
        return cls(lfw_pairs(lfw), **kwargs)

    def _ipython_display_(self):
        display(self.widget)

    # ------------------------------------------------------------------ state

    @property
    def decision(self) -> bool:
        """Same person at the slider's threshold: ``score > threshold``."""
        return self.explanation.score > self.threshold.value

    def fold_model(self, fold: int | None = None, bundle: str | None = None):
        """The model that explains pairs of ``fold`` (default: the current model's bundle;
        loaded once per bundle and fold)."""
        key = (bundle or self.bundle, fold)
        if key not in self._models:
            self._models[key] = self._model_for(*key)
        return self._models[key]

    def _explain(self, source: PairSource, bundle: str | None = None):
        bundle = bundle or self.bundle
        key = (bundle, source_key(source))
        if key not in self._explanations:
            kwargs = {}
            if self._aligner_for is not None and source.fold is not None:
                if bundle not in self._aligners:
                    self._aligners[bundle] = self._aligner_for(bundle)
                kwargs["aligner"] = self._aligners[bundle]
            self._explanations[key] = explain_pair(
                source.a, source.b, model=self.fold_model(source.fold, bundle), **kwargs)
        return self._explanations[key]

    def show(self, source: PairSource) -> None:
        """Explain and show ``source`` (the threshold resets to its model's threshold)."""
        self.current = source
        self.explanation = self._explain(source)
        t = float(self.explanation.threshold)
        self._quiet = True  # one redraw below, not one per slider trait
        try:
            self.threshold.min, self.threshold.max = -1.0, 1.0
            self.threshold.value = t
            self.threshold.min, self.threshold.max = max(-1.0, t - 0.5), min(1.0, t + 0.5)
        finally:
            self._quiet = False
        self._redraw()

    def use_model(self, model: str) -> None:
        """Show the current pair with another model (``"dlib"``, ``"sface"`` or a bundle),
        as choosing it in the ``model`` menu does; an unknown name or a model that fails
        raises here (the menu shows the failure instead)."""
        bundle = bundle_name(model)  # an unknown name: one error naming the choices
        self._explain(self.current, bundle)  # a failure raises before anything changes
        self.model.value = MODEL_NAMES[bundle]  # _on_model shows it (from the cache)

    def attribution(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        """``(map_a, map_b)`` of ``method`` for the current pair (computed once, cached).

        xCos: the xCos explainer's map (:attr:`PairExplanation.map_name`: by default the
        amortised occlusion of 8x8 blocks, one map per face), or the evidence
        ``(S - threshold) * W`` on the grid where the model has no map statistics.
        ``"xcos_contribution"`` (the paper's S * W) and the other ``xcos_<map>`` are methods
        of the menu. Other methods: ``create_explainer(method, model).attribute(...)`` of
        the explainers package, explaining the xCos score, at input resolution.
        """
        if method == XCOS:
            e = self.explanation
            if e.map_name not in (None, "evidence") and e.map_grid_a is not None:
                return e.map_grid_a, e.map_grid_b
            ev = evidence_map(e, self.threshold.value)
            return ev, ev
        key = (self.bundle, source_key(self.current), method)
        if key not in self._attributions:
            model = self.fold_model(self.current.fold)
            e = self.explanation
            x = model.input_spec.normalize(faces_to_tensor([e.face_a, e.face_b]))
            explainer = create_explainer(method, model)
            attr = explainer.attribute(x[:1], x[1:], target="xcos").detach()
            self._attributions[key] = (attr.map_a[0].numpy(), attr.map_b[0].numpy())
        return self._attributions[key]

    # ------------------------------------------------------------------ views

    def _pair_figure(self) -> go.Figure:
        return pair_figure(self.explanation, threshold=self.threshold.value
                           if hasattr(self, "threshold") else None,
                           overlay_opacity=self.opacity.value if hasattr(self, "opacity")
                           else 0.0)

    def _method_figure(self) -> go.Figure:
        e = self.explanation
        rows = [(method_label(XCOS), *self.attribution(XCOS))]
        if self.method.value != XCOS:
            rows.append((method_label(self.method.value), *self.attribution(self.method.value)))
        return attribution_figure(e.face_a, e.face_b, rows, opacity=max(self.opacity.value, 0.5),
                                  title=f"{method_label(self.method.value)} beside xCos: "
                                        "where each finds the evidence")

    def _update_text(self) -> None:
        e, t = self.explanation, self.threshold.value
        verdict = "same person" if self.decision else "different people"
        truth = ("" if self.current.same is None else
                 f" &middot; truth: {'same person' if self.current.same else 'different people'}")
        notes = notes_line(e)
        self.pair_label.value = html.escape(self.current.label)
        rows, cols = np.shape(e.cos_map)
        self.summary.value = (
            f"{html.escape(model_label(self.bundle))} ({rows}x{cols} grid): "
            f"<b>xCos {e.score:.4f}</b> vs threshold {t:.4f}: <b>{verdict}</b>{truth} "
            f"&middot; model cosine {e.model_cosine:.4f} (threshold {e.model_threshold:.4f})"
            + (f"<br><span style='background:#ffdd57;padding:0 4px'>{html.escape(notes)}"
               "</span>" if notes else ""))

    def _redraw(self) -> None:
        sync_figure(self.figure, self._pair_figure())
        self._redraw_methods()
        self._update_text()

    def _redraw_methods(self) -> None:
        self.status.value = ""
        try:
            figure = self._method_figure()
        except Exception as err:  # a failing method must not break the explorer
            self.status.value = _error(f"{method_label(self.method.value)} failed: {err}")
            return
        try:
            sync_figure(self.method_figure, figure)
        except ValueError:  # another number of rows: a new widget
            self.method_figure = go.FigureWidget(figure)
            self._method_box.children = [self.method_figure]

    # ------------------------------------------------------------------ callbacks

    def _on_pair(self, change) -> None:
        self.show(self.pairs[change["new"]])

    def _on_model(self, change) -> None:
        """Another model: the same pair, re-aligned and explained by that model's head; a
        model that cannot be loaded leaves everything as it was, with a message."""
        if self._quiet:  # the menu set back after a failure
            return
        before = self.bundle
        self.model_status.value = ""
        self.bundle = bundle_name(change["new"])
        try:
            self._explain(self.current)
        except Exception as err:  # e.g. SFace's package missing: one message, no traceback
            self.bundle = before
            self.model_status.value = _error(f"{model_label(bundle_name(change['new']))}: "
                                             f"{err}")
            if change.get("old") is not None:
                self._quiet = True
                try:
                    self.model.value = change["old"]
                finally:
                    self._quiet = False
            return
        self.show(self.current)

    def _on_threshold(self, change) -> None:
        if not self._quiet:
            self._redraw()

    def _on_opacity(self, change) -> None:
        with self.figure.batch_update():
            for trace in self.figure.data:
                if trace.type == "heatmap" and trace.name and trace.name.startswith("evidence"):
                    trace.opacity = change["new"]
        self._redraw_methods()

    def _on_method(self, change) -> None:
        self.status.value = f"computing {html.escape(method_label(change['new']))} ..."
        self._redraw_methods()

    def _on_files(self, _button=None) -> None:
        """Explain the typed photos; they become the last pair, so "pair #" shows them (and
        the number goes back to any other pair)."""
        a, b = self.path_a.value.strip(), self.path_b.value.strip()
        self.files_status.value = ""
        if not a or not b:
            self.files_status.value = _error("give two photo paths first")
            return
        source = PairSource(f"{Path(a).name} vs {Path(b).name}", a, b)
        try:
            self._explain(source)  # a bad file fails here, before anything changes
        except Exception as err:  # a bad file is one message, not a traceback
            self.files_status.value = _error(str(err))
            return
        key = source_key(source)
        index = next((i for i, p in enumerate(self.pairs) if source_key(p) == key), None)
        if index is None:
            self.pairs.append(source)
            index = len(self.pairs) - 1
            self.pair.max = index
        if self.pair.value == index:
            self.show(self.pairs[index])
        else:
            self.pair.value = index  # _on_pair shows it


def _error(message: str) -> str:
    return f"<span style='color:#b2182b'>{html.escape(message)}</span>"


MODEL_NAMES = {bundle: model for model, bundle in MODEL_BUNDLES.items()}
"""Each bundle's short model name (the ``model`` menu's values)."""


def model_label(bundle: str) -> str:
    """The model's name for menus: ``BUNDLE_LABELS`` without the details in brackets.

    >>> model_label("sface-xcos")
    "OpenCV Zoo's SFace"
    """
    return BUNDLE_LABELS[bundle].split(" (")[0]


def lfw_aligner(bundle: str):
    """The LFW preset of a bundle's aligner on the shared chip cache (dlib's chips for
    ``"dlib-xcos"``, YuNet + ArcFace for ``"sface-xcos"``)."""
    return lfw_aligner_for(bundle_input_spec(bundle))


def _default_model(bundle, fold):
    return load_pretrained(bundle, fold=fold)
