"""Test helpers: ``tiny_facenet``, a small backbone for tests, smoke runs and low-resolution
training from scratch on a CPU.

It is not part of the public registry: importing this module registers it (tests do;
``xcos-xai train --import xcos_xai.testing`` does for a smoke run).

``(B, 3, S, S)`` -> three stride-2 ``conv3x3 + BN + PReLU`` stages -> grid
``(B, 2 * width, S / 8, S / 8)`` -> flatten, linear -> embedding ``(B, embedding_dim)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .models.checkpoints import load_backbone_weights
from .models.registry import InputSpec, register_backbone

__all__ = ["TinyFaceNet"]


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.PReLU(c_out))


class TinyFaceNet(nn.Module):
    """A 3-stage CNN with the backbone contract (``forward_features``/``forward_head``).

    Args:
        size: input side in pixels (a multiple of 8).
        width: channels of the first stage (the grid has ``2 * width``).
        embedding_dim: size of the embedding.
    """

    def __init__(self, size: int = 32, width: int = 8, embedding_dim: int = 32):
        super().__init__()
        if size % 8 or size < 8:
            raise ValueError(f"size={size}: give a multiple of 8")
        self.input_spec = InputSpec((size, size), "RGB", (127.5,) * 3, (127.5,) * 3)
        self.grid_channels = 2 * width
        self.grid_size = (size // 8, size // 8)
        self.embedding_dim = embedding_dim
        self.body = nn.Sequential(_stage(3, width), _stage(width, 2 * width),
                                  _stage(2 * width, 2 * width))
        self.fc = nn.Linear(self.grid_channels * self.grid_size[0] * self.grid_size[1],
                            embedding_dim)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, *self.input_spec.size):
            raise ValueError(f"TinyFaceNet takes (B, 3, {self.input_spec.size[0]}, "
                             f"{self.input_spec.size[1]}) images, got {tuple(x.shape)}")
        return self.body(x)

    def forward_head(self, grid: torch.Tensor) -> torch.Tensor:
        return self.fc(grid.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_backbone("tiny_facenet")
def tiny_facenet(pretrained: bool | str | Path = False, **kwargs) -> TinyFaceNet:
    return load_backbone_weights(TinyFaceNet(**kwargs), pretrained, "tiny_facenet")
