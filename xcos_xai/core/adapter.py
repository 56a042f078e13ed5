"""The grid adapter: reduces a backbone's grid channels for xCos."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_grid


class GridAdapter(nn.Module):
    """``(B, C_in, H, W) -> (B, C_out, H, W)``: 1x1 conv (with bias) + BatchNorm + PReLU.

    Shared by both faces (Siamese). The submodule is called ``conv1x1`` so that the
    released xCos checkpoints' ``backbone.conv1x1.*`` weights load unchanged.

    Args:
        in_channels: the backbone grid's channels.
        out_channels: channels compared by the patch cosine (32 in the paper).
        context_channels: if set, a 3x3 conv (``in -> context_channels``) + BN + PReLU runs
            before the 1x1 reduction (a "stronger adapter": each cell sees its neighbours).
            ``None`` is the paper's plain 1x1 adapter.
        grid_size: if set, a learned per-cell offset of shape ``(C_out, H, W)`` is
            subtracted at the end, so a component that every face shares at a given cell
            (common to all descriptors) can be removed before the cosine.
    """

    def __init__(self, in_channels: int, out_channels: int = 32,
                 context_channels: int | None = None,
                 grid_size: tuple[int, int] | None = None):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        if context_channels:
            self.context = nn.Sequential(
                nn.Conv2d(in_channels, context_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(context_channels),
                nn.PReLU(context_channels),
            )
        else:
            self.context = nn.Identity()
        reduce_in = context_channels or in_channels
        self.conv1x1 = nn.Sequential(
            nn.Conv2d(reduce_in, out_channels, kernel_size=1, bias=True),
            nn.BatchNorm2d(out_channels),
            nn.PReLU(out_channels),
        )
        if grid_size is not None:
            self.cell_offset = nn.Parameter(torch.zeros(out_channels, *grid_size))
        else:
            self.register_parameter("cell_offset", None)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        check_grid("grid", grid)
        if grid.shape[1] != self.in_channels:
            raise ValueError(f"grid has {grid.shape[1]} channels but this adapter expects "
                             f"{self.in_channels}: build GridAdapter(in_channels={grid.shape[1]})")
        out = self.conv1x1(self.context(grid))
        if self.cell_offset is not None:
            if tuple(out.shape[-2:]) != tuple(self.cell_offset.shape[-2:]):
                raise ValueError(f"grid is {tuple(out.shape[-2:])} but the adapter's per-cell "
                                 f"offset is {tuple(self.cell_offset.shape[-2:])}")
            out = out - self.cell_offset
        return out
