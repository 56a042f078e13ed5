"""FGGB: feature-guided gradient backpropagation (Lu, Xu and Ebrahimi, arXiv 2403.04549).

Implemented from the paper's description. Each feature channel ``k`` of a face gets its own
input-gradient map ``G^k = sum_c |d F^k / d x_c|``, normalised to a maximum of 1 (so that
channels with large gradients do not drown the others). The maps are then weighted by how
much the channel agrees between the two faces, relative to its share of the threshold:
``S = sum_k G~^k (w_k - threshold / N)`` with ``w_k = a_k b_k / (|a| |b|)`` (the ``w_k`` sum
to the cosine). ``S > 0``: the similarity map; ``S < 0``: the dissimilarity map.

All ``N`` channel gradients of a face come from one batched Jacobian
(:func:`torch.func.jacrev`, vectorised over the channels): 1 forward and ``N`` vectorised
backwards per face. For xCos the channels are the grid cells: ``F^ij`` is the patch cosine
``S_ij`` of this face against the other's fixed grid and ``w_ij = W_ij S_ij`` (the
contributions, which sum to the xCos score).
"""

from __future__ import annotations

import torch
from torch.func import jacrev

from ..core.cosine import patch_cosine_map
from .base import PairExplainer, register_explainer, to_grid
from .score_terms import embeddings, score_terms, threshold_of


def normalised_channel_gradients(jacobian: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` Jacobian to ``(N, H, W)`` maps ``sum_c |J|``, each scaled to max 1
    (an all-zero channel stays 0).

    Example:
        >>> j = torch.tensor([[[[2.0, -4.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])  # (1, 3, 1, 2)
        >>> normalised_channel_gradients(j).tolist()
        [[[0.5, 1.0]]]
    """
    g = jacobian.abs().sum(1)
    peak = g.flatten(1).amax(1).clamp_min(torch.finfo(g.dtype).tiny)
    return g / peak[:, None, None]


def fggb_map(channel_maps: torch.Tensor, agreement: torch.Tensor,
             threshold: float) -> torch.Tensor:
    """``S = sum_k G~^k (w_k - threshold / N)``: ``(N, H, W)`` maps and ``(N,)`` agreements
    to the ``(H, W)`` signed map.

    Example:
        >>> g = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # channel 0 on pixel 0, 1 on 1
        >>> fggb_map(g, torch.tensor([0.5, 0.1]), 0.4).tolist()  # cut 0.2: +0.3, -0.1
        [[0.30000001192092896, -0.10000000149011612]]
    """
    n = agreement.shape[0]
    weights = agreement - threshold / n
    return torch.einsum("k,khw->hw", weights.to(channel_maps.dtype), channel_maps)


@register_explainer("fggb")
class FGGBExplainer(PairExplainer):
    """Similarity (``S > 0``) and dissimilarity (``S < 0``) maps from channel gradients.

    ``map = S`` (signed). ``extras``: ``similarity_a = relu(S_a)``,
    ``dissimilarity_a = relu(-S_a)``, the same for B, ``agreement`` (``(B, N)`` the
    ``w_k``) and ``score``.

    Args:
        chunk_size: channels per vectorised backward inside the Jacobian (memory: one
            chunk holds ``chunk_size`` copies of the backbone's activations).
    """

    label = "FGGB (Lu et al. 2024), feature-guided gradient backpropagation"
    short_label = "FGGB"

    def __init__(self, model, chunk_size: int | None = 32, **kwargs):
        super().__init__(model, **kwargs)
        self.chunk_size = chunk_size

    def channels(self, target: str) -> int:
        """``N``: embedding dimensions (model cosine) or grid cells (xCos)."""
        if target == "xcos":
            h, w = self.grid_size(torch.zeros(1, 3, *self.model.input_spec.size))
            return h * w
        teacher = getattr(self.model, "teacher", None)
        dim = getattr(teacher if teacher is not None else self.model.backbone,
                      "embedding_dim", None)
        if dim is None:
            raise ValueError("the model states no embedding_dim: count the passes yourself")
        return int(dim)

    def pass_count(self, target: str = "xcos") -> float:
        # per face: 1 forward and N vectorised backwards (one per channel)
        return 2 * (1 + self.channels(target))

    def _jacobian(self, fn, x: torch.Tensor) -> torch.Tensor:
        return jacrev(lambda v: fn(v[None])[0], chunk_size=self.chunk_size)(x)

    def _attribute(self, x_a, x_b, target):
        model = self.model
        threshold = threshold_of(model, target)
        with torch.no_grad():
            agreement = score_terms(model, x_a, x_b, target)  # (B, N), sums to the score
            if target == "xcos":
                grid_a, grid_b = model.backbone.forward_features(torch.cat([x_a, x_b])).chunk(2)
                feat_a, feat_b = model.head.adapt(torch.cat([grid_a, grid_b])).chunk(2)
        maps_a, maps_b = [], []
        for i in range(len(x_a)):
            if target == "xcos":
                def cells_against(fixed):
                    def fn(v):
                        own = model.head.adapt(model.backbone.forward_features(v))
                        return patch_cosine_map(own, fixed.expand_as(own)).flatten(1)
                    return fn

                fn_a, fn_b = cells_against(feat_b[i:i + 1]), cells_against(feat_a[i:i + 1])
            else:
                def fn_a(v):
                    return embeddings(model, v, target)

                fn_b = fn_a
            with torch.enable_grad():
                jac_a = self._jacobian(fn_a, x_a[i])
                jac_b = self._jacobian(fn_b, x_b[i])
            w = agreement[i]
            maps_a.append(fggb_map(normalised_channel_gradients(jac_a), w, threshold))
            maps_b.append(fggb_map(normalised_channel_gradients(jac_b), w, threshold))
        map_a, map_b = torch.stack(maps_a).detach(), torch.stack(maps_b).detach()
        grid = self.grid_size(x_a)
        extras = {"similarity_a": map_a.clamp_min(0), "dissimilarity_a": (-map_a).clamp_min(0),
                  "similarity_b": map_b.clamp_min(0), "dissimilarity_b": (-map_b).clamp_min(0),
                  "agreement": agreement, "score": agreement.sum(1)}
        return map_a, map_b, to_grid(map_a, grid), to_grid(map_b, grid), extras
