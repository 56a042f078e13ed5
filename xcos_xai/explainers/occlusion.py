"""Occlusion of the xCos grid cells (Captum ``FeatureAblation``), one face at a time."""

from __future__ import annotations

import torch
from captum.attr import FeatureAblation

from .base import PairExplainer, pair_score_from_grids, register_explainer, to_pixels


def cell_mask(size: tuple[int, int], grid_size: tuple[int, int], offset: int = 0):
    """``(1, 1, H, W)`` integer ids of the grid cell each pixel falls in (row-major).

    Example:
        >>> cell_mask((4, 4), (2, 2))[0, 0].tolist()
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    """
    h, w = size
    gh, gw = grid_size
    rows = (torch.arange(h) * gh) // h
    cols = (torch.arange(w) * gw) // w
    return (rows[:, None] * gw + cols[None, :] + offset).view(1, 1, h, w)


@register_explainer("occlusion")
class OcclusionExplainer(PairExplainer):
    """Score drop when one grid cell of one face is replaced by the baseline.

    ``grid_a[i, j] = score(x_a, x_b) - score(x_a with cell (i, j) replaced, x_b)``: positive
    where the cell supports the score. Each face is ablated by its own Captum call while the
    other face's grid is held fixed (``additional_forward_args``).

    Args:
        grid_size: the cells to ablate (default: the model's xCos grid).
        perturbations_per_eval: ablations batched into one forward.
    """

    label = "Occlusion of grid cells (Captum FeatureAblation)"
    short_label = "Occlusion"

    def __init__(self, model, grid_size: tuple[int, int] | None = None,
                 perturbations_per_eval: int = 16, **kwargs):
        super().__init__(model, **kwargs)
        self.cells = grid_size
        self.perturbations_per_eval = perturbations_per_eval

    def pass_count(self, target: str = "xcos") -> float:
        gh, gw = self.cells or getattr(self.model.backbone, "grid_size", (4, 4))
        # both grids once, then per face its unablated copy and one copy per cell
        return 2 + 2 * (1 + gh * gw)

    @torch.no_grad()
    def _attribute(self, x_a, x_b, target):
        grid = tuple(self.cells or self.grid_size(x_a))
        size = tuple(x_a.shape[-2:])
        base_a, base_b = self._baselines(x_a, x_b)
        mask = cell_mask(size, grid)
        model = self.model
        if target == "model_cosine" and getattr(model, "teacher", None) is not None:
            raise ValueError("occlusion of a separate teacher's cosine is not supported: use "
                             "target='xcos' or a plug-in model (teacher=None)")
        grid_a, grid_b = model.grids(x_a, x_b)

        # One face at a time, the other face's grid held fixed through Captum's
        # additional_forward_args (computed once: half the backbone calls of ablating both
        # faces in a joint forward).
        def score_a(xa, fixed_b):
            return pair_score_from_grids(model, model.backbone.forward_features(xa), fixed_b,
                                         target)

        def score_b(xb, fixed_a):
            return pair_score_from_grids(model, fixed_a, model.backbone.forward_features(xb),
                                         target)

        ppe = self.perturbations_per_eval
        attr_a = FeatureAblation(score_a).attribute(
            x_a, baselines=base_a, additional_forward_args=(grid_b,), feature_mask=mask,
            perturbations_per_eval=ppe)
        attr_b = FeatureAblation(score_b).attribute(
            x_b, baselines=base_b, additional_forward_args=(grid_a,), feature_mask=mask,
            perturbations_per_eval=ppe)
        map_a, map_b = attr_a[:, 0], attr_b[:, 0]  # one value per cell, repeated on pixels
        cells_a = _cell_values(map_a, size, grid)
        cells_b = _cell_values(map_b, size, grid)
        model_grid = self.grid_size(x_a)
        if tuple(model_grid) != grid:
            cells_a = torch.nn.functional.adaptive_avg_pool2d(cells_a[:, None], model_grid)[:, 0]
            cells_b = torch.nn.functional.adaptive_avg_pool2d(cells_b[:, None], model_grid)[:, 0]
        score = pair_score_from_grids(model, grid_a, grid_b, target)
        return map_a, map_b, cells_a, cells_b, {"score": score}


def _cell_values(pixel_map, size, grid):
    ids = cell_mask(size, grid)[0, 0].flatten()
    first = torch.stack([torch.nonzero(ids == k)[0, 0] for k in range(grid[0] * grid[1])])
    return pixel_map.flatten(1)[:, first].view(-1, *grid)


__all__ = ["OcclusionExplainer", "cell_mask", "to_pixels"]


def default_map_blocks(model) -> tuple[int, int] | None:
    """The pixel blocks of the xCos default map of ``model``: ``(c, c)`` when its map
    statistics hold a finer split of the face (dlib's bundle: 8x8 blocks), else ``None`` (the
    grid cells)."""
    fine = getattr(getattr(model, "map_stats", None), "fine_amortiser", None)
    return None if fine is None else fine.grid_size


@register_explainer("occlusion_blocks")
class BlockOcclusionExplainer(OcclusionExplainer):
    """Occlusion of the blocks the xCos default map predicts: the measurement it imitates.

    The default map (``amortised_fine``) predicts, in one forward, the score drop of blurring
    each of a finer split of the face (dlib's bundle: 8x8 blocks); this explainer measures those
    drops (``c * c`` ablations per face), so a comparison shows how close the one-forward map
    comes to its own target. Without a finer split in the model's map statistics the blocks
    are the grid cells, and this is :class:`OcclusionExplainer`.
    """

    label = "Occlusion of the default map's blocks (what it imitates)"
    short_label = "Block occlusion"

    def __init__(self, model, grid_size: tuple[int, int] | None = None, **kwargs):
        super().__init__(model, grid_size=grid_size or default_map_blocks(model), **kwargs)
