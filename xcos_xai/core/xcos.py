"""The xCos score and the head that computes it from two feature grids."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ._checks import check_pair
from .adapter import GridAdapter
from .attention import build_attention
from .cosine import patch_cosine_map


class XCosOutput(NamedTuple):
    """Everything xCos says about a batch of pairs.

    Attributes:
        score: ``(B,)`` xCos = sum over cells of ``cos_map * attention``, in [-1, 1].
        cos_map: ``(B, H, W)`` patch cosine map S.
        attention: ``(B, H, W)`` attention W (non-negative, sums to 1 per pair).
        contribution: ``(B, H, W)`` S * W; it sums to ``score``.
        model_cosine: ``(B,)`` cosine of the plugged (original) model's embeddings, or
            ``None`` when no model was run (head applied to grids alone).
    """

    score: torch.Tensor
    cos_map: torch.Tensor
    attention: torch.Tensor
    contribution: torch.Tensor
    model_cosine: torch.Tensor | None = None


def evidence_map(cos_map, attention, threshold: float):
    """The evidence ``(S - t) * W``: each cell's share of ``score - t`` (it sums to
    ``score - t``; positive cells push towards "same person"). The one place it is computed:
    tensors or arrays of one shape (``(H, W)`` or ``(B, H, W)``) in, the same out.

    Example:
        >>> s = torch.tensor([[1.0, 0.0], [0.5, -1.0]])
        >>> w = torch.tensor([[0.4, 0.1], [0.4, 0.1]])
        >>> evidence_map(s, w, 0.5).tolist()  # sums to 0.5 - 0.5 = 0
        [[0.20000000298023224, -0.05000000074505806], [0.0, -0.15000000596046448]]
    """
    return (cos_map - threshold) * attention


def xcos_from_maps(cos_map: torch.Tensor, attention: torch.Tensor) -> XCosOutput:
    """Combine S and W: ``contribution = S * W`` and ``score = contribution.sum((1, 2))``.

    Example:
        >>> s = torch.tensor([[[1.0, 0.0], [0.5, -1.0]]])
        >>> w = torch.tensor([[[0.4, 0.1], [0.4, 0.1]]])
        >>> round(xcos_from_maps(s, w).score.item(), 4)  # 0.4 + 0 + 0.2 - 0.1
        0.5
    """
    if cos_map.shape != attention.shape or cos_map.dim() != 3:
        raise ValueError(f"cos_map and attention must both be (B, H, W), got "
                         f"{tuple(cos_map.shape)} and {tuple(attention.shape)}")
    contribution = cos_map * attention
    return XCosOutput(contribution.sum(dim=(1, 2)), cos_map, attention, contribution)


class XCosHead(nn.Module):
    """From two backbone grids to xCos: adapter, patch cosines, attention, weighted sum.

    Args:
        in_channels: channels of the backbone grid (e.g. 512 for IResNets, 256 for dlib 4x4).
        channels: channels after the 1x1 grid adapter (32 in the paper); ``None`` skips the
            adapter and compares the backbone's channels directly.
        attention: ``"learned"`` (the paper's), ``"symmetric"``, ``"uniform"``, ``"prior"``
            or any module with the attention call ``(grid_a, grid_b) -> (B, H, W)``.
        temperature: softmax temperature of a learned attention.
        prior: the ``(H, W)`` map for ``attention="prior"``.
        context_channels, grid_size: options of :class:`GridAdapter` (a 3x3 context conv
            before the reduction; a learned per-cell offset removed before the cosine).
        cells: ``(H, W)`` of the grid, for attentions with per-cell parameters
            (``"norm"``, ``"norm_learned"``).

    Shapes: ``forward(grid_a, grid_b)`` with ``(B, in_channels, H, W)`` grids returns an
    :class:`XCosOutput` of ``(B,)`` scores and ``(B, H, W)`` maps.
    """

    def __init__(self, in_channels: int, channels: int | None = 32,
                 attention: str | nn.Module = "learned", temperature: float = 1.0,
                 prior: torch.Tensor | None = None, context_channels: int | None = None,
                 grid_size: tuple[int, int] | None = None,
                 cells: tuple[int, int] | None = None):
        super().__init__()
        self.in_channels = in_channels
        self.adapter = (GridAdapter(in_channels, channels, context_channels, grid_size)
                        if channels else nn.Identity())
        self.channels = channels or in_channels
        self.attention = build_attention(attention, self.channels, temperature, prior,
                                         grid_size=cells or grid_size)

    def adapt(self, grid: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` to the adapted ``(B, channels, H, W)`` grid."""
        return self.adapter(grid)

    def forward(self, grid_a: torch.Tensor, grid_b: torch.Tensor) -> XCosOutput:
        check_pair("grid_a", grid_a, "grid_b", grid_b)
        if grid_a.shape[1] != self.in_channels:
            raise ValueError(f"grids have {grid_a.shape[1]} channels but this head was built "
                             f"for {self.in_channels}: build XCosHead(in_channels="
                             f"{grid_a.shape[1]}) or use the matching backbone grid")
        # One adapter call for both faces, so BatchNorm statistics cover the whole pair batch.
        feat_a, feat_b = self.adapter(torch.cat([grid_a, grid_b], dim=0)).chunk(2, dim=0)
        return self.forward_adapted(feat_a, feat_b)

    def forward_adapted(self, feat_a: torch.Tensor, feat_b: torch.Tensor) -> XCosOutput:
        """xCos from already adapted grids (e.g. to swap the attention in an ablation)."""
        return xcos_from_maps(patch_cosine_map(feat_a, feat_b), self.attention(feat_a, feat_b))

    def with_attention(self, attention: nn.Module) -> XCosHead:
        """A head sharing this head's adapter but with another attention (for ablations)."""
        clone = XCosHead.__new__(XCosHead)
        nn.Module.__init__(clone)
        clone.in_channels, clone.channels = self.in_channels, self.channels
        clone.adapter = self.adapter
        clone.attention = attention
        return clone
