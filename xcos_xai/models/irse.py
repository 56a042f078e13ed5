"""IR-50/100/152 and IR-SE-50/100/152: TreB1eN InsightFace_Pytorch's ``Backbone``.

This is the network the xCos authors plugged into (Lin et al., ACM TOMM 2021, section 2.2).
Parameter names and shapes equal TreB1eN's, so ``model_ir_se50.pth`` loads with
``strict=True``::

    model = create_backbone("ir_se50", pretrained="model_ir_se50.pth")

Input ``(B, 3, 112, 112)``: aligned faces **in BGR order**, normalised to [-1, 1] as
``(x / 255 - 0.5) / 0.5`` (:data:`~xcos_xai.models.registry.ARCFACE_BGR`; TreB1eN's data
pipeline is BGR throughout, method doc section 2.1). Shapes for one face:

==================================================  ===============
``input_layer``: conv 3x3 (3 -> 64), BN, PReLU(64)  64 x 112 x 112
``body``: stage of 64 (first unit stride 2)         64 x 56 x 56
stage of 128                                        128 x 28 x 28
stage of 256                                        256 x 14 x 14
stage of 512  (the xCos grid)                       512 x 7 x 7
``output_layer``: BN2d, Dropout, Flatten, Linear,   512
BN1d (indices 0..4)
==================================================  ===============

Units per stage: 50 -> 3/4/14/3, 100 -> 3/13/30/3, 152 -> 3/8/36/3; ``body.N`` numbers the
units across all stages. A unit is ``res_layer(x) + shortcut_layer(x)`` with ``res_layer``
= BN, conv 3x3, PReLU, conv 3x3 (stride), BN[, SE] and ``shortcut_layer`` a 1x1 max pool
with the stride (no parameters) when the channels stay, else conv 1x1 (stride) + BN.
The SE module (``res_layer.5``) gates channels with ``sigmoid(fc2(relu(fc1(mean(x)))))``,
``fc1``/``fc2`` being 1x1 convs without bias and reduction 16.

Unlike TreB1eN's ``forward``, which L2-normalises the embedding, :meth:`IRNet.forward_head`
(and so ``forward``) returns the **unnormalised** ``output_layer`` output, as every registry
backbone does; cosines are unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .checkpoints import load_backbone_weights
from .registry import ARCFACE_BGR, register_backbone

__all__ = ["BottleneckIR", "IRNet", "IR_UNITS", "SEModule", "ir50", "ir100", "ir152", "ir_se50",
           "ir_se100", "ir_se152"]

IR_UNITS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    152: (3, 8, 36, 3),
}
_GRID = (7, 7)


class SEModule(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(fc2(relu(fc1(avg_pool(x)))))``, shape kept."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class BottleneckIR(nn.Module):
    """One IR (``se=False``) or IR-SE unit: ``res_layer(x) + shortcut_layer(x)``.

    ``(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)``.
    """

    def __init__(self, in_channels: int, channels: int, stride: int, se: bool = True):
        super().__init__()
        # shortcut_layer first: TreB1eN's state-dict order.
        if in_channels == channels:
            self.shortcut_layer = nn.MaxPool2d(kernel_size=1, stride=stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )
        branch = [
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        ]
        if se:
            branch.append(SEModule(channels, 16))
        self.res_layer = nn.Sequential(*branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRNet(nn.Module):
    """TreB1eN's IR / IR-SE ``Backbone`` as a registry backbone.

    Args:
        units: units per stage, e.g. ``(3, 4, 14, 3)`` for depth 50.
        se: squeeze-and-excitation in every unit (IR-SE) or not (IR).
        drop_ratio: dropout in ``output_layer`` (TreB1eN trains with 0.6; only active in
            train mode).
        embedding_dim: size of the embedding (512).

    Attributes:
        grid_channels: 512; grid_size: ``(7, 7)``; embedding_dim: 512;
        input_spec: :data:`~xcos_xai.models.registry.ARCFACE_BGR` (feed BGR).
    """

    grid_channels = 512
    grid_size = _GRID
    input_spec = ARCFACE_BGR

    def __init__(self, units: tuple[int, int, int, int] | list[int], se: bool = True,
                 drop_ratio: float = 0.6, embedding_dim: int = 512):
        super().__init__()
        if len(units) != 4 or any(int(n) < 1 for n in units):
            raise ValueError(f"units must be 4 positive unit counts, got {units}")
        self.units = tuple(int(n) for n in units)
        self.se = se
        self.embedding_dim = embedding_dim
        # Attribute order = TreB1eN's state-dict order: input_layer, output_layer, body.
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.PReLU(64),
        )
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * _GRID[0] * _GRID[1], embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )
        body, in_channels = [], 64
        for channels, count in zip((64, 128, 256, 512), self.units):
            body.append(BottleneckIR(in_channels, channels, stride=2, se=se))
            body += [BottleneckIR(channels, channels, stride=1, se=se) for _ in range(count - 1)]
            in_channels = channels
        self.body = nn.Sequential(*body)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` normalised BGR faces to the grid ``(B, 512, 7, 7)``."""
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.input_spec.size:
            raise ValueError(f"IR-SE takes (B, 3, 112, 112) aligned BGR faces normalised by "
                             f"input_spec, got a tensor of shape {tuple(x.shape)}")
        return self.body(self.input_layer(x))

    def forward_head(self, grid: torch.Tensor) -> torch.Tensor:
        """The grid ``(B, 512, 7, 7)`` to the unnormalised embedding ``(B, 512)``.

        TreB1eN's ``forward`` L2-normalises this vector; we do not (cosines are equal).
        """
        if grid.dim() != 4 or tuple(grid.shape[1:]) != (512, *_GRID):
            raise ValueError(f"forward_head takes a (B, 512, 7, 7) grid, got "
                             f"{tuple(grid.shape)}")
        return self.output_layer(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` faces to unnormalised embeddings ``(B, 512)``."""
        return self.forward_head(self.forward_features(x))

    def extra_repr(self) -> str:
        return f"units={self.units}, se={self.se}"


def _factory(depth: int, se: bool):
    name = f"ir_se{depth}" if se else f"ir{depth}"

    def build(pretrained: bool | str | Path = False, **kwargs) -> IRNet:
        return load_backbone_weights(IRNet(IR_UNITS[depth], se=se, **kwargs), pretrained, name)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"{'IR-SE' if se else 'IR'}-{depth} (units {IR_UNITS[depth]}) of TreB1eN "
        "InsightFace_Pytorch; feed BGR faces.\n\n"
        "Args:\n"
        "    pretrained: ``False`` (random weights) or a path to a TreB1eN state dict\n"
        "        (e.g. ``model_ir_se50.pth``, or ``.safetensors``), loaded safely and strictly.\n"
        "    **kwargs: :class:`IRNet` options (``drop_ratio``, ``embedding_dim``).\n")
    return build


ir50 = register_backbone("ir50")(_factory(50, se=False))
ir_se50 = register_backbone("ir_se50")(_factory(50, se=True))
ir100 = register_backbone("ir100")(_factory(100, se=False))
ir_se100 = register_backbone("ir_se100")(_factory(100, se=True))
ir152 = register_backbone("ir152")(_factory(152, se=False))
ir_se152 = register_backbone("ir_se152")(_factory(152, se=True))
