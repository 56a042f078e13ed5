"""``explain_pair``: why does the model say these two faces are (not) the same person?"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class PairExplanation:
    """The xCos explanation of one pair.

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

    @property
    def model_same(self) -> bool:
        return self.model_cosine > self.model_threshold

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.cos_map.shape)

    def figure(self, **kwargs):
        """An interactive plotly figure (faces with the grid, S, W, evidence; hover values)."""
        from ..viz import pair_figure

        return pair_figure(self, **kwargs)

    def to_dict(self) -> dict:
        """Numbers only (no images), JSON-ready."""
        return {
            "score": self.score, "threshold": self.threshold, "same": self.same,
            "model_cosine": self.model_cosine, "model_threshold": self.model_threshold,
            "model_same": self.model_same, "cos_map": self.cos_map.tolist(),
            "attention": self.attention.tolist(), "contribution": self.contribution.tolist(),
            "info": self.info,
        }

    def _summary_html(self) -> str:
        verdict = "same person" if self.same else "different people"
        agree = "agrees" if self.same == self.model_same else "DISAGREES"
        rows = [("xCos score", f"{self.score:.4f}"), ("threshold", f"{self.threshold:.4f}"),
                ("decision", verdict),
                ("model cosine", f"{self.model_cosine:.4f} (threshold "
                                 f"{self.model_threshold:.4f}, {agree})")]
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td>{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table>{cells}</table>"

    def _repr_html_(self) -> str:
        return self._summary_html() + self.figure().to_html(full_html=False,
                                                            include_plotlyjs="cdn")

    def save_html(self, path: str | Path, include_plotlyjs: bool | str = True) -> Path:
        """A self-contained HTML page (plotly.js inlined by default, so it works offline)."""
        path = Path(path)
        body = self.figure().to_html(full_html=False, include_plotlyjs=include_plotlyjs)
        path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>xCos "
                        "explanation</title></head><body>" + self._summary_html() + body +
                        "<pre>" + html.escape(json.dumps(self.info, indent=1, default=str)) +
                        "</pre></body></html>", encoding="utf-8")
        return path

    def save_png(self, path: str | Path) -> Path:
        """A static PNG of the same panels."""
        from ..viz import save_pair_png

        save_pair_png(self, path)
        return Path(path)


def explain_pair(a, b, model=None, aligner=None, assume_aligned: bool = False,
                 device: str | torch.device | None = None) -> PairExplanation:
    """Explain the verification of two faces with xCos.

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

    Returns:
        A :class:`PairExplanation`.

    Raises:
        ImageError: ``a`` or ``b`` is not a usable image (see
            :func:`~xcos_xai.data.images.load_image`); the message names the file, or the
            argument for in-memory inputs, and the fix.
        NoFaceError: no face was found in ``a`` or ``b`` (and ``assume_aligned`` is false).
    """
    from ..data.align import FaceAligner
    from ..data.aligners import aligner_for
    from ..pretrained import bundle_name, load_pretrained

    if model is None or isinstance(model, str):
        model = load_pretrained(bundle_name(model))
    model = model.eval()
    spec = model.input_spec
    if aligner is None:
        aligner = (aligner_for(spec) if spec.size in ((112, 112), (150, 150))
                   else FaceAligner(chip_size=spec.size[0]))
    faces = [_align_argument(aligner, x, label, assume_aligned) for label, x in (("a", a),
                                                                                 ("b", b))]
    if device is None:
        device = next(model.parameters()).device
    chips = torch.from_numpy(np.stack([f.chip for f in faces])).permute(0, 3, 1, 2)
    dtype = next(model.parameters()).dtype  # e.g. a model moved to float64
    x = spec.normalize(chips).to(device=device, dtype=dtype)
    with torch.inference_mode():
        out = model(x[:1], x[1:])
    threshold = float(model.threshold)
    score = float(out.score[0])
    return PairExplanation(
        score=score, threshold=threshold, same=score > threshold,
        model_cosine=float(out.model_cosine[0]), model_threshold=float(model.model_threshold),
        cos_map=out.cos_map[0].cpu().numpy(), attention=out.attention[0].cpu().numpy(),
        contribution=out.contribution[0].cpu().numpy(),
        face_a=faces[0].chip, face_b=faces[1].chip,
        info={"model": getattr(model, "name", type(model).__name__),
              "face_a": _face_info(faces[0]), "face_b": _face_info(faces[1])},
    )


def _align_argument(aligner, source, label: str, assume_aligned: bool):
    """One face; an in-memory input's error says which argument (a path names itself)."""
    import os

    from ..data.align import NoFaceError
    from ..data.images import ImageError

    try:
        return aligner(source, assume_aligned=assume_aligned)
    except (ImageError, NoFaceError) as err:
        if isinstance(source, (str, os.PathLike)):
            raise
        raise type(err)(f"explain_pair argument {label}: {err}") from None


def _face_info(face) -> dict:
    keys = ("source", "n_faces_found", "reason", "box")
    return {k: getattr(face, k) for k in keys if hasattr(face, k)}
