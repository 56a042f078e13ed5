"""A plain-data reader of dlib's serialized networks (``dlib_face_recognition_resnet_model_v1``).

Only numbers, strings and float arrays are decoded: nothing in the file is ever executed or
unpickled. The format follows ``dlib/serialize.h``:

- integer: a control byte (low 4 bits: how many little-endian magnitude bytes follow; bit 7:
  negative), then the bytes;
- float: two integers, mantissa ``m`` and exponent ``e``, value ``m * 2**e``;
- string: an integer length, then that many bytes; bool: one ASCII byte, ``'0'`` or ``'1'``;
- tensor: version 2, four dims ``(num_samples, k, nr, nc)``, then float32 little-endian values;
  alias tensor (a view into a parameter tensor): version 1 and four dims.

A ``loss_metric`` network file is: version 1, ``"loss_metric_2"``, margin, distance threshold;
one version integer per layer wrapper (``add_layer``/``tag``/``skip``), output to input; the
input layer; then the layers in input-to-output order, each its own fields followed by the
wrapper's training state (three bools, three tensors; the bottom wrapper, version 3, adds
the sample expansion factor).

Example:
    >>> from xcos_xai.models.dlib_dat import model_file, read_dlib_dat
    >>> net = read_dlib_dat(model_file("dlib_face_recognition_resnet_model_v1.dat"))
    >>> len(net.layers), net.input_size
    (108, (150, 150))
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DlibNetFile", "LayerRecord", "model_file", "parse_dlib_dat", "read_dlib_dat"]

PACKAGE = "face-recognition-models==0.3.0"
_MAX_NAME = 64  # longest layer name we accept (dlib's are < 25 characters)
_INPUT_LAYERS = ("input_rgb_image_sized", "input_rgb_image")


def model_file(name: str) -> Path:
    """Path of a model file bundled with the ``face-recognition-models`` package.

    ``name`` is a file name such as ``"dlib_face_recognition_resnet_model_v1.dat"`` or
    ``"shape_predictor_5_face_landmarks.dat"``. The package is located without importing it
    (its ``__init__`` needs ``pkg_resources``, gone from current setuptools).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"dlib model file {name!r} comes with the face-recognition-models package, which "
            f"is not installed: `pip install {PACKAGE}`")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"dlib model file {name!r} is not in {path.parent}: reinstall the package with "
            f"`pip install --force-reinstall {PACKAGE}`")
    return path


@dataclass(frozen=True)
class LayerRecord:
    """One serialized layer.

    Attributes:
        kind: ``"con"``, ``"affine"``, ``"relu"``, ``"max_pool"``, ``"avg_pool"``,
            ``"add_prev"`` or ``"fc"``.
        tag: the name as serialized, with dlib's format version (``"con_4"``, ``"relu_"``).
        params: float32 arrays (read-only), by layer kind:
            ``con``: ``weight (out, in, kh, kw)`` and ``bias (out,)`` (when it has one);
            ``affine``: ``gamma (C,)`` and ``beta (C,)``, ``y = gamma * x + beta``;
            ``fc``: ``weight (out, in)`` (transposed from dlib's inputs x outputs storage)
            and ``bias (out,)`` when it has one; no entries for the other kinds.
        attrs: the layer's settings: ``con``: ``num_filters``, ``kernel`` (kh, kw),
            ``stride`` (y, x), ``padding`` (y, x), ``use_bias`` and the four learning-rate /
            weight-decay multipliers; pools: ``kernel``, ``stride``, ``padding`` (a ``(0, 0)``
            kernel means "the whole map"); ``affine``: ``mode`` (0: per channel, 1: per
            element); ``fc``: ``num_outputs``, ``num_inputs``, ``use_bias``, multipliers.
    """

    kind: str
    tag: str
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DlibNetFile:
    """A parsed dlib ``loss_metric`` network.

    Attributes:
        source: the file it was read from.
        loss: the loss layer's name (``"loss_metric_2"``).
        margin, distance_threshold: the loss settings (dlib: same person if the L2 distance
            of two descriptors is below ``distance_threshold``, 0.6).
        input_layer: ``"input_rgb_image_sized"``.
        input_mean: per-channel mean (R, G, B) on the 0..255 scale; dlib's input is
            ``(pixel - mean) / 256``.
        input_size: (rows, cols) the network takes, or ``None`` when the file does not fix it.
        wrapper_versions: the version integers of the layer wrappers, output to input
            (2 for ``add_layer``, 1 for ``tag``/``skip``, 3 for the bottom ``add_layer``).
        layers: the layer records, input to output.
    """

    source: str
    loss: str
    margin: float
    distance_threshold: float
    input_layer: str
    input_mean: tuple[float, float, float]
    input_size: tuple[int, int] | None
    wrapper_versions: tuple[int, ...]
    layers: tuple[LayerRecord, ...]


