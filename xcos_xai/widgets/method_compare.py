"""``MethodComparer``: two explanation methods and one faithfulness protocol on one pair.

The measures are those of the ``xcos-xai compare`` run, called the same way
(:mod:`xcos_xai.evaluation.faithfulness`: :func:`~.faithfulness.face_a_replacement`,
:func:`~.faithfulness.replacement_curves`; :func:`~.field_protocols.road_measures`), with
the run's options (:class:`~.faithfulness.CompareConfig`): face A is changed in 10x10-pixel
units in the order of its map, genuine pairs the supporting part first, impostor pairs the
opposing part first, and rescored against the unchanged face B.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import display

from ..core import XCosModel
from ..data.align import faces_to_tensor
from ..data.aligners import aligner_for, lfw_aligner_for
from ..evaluation.faithfulness import (
    CompareConfig,
    decision_threshold,
    face_a_replacement,
    replacement_curves,
)
from ..evaluation.field_protocols import reseed_for_pair, road_measures
from ..explainers import create_explainer
from ..explainers.metrics import curve_auc
from ..pretrained import bundle_input_spec, bundle_name, load_pretrained
from ..viz.attribution_figure import attribution_figure
from ..viz.compare_figures import pair_curve_figure
from ._common import LABEL_STYLE, available_methods, lfw_or_none, method_label
from .pair_explorer import PairSource, lfw_pairs, photo_pairs, source_key, sync_figure

CONTROL = "random"
# The two figures side by side where the notebook is wide enough (they wrap below otherwise).
MAP_FIGURE_SIZE = (470, 600)  # (width, height) px: both methods' rows, faces A and B
CURVE_FIGURE_SIZE = (560, 600)


@dataclass(frozen=True)
class Protocol:
    """One protocol of the menu: its title, the measure of the compare run it reads
    (``group``: ``"replacement"`` or ``"road"``; ``key``: the curve in that group's
    record) and its x axis."""

    title: str
    group: str
    key: str
    x_title: str
    decision: bool = False  # mark where the decision at the pair's threshold flips


PROTOCOLS = {
    "deletion": Protocol("deletion towards the blurred face", "replacement", "deletion",
                         "fraction of face A replaced by its blurred copy"),
    "insertion": Protocol("insertion from the blurred face", "replacement", "insertion",
                          "fraction of face A restored into its blurred copy"),
    "road_morf": Protocol("ROAD MoRF (noisy linear imputation)", "road", "road_morf",
                          "fraction of face A removed (most relevant first) and imputed"),
    "road_lerf": Protocol("ROAD LeRF (noisy linear imputation)", "road", "road_lerf",
                          "fraction of face A removed (least relevant first) and imputed"),
    "decision": Protocol("decision at the pair's threshold (deletion)", "replacement",
                         "deletion", "fraction of face A replaced by its blurred copy",
                         decision=True),
}


@dataclass
class ProtocolCurve:
    """One method's curve of the shown protocol on the shown pair.

    Attributes:
        method: the explainer's registry name.
        fractions: ``(K,)`` fractions of face A changed.
        scores: ``(K,)`` pair scores after each step.
        auc: :func:`~xcos_xai.explainers.metrics.curve_auc` of the curve.
        flip: the first fraction (of all but 100 %, as the compare run's FNMR/FMR) at which
            the decision at the pair's threshold is wrong (genuine: rejected; impostor:
            accepted), or ``None``; only for the decision protocol.
    """

    method: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: float
    flip: float | None = None


@dataclass
class _Pair:
    """A pair ready to measure: its model, faces, inputs, score and protocol pieces."""

    index: int
    model: object
    face_a: np.ndarray
    face_b: np.ndarray
    x_a: torch.Tensor
    x_b: torch.Tensor
    score: float
    threshold: float
    same: bool
    truth_known: bool
    score_fn: object
    base_a: torch.Tensor


class MethodComparer:
    """Two methods' maps over one pair's faces, and one protocol's curves of both.

    Args:
        pairs: the pairs to choose from (:func:`~.pair_explorer.lfw_pairs`,
            :func:`~.pair_explorer.photo_pairs`).
        model: ``None`` (the default bundle, ``"dlib-xcos"``), a bundle or model name
            (``"sface-xcos"``, ``"sface"``): a pair of LFW fold ``k`` is explained by the
            bundle's head of fold ``k`` (as ``xcos-xai compare`` does); or an
            :class:`~xcos_xai.core.XCosModel` used for every pair.
        aligner: the aligner of dataset pairs (those with a fold; default: the model's LFW
            aligner on the chip cache); other photos get the model's aligner.
        methods: the methods offered (default :func:`~._common.available_methods`: every
            registered explainer).
        method_a, method_b, protocol: what is shown first (a protocol of
            :data:`PROTOCOLS`).
        config: the measures' options (default: those of ``xcos-xai compare``).
        start: the index of the pair shown first.

    The controls are attributes (``pair``, ``method_a``, ``method_b``, ``protocol``); each
    has its status beside it (``pair_status``, ``status_a``, ``status_b``,
    ``protocol_status``: "computing ..." while it works, then any error). Explanations are
    cached per (pair, method) and curves per (pair, method, protocol), so switching the
    protocol reuses the maps and switching method B recomputes only B. :meth:`select` sets
    several controls at once; :attr:`curves` holds the numbers drawn.
    """

    def __init__(self, pairs: list[PairSource], model=None, aligner=None,
                 methods: list[str] | None = None, method_a: str = "xcos",
                 method_b: str = "integrated_gradients", protocol: str = "deletion",
                 config: CompareConfig | None = None, start: int = 0):
        if not pairs:
            raise ValueError("MethodComparer needs at least one pair")
        self.pairs = list(pairs)
        self.methods = list(methods or available_methods())
        if isinstance(model, XCosModel):
            self._bundle, self._fixed_model = None, model
        elif model is None or isinstance(model, str):
            self._bundle, self._fixed_model = bundle_name(model), None
        else:
            raise TypeError(f"model must be None, a bundle name or an XCosModel, got "
                            f"{type(model).__name__}")
        if config is None:
            config = CompareConfig(**({"bundle": self._bundle} if self._bundle else {}))
        self.config = config
        self._check(method_a=method_a, method_b=method_b, protocol=protocol)
        if not 0 <= start < len(self.pairs):
            raise ValueError(f"start={start}: give a pair index from 0 to {len(self.pairs) - 1}")
        self._aligner = aligner
        self._aligners: dict = {}
        self._models: dict = {}
        self._explainers: dict = {}
        self._prepared: dict = {}
        self._maps: dict = {}
        self._curve_records: dict = {}
        self._quiet = False
        self.explainer_calls: dict[str, int] = {}  # per method, what the cache saved
        self.curves: dict[str, ProtocolCurve] = {}

        self.pair = W.BoundedIntText(value=start, min=0, max=len(self.pairs) - 1,
                                     description="pair #", style=LABEL_STYLE,
                                     layout=W.Layout(width="180px"))
        self.pair_label = W.HTML()
        self.pair_status = W.HTML()
        options = [(method_label(m), m) for m in self.methods]
        self.method_a = W.Dropdown(options=options, value=method_a, description="method A",
                                   style=LABEL_STYLE, layout=W.Layout(width="330px"))
        self.method_b = W.Dropdown(options=options, value=method_b, description="method B",
                                   style=LABEL_STYLE, layout=W.Layout(width="330px"))
        self.status_a, self.status_b = W.HTML(), W.HTML()
        self.protocol = W.Dropdown(options=[(p.title, k) for k, p in PROTOCOLS.items()],
                                   value=protocol, description="protocol", style=LABEL_STYLE,
                                   layout=W.Layout(width="420px"))
        self.protocol_status = W.HTML()
        self.summary = W.HTML()

        self.current = self._prepare(start)
        self._shown = (method_a, method_b)
        self.map_figure = go.FigureWidget(self._map_figure())
        self.curve_figure = go.FigureWidget(self._curve_figure())
        self._update_text()

        self.pair.observe(self._on_pair, "value")
        self.method_a.observe(self._on_method, "value")
        self.method_b.observe(self._on_method, "value")
        self.protocol.observe(self._on_protocol, "value")
        row = dict(layout=W.Layout(align_items="center"))
        self.widget = W.VBox([
            W.HBox([self.pair, self.pair_label, self.pair_status], **row),
            W.HBox([self.method_a, self.status_a], **row),
            W.HBox([self.method_b, self.status_b], **row),
            W.HBox([self.protocol, self.protocol_status], **row),
            self.summary,
            W.Box([self.map_figure, self.curve_figure],
                  layout=W.Layout(flex_flow="row wrap", align_items="flex-start")),
        ])

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def auto(cls, model=None, **kwargs) -> MethodComparer:
        """LFW View 2 when the data directory has it (each pair with its fold's head), else
        the shipped photos."""
        lfw = lfw_or_none()
        if lfw is None:
            return cls(photo_pairs(), model=model, **kwargs)
        return cls(lfw_pairs(lfw), model=model, **kwargs)

    def _ipython_display_(self):
        display(self.widget)

    def _check(self, **names) -> None:
        """One clear error for a method or protocol that is not offered."""
        for control, name in names.items():
            if name is None:
                continue
            choices = list(PROTOCOLS) if control == "protocol" else self.methods
            if name not in choices:
                raise ValueError(f"unknown {control.replace('_', ' ')} {name!r}: choose one of "
                                 f"{', '.join(choices)}")

    # ------------------------------------------------------------------ state

    def model(self, fold: int | None = None):
        """The model that explains a pair of ``fold`` (loaded once per fold)."""
        if self._fixed_model is not None:
            return self._fixed_model
        key = fold if self.config.fold_heads else None
        if key not in self._models:
            self._models[key] = load_pretrained(self._bundle, fold=key).eval()
        return self._models[key]

    def _spec(self):
        if self._fixed_model is not None:
            return self._fixed_model.input_spec
        return bundle_input_spec(self._bundle)

    def _aligner_for(self, source: PairSource):
        lfw = source.fold is not None
        if lfw and self._aligner is not None:
            return self._aligner
        if lfw not in self._aligners:
            spec = self._spec()
            self._aligners[lfw] = lfw_aligner_for(spec) if lfw else aligner_for(spec)
        return self._aligners[lfw]

    def _prepare(self, index: int) -> _Pair:
        """Align pair ``index``, score it, build its protocol pieces (cached)."""
        source = self.pairs[index]
        key = source_key(source)
        if key not in self._prepared:
            model = self.model(source.fold)
            aligner = self._aligner_for(source)
            face_a, face_b = aligner(source.a).chip, aligner(source.b).chip
            param = next(model.parameters())
            x = model.input_spec.normalize(faces_to_tensor([face_a, face_b]))
            x = x.to(device=param.device, dtype=param.dtype)
            x_a, x_b = x[:1], x[1:]
            with torch.inference_mode():
                out = model(x_a, x_b)
            target = self.config.target
            score = float((out.score if target == "xcos" else out.model_cosine)[0])
            threshold = decision_threshold(model, target)
            truth_known = source.same is not None
            same = bool(source.same) if truth_known else score > threshold
            score_fn, base_a = face_a_replacement(model, x_a, x_b, self.config)
            self._prepared[key] = _Pair(index, model, face_a, face_b, x_a, x_b, score,
                                        threshold, same, truth_known, score_fn, base_a)
        return self._prepared[key]

    def _explainer(self, method: str, model):
        key = (id(model), method)
        if key not in self._explainers:
            self._explainers[key] = create_explainer(method, model,
                                                     **self.config.method_kwargs(method))
        return self._explainers[key]

    def attribution(self, method: str, pair: _Pair | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(map_a, map_b)``, ``(H, W)`` each: ``method``'s signed maps of the pair's faces
        (default: the shown pair), explaining ``config.target`` with the compare run's
        options (computed once per pair and method)."""
        self._check(method=method)
        pair = pair or self.current
        key = (source_key(self.pairs[pair.index]), method)
        if key not in self._maps:
            explainer = self._explainer(method, pair.model)
            reseed_for_pair(explainer, pair.index, self.config.seed)  # the random floor
            attr = explainer.attribute(pair.x_a, pair.x_b, target=self.config.target).detach()
            self.explainer_calls[method] = self.explainer_calls.get(method, 0) + 1
            self._maps[key] = (attr.map_a[0].float(), attr.map_b[0].float())
        return self._maps[key]

    def curve(self, method: str, protocol: str | None = None,
              pair: _Pair | None = None) -> ProtocolCurve:
        """``method``'s curve of ``protocol`` (default: the shown one) on the pair."""
        self._check(method=method, protocol=protocol)
        pair = pair or self.current
        spec = PROTOCOLS[protocol or self.protocol.value]
        key = (source_key(self.pairs[pair.index]), method, spec.group)
        if key not in self._curve_records:
            map_a = self.attribution(method, pair)[0]
            if spec.group == "road":
                record = road_measures(pair.score_fn, pair.x_a, map_a, pair.same, self.config)
            else:
                record = replacement_curves(pair.score_fn, pair.x_a, pair.base_a, map_a,
                                            pair.same, self.config)
            self._curve_records[key] = record
        scores = np.asarray(self._curve_records[key][spec.key], dtype=np.float64)
        c = self.config
        fractions = (np.asarray(c.road_fractions, dtype=np.float64) if spec.group == "road"
                     else c.fractions(c.deletion_step if spec.key == "deletion"
                                      else c.insertion_step))
        flip = None
        if spec.decision:
            wrong = (scores[:-1] > pair.threshold) != pair.same  # all but 100 %, as FNMR/FMR
            flip = round(float(fractions[int(np.argmax(wrong))]), 6) if wrong.any() else None
        return ProtocolCurve(method, fractions, scores, curve_auc(fractions, scores), flip)

    # ------------------------------------------------------------------ views

    def _map_figure(self) -> go.Figure:
        p = self.current
        a, b = self._shown
        rows = [(method_label(m), *(t.cpu().numpy() for t in self.attribution(m)))
                for m in (a, b)]
        width, height = MAP_FIGURE_SIZE
        fig = attribution_figure(p.face_a, p.face_b, rows, opacity=0.6, height=height,
                                 title="blue: supports same, red: opposes (own scale per row)")
        fig.update_annotations(font_size=12)  # "Integrated Gradients: face A" fits its face
        return fig.update_layout(width=width)

    def _curve_figure(self) -> go.Figure:
        p, spec = self.current, PROTOCOLS[self.protocol.value]
        roles = (("A", self._shown[0]), ("B", self._shown[1]), ("control", CONTROL))
        self.curves = {role: self.curve(m) for role, m in roles}
        wrong = "rejected" if p.same else "accepted"
        names = []
        for role, m in roles:
            c = self.curves[role]
            name = ((f"{role} · " if role != "control" else "")
                    + f"{method_label(m)}: AUC {c.auc:.3f}")
            if spec.decision:
                name += (f", {wrong} from {c.flip:.0%}" if c.flip is not None
                         else f", never {wrong}")
            names.append(name)
        kind = "genuine" if p.same else "impostor"
        first = "supporting" if p.same else "opposing"
        title = (f"{spec.title}<br><sup>{kind} pair: the {first} part of face A first"
                 + ("" if spec.group == "replacement" else " counts as most relevant")
                 + "</sup>")
        y_title = "xCos score" if self.config.target == "xcos" else "model cosine"
        width, height = CURVE_FIGURE_SIZE
        return pair_curve_figure([(n, c.fractions, c.scores)
                                  for n, c in zip(names, self.curves.values())],
                                 controls=(2,), threshold=p.threshold,
                                 flips=[c.flip for c in self.curves.values()],
                                 title=title, x_title=spec.x_title, y_title=y_title,
                                 height=height).update_layout(width=width)

    def _update_text(self) -> None:
        p = self.current
        source = self.pairs[p.index]
        decided = p.score > p.threshold
        truth = (f" &middot; truth: {'same person' if source.same else 'different people'}"
                 if p.truth_known else " &middot; truth unknown: ranked by the decision")
        self.pair_label.value = html.escape(source.label)
        self.summary.value = (
            f"<b>{'xCos' if self.config.target == 'xcos' else 'model cosine'} "
            f"{p.score:.4f}</b> vs threshold {p.threshold:.4f}: "
            f"<b>{'same person' if decided else 'different people'}</b>{truth}")

    def _redraw(self, maps: bool = True) -> None:
        if maps:
            sync_figure(self.map_figure, self._map_figure())
        sync_figure(self.curve_figure, self._curve_figure())
        self._update_text()

    # ------------------------------------------------------------------ programmatic use

    def select(self, pair: int | None = None, method_a: str | None = None,
               method_b: str | None = None, protocol: str | None = None) -> None:
        """Set several controls at once (one redraw); a name not offered is one
        ``ValueError`` and nothing changes."""
        self._check(method_a=method_a, method_b=method_b, protocol=protocol)
        if pair is not None and not 0 <= pair < len(self.pairs):
            raise ValueError(f"pair {pair}: give an index from 0 to {len(self.pairs) - 1}")
        self._quiet = True
        try:
            for control, value in ((self.pair, pair), (self.method_a, method_a),
                                   (self.method_b, method_b), (self.protocol, protocol)):
                if value is not None:
                    control.value = value
        finally:
            self._quiet = False
        self._show(self.pair.value, (self.method_a.value, self.method_b.value),
                   self.pair_status, raise_errors=True)

    # ------------------------------------------------------------------ callbacks

    def _show(self, index: int, methods: tuple[str, str], status: W.HTML,
              what: str = "", maps: bool = True, raise_errors: bool = False) -> None:
        """Compute what is missing for ``index`` and ``methods`` and draw it. While it
        works, ``status`` says "computing ..."; an error is shown there (or raised, for
        :meth:`select`) and the figures keep what they showed."""
        for s in (self.pair_status, self.status_a, self.status_b, self.protocol_status):
            s.value = ""
        previous = (self.current, self._shown)
        status.value = f"<i>computing {html.escape(what)} …</i>".replace("  ", " ")
        try:
            self.current = self._prepare(index)
            self._shown = methods
            self._redraw(maps)
        except Exception as err:  # one message beside the control, not a traceback
            self.current, self._shown = previous
            status.value = _error(str(err))
            if raise_errors:
                raise
            return
        status.value = ""

    def _on_pair(self, change) -> None:
        if not self._quiet:
            self._show(change["new"], self._shown, self.pair_status)

    def _on_method(self, change) -> None:
        if self._quiet:
            return
        status = self.status_a if change["owner"] is self.method_a else self.status_b
        self._show(self.current.index, (self.method_a.value, self.method_b.value), status,
                   what=method_label(change["new"]))

    def _on_protocol(self, change) -> None:
        if not self._quiet:
            self._show(self.current.index, self._shown, self.protocol_status,
                       what=PROTOCOLS[change["new"]].title, maps=False)


def _error(message: str) -> str:
    return f"<span style='color:#b2182b'>{html.escape(message)}</span>"
