"""The patch cosine map S of xCos."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_pair


def patch_cosine_map(grid_a: torch.Tensor, grid_b: torch.Tensor,
                     eps: float = 1e-8) -> torch.Tensor:
    """Cosine between the two faces' feature vectors at each grid cell.

    Args:
        grid_a, grid_b: ``(B, C, H, W)`` feature grids of face A and face B.
        eps: lower bound on each vector's norm (an all-zero cell gives cosine 0).

    Returns:
        ``(B, H, W)`` map ``S`` with ``S[b, i, j] = cos(grid_a[b, :, i, j], grid_b[b, :, i, j])``,
        in ``[-1, 1]``. Cells are compared at the same location only (faces are aligned).

    Example:
        >>> a = torch.tensor([[[[1.0]], [[0.0]]]])  # (1, 2, 1, 1): vector (1, 0)
        >>> b = torch.tensor([[[[1.0]], [[1.0]]]])  # vector (1, 1)
        >>> round(patch_cosine_map(a, b).item(), 4)
        0.7071
    """
    check_pair("grid_a", grid_a, "grid_b", grid_b)
    unit_a = F.normalize(grid_a, dim=1, eps=eps)
    unit_b = F.normalize(grid_b, dim=1, eps=eps)
    return (unit_a * unit_b).sum(dim=1).clamp(-1.0, 1.0)