class _Stream:
    """Decodes dlib's primitives from bytes; every failure is one ValueError naming the file."""

    def __init__(self, data: bytes, source: str):
        self.data = memoryview(data)
        self.pos = 0
        self.source = source
        self.context = "the file header"

    def fail(self, what: str):
        raise ValueError(
            f"{self.source} is not a valid dlib network file: {what} (in {self.context}, at "
            f"byte {self.pos} of {len(self.data)}). Use the file shipped by {PACKAGE}, or "
            "re-copy it if it was damaged.")

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            self.fail(f"the file is truncated ({n} bytes needed, "
                      f"{len(self.data) - self.pos} left)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            self.pos -= 1
            self.fail(f"byte {control:#04x} does not start an integer")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def peek_integer(self) -> tuple[int, int] | None:
        """``(value, position after it)`` without consuming it, or ``None`` if not an int."""
        start = self.pos
        try:
            return self.integer(), self.pos
        except ValueError:
            return None
        finally:
            self.pos = start

    def count(self, what: str, limit: int = 1 << 31) -> int:
        value = self.integer()
        if not 0 <= value <= limit:
            self.fail(f"{what} is {value}")
        return value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        specials = {32000: math.inf, 32001: -math.inf, 32002: math.nan}  # dlib's markers
        if exponent in specials:
            return specials[exponent]
        if abs(exponent) > 1100:
            self.fail(f"float exponent {exponent} is out of range")
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            self.fail(f"float {mantissa} * 2**{exponent} overflows")

    def string(self, limit: int = _MAX_NAME) -> str:
        n = self.count("a string length", limit)
        raw = bytes(self.take(n))
        if not all(32 <= b < 127 for b in raw):
            self.pos -= n
            self.fail(f"expected a name, found bytes {raw[:16]!r}")
        return raw.decode("ascii")

    def boolean(self) -> bool:
        c = bytes(self.take(1))
        if c not in (b"0", b"1"):
            self.pos -= 1
            self.fail(f"expected a bool ('0' or '1'), found {c!r}")
        return c == b"1"

    def dims(self, what: str) -> tuple[int, int, int, int]:
        return tuple(self.count(f"a {what} dimension") for _ in range(4))

    def tensor(self) -> np.ndarray:
        """A ``(num_samples, k, nr, nc)`` float32 array (read-only)."""
        version = self.integer()
        if version != 2:
            self.fail(f"tensor version {version} (expected 2)")
        shape = self.dims("tensor")
        n = math.prod(shape)
        if 4 * n > len(self.data) - self.pos:
            self.fail(f"the file is truncated (a tensor of shape {shape} needs {4 * n} bytes, "
                      f"{len(self.data) - self.pos} left)")
        values = np.frombuffer(self.take(4 * n), dtype="<f4").astype(np.float32).reshape(shape)
        values.setflags(write=False)
        return values

    def alias(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            self.fail(f"alias tensor version {version} (expected 1)")
        return self.dims("alias tensor")


def _split_tag(tag: str) -> tuple[str, int]:
    """``"con_4"`` -> ``("con", 4)``, ``"relu_"`` -> ``("relu", 1)``, ``"add_prev"`` -> 1."""
    head, _, tail = tag.rpartition("_")
    if tail.isdigit() and head:
        return head, int(tail)
    if tail == "" and head:
        return head, 1
    return tag, 1


def _slice_params(s: _Stream, flat: np.ndarray, parts: list[tuple[str, tuple[int, ...]]]):
    """Cut a parameter tensor into consecutive views of the given shapes."""
    need = sum(math.prod(shape) for _, shape in parts)
    if flat.size != need:
        s.fail(f"the parameter tensor holds {flat.size} values, the layer's settings need "
               f"{need}")
    out, offset = {}, 0
    for name, shape in parts:
        n = math.prod(shape)
        out[name] = flat[offset:offset + n].reshape(shape)
        offset += n
    return out


def _multipliers(s: _Stream) -> dict[str, float]:
    names = ("learning_rate_multiplier", "weight_decay_multiplier",
             "bias_learning_rate_multiplier", "bias_weight_decay_multiplier")
    return {name: s.real() for name in names}


def _read_con(s: _Stream, version: int) -> LayerRecord:
    if version not in (4, 5, 6):
        s.fail(f"unsupported convolution version con_{version}")
    params = s.tensor().reshape(-1)
    num_filters = s.count("num_filters")
    kernel = (s.count("kernel rows"), s.count("kernel cols"))
    stride = (s.count("stride y"), s.count("stride x"))
    padding = (s.count("padding y"), s.count("padding x"))
    filters, biases = s.alias(), s.alias()
    attrs = {"num_filters": num_filters, "kernel": kernel, "stride": stride,
             "padding": padding, **_multipliers(s)}
    attrs["use_bias"] = s.boolean() if version >= 5 else True
    if version >= 6:
        attrs["use_relu"] = s.boolean()  # a fused relu flag of newer dlib; never set here
    if filters[0] != num_filters or filters[2:] != kernel or min(stride) < 1:
        s.fail(f"convolution filters {filters} do not match {num_filters} filters of "
               f"{kernel} with stride {stride}")
    parts = [("weight", filters)]
    if attrs["use_bias"] and math.prod(biases):
        if math.prod(biases) != num_filters:
            s.fail(f"convolution biases {biases} for {num_filters} filters")
        parts.append(("bias", (num_filters,)))
    return LayerRecord("con", f"con_{version}", _slice_params(s, params, parts), attrs)


def _read_affine(s: _Stream, tag: str, version: int) -> LayerRecord:
    params = s.tensor().reshape(-1)
    gamma, beta = s.alias(), s.alias()
    mode = s.integer()
    attrs: dict[str, Any] = {"mode": mode}
    if version >= 2:
        attrs["disabled"] = s.boolean()
    if gamma != beta or mode not in (0, 1):
        s.fail(f"affine gamma {gamma} / beta {beta} / mode {mode}")
    n = math.prod(gamma)
    found = _slice_params(s, params, [("gamma", (n,)), ("beta", (n,))])
    return LayerRecord("affine", tag, found, {**attrs, "shape": gamma})


def _read_pool(s: _Stream, kind: str, tag: str) -> LayerRecord:
    kernel = (s.count("pool rows"), s.count("pool cols"))
    stride = (s.count("pool stride y"), s.count("pool stride x"))
    padding = (s.count("pool padding y"), s.count("pool padding x"))
    if min(stride) < 1:
        s.fail(f"pool stride {stride}")
    return LayerRecord(kind, tag, {}, {"kernel": kernel, "stride": stride, "padding": padding})


def _read_fc(s: _Stream, version: int) -> LayerRecord:
    num_outputs, num_inputs = s.count("fc outputs"), s.count("fc inputs")
    params = s.tensor().reshape(-1)
    weights, _biases = s.alias(), s.alias()
    bias_mode = s.integer()  # 0: with bias, 1: without (dlib's fc_bias_mode)
    attrs = {"num_outputs": num_outputs, "num_inputs": num_inputs,
             "use_bias": bias_mode == 0, **_multipliers(s)}
    if version >= 3:
        attrs["disabled"] = s.boolean()
    if bias_mode not in (0, 1) or weights[:2] != (num_inputs, num_outputs):
        s.fail(f"fc weights {weights} for {num_inputs} inputs, {num_outputs} outputs, bias "
               f"mode {bias_mode}")
    parts = [("weight_in_out", (num_inputs, num_outputs))]
    if attrs["use_bias"]:
        parts.append(("bias", (num_outputs,)))
    found = _slice_params(s, params, parts)
    weight = np.ascontiguousarray(found.pop("weight_in_out").T)
    weight.setflags(write=False)
    return LayerRecord("fc", f"fc_{version}", {"weight": weight, **found}, attrs)


def _read_layer(s: _Stream, tag: str) -> LayerRecord:
    kind, version = _split_tag(tag)
    if kind == "con":
        return _read_con(s, version)
    if kind == "affine":
        return _read_affine(s, tag, version)
    if kind == "relu":
        attrs = {"disabled": s.boolean()} if version >= 2 else {}
        return LayerRecord("relu", tag, {}, attrs)
    if kind in ("max_pool", "avg_pool") and version == 2:
        return _read_pool(s, kind, tag)
    if kind == "add_prev" and version == 1:
        return LayerRecord("add_prev", tag)
    if kind == "fc" and version in (2, 3):
        return _read_fc(s, version)
    s.fail(f"unknown layer {tag!r}")


def _at_input_layer(s: _Stream) -> bool:
    peek = s.peek_integer()
    if peek is None:
        return False
    n, after = peek
    name = bytes(s.data[after:after + n])
    return name in (x.encode() for x in _INPUT_LAYERS)


def parse_dlib_dat(data: bytes, source: str = "<bytes>") -> DlibNetFile:
    """Parse the bytes of a dlib ``loss_metric`` network (see :func:`read_dlib_dat`)."""
    s = _Stream(data, source)
    peek = s.peek_integer()
    if peek is None or peek[0] != 1:
        s.fail("it does not start with a dlib network's version number (1)")
    s.integer()
    loss = s.string()
    if loss != "loss_metric_2":
        s.fail(f"loss layer {loss!r} (only loss_metric_2 networks are supported)")
    margin, threshold = s.real(), s.real()

    s.context = "the layer wrappers"
    versions = []
    while not _at_input_layer(s):
        version = s.integer()
        if version not in (1, 2, 3):
            s.pos -= 1
            s.fail(f"wrapper version {version}")
        versions.append(version)

    s.context = "the input layer"
    input_layer = s.string()
    mean = (s.real(), s.real(), s.real())
    size = None
    if input_layer == "input_rgb_image_sized":
        size = (s.count("input rows"), s.count("input cols"))

    n_layers = sum(v != 1 for v in versions)
    if not versions or versions[-1] not in (2, 3) or n_layers == 0:
        s.fail("no layers between the loss and the input")
    layers = []
    for i in range(n_layers):
        s.context = f"layer record {i}"
        tag = s.string()
        s.context = f"layer record {i} ({tag})"
        layers.append(_read_layer(s, tag))
        for _ in range(3):  # setup called, gradient stale, output disabled
            s.boolean()
        for _ in range(3):  # gradients and cached outputs (training state)
            s.tensor()
        if i == 0 and versions[-1] == 3:
            s.count("the sample expansion factor")
    s.context = "the end of the file"
    if s.pos != len(s.data):
        s.fail(f"{len(s.data) - s.pos} unexpected bytes after the last layer")
    return DlibNetFile(source, loss, margin, threshold, input_layer, mean, size,
                       tuple(versions), tuple(layers))


def read_dlib_dat(path: str | Path) -> DlibNetFile:
    """Read a dlib ``loss_metric`` network file into layer records (input to output).

    Raises:
        FileNotFoundError: the file does not exist or cannot be read.
        ValueError: the file is truncated or not such a network (one message naming the
            file, what was wrong and where).
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # reading a pipe or device could never end
        raise FileNotFoundError(f"the dlib network file {path} is not a regular file (a "
                                "directory, device or pipe): give the path of the .dat file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise FileNotFoundError(f"cannot read the dlib network file {path}: "
                                f"{err.strerror or err}") from None
    return parse_dlib_dat(data, str(path))
