"""The pair score as a sum of terms, for the methods that split it (xSSAB, FGGB).

The embedding cosine is a sum over the ``D`` embedding dimensions,
``cos(a, b) = sum_k a_k b_k / (|a| |b|)``; the xCos score is a sum over the ``h * w`` grid
cells, ``xcos = sum_ij W_ij S_ij``. Both verification-specific gradient methods of the
literature (xSSAB, Huber et al. WACV 2024; FGGB, Lu et al. 2024) work on such terms: a term
above ``threshold / D`` supports the match (it pulls the score above the threshold), a term
below it opposes it. :func:`score_terms` gives the terms of either target with the decision
threshold that goes with it, so both methods explain both targets the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def embeddings(model, x: torch.Tensor, target: str = "model_cosine") -> torch.Tensor:
    """``(B, D)`` embeddings of ``(B, 3, H, W)`` faces whose cosine is the model's score
    (the teacher's when the model has one, else the backbone's own head)."""
    if getattr(model, "teacher", None) is not None:
        return model.teacher(x)
    return model.backbone.forward_head(model.backbone.forward_features(x))


def threshold_of(model, target: str) -> float:
    """The fixed decision threshold of ``target`` (same person if the score is above)."""
    return float(model.threshold if target == "xcos" else model.model_threshold)


def score_terms(model, x_a: torch.Tensor, x_b: torch.Tensor,
                target: str = "xcos") -> torch.Tensor:
    """``(B, D)`` terms whose sum over ``D`` is the pair score ``(B,)`` (differentiable).

    ``target="model_cosine"``: ``D`` embedding dimensions, term ``k = a_k b_k / (|a||b|)``.
    ``target="xcos"``: ``D = h * w`` grid cells, term ``ij = W_ij S_ij`` (the contribution
    map, row-major).

    Example:
        >>> from xcos_xai.core import XCosHead, XCosModel
        >>> class Flat(torch.nn.Module):  # the embedding is the first 2 pixels of channel 0
        ...     def forward_features(self, x):
        ...         return x[:, :1, 0, :2].reshape(len(x), 2, 1, 1)
        ...     def forward_head(self, grid):
        ...         return grid.flatten(1)
        >>> model = XCosModel(Flat(), XCosHead(2, None, attention="uniform"))
        >>> x_a, x_b = torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
        >>> x_a[0, 0, 0] = torch.tensor([3.0, 4.0]); x_b[0, 0, 0] = torch.tensor([1.0, 0.0])
        >>> score_terms(model, x_a, x_b, "model_cosine").tolist()  # (3, 4)/5 . (1, 0)
        [[0.6000000238418579, 0.0]]
    """
    if target == "xcos":
        grid_a, grid_b = model.backbone.forward_features(torch.cat([x_a, x_b])).chunk(2)
        return model.head(grid_a, grid_b).contribution.flatten(1)
    emb_a, emb_b = embeddings(model, torch.cat([x_a, x_b]), target).chunk(2)
    return F.normalize(emb_a, dim=1) * F.normalize(emb_b, dim=1)

