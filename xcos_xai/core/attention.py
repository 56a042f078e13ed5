"""Attention maps W of xCos: non-negative weights over the H*W grid cells summing to 1.

Every attention module has the same call: ``attention(grid_a, grid_b) -> (B, H, W)``
where the grids are the (adapted) ``(B, C, H, W)`` features of face A and face B.

- :class:`XCosAttention`: the learned module of the paper (order-dependent), or its
  symmetric form (``symmetric=True``) with ``W(A, B) == W(B, A)``.
- :class:`UniformAttention`: ``W = 1 / (H*W)``, so xCos is the mean patch cosine.
- :class:`PriorAttention`: a fixed, given map (e.g. the correlation prior of the paper).
- :class:`MaskedAttention`: another attention with some cells forced to 0, renormalised
  (ablations: drop the top-k cells, keep only a region).
- :class:`NormAttention`: weights from how strongly each cell speaks in both faces
  (the norms of their features), with a learned exponent and per-cell bias, optionally
  refined by the learned attention (for grids whose features are local descriptors).
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_pair


def softmax_cells(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(B, H, W)`` logits to weights summing to 1 over the H*W cells (``T > 0``).

    Example:
        >>> softmax_cells(torch.zeros(1, 2, 2), 1.0).tolist()
        [[[0.25, 0.25], [0.25, 0.25]]]
    """
    b, h, w = logits.shape
    return torch.softmax(logits.reshape(b, h * w) / temperature, dim=1).reshape(b, h, w)


