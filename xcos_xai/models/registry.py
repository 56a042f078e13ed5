"""A registry of face backbones and the factory that builds them (timm's habit).

Every backbone is an ``nn.Module`` following :class:`FaceBackbone`'s contract:

- ``forward_features(x) -> grid``: ``(B, 3, H_in, W_in)`` preprocessed images to the
  conv feature grid ``(B, C, H, W)`` that xCos compares cell by cell;
- ``forward_head(grid) -> embedding``: the grid to the model's (unnormalised) embedding;
- ``forward(x) = forward_head(forward_features(x))``;
- attributes ``grid_channels``, ``grid_size`` (H, W), ``embedding_dim`` and ``input_spec``
  (an :class:`InputSpec`: image size, channel order and normalisation).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


@dataclass(frozen=True)
class InputSpec:
    """How a backbone expects its images: ``x = (pixels[0..255] - mean) / std`` per channel."""

    size: tuple[int, int]  # (height, width) of the aligned face
    channel_order: str  # "RGB" or "BGR"
    mean: tuple[float, float, float]  # in the backbone's channel order, 0..255 scale
    std: tuple[float, float, float]

    def normalize(self, images_uint8_rgb: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` RGB pixels in 0..255 (any dtype) to the backbone's input."""
        x = images_uint8_rgb.float()
        if self.channel_order == "BGR":
            x = x.flip(1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


ARCFACE_RGB = InputSpec((112, 112), "RGB", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))
ARCFACE_BGR = InputSpec((112, 112), "BGR", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))


def register_backbone(name: str):
    """Decorator: register a factory ``fn(**kwargs) -> nn.Module`` under ``name``."""

    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`, sorted."""
    _import_builtin()
    return sorted(_REGISTRY)


def create_backbone(name: str, pretrained: bool | str = False, **kwargs) -> nn.Module:
    """Build a registered backbone.

    ``pretrained`` may be ``False``, ``True`` (weights that ship with an installed package,
    where the backbone has such; never downloaded) or a path to a checkpoint, which is
    loaded safely (safetensors, or ``torch.load(weights_only=True)``) with ``strict=True``.
    """
    _import_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}: choose one of {sorted(_REGISTRY)}")
    return _REGISTRY[name](pretrained=pretrained, **kwargs)


_BUILTIN = ("dlib_resnet", "iresnet", "irse", "sface")


def _import_builtin() -> None:
    # Importing the modules runs their @register_backbone decorators.
    for module in _BUILTIN:
        if importlib.util.find_spec(f"{__package__}.{module}") is not None:
            importlib.import_module(f"{__package__}.{module}")
