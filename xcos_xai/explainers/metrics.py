"""Measures of pair explanations (their results: README, "Grad-CAM vs xCos").

Pure tensor functions; every one takes the score of face-A variants against a fixed face B
through a ``score_fn`` built by :func:`fixed_face_scorer` (the shared :func:`pair_score`).

- **Deletion / insertion** (:func:`deletion_curve`, :func:`insertion_curve`, :func:`curve_auc`):
  face A's units (``unit`` x ``unit`` pixel patches) are ranked by the map and replaced by the
  baseline (a blurred copy, :func:`~.base.replacement_baseline`) in that order. Genuine pairs
  rank the supporting part first (``descending=True``); impostor pairs the opposing part
  (``descending=False``).
- **Replacement error rates** (:func:`replacement_error_rates`): FNMR of genuine and FMR of
  impostor pairs at the fixed threshold after each replaced fraction.
- **Localisation game** (:func:`facial_region_mask`, :func:`make_hybrid`,
  :func:`pointing_game`, :func:`top_iou`, :func:`restore_to_flip`).
- **Stability** (:func:`sensitivity`, Captum's ``sensitivity_max``) and the **model
  randomisation** check (:func:`randomised_copy`, :func:`rank_correlation`).
- **Cell deletion in feature space** (:func:`cell_deletion_curve`): every map judged at the
  grid's own resolution, cells replaced by a typical face's local descriptors.
- **Attention shortcut** (:func:`static_mass_share`), **cost** (:func:`time_call`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from captum.metrics import sensitivity_max

from ..core.rng import seeded
from .base import pair_score, pair_score_from_grids

ScoreFn = Callable[[torch.Tensor], torch.Tensor]

# Facial regions of an aligned chip (dlib's get_face_chip, padding 0.25), as fractions of
# the chip (top, bottom, left, right); read off the mean of LFW chips.
FACIAL_REGIONS = {
    "eyes": (0.21, 0.40, 0.15, 0.85),
    "nose": (0.39, 0.60, 0.37, 0.63),
    "mouth": (0.62, 0.81, 0.30, 0.70),
}
"""(top, bottom, left, right) fractions of each region in dlib's 150x150 chip (padding 0.25:
mean eye centres at (0.31, 0.31) and (0.67, 0.31), nose base at y 0.58 on LFW)."""

ARCFACE_FACIAL_REGIONS = {
    "eyes": (0.37, 0.54, 0.20, 0.82),
    "nose": (0.53, 0.71, 0.39, 0.62),
    "mouth": (0.73, 0.90, 0.33, 0.69),
}
"""The same boxes in the 112x112 ArcFace face (eyes at y 0.46, 0.31 of the width apart; mouth
corners at y 0.82): dlib's boxes moved onto the ArcFace template by the similarity that takes
dlib's mean eye centres onto the template's (scale 0.88)."""


# --------------------------------------------------------------------------- scoring


def fixed_face_scorer(model, fixed: torch.Tensor, target: str = "xcos", vary: str = "a",
                      batch: int = 32) -> ScoreFn:
    """``score_fn(variants (K, 3, H, W)) -> (K,)``: pair scores of K variants of one face
    against the other, ``fixed`` face ``(1, 3, H, W)``.

    ``vary="a"``: the variants are face A and ``fixed`` is face B; ``vary="b"``: the reverse
    (the pair order is kept, which matters for an asymmetric attention). The fixed face's
    grid is computed once, so K variants cost K image forwards, not 2K.
    """
    if not isinstance(fixed, torch.Tensor) or fixed.dim() != 4 or fixed.shape[0] != 1:
        shape = tuple(fixed.shape) if isinstance(fixed, torch.Tensor) else type(fixed).__name__
        raise ValueError(f"fixed must be one face (1, 3, H, W), got {shape}")
    if vary not in ("a", "b"):
        raise ValueError(f"vary must be 'a' or 'b', got {vary!r}")
    own_cosine = getattr(model, "teacher", None) is None or target == "xcos"
    with torch.no_grad():
        grid_fixed = model.backbone.forward_features(fixed) if own_cosine else None

    @torch.no_grad()
    def score_fn(variants: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, len(variants), batch):
            part = variants[s:s + batch]
            k = len(part)
            if own_cosine:
                grid = model.backbone.forward_features(part)
                other = grid_fixed.expand(k, -1, -1, -1)
                pair = (grid, other) if vary == "a" else (other, grid)
                out.append(pair_score_from_grids(model, *pair, target))
            else:
                other = fixed.expand(k, -1, -1, -1)
                pair = (part, other) if vary == "a" else (other, part)
                out.append(pair_score(model, *pair, target))
        return torch.cat(out)

    return score_fn


# --------------------------------------------------------------------------- ranking


def unit_values(pixel_map: torch.Tensor, unit: int) -> torch.Tensor:
    """``(H, W)`` map to ``(H // unit, W // unit)`` unit means (ceil; edges averaged), on the
    CPU (rankings are small and use a CPU generator)."""
    h, w = pixel_map.shape[-2:]
    shape = (-(-h // unit), -(-w // unit))
    return F.adaptive_avg_pool2d(pixel_map.reshape(1, 1, h, w).float(), shape)[0, 0].cpu()


def rank_units(values: torch.Tensor, descending: bool = True, seed: int = 0) -> torch.Tensor:
    """Flat unit indices, best first; ties broken by a seeded random order (not position).

    Example:
        >>> rank_units(torch.tensor([[0.1, 0.9], [0.5, -1.0]])).tolist()
        [1, 2, 0, 3]
    """
    flat = values.flatten()
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(flat.numel(), generator=gen)
    order = torch.sort(flat[perm], descending=descending, stable=True).indices
    return perm[order]


def unit_masks(order: torch.Tensor, unit_shape: tuple[int, int], counts: list[int],
               size: tuple[int, int]) -> torch.Tensor:
    """``(K, 1, H, W)`` masks: 1 on the first ``counts[k]`` units of ``order``."""
    n = order.numel()
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    counts_t = torch.tensor(counts).view(-1, 1)
    m = (rank.view(1, -1) < counts_t).float().view(len(counts), 1, *unit_shape)
    # nearest upsampling from units to pixels (the last row/column of units may be cut)
    uh, uw = unit_shape
    h, w = size
    unit_h, unit_w = -(-h // uh), -(-w // uw)
    ri = torch.clamp(torch.arange(h) // unit_h, max=uh - 1)
    ci = torch.clamp(torch.arange(w) // unit_w, max=uw - 1)
    return m[:, :, ri][:, :, :, ci]


def fraction_counts(fractions, n_units: int) -> list[int]:
    return [int(round(f * n_units)) for f in fractions]


def default_fractions(step: float = 0.05) -> np.ndarray:
    """``0, step, ..., 1``."""
    n = int(round(1 / step))
    return np.linspace(0.0, 1.0, n + 1)


# --------------------------------------------------------------------------- deletion / insertion


def deletion_curve(score_fn: ScoreFn, x_a: torch.Tensor, baseline_a: torch.Tensor,
                   map_a: torch.Tensor, fractions=None, unit: int = 10,
                   descending: bool = True, seed: int = 0) -> torch.Tensor:
    """Scores ``(K,)`` after replacing the top ``fractions[k]`` of A's units by the baseline.

    Args:
        score_fn: from :func:`fixed_face_scorer`.
        x_a, baseline_a: ``(1, 3, H, W)`` face A and its replacement.
        map_a: ``(H, W)`` (or ``(1, H, W)``) map of face A.
        fractions: replaced fractions (default 0, 0.05, ..., 1).
        unit: patch size in pixels (the ranked units).
        descending: rank the largest values first (support); ``False`` for the opposing part.
    """
    fractions = default_fractions() if fractions is None else np.asarray(fractions)
    values = unit_values(map_a.reshape(map_a.shape[-2:]), unit)
    order = rank_units(values, descending, seed)
    masks = unit_masks(order, tuple(values.shape), fraction_counts(fractions, order.numel()),
                       tuple(x_a.shape[-2:]))
    masks = masks.to(device=x_a.device, dtype=x_a.dtype)
    variants = x_a * (1 - masks) + baseline_a * masks
    return score_fn(variants)


def insertion_curve(score_fn: ScoreFn, x_a: torch.Tensor, baseline_a: torch.Tensor,
                    map_a: torch.Tensor, fractions=None, unit: int = 10,
                    descending: bool = True, seed: int = 0) -> torch.Tensor:
    """Scores ``(K,)`` starting from the baseline and putting back the top ``fractions[k]``."""
    # inserting the top-k of A into the baseline = deleting the top-k of the baseline
    # towards A: swap the roles of image and replacement.
    return deletion_curve(score_fn, baseline_a, x_a, map_a, fractions, unit, descending, seed)


def curve_auc(fractions, scores) -> float:
    """Area under a curve over ``fractions`` (trapezoid), normalised by the x range.

    Example:
        >>> curve_auc([0, 0.5, 1], [1.0, 0.5, 0.0])
        0.5
    """
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2 / (x[-1] - x[0]))


def replacement_error_rates(curves, same, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """FNMR over genuine and FMR over impostor pairs after each replacement step.

    Args:
        curves: ``(P, K)`` pair scores after replacing ``fractions[k]`` of face A.
        same: ``(P,)`` booleans, genuine pairs.
        threshold: the fixed decision threshold (same person if ``score > threshold``).

    Returns:
        ``(fnmr (K,), fmr (K,))``; NaN where there are no pairs of that kind.

    Example:
        >>> fnmr, fmr = replacement_error_rates([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6]],
        ...                                     [True, True, False], 0.5)
        >>> fnmr.tolist(), fmr.tolist()
        ([0.0, 0.5], [0.0, 1.0])
    """
    c = np.asarray(curves, dtype=np.float64)
    s = np.asarray(same, dtype=bool)
    accept = c > threshold
    nan = np.full(c.shape[1], np.nan)
    fnmr = 1 - accept[s].mean(axis=0) if s.any() else nan
    fmr = accept[~s].mean(axis=0) if (~s).any() else nan
    return fnmr, fmr


def cell_deletion_curve(model, grid_a: torch.Tensor, grid_b: torch.Tensor,
                        cell_map_a: torch.Tensor, reference: torch.Tensor, fractions=None,
                        descending: bool = True, seed: int = 0,
                        target: str = "xcos") -> torch.Tensor:
    """Deletion in feature space: scores ``(K,)`` after replacing the top ``fractions[k]`` of
    face A's grid cells, in map order, by the reference local descriptors.

    Every map is judged at the grid's own resolution, on the decomposition xCos itself uses:
    a cell is "removed" by giving it the descriptor of a typical face (the mean local
    descriptor of the cell, :attr:`~.xcos_maps.MapStats.local_ref`).

    Args:
        model: an :class:`~xcos_xai.core.XCosModel` (its head scores the grids).
        grid_a, grid_b: ``(1, D, h, w)`` the faces' local descriptors.
        cell_map_a: ``(h, w)`` (or ``(1, h, w)``) map of face A on the grid.
        reference: ``(D, h, w)`` reference descriptor of each cell.
        fractions: replaced fractions (default ``0, 1/(h*w), ..., 1``: one cell a step).
        descending: remove the largest values first (support); ``False`` for opposition.

    Example (cell i of A is one-hot ``i``, B is all ones, the reference is zero):

        >>> from xcos_xai.core import XCosHead, XCosModel
        >>> class Grid(torch.nn.Module):
        ...     grid_size = (1, 2)
        ...     def forward_head(self, g):
        ...         return g.mean(dim=(2, 3))
        >>> model = XCosModel(Grid(), XCosHead(2, None, attention="uniform"))
        >>> a = torch.eye(2).view(1, 2, 1, 2)
        >>> cell_deletion_curve(model, a, torch.ones(1, 2, 1, 2), torch.tensor([[0.9, 0.1]]),
        ...                     torch.zeros(2, 1, 2)).tolist()  # S = 0.707 in both cells
        [0.7071067690849304, 0.3535533845424652, 0.0]
    """
    if grid_a.dim() != 4 or grid_a.shape[0] != 1 or grid_a.shape != grid_b.shape:
        raise ValueError(f"grid_a and grid_b must be one pair's (1, D, h, w) grids, got "
                         f"{tuple(grid_a.shape)} and {tuple(grid_b.shape)}")
    h, w = grid_a.shape[-2:]
    n = h * w
    values = cell_map_a.reshape(h, w)
    if reference.shape != grid_a.shape[1:]:
        raise ValueError(f"reference must be (D, h, w) = {tuple(grid_a.shape[1:])}, got "
                         f"{tuple(reference.shape)}")
    fractions = np.linspace(0.0, 1.0, n + 1) if fractions is None else np.asarray(fractions)
    order = rank_units(values, descending, seed)
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    counts = torch.tensor(fraction_counts(fractions, n)).view(-1, 1)
    removed = (rank.view(1, -1) < counts).view(-1, 1, h, w).to(grid_a)
    variants = grid_a * (1 - removed) + reference.to(grid_a).unsqueeze(0) * removed
    with torch.no_grad():
        return pair_score_from_grids(model, variants, grid_b.expand(len(variants), -1, -1, -1),
                                     target)


# --------------------------------------------------------------------------- localisation game


def facial_region_mask(region: str, size: tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` booleans of a facial region (``"eyes"``, ``"nose"``, ``"mouth"``) in an
    aligned chip, or of a grid-cell block given as ``"cells:r0:r1:c0:c1:gh:gw"``.

    The face layout follows the aligner of the input size (as
    :func:`~xcos_xai.data.aligners.aligner_for` chooses it): 112x112 is the ArcFace template
    (:data:`ARCFACE_FACIAL_REGIONS`), any other size dlib's chip (:data:`FACIAL_REGIONS`).

    >>> [int(facial_region_mask("eyes", s).nonzero()[:, 0].min())  # the box's first row
    ...  for s in ((150, 150), (112, 112))]
    [32, 41]
    """
    h, w = size
    regions = ARCFACE_FACIAL_REGIONS if (h, w) == (112, 112) else FACIAL_REGIONS
    if region.startswith("cells:"):
        r0, r1, c0, c1, gh, gw = (int(v) for v in region.split(":")[1:])
        top, bottom, left, right = r0 / gh, r1 / gh, c0 / gw, c1 / gw
    elif region in regions:
        top, bottom, left, right = regions[region]
    else:
        raise ValueError(f"unknown region {region!r}: choose one of {sorted(FACIAL_REGIONS)} "
                         "or 'cells:r0:r1:c0:c1:gh:gw'")
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[int(round(top * h)):int(round(bottom * h)), int(round(left * w)):int(round(right * w))] \
        = True
    return mask


