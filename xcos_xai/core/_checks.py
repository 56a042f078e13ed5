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


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """The one pair-shape check: both faces (or grids) of a pair batch have one shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}: both faces must go through "
                         "the same backbone at the same resolution")


def check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Two ``(B, C, H, W)`` grids of one pair batch."""
    check_grid(name_a, a)
    check_grid(name_b, b)
    check_same_shape(name_a, a, name_b, b)


def check_images(name: str, x: torch.Tensor) -> None:
    """Preprocessed faces: a finite float tensor of shape ``(B, 3, H, W)``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, 3, H, W) float tensor of preprocessed faces, "
                         f"got {shape}: align and normalise faces with the model's input_spec")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got {x.dtype}: normalise it with "
                        "model.input_spec.normalize(...)")
    # the sum is finite when every value is (one reduction, not a mask of the image); only a
    # sum that overflows or is NaN needs the elementwise test
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values: check the preprocessing")


def check_image_pair(x_a: torch.Tensor, x_b: torch.Tensor) -> None:
    """The faces ``x_a``, ``x_b`` of a pair batch: each as :func:`check_images`, one shape."""
    check_images("x_a", x_a)
    check_images("x_b", x_b)
    check_same_shape("x_a", x_a, "x_b", x_b)