class XCosAttention(nn.Module):
    """The learned attention of xCos.

    Per face: shared 3x3 conv (C -> hidden) + BN + PReLU (``embedding_net``); the two
    embeddings are concatenated (A then B) and a conv head (3x3 conv (2*hidden -> hidden) +
    BN + PReLU, 3x3 conv (hidden -> 1) + BN + PReLU; ``attention``) gives one logit per
    cell; ``W = softmax(logits / temperature)`` over the H*W cells.

    The submodule names and layout equal the released xCos checkpoints' ``attention.*``.

    Args:
        in_channels: channels C of the grids it sees (32 in the paper).
        hidden: width of the embedding (16 in the paper).
        temperature: softmax temperature T (> 0); larger spreads the weights.
        symmetric: if true, the logits are the mean of the (A, B) and (B, A) orders,
            so ``W(A, B) == W(B, A)`` exactly. The paper's form is order-dependent.
    """

    def __init__(self, in_channels: int = 32, hidden: int = 16, temperature: float = 1.0,
                 symmetric: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.in_channels = in_channels
        self.temperature = float(temperature)
        self.symmetric = symmetric
        self.embedding_net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=True),
            nn.BatchNorm2d(hidden),
            nn.PReLU(),
        )
        self.attention = nn.Sequential(
            nn.Conv2d(2 * hidden, hidden, 3, padding=1, bias=True),
            nn.BatchNorm2d(hidden),
            nn.PReLU(),
            nn.Conv2d(hidden, 1, 3, padding=1, bias=True),
            nn.BatchNorm2d(1),
            nn.PReLU(),
        )

    def logits(self, grid_a: torch.Tensor, grid_b: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` attention logits before the softmax."""
        check_pair("grid_a", grid_a, "grid_b", grid_b)
        if grid_a.shape[1] != self.in_channels:
            raise ValueError(f"grids have {grid_a.shape[1]} channels but the attention expects "
                             f"{self.in_channels}: build XCosAttention(in_channels="
                             f"{grid_a.shape[1]})")
        # Both faces through the shared embedding in one call: BN sees the whole pair batch.
        emb_a, emb_b = self.embedding_net(torch.cat([grid_a, grid_b], dim=0)).chunk(2, dim=0)
        if not self.symmetric:
            return self.attention(torch.cat([emb_a, emb_b], dim=1)).squeeze(1)
        both_orders = torch.cat([torch.cat([emb_a, emb_b], dim=1),
                                 torch.cat([emb_b, emb_a], dim=1)], dim=0)
        ab, ba = self.attention(both_orders).squeeze(1).chunk(2, dim=0)
        return 0.5 * (ab + ba)

    def forward(self, grid_a: torch.Tensor, grid_b: torch.Tensor) -> torch.Tensor:
        return softmax_cells(self.logits(grid_a, grid_b), self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, symmetric={self.symmetric}"


class UniformAttention(nn.Module):
    """``W = 1 / (H*W)`` for every cell: xCos becomes the mean patch cosine."""

    def forward(self, grid_a: torch.Tensor, grid_b: torch.Tensor) -> torch.Tensor:
        check_pair("grid_a", grid_a, "grid_b", grid_b)
        b, _, h, w = grid_a.shape
        return grid_a.new_full((b, h, w), 1.0 / (h * w))


class PriorAttention(nn.Module):
    """A fixed weighting: the given non-negative ``(H, W)`` map (or one ``(B, H, W)`` map per
    pair), normalised to sum 1."""

    def __init__(self, prior: torch.Tensor):
        super().__init__()
        prior = torch.as_tensor(prior)
        prior = prior if prior.is_floating_point() else prior.float()
        if prior.dim() not in (2, 3):
            raise ValueError(f"prior must be an (H, W) or (B, H, W) map, got shape "
                             f"{tuple(prior.shape)}")
        total = prior.flatten(-2).sum(-1)
        if not torch.isfinite(prior).all() or (prior < 0).any() or (total <= 0).any():
            raise ValueError("prior must be finite, non-negative and not all zero")
        self.register_buffer("prior", prior / total[..., None, None])

    def forward(self, grid_a: torch.Tensor, grid_b: torch.Tensor) -> torch.Tensor:
        check_pair("grid_a", grid_a, "grid_b", grid_b)
        if tuple(grid_a.shape[-2:]) != tuple(self.prior.shape[-2:]):
            raise ValueError(f"prior is {tuple(self.prior.shape[-2:])} but the grid is "
                             f"{tuple(grid_a.shape[-2:])}: give a prior of the grid's size")
        if self.prior.dim() == 3 and self.prior.shape[0] != grid_a.shape[0]:
            raise ValueError(f"prior has {self.prior.shape[0]} maps but the batch has "
                             f"{grid_a.shape[0]} pairs")
        return self.prior.to(grid_a.dtype).expand(grid_a.shape[0], -1, -1)


class MaskedAttention(nn.Module):
    """Another attention with masked cells set to 0 and the rest renormalised to sum 1.

    Args:
        base: the attention whose weights are masked.
        mask: ``(H, W)`` or ``(B, H, W)`` booleans, ``True`` where a cell is **kept**.
    """

    def __init__(self, base: nn.Module, mask: torch.Tensor):
        super().__init__()
        self.base = base
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.dim() not in (2, 3):
            raise ValueError(f"mask must be (H, W) or (B, H, W), got {tuple(mask.shape)}")
        if not mask.flatten(-2).any(-1).all():
            raise ValueError("mask keeps no cell: keep at least one cell per pair")
        self.register_buffer("mask", mask)

    def forward(self, grid_a: torch.Tensor, grid_b: torch.Tensor) -> torch.Tensor:
        weights = self.base(grid_a, grid_b) * self.mask.to(grid_a.dtype)
        total = weights.flatten(1).sum(1).clamp_min(torch.finfo(weights.dtype).tiny)
        return weights / total.view(-1, 1, 1)


class NormAttention(nn.Module):
    """``W = softmax((power * (log|a_c| + log|b_c|) + cell_bias [+ scale * learned]) / T)``.

    ``|a_c|`` is the norm of face A's feature at cell ``c``. With ``power = 1`` and no bias,
    ``W_c`` is proportional to ``|a_c| |b_c|`` and xCos becomes
    ``sum_c <a_c, b_c> / sum_c |a_c| |b_c|``: every cell counts as much as it weighs in
    both faces. That is the natural weighting when the cells hold *local descriptors* that
    average to the model's embedding (dlib's ``"4x4-local"`` grid): a region whose
    descriptor is short hardly moves the embedding, so it should hardly move the score.
    ``power`` and ``cell_bias`` are learned (2 + H*W numbers); with ``learned=True`` a
    paper-style :class:`XCosAttention` adds pair-dependent logits, scaled by a learned
    factor that starts at 0 (training starts from the norm weighting).

    Args:
        channels: feature channels (for the optional learned part).
        grid_size: ``(H, W)`` of the grid (the bias's shape).
        temperature: softmax temperature (> 0).
        learned: add the learned pair-dependent logits.
    """

    def __init__(self, channels: int, grid_size: tuple[int, int], temperature: float = 1.0,
                 learned: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.power = nn.Parameter(torch.tensor(1.0))
        self.cell_bias = nn.Parameter(torch.zeros(*grid_size))
        if learned:
            self.learned = XCosAttention(channels)
            self.learned_scale = nn.Parameter(torch.tensor(0.0))
        else:
            self.learned = None
            self.register_parameter("learned_scale", None)

    def logits(self, grid_a: torch.Tensor, grid_b: torch.Tensor) -> torch.Tensor:
        check_pair("grid_a", grid_a, "grid_b", grid_b)
        if tuple(grid_a.shape[-2:]) != tuple(self.cell_bias.shape):
            raise ValueError(f"this attention was built for {tuple(self.cell_bias.shape)} "
                             f"grids, got {tuple(grid_a.shape[-2:])}")
        tiny = torch.finfo(grid_a.dtype).tiny
        log_norms = (grid_a.norm(dim=1).clamp_min(tiny).log()
                     + grid_b.norm(dim=1).clamp_min(tiny).log())
        z = self.power * log_norms + self.cell_bias
        if self.learned is not None:
            z = z + self.learned_scale * self.learned.logits(grid_a, grid_b)
        return z

    def forward(self, grid_a: torch.Tensor, grid_b: torch.Tensor) -> torch.Tensor:
        return softmax_cells(self.logits(grid_a, grid_b), self.temperature)

    def extra_repr(self) -> str:
        return (f"grid={tuple(self.cell_bias.shape)}, temperature={self.temperature}, "
                f"learned={self.learned is not None}")


def build_attention(kind: str | nn.Module, channels: int, temperature: float = 1.0,
                    prior: torch.Tensor | None = None,
                    grid_size: tuple[int, int] | None = None) -> nn.Module:
    """Attention by name: ``"learned"`` (paper), ``"symmetric"``, ``"uniform"``, ``"prior"``,
    ``"norm"`` and ``"norm_learned"`` (:class:`NormAttention`; they need ``grid_size``)."""
    if isinstance(kind, nn.Module):
        return kind
    if kind in ("norm", "norm_learned"):
        if grid_size is None:
            raise ValueError(f'attention="{kind}" needs grid_size=(H, W)')
        return NormAttention(channels, tuple(grid_size), temperature,
                             learned=kind == "norm_learned")
    if kind == "learned":
        return XCosAttention(channels, temperature=temperature)
    if kind == "symmetric":
        return XCosAttention(channels, temperature=temperature, symmetric=True)
    if kind == "uniform":
        return UniformAttention()
    if kind == "prior":
        if prior is None:
            raise ValueError('attention="prior" needs prior=<(H, W) map>')
        return PriorAttention(prior)
    raise ValueError(f"unknown attention {kind!r}: choose learned, symmetric, uniform, prior, "
                     "norm or norm_learned")
