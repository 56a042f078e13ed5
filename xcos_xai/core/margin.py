"""Margin softmax heads for the identity loss: ArcFace and CosFace."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _CosineClassifier(nn.Module):
    """Cosines between L2-normalised embeddings and L2-normalised class centres."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float, margin: float):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.scale = float(scale)
        self.margin = float(margin)
        weight = torch.empty(num_classes, embedding_dim).uniform_(-1, 1)
        self.weight = nn.Parameter(F.normalize(weight, dim=1))

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"embeddings must be (B, {self.embedding_dim}), got "
                             f"{tuple(embeddings.shape)}")
        cos = F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))
        return cos.clamp(-1.0, 1.0)

    def _check_labels(self, labels: torch.Tensor, batch: int) -> None:
        if labels.shape != (batch,):
            raise ValueError(f"labels must be ({batch},), got {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")

    def target_logit(self, cos_target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` embeddings and ``(B,)`` labels to ``(B, num_classes)`` scaled logits."""
        cos = self.cosine(embeddings)
        self._check_labels(labels, cos.shape[0])
        target = cos.gather(1, labels.view(-1, 1))
        logits = cos.scatter(1, labels.view(-1, 1), self.target_logit(target))
        return logits * self.scale

    def extra_repr(self) -> str:
        return (f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, "
                f"scale={self.scale}, margin={self.margin}")


class ArcFaceHead(_CosineClassifier):
    """ArcFace (additive angular margin): target logit ``s * cos(theta + m)``.

    Where ``theta + m`` would pass pi (``cos theta <= cos(pi - m)``), ``cos(theta + m)`` stops
    being monotonic in theta; the standard fallback ``cos theta - m * sin m`` is used there.
    """

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 64.0,
                 margin: float = 0.5):
        super().__init__(embedding_dim, num_classes, scale, margin)

    def target_logit(self, cos_target: torch.Tensor) -> torch.Tensor:
        m = self.margin
        sin_target = torch.sqrt((1.0 - cos_target * cos_target).clamp_min(0.0))
        with_margin = cos_target * math.cos(m) - sin_target * math.sin(m)
        fallback = cos_target - m * math.sin(m)
        return torch.where(cos_target > math.cos(math.pi - m), with_margin, fallback)


class CosFaceHead(_CosineClassifier):
    """CosFace (additive cosine margin): target logit ``s * (cos theta - m)``."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 30.0,
                 margin: float = 0.35):
        super().__init__(embedding_dim, num_classes, scale, margin)

    def target_logit(self, cos_target: torch.Tensor) -> torch.Tensor:
        return cos_target - self.margin


def create_margin_head(name: str, embedding_dim: int, num_classes: int, **kwargs) -> nn.Module:
    """``"arcface"`` or ``"cosface"`` head with the paper's defaults unless overridden."""
    heads = {"arcface": ArcFaceHead, "cosface": CosFaceHead}
    if name not in heads:
        raise ValueError(f"unknown margin head {name!r}: choose one of {sorted(heads)}")
    return heads[name](embedding_dim, num_classes, **kwargs)
