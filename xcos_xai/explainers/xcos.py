"""xCos's own maps: the patch cosine S, the attention W, their product, and the faithful maps
built on the same forward pass (see :mod:`.xcos_maps`)."""

from __future__ import annotations

import torch

from ..core import evidence_map
from .base import PairExplainer, register_explainer, to_grid, to_pixels
from .xcos_maps import (
    MapStats,
    cell_features,
    exact_decomposition,
    feature_cell_deletion,
    fine_features,
    reference_evidence,
    reference_parts,
    shifted_cell_drops,
)

MAPS = ("evidence", "contribution", "cos_map", "evidence_ref", "exact", "exact_ref",
        "cell_deletion", "shift", "amortised", "amortised_fine")
#: one sentence per map, for a user reading the figure (legends, reports)
MAP_NOTES = {
    "evidence": "Each cell's share of the xCos score above the threshold, (S - t) * W: blue "
                "cells push towards 'same person', red cells towards 'different people'.",
    "contribution": "The paper's map S * W: each cell's share of the xCos score (always "
                    "positive where the faces agree).",
    "cos_map": "The patch cosine S: how alike the two faces' cells are.",
    "evidence_ref": "(S - S_ref) * W: each cell's evidence compared with a typical pair of "
                    "different people, so a cell that agrees for every pair counts for nothing.",
    "exact": "The exact split of the model's own cosine over each face's cells.",
    "exact_ref": "The exact split of the model's cosine over each face's cells, relative to "
                 "an average face.",
    "cell_deletion": "How much the score drops when a cell's features are replaced by an "
                     "average face's.",
    "shift": "How much the score drops when a cell is blurred (estimated in feature space).",
    "amortised": "How much the score would drop if each cell were blurred, predicted in one "
                 "pass by a model fitted to measured occlusions (blue: the region supports "
                 "'same person', red: it argues 'different people').",
    "amortised_fine": "How much the score would drop if each 8x8 block of the face were "
                      "blurred, predicted in one pass from measured occlusions (blue: the "
                      "region supports 'same person', red: it argues 'different people').",
}
_NEEDS_STATS = ("evidence_ref", "exact_ref", "cell_deletion", "shift", "amortised",
                "amortised_fine")


def map_available(map: str, stats: MapStats | None) -> bool:
    """Whether map ``map`` can be made with these statistics (``None``: none bundled)."""
    if map not in _NEEDS_STATS:
        return True
    need = {"amortised": "amortiser", "amortised_fine": "fine_amortiser",
            "shift": "occlusion_shift"}.get(map)
    return stats is not None and (need is None or getattr(stats, need, None) is not None)


def best_available_map(stats: MapStats | None) -> str:
    """The most faithful map the model's statistics allow: ``"amortised_fine"``, else
    ``"amortised"``, else ``"evidence"`` (what :class:`XCosExplainer` shows when its default
    needs statistics the model lacks).

    >>> best_available_map(None)
    'evidence'
    """
    return next(m for m in ("amortised_fine", "amortised", "evidence")
                if map_available(m, stats))


