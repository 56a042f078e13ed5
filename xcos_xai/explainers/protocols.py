"""Evaluation protocols of the face-verification XAI literature, as pure functions.

Each takes score functions (``(K, 3, H, W) -> (K,)`` pair scores of K variants of one face
against its fixed partner, :func:`~.metrics.fixed_face_scorer`), the faces, their maps and
the fixed decision threshold, and returns plain arrays:

- **ROAD** (Rong et al., ICML 2022): :func:`road_impute`, noisy linear imputation of removed
  pixels from their neighbours, a replacement that leaks no shape of the removed region
  (a second replacement beside the blurred copy, so no method wins by the choice of
  baseline); :func:`perturbation_curve`, most- (MoRF) or least-relevant-first (LeRF)
  removal, or insertion, with any replacement.
- **Verification accuracy against the removed / restored fraction** (CorrRISE, FGGB):
  :func:`verification_accuracy_curve`; genuine pairs ranked by the similarity part of the
  map, impostor pairs by the dissimilarity part.
- **Replacement FNMR / FMR curves** (xSSAB's Patch-LFW test): :func:`replacement_rate_curves`,
  5 % to 95 % replaced in map order and in a random order.
- **Model-parameter randomisation, cascading and independent** (Adebayo et al. 2018; MPRT):
  :func:`layer_randomisation`, the rank correlation of the map with the map of a model whose
  layers are re-initialised one by one from the top.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

from ..core.rng import seeded
from .base import replacement_baseline
from .metrics import (
    curve_auc,
    fraction_counts,
    randomisation_init,
    rank_correlation,
    rank_units,
    reinitialise,
    replacement_error_rates,
    unit_masks,
    unit_values,
)

REPLACEMENTS = ("blur", "mean", "road")

# ROAD's neighbour weights: 1/6 for the 4 direct and 1/12 for the 4 diagonal neighbours.
_NEIGHBOURS = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
               (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]


# --------------------------------------------------------------------------- ROAD imputation


def road_impute(x: torch.Tensor, removed: torch.Tensor, noise_std: float = 0.01,
                seed: int = 0) -> torch.Tensor:
    """Noisy linear imputation (ROAD): removed pixels become the weighted mean of their
    8 neighbours (direct 1/6, diagonal 1/12, renormalised at the border), solved jointly as
    one sparse linear system per image, plus Gaussian noise of ``noise_std``.

    Args:
        x: ``(1, C, H, W)`` (or ``(C, H, W)``) image.
        removed: ``(H, W)`` booleans (or 0/1), True where the pixel is removed.
        noise_std: the noise added to imputed pixels (in ``x``'s units); 0 for none.
        seed: the noise's seed.

    Returns:
        The image with the removed pixels imputed (the others unchanged), shaped like ``x``.

    Example (one removed pixel: the weighted mean of its neighbours):
        >>> x = torch.arange(9.0).reshape(1, 1, 3, 3)
        >>> m = torch.zeros(3, 3, dtype=torch.bool); m[1, 1] = True
        >>> road_impute(x, m, noise_std=0)[0, 0, 1, 1].item()  # symmetric around 4
        4.0
    """
    squeeze = x.dim() == 3
    img = x[None] if squeeze else x
    if img.dim() != 4 or img.shape[0] != 1:
        raise ValueError(f"x must be one image (1, C, H, W), got {tuple(x.shape)}")
    h, w = img.shape[-2:]
    mask = torch.as_tensor(removed).reshape(h, w).bool().cpu().numpy()
    if not mask.any():
        return x.clone()
    values = img[0].detach().double().cpu().numpy().reshape(img.shape[1], -1)  # (C, H*W)
    idx = np.full(h * w, -1)
    flat_removed = np.flatnonzero(mask.ravel())
    idx[flat_removed] = np.arange(flat_removed.size)
    rows_r, cols_r = np.divmod(flat_removed, w)
    # weights of the neighbours inside the image, renormalised to sum to 1
    weight_sum = np.zeros(flat_removed.size)
    for dr, dc, wt in _NEIGHBOURS:
        r, c = rows_r + dr, cols_r + dc
        weight_sum += wt * ((r >= 0) & (r < h) & (c >= 0) & (c < w))
    eps = 1e-6  # a faint pull to the image mean: regions with no known pixel stay solvable
    a_rows, a_cols, a_vals = [np.arange(flat_removed.size)], [np.arange(flat_removed.size)], \
        [np.full(flat_removed.size, 1.0 + eps)]
    rhs = eps * values.mean(axis=1, keepdims=True) * np.ones((1, flat_removed.size))
    for dr, dc, wt in _NEIGHBOURS:
        r, c = rows_r + dr, cols_r + dc
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        src = np.flatnonzero(inside)
        nb = r[inside] * w + c[inside]
        coef = wt / weight_sum[src]
        unknown = idx[nb] >= 0
        a_rows.append(src[unknown])
        a_cols.append(idx[nb[unknown]])
        a_vals.append(-coef[unknown])
        np.add.at(rhs, (slice(None), src[~unknown]), coef[~unknown] * values[:, nb[~unknown]])
    n = flat_removed.size
    a = coo_matrix((np.concatenate(a_vals), (np.concatenate(a_rows), np.concatenate(a_cols))),
                   shape=(n, n)).tocsc()
    solved = splu(a).solve(np.ascontiguousarray(rhs.T))  # (n, C)
    if noise_std > 0:
        rng = np.random.default_rng(seed)
        solved = solved + rng.normal(0.0, noise_std, solved.shape)
    out = values.copy()
    out[:, flat_removed] = solved.T
    result = torch.from_numpy(out.reshape(img.shape[1:])).to(x.dtype).to(x.device)[None]
    return result[0] if squeeze else result


def replace(x: torch.Tensor, removed: torch.Tensor, replacement: str = "blur",
            noise_std: float = 0.01, seed: int = 0) -> torch.Tensor:
    """``x`` with the ``removed`` pixels ``(K, 1, H, W)`` (or ``(H, W)``) replaced:
    ``"blur"``/``"mean"`` from :func:`~.base.replacement_baseline`, ``"road"`` imputed.

    Returns ``(K, C, H, W)`` variants (one per mask).
    """
    if replacement not in REPLACEMENTS:
        raise ValueError(f"unknown replacement {replacement!r}: choose one of {REPLACEMENTS}")
    masks = removed.reshape(-1, 1, *x.shape[-2:]).to(device=x.device, dtype=x.dtype)
    if replacement == "road":
        return torch.cat([road_impute(x, m[0] > 0.5, noise_std, seed + k)
                          for k, m in enumerate(masks)])
    base = replacement_baseline(x, replacement)
    return x * (1 - masks) + base * masks


# --------------------------------------------------------------------------- curves


def _removal_masks(pixel_map, size, fractions, unit, most_relevant_first, seed):
    values = unit_values(pixel_map.reshape(pixel_map.shape[-2:]), unit)
    order = rank_units(values, descending=most_relevant_first, seed=seed)
    counts = fraction_counts(fractions, order.numel())
    return unit_masks(order, tuple(values.shape), counts, size)


def perturbation_curve(score_fn: Callable, x: torch.Tensor, pixel_map: torch.Tensor,
                       fractions: Sequence[float], replacement: str = "road",
                       most_relevant_first: bool = True, insertion: bool = False,
                       unit: int = 10, noise_std: float = 0.01, seed: int = 0) -> torch.Tensor:
    """``(K,)`` scores as ``fractions[k]`` of the face's units are removed (or restored).

    Args:
        score_fn: ``(K, 3, H, W) -> (K,)``.
        x: ``(1, 3, H, W)`` the face.
        pixel_map: ``(H, W)`` its map; units (``unit`` x ``unit`` pixels) are ranked by their
            mean value.
        replacement: ``"road"`` (noisy linear imputation), ``"blur"`` or ``"mean"``.
        most_relevant_first: MoRF (the highest values first) or LeRF (the lowest first).
        insertion: start from the fully replaced face and restore the ranked units instead
            (for ROAD the removed pixels are then imputed from the restored ones).
    """
    size = tuple(x.shape[-2:])
    masks = _removal_masks(pixel_map, size, fractions, unit, most_relevant_first, seed)
    if insertion:
        masks = 1 - masks
    return score_fn(replace(x, masks, replacement, noise_std, seed))


def decision_accuracy(curves, same, threshold) -> np.ndarray:
    """``(K,)`` verification accuracy at the fixed threshold(s) after each step.

    Args:
        curves: ``(P, K)`` scores; same: ``(P,)`` genuine pairs; threshold: a float or
            ``(P,)`` per-pair thresholds (e.g. each fold's).

    Example:
        >>> decision_accuracy([[0.9, 0.2], [0.1, 0.7]], [True, False], 0.5).tolist()
        [1.0, 0.0]
    """
    c = np.asarray(curves, dtype=np.float64)
    t = np.asarray(threshold, dtype=np.float64)
    t = t.reshape(-1, 1) if t.ndim else t
    correct = (c > t) == np.asarray(same, dtype=bool)[:, None]
    return correct.mean(axis=0)


def verification_accuracy_curve(score_fns: Sequence[Callable], xs: Sequence[torch.Tensor],
                                maps: Sequence[torch.Tensor], same, threshold,
                                fractions: Sequence[float], mode: str = "deletion",
                                replacement: str = "blur", unit: int = 10,
                                noise_std: float = 0.01, seed: int = 0) -> dict:
    """Verification accuracy at the fixed threshold against the fraction removed/restored.

    Pair ``i``'s face ``xs[i]`` (``(1, 3, H, W)``) is changed in the order of its signed map
    ``maps[i]`` (``(H, W)``): genuine pairs lose (deletion) or regain (insertion) their most
    *similar* units first (highest values), impostor pairs their most *dissimilar* units
    (lowest values). A faithful map makes deletion accuracy fall fast (low AUC) and
    insertion accuracy rise fast (high AUC).

    Returns:
        ``{"fractions", "accuracy" (K,), "auc", "scores" (P, K)}``.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    same = np.asarray(same, dtype=bool)
    scores = np.stack([
        perturbation_curve(fn, x, m, fractions, replacement, most_relevant_first=bool(s),
                           insertion=mode == "insertion", unit=unit, noise_std=noise_std,
                           seed=seed).detach().cpu().double().numpy()
        for fn, x, m, s in zip(score_fns, xs, maps, same)])
    accuracy = decision_accuracy(scores, same, threshold)
    return {"fractions": np.asarray(fractions, dtype=np.float64), "accuracy": accuracy,
            "auc": curve_auc(fractions, accuracy), "scores": scores}


def replacement_fractions(step: float = 0.05, last: float = 0.95) -> np.ndarray:
    """``step, 2 step, ..., last`` (xSSAB's 5 % to 95 %).

    Example:
        >>> replacement_fractions()[[0, 1, -1]].round(2).tolist(), len(replacement_fractions())
        ([0.05, 0.1, 0.95], 19)
    """
    n = int(round(last / step))
    return np.round(np.arange(1, n + 1) * step, 10)


def replacement_rate_curves(score_fns: Sequence[Callable], xs: Sequence[torch.Tensor],
                            maps: Sequence[torch.Tensor], same, threshold,
                            fractions: Sequence[float] | None = None,
                            replacement: str = "blur", unit: int = 10,
                            noise_std: float = 0.01, seed: int = 0) -> dict:
    """FNMR (genuine) and FMR (impostor) against the fraction replaced, in map order and in
    a seeded random order (xSSAB's protocol; default 5 % to 95 % in steps of 5 %).

    Genuine pairs replace their most similar units first, impostor pairs their most
    dissimilar ones, so a faithful map raises FNMR and FMR faster than the random order.

    Returns:
        ``{"fractions", "fnmr", "fmr", "fnmr_random", "fmr_random"}`` (``(K,)`` each; NaN
        where there are no pairs of that kind).
    """
    fractions = replacement_fractions() if fractions is None else np.asarray(fractions)
    same = np.asarray(same, dtype=bool)
    out = {"fractions": np.asarray(fractions, dtype=np.float64)}
    gen = torch.Generator().manual_seed(int(seed))
    random_maps = [torch.rand(m.shape[-2:], generator=gen) for m in maps]
    for key, use in (("", maps), ("_random", random_maps)):
        scores = np.stack([
            perturbation_curve(fn, x, m, fractions, replacement, most_relevant_first=bool(s),
                               unit=unit, noise_std=noise_std, seed=seed)
            .detach().cpu().double().numpy()
            for fn, x, m, s in zip(score_fns, xs, use, same)])
        t = np.asarray(threshold, dtype=np.float64)
        shifted = scores - (t.reshape(-1, 1) if t.ndim else t)
        fnmr, fmr = replacement_error_rates(shifted, same, 0.0)
        out[f"fnmr{key}"], out[f"fmr{key}"] = fnmr, fmr
    return out


# --------------------------------------------------------------------------- randomisation


def randomisable_layers(model) -> list[str]:
    """Names of the modules with their own ``reset_parameters`` and parameters, from the
    output back to the input (the head first, then the backbone from its top)."""
    names = []
    for part in ("head", "backbone"):
        module = getattr(model, part)
        layers = [f"{part}.{n}" if n else part for n, m in module.named_modules()
                  if hasattr(m, "reset_parameters")
                  and any(True for _ in m.parameters(recurse=False))]
        names += layers[::-1]
    return names


def layer_randomisation(model, explain: Callable[[torch.nn.Module], torch.Tensor],
                        layers: Sequence[str] | None = None, mode: str = "cascading",
                        seed: int = 0, measure_at: Sequence[str] | None = None,
                        init: str | None = None) -> list[tuple[str, float]]:
    """MPRT: the Spearman correlation of the map with the map after re-initialising layers.

    Args:
        model: the explained model (not modified: each step works on a deep copy).
        explain: ``model -> map`` (any shape), e.g.
            ``lambda m: create_explainer("fggb", m).attribute(x_a, x_b).map_a``.
        layers: module names from the top down (default :func:`randomisable_layers`).
        mode: ``"cascading"``: layer ``k`` and every layer above it are re-initialised;
            ``"independent"``: layer ``k`` alone.
        seed: the re-initialisation's seed (torch's global generator is restored after).
        measure_at: explain only after these layers (default: after every one). Cascading
            still re-initialises every layer of ``layers`` on the way down, so a map
            measured at a low layer comes from a model whose layers above are all random.
        init: ``"default"`` (each layer's ``reset_parameters``) or ``"permute"`` (each
            parameter tensor's values shuffled, keeping the layer's scale); ``None``: what the
            model declares (:func:`~xcos_xai.explainers.metrics.randomisation_init`).

    Returns:
        ``[(layer, rank correlation), ...]`` in the order of ``layers``; a map that keeps a
        high correlation while the weights that produce it are destroyed does not depend on
        the model.
    """
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    layers = list(randomisable_layers(model) if layers is None else layers)
    measure = set(layers if measure_at is None else measure_at)
    named = dict(model.named_modules())
    unknown = [n for n in [*layers, *measure] if n not in named]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}: use names from randomisable_layers()")
    how = randomisation_init(model) if init is None else init
    reference = explain(model).detach()
    device = next(model.parameters()).device
    results = []
    clone = copy.deepcopy(model) if mode == "cascading" else None
    for k, name in enumerate(layers):
        if mode == "independent" and name not in measure:
            continue
        if mode == "independent":
            clone = copy.deepcopy(model)
        with seeded(seed + k, device):  # the caller's random state is left alone
            reinitialise(dict(clone.named_modules())[name], how)
        if name in measure:
            results.append((name, rank_correlation(reference, explain(clone.eval()).detach())))
    return results
