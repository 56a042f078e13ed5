"""Faithful xCos maps: evidence relative to a typical pair, the exact split of the model's
cosine over the cells, and amortised occlusion. All come from one forward pass.

Every function here works on a backbone's *local* grid (``"4x4-local"`` for dlib, ``"7x7-local"``
for SFace): ``forward_features`` gives ``(B, D, h, w)`` local descriptors and ``forward_head``
aggregates them linearly (a mean or a sum) into the ``(B, D)`` embedding.

- :func:`cell_parts`: each cell's share of the embedding, ``(B, h*w, D)``; the shares sum to
  the embedding.
- :func:`exact_decomposition`: face A's cell i contributes ``<p_A,i, e_B> / (|e_A| |e_B|)``
  and B's cell j ``<e_A, p_B,j> / (|e_A| |e_B|)``; each face's cells sum to the model's cosine
  exactly. With a reference (the mean share of each cell over training faces) the same split
  is of ``cos(e_A, e_B) - <r, e_B> / (|e_A| |e_B|)``, the score relative to a typical face.
  The cell-pair matrix ``<p_A,i, p_B,j> / (|e_A| |e_B|)`` says which region of A matches
  which region of B (its rows sum to A's map, its columns to B's).
- :func:`reference_evidence`: ``(S - S_ref) * W``, with ``S_ref`` each cell's mean patch
  cosine over impostor pairs: a cell that agrees for every pair carries no evidence.
- :func:`feature_cell_deletion`: the score drop when one cell's local descriptor is replaced
  by the reference descriptor (head calls only).
- :func:`shifted_cell_drops`: the score drop when the whole grid moves as occluding one
  cell's pixels moves it on average over training faces (occlusion in feature space).
- :class:`AmortisedOcclusion`: a ridge regression, fitted on training folds, from one forward's
  cell statistics to each cell's *pixel* occlusion effect (the score drop when the cell's
  pixels are replaced by the blurred face, as :class:`~.occlusion.OcclusionExplainer` does).
- :class:`MapStats`: the reference and the fitted model, stored beside the bundled head
  (defined in :mod:`xcos_xai.core.map_stats`, so that :mod:`xcos_xai.pretrained` loads it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.map_stats import AmortisedOcclusion, MapStats
from .base import pair_score_from_grids


def _check_grid(name: str, grid: torch.Tensor) -> None:
    if not isinstance(grid, torch.Tensor) or grid.dim() != 4:
        shape = tuple(grid.shape) if isinstance(grid, torch.Tensor) else type(grid).__name__
        raise ValueError(f"{name} must be a (B, D, h, w) grid of local descriptors, got {shape}")


def cell_parts(backbone, grid: torch.Tensor, check: bool = True) -> torch.Tensor:
    """``(B, h*w, D)``: each cell's share of the embedding ``forward_head(grid)``.

    ``forward_head`` is applied to the grid with all cells but one set to zero; for a local
    grid (embedding = mean or sum of the cells, or any affine map of them, whose constant is
    shared equally by the cells) the shares add up to the embedding. That is checked
    (``check``), so a backbone whose head is not affine in the cells gets a clear error.

    Example:
        >>> class Mean:  # a toy backbone whose embedding is the mean of 2x2 cells
        ...     def forward_head(self, g):
        ...         return g.mean(dim=(2, 3))
        >>> g = torch.arange(8.0).view(1, 2, 2, 2)
        >>> cell_parts(Mean(), g)[0].tolist()
        [[0.0, 1.0], [0.25, 1.25], [0.5, 1.5], [0.75, 1.75]]
    """
    _check_grid("grid", grid)
    b, d, h, w = grid.shape
    n = h * w
    eye = torch.eye(n, dtype=grid.dtype, device=grid.device).view(1, n, 1, h, w)
    masked = (grid.unsqueeze(1) * eye).reshape(b * n, d, h, w)
    # an affine head f(g) = L(g) + c: f(cell i alone) - f(0) + f(0) / n sums to f(g)
    zero = backbone.forward_head(torch.zeros_like(grid[:1]))
    parts = (backbone.forward_head(masked) - zero * (1 - 1 / n)).reshape(b, n, -1)
    if check:
        whole = backbone.forward_head(grid)
        err = (parts.sum(1) - whole).abs().max()
        tol = 1e-4 * whole.abs().max().clamp_min(1.0)
        if not torch.isfinite(err) or err > tol:
            raise ValueError(f"{type(backbone).__name__}.forward_head is not a sum over the grid "
                             f"cells (error {float(err):.3g}): the exact maps need a '-local' "
                             "grid (e.g. dlib's '4x4-local', SFace's '7x7-local')")
    return parts


@dataclass
class Decomposition:
    """The exact split of the model's cosine over the cells of a pair.

    Attributes:
        cell_a, cell_b: ``(B, h, w)``; each sums to ``total``.
        pairs: ``(B, h*w, h*w)`` cell-pair matrix; row i sums to ``cell_a`` at i, column j to
            ``cell_b`` at j, all to ``total``.
        total: ``(B,)``: the model cosine (no reference), or the cosine minus the reference
            term ``<r, e_B> / (|e_A| |e_B|)`` (for A; B's uses ``<e_A, r>``).
        cosine: ``(B,)`` the model cosine.
    """

    cell_a: torch.Tensor
    cell_b: torch.Tensor
    pairs: torch.Tensor
    total_a: torch.Tensor
    total_b: torch.Tensor
    cosine: torch.Tensor


def exact_decomposition(backbone, grid_a: torch.Tensor, grid_b: torch.Tensor,
                        reference: torch.Tensor | None = None) -> Decomposition:
    """Split ``cos(e_A, e_B)`` exactly over the cells of face A and of face B.

    Args:
        backbone: the backbone whose ``forward_head`` sums the local grid.
        grid_a, grid_b: ``(B, D, h, w)`` local descriptors.
        reference: optional ``(h*w, D)`` reference share of each cell (the mean of
            :func:`cell_parts` over training faces); each face's shares are taken relative
            to it.
    """
    _check_grid("grid_a", grid_a)
    _check_grid("grid_b", grid_b)
    h, w = grid_a.shape[-2:]
    pa, pb = cell_parts(backbone, grid_a), cell_parts(backbone, grid_b)
    ea, eb = pa.sum(1), pb.sum(1)
    norm = (ea.norm(dim=1) * eb.norm(dim=1)).clamp_min(1e-12)  # (B,)
    cosine = (ea * eb).sum(1) / norm
    if reference is not None:
        ref = reference.to(pa.dtype).to(pa.device)
        if ref.shape != pa.shape[1:]:
            raise ValueError(f"reference must be (h*w, D) = {tuple(pa.shape[1:])}, got "
                             f"{tuple(ref.shape)}: build it with the same backbone grid")
        pa, pb = pa - ref, pb - ref
    # matmuls rather than einsum: einsum's path planning costs more than the maths here
    pairs = (pa @ pb.transpose(1, 2)) / norm.view(-1, 1, 1)
    cell_a = (pa @ eb.unsqueeze(2)).squeeze(2) / norm.view(-1, 1)
    cell_b = (pb @ ea.unsqueeze(2)).squeeze(2) / norm.view(-1, 1)
    return Decomposition(cell_a.view(-1, h, w), cell_b.view(-1, h, w), pairs,
                         cell_a.sum(1), cell_b.sum(1), cosine)


def reference_evidence(cos_map: torch.Tensor, attention: torch.Tensor,
                       cos_ref: torch.Tensor) -> torch.Tensor:
    """``(S - S_ref) * W``: ``(B, h, w)``; it sums to ``score - sum(S_ref * W)``.

    Example:
        >>> s = torch.tensor([[[0.75, 0.5]]]); w = torch.tensor([[[0.5, 0.5]]])
        >>> reference_evidence(s, w, torch.tensor([[0.75, 0.25]])).tolist()
        [[[0.0, 0.125]]]
    """
    return (cos_map - cos_ref.to(cos_map)) * attention


def replace_cells(grid: torch.Tensor, reference: torch.Tensor, cells: torch.Tensor):
    """``grid`` ``(B, D, h, w)`` with the cells where ``cells`` ``(B, h, w)`` is true set to
    ``reference`` ``(D, h, w)``."""
    keep = (~cells).unsqueeze(1).to(grid.dtype)
    return grid * keep + reference.to(grid).unsqueeze(0) * (1 - keep)


def feature_cell_deletion(model, grid_a: torch.Tensor, grid_b: torch.Tensor,
                          reference: torch.Tensor, target: str = "xcos"):
    """Score drop per cell when that cell's local descriptor is replaced by the reference.

    Args:
        model: the :class:`~xcos_xai.core.XCosModel` (its head scores the grids).
        grid_a, grid_b: ``(B, D, h, w)``.
        reference: ``(D, h, w)`` reference local descriptor of each cell.

    Returns:
        ``(drop_a, drop_b)``, each ``(B, h, w)``: ``score - score(cell replaced)`` for face A's
        cells (B fixed) and face B's cells (A fixed); ``h*w`` variants of each face in one
        head call.
    """
    b, d, h, w = grid_a.shape
    n = h * w
    eye = torch.eye(n, dtype=torch.bool, device=grid_a.device).view(n, h, w)
    base = pair_score_from_grids(model, grid_a, grid_b, target)

    def variants(grid):
        cells = eye.unsqueeze(0).expand(b, n, h, w).reshape(b * n, h, w)
        return replace_cells(grid.repeat_interleave(n, 0), reference, cells)

    va, vb = variants(grid_a), variants(grid_b)
    fixed_a, fixed_b = grid_a.repeat_interleave(n, 0), grid_b.repeat_interleave(n, 0)
    scores = pair_score_from_grids(model, torch.cat([va, fixed_a]), torch.cat([fixed_b, vb]),
                                   target)
    sa, sb = scores[:b * n].view(b, h, w), scores[b * n:].view(b, h, w)
    return base.view(-1, 1, 1) - sa, base.view(-1, 1, 1) - sb


def shifted_cell_drops(model, grid_a: torch.Tensor, grid_b: torch.Tensor,
                       shift: torch.Tensor, target: str = "xcos"):
    """Score drop per cell when the grid moves as occluding that cell moves it on average.

    Args:
        model: the :class:`~xcos_xai.core.XCosModel`.
        grid_a, grid_b: ``(B, D, h, w)``.
        shift: ``(h*w, D, h, w)``: the mean change of the whole local grid when cell ``i``'s
            pixels are replaced by the blurred face, measured on training faces
            (:class:`MapStats`). It spreads over neighbouring cells, as receptive fields do.

    Returns:
        ``(drop_a, drop_b)``, each ``(B, h, w)``: ``score - score(grid + shift[i])``.
    """
    b, d, h, w = grid_a.shape
    n = h * w
    if tuple(shift.shape) != (n, d, h, w):
        raise ValueError(f"shift must be (h*w, D, h, w) = {(n, d, h, w)}, got "
                         f"{tuple(shift.shape)}: rebuild the map statistics for this grid")
    base = pair_score_from_grids(model, grid_a, grid_b, target)
    shift = shift.to(grid_a)
    va = (grid_a.unsqueeze(1) + shift.unsqueeze(0)).flatten(0, 1)
    vb = (grid_b.unsqueeze(1) + shift.unsqueeze(0)).flatten(0, 1)
    fixed_a, fixed_b = grid_a.repeat_interleave(n, 0), grid_b.repeat_interleave(n, 0)
    scores = pair_score_from_grids(model, torch.cat([va, fixed_a]), torch.cat([fixed_b, vb]),
                                   target)
    sa, sb = scores[:b * n].view(b, h, w), scores[b * n:].view(b, h, w)
    return base.view(-1, 1, 1) - sa, base.view(-1, 1, 1) - sb


def score_gradients(grid_a: torch.Tensor, grid_b: torch.Tensor, attention: torch.Tensor,
                    eps: float = 1e-8):
    """``(grad_a, grad_b)``: the gradient of ``sum_c S_c W_c`` with respect to each face's grid
    ``(B, D, h, w)`` with the attention ``W`` held fixed, in closed form:
    ``d S_c / d a_c = (b_c / |b_c| - S_c a_c / |a_c|) / |a_c|`` (no autograd).

    Example (one cell, a = (1, 0), b = (1, 1), W = 1):

        >>> a = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
        >>> b = torch.tensor([1.0, 1.0]).view(1, 2, 1, 1)
        >>> ga, gb = score_gradients(a, b, torch.ones(1, 1, 1))
        >>> [round(v, 4) for v in ga.flatten().tolist()]  # (1, 1)/sqrt2 - cos * (1, 0)
        [0.0, 0.7071]
    """
    na = grid_a.norm(dim=1, keepdim=True).clamp_min(eps)
    nb = grid_b.norm(dim=1, keepdim=True).clamp_min(eps)
    ua, ub = grid_a / na, grid_b / nb
    s = (ua * ub).sum(1, keepdim=True)
    wt = attention.unsqueeze(1)
    return wt * (ub - s * ua) / na, wt * (ua - s * ub) / nb


def linearised_drops(grid_a: torch.Tensor, grid_b: torch.Tensor, attention: torch.Tensor,
                     reference: torch.Tensor, shift: torch.Tensor):
    """First-order versions of :func:`feature_cell_deletion` and :func:`shifted_cell_drops`
    (W held fixed): ``drop_i = -<d xCos / d grid, change_i>``, in closed form.

    Returns ``((del_a, del_b), (shift_a, shift_b))``, each ``(B, h, w)``.
    """
    grad_a, grad_b = score_gradients(grid_a, grid_b, attention)
    ref = reference.to(grid_a).unsqueeze(0)
    del_a = -(grad_a * (ref - grid_a)).sum(1)
    del_b = -(grad_b * (ref - grid_b)).sum(1)
    h, w = grid_a.shape[-2:]
    sh_a, sh_b = linear_shift_drops(grad_a, grad_b, shift)
    return (del_a, del_b), (sh_a.view(-1, h, w), sh_b.view(-1, h, w))


def linear_shift_drops(grad_a: torch.Tensor, grad_b: torch.Tensor, shift: torch.Tensor):
    """``(B, K)`` first-order score drops ``-<grad, shift_k>`` of K grid shifts ``(K, D, h, w)``
    (e.g. the mean effect of occluding each of K pixel blocks), for face A and face B."""
    flat = shift.to(grad_a).flatten(1)  # (K, D*h*w)
    return -(grad_a.flatten(1) @ flat.T), -(grad_b.flatten(1) @ flat.T)


# --------------------------------------------------------------------------- amortised occlusion


FEATURES = ("S", "W", "SW", "SW_ref", "exact", "exact_ref", "feature_deletion", "log_norm",
            "shift_drop")


def cell_features(model, grid_a: torch.Tensor, grid_b: torch.Tensor, stats: MapStats,
                  out=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, F)`` features of face A and of face B (9 per cell, ``FEATURES``).

    From the forward's grids and maps (no extra network call): S, W, S*W, the reference
    evidence, the exact split (plain and relative to the mean face), the first-order score
    drops of feature-space cell deletion and of the mean occlusion shift
    (:func:`linearised_drops`), and the log norm of each local descriptor. ``out`` is the
    head's :class:`~xcos_xai.core.XCosOutput` on the grids, if already computed.
    """
    if stats.occlusion_shift is None:
        raise ValueError("the amortised map needs the mean occlusion shift in the map "
                         "statistics: rebuild them with training/build_xcos_maps.py")
    out = out if out is not None else model.head(grid_a, grid_b)
    s, wt = out.cos_map, out.attention
    backbone = model.backbone
    h, w = grid_a.shape[-2:]
    pa, pb = cell_parts(backbone, grid_a, check=False), cell_parts(backbone, grid_b, check=False)
    ref = reference_parts(backbone, stats.local_ref.to(grid_a))
    ea, eb = pa.sum(1), pb.sum(1)
    norm = (ea.norm(dim=1) * eb.norm(dim=1)).clamp_min(1e-12).view(-1, 1)
    dot = lambda parts, e: (parts @ e.unsqueeze(2)).squeeze(2) / norm  # noqa: E731
    exact_a, exact_b = dot(pa, eb), dot(pb, ea)
    ref_a, ref_b = dot(pa - ref, eb), dot(pb - ref, ea)
    (del_a, del_b), (sh_a, sh_b) = linearised_drops(grid_a, grid_b, wt, stats.local_ref,
                                                    stats.occlusion_shift)
    sw_ref = reference_evidence(s, wt, stats.cos_ref)
    tiny = torch.finfo(grid_a.dtype).tiny
    common = [s, wt, s * wt, sw_ref]
    fa = common + [exact_a, ref_a, del_a, grid_a.norm(dim=1).clamp_min(tiny).log(), sh_a]
    fb = common + [exact_b, ref_b, del_b, grid_b.norm(dim=1).clamp_min(tiny).log(), sh_b]
    flat = lambda fs: torch.cat([f.reshape(len(f), -1) for f in fs], dim=1)  # noqa: E731
    return flat(fa), flat(fb)


def fine_features(model, grid_a: torch.Tensor, grid_b: torch.Tensor, stats: MapStats,
                  out=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, F + K)``: :func:`cell_features` and the first-order score drops of the K finer
    pixel blocks' mean occlusion shifts (``stats.fine_shift``), for face A and face B."""
    if stats.fine_shift is None:
        raise ValueError("the fine amortised map needs the fine occlusion shift in the map "
                         "statistics: rebuild them with training/build_xcos_maps.py")
    out = out if out is not None else model.head(grid_a, grid_b)
    fa, fb = cell_features(model, grid_a, grid_b, stats, out)
    grad_a, grad_b = score_gradients(grid_a, grid_b, out.attention)
    sa, sb = linear_shift_drops(grad_a, grad_b, stats.fine_shift)
    return torch.cat([fa, sa], 1), torch.cat([fb, sb], 1)


def reference_parts(backbone, local_ref: torch.Tensor) -> torch.Tensor:
    """``(h*w, D)``: the reference descriptor's share of the embedding in each cell."""
    return cell_parts(backbone, local_ref.unsqueeze(0), check=False)[0]


__all__ = ["AmortisedOcclusion", "Decomposition", "FEATURES", "MapStats", "cell_features",
           "cell_parts", "exact_decomposition", "feature_cell_deletion", "fine_features",
           "linear_shift_drops", "linearised_drops", "reference_evidence", "reference_parts",
           "replace_cells", "score_gradients", "shifted_cell_drops"]