@register_explainer("xcos")
class XCosExplainer(PairExplainer):
    """The maps xCos computes in its forward pass (no gradients, no extra image forwards).

    Args:
        model: an :class:`~xcos_xai.core.XCosModel`.
        map: which map is the explanation (default ``"amortised_fine"``, below; the best
            the model's statistics allow when they lack it: :func:`best_available_map`):
            ``"evidence"``: ``(S - t) * W`` with ``t`` the xCos threshold; it sums
            to ``score - t``, so positive cells push towards "same person" and negative
            cells towards "different people" (what the pair figure shows);
            ``"contribution"``: ``S * W`` (sums to the score; the paper's map);
            ``"cos_map"``: ``S`` alone;
            ``"evidence_ref"``: ``(S - S_ref) * W``, ``S_ref`` each cell's mean S over
            training impostor pairs (a cell that agrees for every pair carries no evidence);
            ``"exact"``: the exact split of the model's cosine over each face's cells,
            ``<p_A,i, e_B> / (|e_A| |e_B|)`` (sums to the model cosine; A and B differ);
            ``"exact_ref"``: the same with each cell's share taken relative to the mean face;
            ``"cell_deletion"``: the score drop when the cell's local descriptor is replaced
            by the mean face's (feature space, head calls only);
            ``"shift"``: the score drop when the local grid moves as blurring the cell's
            pixels moves it on average (mean shift measured on training faces);
            ``"amortised"``: the predicted score drop when the cell's *pixels* are replaced
            by the blurred face (amortised occlusion: a ridge model fitted on training folds);
            ``"amortised_fine"`` (default): the same for a finer split of the face (8x8
            blocks of pixels): the pixel maps are finer than the grid; each grid cell is the
            mean of its blocks. On 300 LFW pairs it is the most faithful map measured (FNMR
            0.887 at 30 % replaced, against 0.740 for occlusion), at the cost of one forward.
        stats: the :class:`~.xcos_maps.MapStats` of the reference maps (default: the
            ``map_stats`` that :func:`~xcos_xai.load_pretrained` attaches to the model).
        upsample: ``"nearest"`` (default: the cells as they are) or ``"bilinear"``.

    ``extras["map_grid_a"]``, ``extras["map_grid_b"]`` hold the map at its own resolution
    (the cells, or the 8x8 blocks of ``"amortised_fine"``); :attr:`note` is one sentence
    that explains the map to a user (``MAP_NOTES``).

    A model without map statistics (not from :func:`~xcos_xai.load_pretrained`) falls back to
    ``"evidence"`` when no map is asked for. ``evidence``, ``contribution``, ``cos_map`` and
    ``evidence_ref`` compare A's and B's cell
    ``(i, j)``, so ``map_a == map_b``; the other maps differ per face. The exact maps need a
    ``-local`` grid (the embedding is a sum of per-cell local descriptors); their extras hold
    the ``(B, h*w, h*w)`` cell-pair matrix ``cell_pairs`` (which cell of A matches which of B).
    For ``target="model_cosine"`` the S/W maps are those of xCos, which approximates the
    model's cosine (that is what the plug-in head is trained for).
    """

    label = "xCos (S, W, S*W)"
    short_label = "xCos"
    xcos_maps = True
    passes_per_pair = 2  # the forward of both faces
    # the most faithful map of the 300-pair comparison (issue 13,
    # training/results/faithful_maps/); map="evidence" is the figure's (S - t) * W
    default_map = "amortised_fine"

    def __init__(self, model, map: str | None = None, upsample: str = "nearest",
                 stats: MapStats | None = None, **kwargs):
        super().__init__(model, **kwargs)
        stats = stats if stats is not None else getattr(model, "map_stats", None)
        if map is None:  # the default needs the bundled statistics: without the fine
            # amortiser the cells' amortised occlusion, without any statistics (S - t) * W
            map = self.default_map
            if not map_available(map, stats):
                map = best_available_map(stats)
        if map not in MAPS:
            raise ValueError(f"unknown xCos map {map!r}: choose one of {MAPS}")
        self.map = map
        #: the sentence that explains this map to a user (``MAP_NOTES``)
        self.note = MAP_NOTES[map]
        self.upsample = upsample
        self.stats = stats
        if map in _NEEDS_STATS:
            if self.stats is None:
                raise ValueError(f"xCos map {map!r} needs per-cell reference statistics: load "
                                 "the model with load_pretrained() or pass stats=MapStats(...) "
                                 "(built by training/build_xcos_maps.py)")
            if map == "shift" and self.stats.occlusion_shift is None:
                raise ValueError("xCos map 'shift' needs the mean occlusion shift in the map "
                                 "statistics: rebuild them with training/build_xcos_maps.py")
            if map == "amortised_fine" and self.stats.fine_amortiser is None:
                raise ValueError("xCos map 'amortised_fine' needs a fitted fine amortiser in "
                                 "the map statistics: rebuild them with "
                                 "training/build_xcos_maps.py")
            if map == "amortised" and self.stats.amortiser is None:
                raise ValueError("xCos map 'amortised' needs a fitted amortised-occlusion model "
                                 "in the map statistics: rebuild them with "
                                 "training/build_xcos_maps.py")

    @torch.no_grad()
    def _attribute(self, x_a, x_b, target):
        model = self.model
        grid_a, grid_b = model.grids(x_a, x_b)
        out = model.head(grid_a, grid_b)
        plugin = getattr(model, "teacher", None) is None
        cosine = (model.model_cosine_from_grids(grid_a, grid_b) if plugin
                  else model.teacher_cosine(x_a, x_b))
        extras = {"cos_map": out.cos_map, "attention": out.attention,
                  "contribution": out.contribution, "xcos": out.score,
                  "model_cosine": cosine}
        kind = self.map
        stats = self.stats
        if kind == "evidence":
            ga = gb = evidence_map(out.cos_map, out.attention, model.threshold)
        elif kind == "contribution":
            ga = gb = out.contribution
        elif kind == "cos_map":
            ga = gb = out.cos_map
        elif kind == "evidence_ref":
            ga = gb = reference_evidence(out.cos_map, out.attention, stats.cos_ref)
        elif kind in ("exact", "exact_ref"):
            ref = (reference_parts(model.backbone, stats.local_ref.to(grid_a))
                   if kind == "exact_ref" else None)
            dec = exact_decomposition(model.backbone, grid_a, grid_b, ref)
            ga, gb = dec.cell_a, dec.cell_b
            extras["cell_pairs"] = dec.pairs
        elif kind == "cell_deletion":
            ga, gb = feature_cell_deletion(model, grid_a, grid_b, stats.local_ref.to(grid_a),
                                           target if plugin else "xcos")
        elif kind == "shift":
            ga, gb = shifted_cell_drops(model, grid_a, grid_b, stats.occlusion_shift,
                                        target if plugin else "xcos")
        elif kind == "amortised":
            fa, fb = cell_features(model, grid_a, grid_b, stats, out)
            amortiser = stats.amortiser.to(fa.device)
            ga, gb = amortiser(fa), amortiser(fb)
        else:  # amortised occlusion of finer blocks: pixel maps finer than the grid
            fa, fb = fine_features(model, grid_a, grid_b, stats, out)
            amortiser = stats.fine_amortiser.to(fa.device)
            fine_a, fine_b = amortiser(fa), amortiser(fb)
            size = x_a.shape[-2:]
            pa, pb = to_pixels(fine_a, size, self.upsample), to_pixels(fine_b, size,
                                                                       self.upsample)
            cells = tuple(grid_a.shape[-2:])  # each cell: the mean of its blocks
            ga, gb = to_grid(fine_a, cells), to_grid(fine_b, cells)
            extras["fine_a"], extras["fine_b"] = fine_a, fine_b
            extras["map_grid_a"], extras["map_grid_b"] = fine_a, fine_b
            extras["score"] = out.score if target == "xcos" else cosine
            return pa, pb, ga, gb, extras
        size = x_a.shape[-2:]
        pa, pb = to_pixels(ga, size, self.upsample), to_pixels(gb, size, self.upsample)
        extras["score"] = out.score if target == "xcos" else cosine
        gb = gb.clone() if gb is ga else gb
        extras["map_grid_a"], extras["map_grid_b"] = ga, gb  # the map at its own resolution
        return pa, pb, ga, gb, extras


