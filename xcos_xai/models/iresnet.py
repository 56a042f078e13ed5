"""IResNet-18/34/50/100: the ArcFace backbones of InsightFace's ``arcface_torch``.

Parameter names and shapes equal those of ``recognition/arcface_torch/backbones/iresnet.py``,
so the released ``.pth`` files (e.g. ms1mv3/glint360k r50/r100) load with ``strict=True``::

    model = create_backbone("iresnet50", pretrained="ms1mv3_arcface_r50_fp16/backbone.pth")

Input ``(B, 3, 112, 112)``: aligned RGB faces normalised as ``(x / 255 - 0.5) / 0.5``
(:data:`~xcos_xai.models.registry.ARCFACE_RGB`). Shapes for one face:

=====================================================  ===============
stem: conv 3x3 (3 -> 64, stride 1), BN, PReLU(64)      64 x 112 x 112
``layer1``: blocks of 64 (the first has stride 2)      64 x 56 x 56
``layer2``: blocks of 128                              128 x 28 x 28
``layer3``: blocks of 256                              256 x 14 x 14
``layer4``: blocks of 512  (the xCos grid)             512 x 7 x 7
head: BN2d, flatten, dropout, fc, BN1d (``features``)  512
=====================================================  ===============

Blocks per stage: 18 -> 2/2/2/2, 34 -> 3/4/6/3, 50 -> 3/4/14/3, 100 -> 3/13/30/3.

An ``IBasicBlock`` is ``bn3(conv2(prelu(bn2(conv1(bn1(x)))))) + shortcut(x)`` (the second
conv carries the stride; no activation after the sum); the shortcut is ``x``, or a 1x1
conv (with the stride) + BN (``downsample.0``/``downsample.1``) when the shape changes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from .checkpoints import load_backbone_weights
from .registry import ARCFACE_RGB, register_backbone

__all__ = ["IBasicBlock", "IResNet", "IRESNET_LAYERS", "iresnet18", "iresnet34", "iresnet50",
           "iresnet100"]

IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}
_BN_EPS = 1e-5  # arcface_torch passes eps=1e-05 to every batch norm
_GRID = (7, 7)


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation style residual block of IResNet.

    ``(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)``.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        # Attribute order = arcface_torch's state-dict order.
        self.bn1 = nn.BatchNorm2d(in_channels, eps=_BN_EPS)
        self.conv1 = _conv3x3(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """InsightFace's IResNet as a registry backbone.

    Args:
        layers: blocks per stage, e.g. ``(3, 4, 14, 3)`` for IResNet-50.
        dropout: dropout probability before ``fc`` (arcface_torch's default 0).
        num_features: embedding size (512).
        zero_init_residual: start every block's last BN (``bn3``) at zero
            (arcface_torch's option of that name), so blocks begin as identities.
        fp16: run the convolutional part under autocast (float16 on CUDA, bfloat16 on
            CPU) and ``fc`` in float32, as arcface_torch's ``fp16=True`` does; the grid
            returned by :meth:`forward_features` is cast back to float32.

    Attributes:
        grid_channels: 512; grid_size: ``(7, 7)``; embedding_dim: ``num_features``;
        input_spec: :data:`~xcos_xai.models.registry.ARCFACE_RGB`.

    ``forward(x)`` equals arcface_torch's: ``features(fc(dropout(flatten(bn2(layer4(...))))))``,
    an unnormalised embedding (compare embeddings by cosine).
    """

    grid_channels = 512
    grid_size = _GRID
    input_spec = ARCFACE_RGB

    def __init__(self, layers: tuple[int, int, int, int] | list[int], dropout: float = 0.0,
                 num_features: int = 512, zero_init_residual: bool = False,
                 fp16: bool = False):
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive block counts, got {layers}")
        self.layers = tuple(int(n) for n in layers)
        self.fp16 = fp16
        self.embedding_dim = num_features
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=_BN_EPS)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._stage(64, 64, self.layers[0])
        self.layer2 = self._stage(64, 128, self.layers[1])
        self.layer3 = self._stage(128, 256, self.layers[2])
        self.layer4 = self._stage(256, 512, self.layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=_BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * _GRID[0] * _GRID[1], num_features)
        self.features = nn.BatchNorm1d(num_features, eps=_BN_EPS)
        self._init_weights(zero_init_residual)

    @staticmethod
    def _stage(in_channels: int, channels: int, blocks: int) -> nn.Sequential:
        # Every stage halves the resolution in its first block, whose shortcut is therefore
        # always a strided 1x1 conv + BN (also in layer1, where the channels stay 64).
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=1, stride=2, bias=False),
            nn.BatchNorm2d(channels, eps=_BN_EPS),
        )
        units = [IBasicBlock(in_channels, channels, stride=2, downsample=downsample)]
        units += [IBasicBlock(channels, channels) for _ in range(blocks - 1)]
        return nn.Sequential(*units)

    @torch.no_grad()
    def _init_weights(self, zero_init_residual: bool) -> None:
        # arcface_torch's initialisation: conv filters ~ N(0, 0.1), BN scale 1 / shift 0,
        # and the embedding BN's scale fixed at 1 (it is not trained).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, IBasicBlock):
                    nn.init.zeros_(m.bn3.weight)

    def _autocast(self, x: torch.Tensor):
        if not self.fp16:
            return contextlib.nullcontext()
        dtype = torch.float16 if x.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=x.device.type, dtype=dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` normalised RGB faces to the grid ``(B, 512, 7, 7)``."""
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.input_spec.size:
            raise ValueError(f"IResNet takes (B, 3, 112, 112) aligned faces normalised by "
                             f"input_spec, got a tensor of shape {tuple(x.shape)}")
        with self._autocast(x):
            x = self.prelu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.float()

    def forward_head(self, grid: torch.Tensor) -> torch.Tensor:
        """The grid ``(B, 512, 7, 7)`` to the (unnormalised) embedding ``(B, num_features)``."""
        if grid.dim() != 4 or tuple(grid.shape[1:]) != (512, *_GRID):
            raise ValueError(f"forward_head takes a (B, 512, 7, 7) grid, got "
                             f"{tuple(grid.shape)}")
        with self._autocast(grid):
            x = self.dropout(torch.flatten(self.bn2(grid), 1))
        return self.features(self.fc(x.float()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` faces to embeddings ``(B, num_features)``."""
        return self.forward_head(self.forward_features(x))


def _factory(depth: int):
    def build(pretrained: bool | str | Path = False, **kwargs) -> IResNet:
        model = IResNet(IRESNET_LAYERS[depth], **kwargs)
        return load_backbone_weights(model, pretrained, f"iresnet{depth}")

    build.__name__ = f"iresnet{depth}"
    build.__qualname__ = build.__name__
    build.__doc__ = (
        f"IResNet-{depth} (blocks {IRESNET_LAYERS[depth]}) of InsightFace arcface_torch.\n\n"
        "Args:\n"
        "    pretrained: ``False`` (random weights) or a path to an arcface_torch state dict\n"
        "        (``.pth``/``.pt`` or ``.safetensors``), loaded safely with ``strict=True``.\n"
        "    **kwargs: :class:`IResNet` options (``dropout``, ``num_features``,\n"
        "        ``zero_init_residual``, ``fp16``).\n")
    return build


iresnet18 = register_backbone("iresnet18")(_factory(18))
iresnet34 = register_backbone("iresnet34")(_factory(34))
iresnet50 = register_backbone("iresnet50")(_factory(50))
iresnet100 = register_backbone("iresnet100")(_factory(100))
