"""Shape checks at the API boundary: one clear sentence per mistake."""

from __future__ import annotations

import torch


def check_grid(name: str, grid: torch.Tensor) -> None:
    """A feature grid must be a finite float tensor of shape ``(B, C, H, W)``."""
    if not isinstance(grid, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(grid)}")
    if grid.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(grid.shape)}: "
                         "add a batch dimension with .unsqueeze(0) for a single face")
    if not grid.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got {grid.dtype}: call .float() first")


def check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    check_grid(name_a, a)
    check_grid(name_b, b)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}: both faces must go through "
                         "the same backbone at the same resolution")