def _variant(map_name: str, label: str, short_label: str):
    """Register ``xcos_<map>``: the xCos explainer with another default map (for compare)."""

    @register_explainer(f"xcos_{map_name}")
    class Variant(XCosExplainer):
        default_map = map_name

    Variant.label = label
    Variant.short_label = short_label
    Variant.__name__ = Variant.__qualname__ = f"XCos_{map_name}"
    Variant.__doc__ = f"{label} (:class:`XCosExplainer` with ``map={map_name!r}``)."
    return Variant


VARIANTS = {m: _variant(m, lab, short) for m, lab, short in (
    ("evidence", "xCos evidence (S - t) * W", "xCos (S - t) * W"),
    ("contribution", "xCos contribution S * W (the paper's map)", "xCos S * W (paper)"),
    ("evidence_ref", "xCos evidence against a typical pair (S - S_ref) * W",
     "xCos (S - S_ref) * W"),
    ("exact", "exact split of the model cosine over the cells", "xCos exact split"),
    ("exact_ref", "exact split relative to the mean face", "xCos exact split (ref.)"),
    ("cell_deletion", "feature-space cell deletion (mean-face descriptor)",
     "xCos cell deletion"),
    ("shift", "feature-space occlusion (mean shift of the grid)", "xCos feature occlusion"),
    ("amortised", "amortised occlusion (one forward)", "xCos amortised occlusion"),
    ("amortised_fine", "amortised occlusion of 8x8 pixel blocks (one forward)",
     "xCos amortised occlusion 8x8"))}
