"""``explain_pair``: why does the model say these two faces are (not) the same person?

One result type, :class:`PairExplanation`, for every method of the explainer registry: the
xCos numbers of the pair (score, S, W, S*W, the model's cosine), the method's signed maps
over both faces, the evidence ``(S - t) * W`` and the views (``figure``, ``save_html``,
``save_png``, ``_repr_html_``).
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core import evidence_map
from ..data.align import FaceAligner, NoFaceError, faces_to_tensor
from ..data.aligners import aligner_for
from ..data.images import ImageError
from ..explainers import create_explainer, explainer_class
from ..pretrained import bundle_name, load_pretrained
from ..viz import pair_figure, save_pair_png
from ..viz.attribution_figure import attribution_figure, save_attribution_png
from ..viz.writers import write_html

# whether a PairExplanation's _repr_html_ has inlined plotly.js in this kernel (see there)
_PLOTLYJS_SHOWN = [False]


@dataclass
class PairExplanation:
    """The explanation of one pair, by xCos or another method of the explainer registry.

    Attributes (stable names that tools can rely on):
        score: the xCos score, ``sum(cos_map * attention)``.
        threshold: the decision threshold on ``score``.
        same: ``score > threshold``, the decision.
        model_cosine: the plugged model's own embedding cosine for the pair.
        model_threshold: the model's own threshold on ``model_cosine``.
        cos_map: ``(H, W)`` patch cosine map S.
        attention: ``(H, W)`` attention W (sums to 1).
        contribution: ``(H, W)`` S * W (sums to ``score``).
        face_a, face_b: the aligned faces the model saw, ``(h, w, 3)`` uint8 RGB.
        info: where the faces came from and how they were aligned, the model's name.
        method: the explainer's registry name (``"xcos"``, ``"gradcam"``, ...).
        target: the score the method explains, ``"xcos"`` or ``"model_cosine"``.
        map_a, map_b: ``(h, w)`` the method's signed maps over face A and face B (positive:
            supports "same person"); for xCos the evidence of each cell over its pixels.
            ``None`` for explanations built from cached maps alone (no method was run).
        map_name: for xCos, the map shown as the evidence (the explainer's ``map``: by
            default ``"amortised_fine"`` when the model has its map statistics with finer
            blocks, ``"amortised"`` when they have only the cells' (SFace), else
            ``"evidence"``, the ``(S - t) * W`` of :meth:`evidence`); ``None``: ``(S - t) * W``.
        map_note: one sentence that explains that map to a user.
        map_grid_a, map_grid_b: that map of face A and of face B at its own resolution
            (the xCos cells, or the finer blocks of ``"amortised_fine"``), or ``None``.
    """

    score: float
    threshold: float
    same: bool
    model_cosine: float
    model_threshold: float
    cos_map: np.ndarray
    attention: np.ndarray
    contribution: np.ndarray
    face_a: np.ndarray
    face_b: np.ndarray
    info: dict = field(default_factory=dict)
    method: str = "xcos"
    target: str = "xcos"
    map_a: np.ndarray | None = None
    map_b: np.ndarray | None = None
    map_name: str | None = None
    map_note: str = ""
    map_grid_a: np.ndarray | None = None
    map_grid_b: np.ndarray | None = None

    @property
    def model_same(self) -> bool:
        return self.model_cosine > self.model_threshold

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.cos_map.shape)

    @property
    def label(self) -> str:
        """The method's short label, e.g. ``"Grad-CAM"``."""
        return explainer_class(self.method).short_label

    @property
    def _shows_xcos_maps(self) -> bool:
        return self.map_a is None or explainer_class(self.method).xcos_maps

    def evidence(self, threshold: float | None = None) -> np.ndarray:
        """``(H, W)`` the evidence ``(S - t) * W`` (sums to ``score - t``); ``t`` defaults to
        the explanation's threshold."""
        t = self.threshold if threshold is None else threshold
        return evidence_map(np.asarray(self.cos_map), np.asarray(self.attention), t)

    def _title(self) -> str:
        verdict = "same person" if self.same else "different people"
        return (f"{self.label}: xCos {self.score:.4f} vs threshold {self.threshold:.4f}, "
                f"{verdict} | model cosine {self.model_cosine:.4f}")

    def figure(self, **kwargs):
        """An interactive plotly figure: for xCos the faces with the grid, S, W and the
        evidence (``kwargs`` as :func:`~xcos_xai.viz.pair_figure.pair_figure`); for another
        method its signed maps over both faces."""
        if self._shows_xcos_maps:
            return pair_figure(self, **kwargs)
        return attribution_figure(self.face_a, self.face_b,
                                  [(self.label, self.map_a, self.map_b)],
                                  title=kwargs.get("title") or self._title())

    def to_dict(self) -> dict:
        """Numbers only (no images), JSON-ready."""
        return {
            "score": self.score, "threshold": self.threshold, "same": self.same,
            "model_cosine": self.model_cosine, "model_threshold": self.model_threshold,
            "model_same": self.model_same, "cos_map": self.cos_map.tolist(),
            "attention": self.attention.tolist(), "contribution": self.contribution.tolist(),
            "method": self.method, "target": self.target, "info": self.info,
            "map_name": self.map_name, "map_note": self.map_note,
            "map_grid_a": None if self.map_grid_a is None else self.map_grid_a.tolist(),
            "map_grid_b": None if self.map_grid_b is None else self.map_grid_b.tolist(),
        }

    def _summary_html(self) -> str:
        verdict = "same person" if self.same else "different people"
        agree = "agrees" if self.same == self.model_same else "DISAGREES"
        rows = [("xCos score", f"{self.score:.4f}"), ("threshold", f"{self.threshold:.4f}"),
                ("decision", verdict),
                ("model cosine", f"{self.model_cosine:.4f} (threshold "
                                 f"{self.model_threshold:.4f}, {agree})")]
        if self.map_note:
            rows.append(("evidence map", f"{self.map_name}: {self.map_note}"))
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td>{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table>{cells}</table>"

    def _repr_html_(self) -> str:
        """The summary table and the figure, offline: the first explanation a kernel shows
        inlines plotly.js (about 5 MB), the later ones use it from the page. (JupyterLab,
        Notebook 7 and VS Code; the classic Notebook's require.js hides the inlined plotly.js:
        there call ``.figure()``, which plotly renders itself.)"""
        first = not _PLOTLYJS_SHOWN[0]
        _PLOTLYJS_SHOWN[0] = True
        return self._summary_html() + self.figure().to_html(full_html=False,
                                                            include_plotlyjs=first)

    def save_html(self, path: str | Path, include_plotlyjs: bool | str = True) -> Path:
        """A self-contained HTML page (plotly.js inlined by default, so it works offline),
        written atomically: a failed write leaves the previous file or none."""
        body = self.figure().to_html(full_html=False, include_plotlyjs=include_plotlyjs)
        return write_html(path, "<!doctype html><html><head><meta charset='utf-8'><title>xCos "
                          "explanation</title></head><body>" + self._summary_html() + body +
                          "<pre>" + html.escape(json.dumps(self.info, indent=1, default=str)) +
                          "</pre></body></html>")

    def save_png(self, path: str | Path) -> Path:
        """A static PNG of the same panels."""
        if self._shows_xcos_maps:
            save_pair_png(self, path)
        else:
            save_attribution_png(self.face_a, self.face_b, [(self.label, self.map_a, self.map_b)],
                                 path, title=self._title())
        return Path(path)


_XCOS_NUMBERS = ("cos_map", "attention", "contribution", "xcos", "model_cosine")


def explain_pair(a, b, model=None, aligner=None, assume_aligned: bool = False,
                 device: str | torch.device | None = None, method: str = "xcos",
                 target: str = "xcos", **method_options) -> PairExplanation:
    """Explain the verification of two faces: alignment, then the explainer registry.

    Example (not run: it needs a photo pair)::

        e = explain_pair("a.jpg", "b.jpg")                     # xCos's own maps
        e.map_name, e.map_note      # the evidence shown: "amortised_fine" and what it means
        p = explain_pair("a.jpg", "b.jpg", map="contribution")  # the paper's S * W
        g = explain_pair("a.jpg", "b.jpg", method="gradcam")   # Grad-CAM of the xCos score
        g.figure(); g.save_html("gradcam.html"); g.map_a.shape  # (150, 150)

    Args:
        a, b: photos: paths, PIL images, ``(H, W, 3)`` arrays or tensors. Faces are found
            and aligned the way the model expects (the largest, most central face when there
            are several; a warning says so).
        model: an :class:`~xcos_xai.core.XCosModel`, or the name of a bundled one
            (``"dlib"``, ``"sface"`` or a bundle such as ``"sface-xcos"``); default:
            :func:`xcos_xai.load_pretrained`.
        aligner: a :class:`~xcos_xai.data.align.FaceAligner`; default: one matching the model
            (:func:`~xcos_xai.data.aligners.aligner_for`: dlib's chips or YuNet + ArcFace).
        assume_aligned: take both images as already aligned faces (no detection).
        device: where the model runs (default: where its parameters are).
        method: a name of :func:`~xcos_xai.explainers.list_explainers` (``"xcos"``,
            ``"gradcam"``, ``"integrated_gradients"``, ``"saliency"``, ``"smoothgrad"``,
            ``"occlusion"``, ``"random"``).
        target: the score the method explains: ``"xcos"`` or ``"model_cosine"``.
        **method_options: the method's options (e.g. ``n_steps=16`` for Integrated
            Gradients), see its class.

    Returns:
        A :class:`PairExplanation` (the xCos numbers of the pair whatever the method).

    Raises:
        ImageError: ``a`` or ``b`` is not a usable image (see
            :func:`~xcos_xai.data.images.load_image`); the message names the file, or the
            argument for in-memory inputs, and the fix.
        NoFaceError: no face was found in ``a`` or ``b`` (and ``assume_aligned`` is false).
    """
    if model is None or isinstance(model, str):
        model = load_pretrained(bundle_name(model))
    model = model.eval()
    explainer = create_explainer(method, model, **method_options)  # a bad name fails first
    spec = model.input_spec
    if aligner is None:
        aligner = (aligner_for(spec) if spec.size in ((112, 112), (150, 150))
                   else FaceAligner(chip_size=spec.size[0]))
    faces = [_align_argument(aligner, x, label, assume_aligned) for label, x in (("a", a),
                                                                                 ("b", b))]
    if device is None:
        device = next(model.parameters()).device
    chips = faces_to_tensor(faces)
    dtype = next(model.parameters()).dtype  # e.g. a model moved to float64
    x = spec.normalize(chips).to(device=device, dtype=dtype)
    attr = explainer.attribute(x[:1], x[1:], target=target).detach()
    numbers = attr.extras
    if not all(k in numbers for k in _XCOS_NUMBERS):  # xCos's explainer ran the model itself
        with torch.inference_mode():
            out = model(x[:1], x[1:])
        numbers = dict(zip(_XCOS_NUMBERS, (out.cos_map, out.attention, out.contribution,
                                           out.score, out.model_cosine)))
    cpu = {k: numbers[k][0].detach().cpu() for k in _XCOS_NUMBERS}
    threshold = float(model.threshold)
    score = float(cpu["xcos"])
    return PairExplanation(
        score=score, threshold=threshold, same=score > threshold,
        model_cosine=float(cpu["model_cosine"]), model_threshold=float(model.model_threshold),
        cos_map=cpu["cos_map"].numpy(), attention=cpu["attention"].numpy(),
        contribution=cpu["contribution"].numpy(),
        face_a=faces[0].chip, face_b=faces[1].chip,
        info={"model": getattr(model, "name", type(model).__name__),
              "face_a": _face_info(faces[0]), "face_b": _face_info(faces[1])},
        method=method, target=target, map_a=attr.map_a[0].float().numpy(),
        map_b=attr.map_b[0].float().numpy(), **_map_fields(explainer, attr))


def _map_fields(explainer, attr) -> dict:
    """The map the explainer chose (its default, or ``map=...``) at its own resolution, and
    its sentence: :class:`PairExplanation`'s ``map_*`` fields."""
    grids = [attr.extras.get(k) for k in ("map_grid_a", "map_grid_b")]
    grids = [None if g is None else g[0].detach().float().cpu().numpy() for g in grids]
    return {"map_name": getattr(explainer, "map", None), "map_note": getattr(explainer, "note", ""),
            "map_grid_a": grids[0], "map_grid_b": grids[1]}


def xcos_map_fields(model, face_a: np.ndarray, face_b: np.ndarray, **options) -> dict:
    """The xCos explainer's map of two aligned faces (``(h, w, 3)`` uint8 chips), as the
    ``map_*`` fields of a :class:`PairExplanation` built from cached numbers (one forward;
    ``options`` as ``explain_pair``'s, e.g. ``map="contribution"``)."""
    explainer = create_explainer("xcos", model, **options)
    x = model.input_spec.normalize(faces_to_tensor([face_a, face_b]))
    x = x.to(dtype=next(model.parameters()).dtype, device=next(model.parameters()).device)
    return _map_fields(explainer, explainer.attribute(x[:1], x[1:]))


def _align_argument(aligner, source, label: str, assume_aligned: bool):
    """One face; an in-memory input's error says which argument (a path names itself)."""
    try:
        return aligner(source, assume_aligned=assume_aligned)
    except (ImageError, NoFaceError) as err:
        if isinstance(source, (str, os.PathLike)):
            raise
        raise type(err)(f"explain_pair argument {label}: {err}") from None


def _face_info(face) -> dict:
    keys = ("source", "n_faces_found", "reason", "box")
    return {k: getattr(face, k) for k in keys if hasattr(face, k)}