def make_hybrid(x: torch.Tensor, donor: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """``x`` with the pixels of ``region`` ``(H, W)`` taken from ``donor`` (same shape)."""
    m = region.to(device=x.device, dtype=x.dtype).view(1, 1, *region.shape)
    return x * (1 - m) + donor * m


def pointing_game(pixel_map: torch.Tensor, region: torch.Tensor, unit: int = 10,
                  seed: int = 0) -> bool:
    """Is the map's most opposing (lowest) unit inside ``region``?

    A unit is inside when at least half its pixels are; ties for the lowest value are broken
    by the seeded random order of :func:`rank_units`.
    """
    values = unit_values(pixel_map.reshape(pixel_map.shape[-2:]), unit)
    inside = unit_values(region.float(), unit).flatten() >= 0.5
    return bool(inside[rank_units(values, descending=False, seed=seed)[0]])


def top_iou(pixel_map: torch.Tensor, region: torch.Tensor, unit: int = 10,
            fraction: float | None = None, seed: int = 0) -> float:
    """IoU between the map's most opposing units (as many as the region covers, or the top
    ``fraction``) and the region's units.

    Example:
        >>> m = torch.tensor([[-1.0, 0.5], [-0.5, 1.0]])
        >>> r = torch.tensor([[True, True], [False, False]])
        >>> round(top_iou(m, r, unit=1), 4)  # lowest two: (0,0), (1,0); 1 shared of 3
        0.3333
    """
    values = unit_values(pixel_map.reshape(pixel_map.shape[-2:]), unit)
    inside = unit_values(region.float(), unit).flatten() >= 0.5
    n = int(inside.sum()) if fraction is None else int(round(fraction * values.numel()))
    top = torch.zeros_like(inside)
    top[rank_units(values, descending=False, seed=seed)[:n]] = True
    union = (top | inside).sum()
    return float((top & inside).sum() / union) if union else 0.0


def restore_to_flip(score_fn: ScoreFn, hybrid: torch.Tensor, original: torch.Tensor,
                    pixel_map: torch.Tensor, threshold: float, fractions=None,
                    unit: int = 10, seed: int = 0) -> float:
    """Smallest fraction of the hybrid's units, restored to the original in map order (most
    opposing first), that brings the score back above ``threshold``; ``nan`` if none does
    (or 0 if the hybrid was never rejected)."""
    fractions = default_fractions() if fractions is None else np.asarray(fractions)
    scores = deletion_curve(score_fn, hybrid, original, pixel_map, fractions, unit,
                            descending=False, seed=seed)
    above = (scores > threshold).numpy()
    return float(fractions[np.argmax(above)]) if above.any() else float("nan")


# --------------------------------------------------------------------------- stability, sanity


def sensitivity(explainer, x_a: torch.Tensor, x_b: torch.Tensor, target: str = "xcos",
                radius: float = 0.02, n_samples: int = 5, seed: int = 0) -> torch.Tensor:
    """``(B,)`` Captum ``sensitivity_max`` of an explainer's pixel maps for both faces.

    Both faces are perturbed uniformly in ``[-radius, radius]`` (normalised units); the value
    is the largest ``||map(x + e) - map(x)|| / ||map(x)||`` over the samples (lower: more
    stable).
    """
    def explanation_func(inputs, **_):  # Captum passes the perturbed (x_a, x_b) tuple
        a, b = inputs
        r = explainer.attribute(a, b, target=target)
        return r.map_a.unsqueeze(1), r.map_b.unsqueeze(1)

    with seeded(seed, x_a.device):
        return sensitivity_max(explanation_func, (x_a, x_b), perturb_radius=radius,
                               n_perturb_samples=n_samples, max_examples_per_batch=1).detach()


def randomisation_stages(model) -> list[tuple[str, list]]:
    """The cascading re-initialisation stages, from the top: the head, then the backbone's
    top half, then all of it. Each stage is ``(name, modules to re-initialise)``."""
    backbone = [m for m in model.backbone.modules() if hasattr(m, "reset_parameters")]
    head = [m for m in model.head.modules() if hasattr(m, "reset_parameters")]
    half = len(backbone) // 2
    return [("head", head), ("head+backbone_top", head + backbone[half:]),
            ("all", head + backbone)]


REINIT_MODES = ("default", "permute")


def randomisation_init(model) -> str:
    """How randomisation checks re-initialise ``model``'s layers: what its backbone declares
    (``randomisation_init``), else ``"default"``.

    ``"default"`` is each module's own ``reset_parameters`` (as Captum and Quantus do).
    ``"permute"`` shuffles the values of each of the module's own parameter tensors: the
    learned weights are destroyed while each layer keeps its weight distribution, and so the
    scale of the signal it passes on. Networks whose BatchNorm is reset to the identity and
    whose convolutions get PyTorch's default initialisation can shrink the signal by about 3x
    a layer: SFace's randomised grid falls from std 0.079 to 5e-5 and every pair scores 1.0, so
    every map of the randomised model is noise and the check measures nothing. SFace declares
    ``"permute"``; dlib's network keeps ``"default"``.
    """
    backbone = getattr(model, "backbone", model)
    how = getattr(backbone, "randomisation_init", "default")
    if how not in REINIT_MODES:
        raise ValueError(f"{type(backbone).__name__}.randomisation_init is {how!r}: "
                         f"choose one of {REINIT_MODES}")
    return how


@torch.no_grad()
def reinitialise(module: torch.nn.Module, how: str = "default") -> None:
    """Re-initialise ``module``'s own parameters in place, drawing from torch's generator
    (wrap in :func:`~xcos_xai.core.rng.seeded`); ``how``: see :func:`randomisation_init`.

    Example:
        >>> lin = torch.nn.Linear(3, 2)
        >>> before = sorted(lin.weight.flatten().tolist())
        >>> reinitialise(lin, "permute")
        >>> sorted(lin.weight.flatten().tolist()) == before  # the same values, shuffled
        True
    """
    if how == "default":
        module.reset_parameters()
    elif how == "permute":
        for p in module.parameters(recurse=False):
            flat = p.detach().flatten()
            p.copy_(flat[torch.randperm(flat.numel(), device=flat.device)].view_as(p))
    else:
        raise ValueError(f"unknown re-initialisation {how!r}: choose one of {REINIT_MODES}")


def randomised_copy(model, modules_to_reset_names: list[str], seed: int = 0,
                    init: str | None = None):
    """A deep copy of ``model`` with the named submodules' parameters re-initialised
    (``init``: ``"default"`` or ``"permute"``; ``None``: :func:`randomisation_init`).

    With ``"default"``, buffers (e.g. dlib's frozen affine) are kept and BatchNorm's
    ``reset_parameters`` also resets its running statistics; ``"permute"`` keeps every buffer.
    """
    how = randomisation_init(model) if init is None else init
    clone = copy.deepcopy(model)
    param = next(clone.parameters(), None)
    with seeded(seed, param.device if param is not None else None):
        named = dict(clone.named_modules())
        for name in modules_to_reset_names:
            reinitialise(named[name], how)
    return clone.eval()


def stage_module_names(model) -> list[tuple[str, list[str]]]:
    """:func:`randomisation_stages` as module names (so that deep copies can be reset)."""
    names = {id(m): n for n, m in model.named_modules()}
    return [(stage, [names[id(m)] for m in mods]) for stage, mods in randomisation_stages(model)]


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps (flattened; ties get their mean rank).

    Example:
        >>> rank_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 30.0, 20.0]))
        0.5
    """
    from scipy.stats import spearmanr  # heavy (~1.5 s to import): loaded on first use

    x = a.detach().flatten().double().cpu().numpy()
    y = b.detach().flatten().double().cpu().numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def static_mass_share(grid_maps: torch.Tensor | np.ndarray, static: np.ndarray) -> float:
    """Mean share of a map's absolute mass on static cells (``static``: ``(gh, gw)`` bools,
    from :func:`~xcos_xai.evaluation.attention_stats.static_cells`).

    For xCos's attention this is the weight on cells whose patch cosine barely varies across
    pairs (a constant offset, not evidence); for any map, how much of it sits there.

    Example:
        >>> static_mass_share(np.array([[[3.0, -1.0]]]), np.array([[True, False]]))
        0.75
    """
    g = np.abs(np.asarray(grid_maps, dtype=np.float64))
    total = g.reshape(len(g), -1).sum(axis=1)
    on_static = (g * np.asarray(static, dtype=bool)).reshape(len(g), -1).sum(axis=1)
    share = np.where(total > 0, on_static / np.where(total > 0, total, 1), np.nan)
    return float(np.nanmean(share))


def time_call(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """``(seconds per call, last result)`` of ``fn`` called ``repeat`` times."""
    start = time.perf_counter()
    result = None
    for _ in range(repeat):
        result = fn()
    return (time.perf_counter() - start) / repeat, result
