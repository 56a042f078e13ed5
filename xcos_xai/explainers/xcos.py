"""xCos's own maps: the patch cosine S, the attention W and their product, on its grid."""

from __future__ import annotations

import torch

from ..core import evidence_map
from .base import PairExplainer, register_explainer, to_pixels

MAPS = ("evidence", "contribution", "cos_map")


@register_explainer("xcos")
class XCosExplainer(PairExplainer):
    """The maps xCos computes in its forward pass (no gradients, no extra forwards).

    Args:
        model: an :class:`~xcos_xai.core.XCosModel`.
        map: which grid map is the explanation:
            ``"evidence"`` (default): ``(S - t) * W`` with ``t`` the xCos threshold; it sums
            to ``score - t``, so positive cells push towards "same person" and negative
            cells towards "different people" (what the pair figure shows);
            ``"contribution"``: ``S * W`` (sums to the score; the paper's map);
            ``"cos_map"``: ``S`` alone.
        upsample: ``"nearest"`` (default: the cells as they are) or ``"bilinear"``.

    The same grid map explains both faces (cell ``(i, j)`` compares A's and B's cell
    ``(i, j)``), so ``map_a == map_b``. For ``target="model_cosine"`` the maps are those of
    xCos, which approximates the model's cosine (that is what the plug-in head is trained for).
    """

    label = "xCos (S, W, S*W)"
    short_label = "xCos"
    xcos_maps = True

    def __init__(self, model, map: str = "evidence", upsample: str = "nearest", **kwargs):
        super().__init__(model, **kwargs)
        if map not in MAPS:
            raise ValueError(f"unknown xCos map {map!r}: choose one of {MAPS}")
        self.map = map
        self.upsample = upsample

    @torch.no_grad()
    def _attribute(self, x_a, x_b, target):
        out = self.model(x_a, x_b)
        if self.map == "evidence":
            grid = evidence_map(out.cos_map, out.attention, self.model.threshold)
        elif self.map == "contribution":
            grid = out.contribution
        else:
            grid = out.cos_map
        pixels = to_pixels(grid, x_a.shape[-2:], self.upsample)
        score = out.score if target == "xcos" else out.model_cosine
        extras = {"cos_map": out.cos_map, "attention": out.attention,
                  "contribution": out.contribution, "score": score, "xcos": out.score,
                  "model_cosine": out.model_cosine}
        return pixels, pixels.clone(), grid, grid.clone(), extras
