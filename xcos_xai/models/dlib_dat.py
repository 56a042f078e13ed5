"""A reader of dlib's serialized face-recognition network (``*.dat``), written from the
format's description: plain data only, nothing in the file is ever executed.

dlib's conventions (``dlib/serialize.h``): an integer is a control byte (low 4 bits: the
number of little-endian magnitude bytes that follow; bit 7: the sign); a float is two
integers, mantissa and exponent (``m * 2**e``); a string is a length and its bytes; a bool one
ASCII byte; a tensor a version (2), four dims (n, k, nr, nc) and float32 little-endian values.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

INPUT_LAYER = b"input_rgb_image_sized"


def model_file(name: str) -> Path:
    """Path of a model file shipped by the ``face-recognition-models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"dlib model file {name!r} needs the face-recognition-models "
                                "package: pip install face-recognition-models==0.3.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall face-recognition-models==0.3.0")
    return path


@dataclass
class DlibLayer:
    """One layer record: its kind (``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``,
    ``add_prev``, ``fc``), the serialized name (with dlib's version suffix) and fields."""

    kind: str
    name: str
    fields: dict = field(default_factory=dict)


@dataclass
class DlibNetwork:
    input_mean: tuple[float, float, float]
    input_size: tuple[int, int]
    distance_threshold: float
    layers: list[DlibLayer]


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def fail(self, what: str):
        raise ValueError(f"{self.source}: not a valid dlib face-recognition model file "
                         f"({what} at byte {self.pos}); use the file shipped by "
                         "face-recognition-models==0.3.0")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            self.fail("truncated data")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        control = self.take(1)[0]
        n = control & 0x0F
        if n > 8 or control & 0x70:
            self.fail(f"bad integer control byte {control:#x}")
        value = int.from_bytes(self.take(n), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if abs(exponent) > 2000:
            self.fail("float exponent out of range")
        return float(mantissa) * 2.0 ** exponent

    def string(self, max_len: int = 256) -> str:
        n = self.int()
        if not 0 <= n <= max_len:
            self.fail(f"string length {n}")
        return self.take(n).decode("ascii", errors="strict")

    def bool(self) -> bool:
        c = self.take(1)
        if c not in (b"0", b"1"):
            self.fail(f"bad bool byte {c!r}")
        return c == b"1"

    def dims(self) -> tuple[int, int, int, int]:
        d = tuple(self.int() for _ in range(4))
        if any(x < 0 for x in d):
            self.fail(f"negative tensor dims {d}")
        return d

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            self.fail("unknown tensor version")
        d = self.dims()
        count = int(np.prod(d, dtype=np.int64))
        raw = self.take(4 * count)
        return np.frombuffer(raw, dtype="<f4").reshape(d).astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        if self.int() != 1:
            self.fail("unknown alias tensor version")
        return self.dims()


def _read_layer(r: _Reader, name: str) -> DlibLayer:
    kind = name.rsplit("_", 1)[0]
    f: dict = {}
    if kind == "con":
        f["params"] = r.tensor()
        f["num_filters"], f["nr"], f["nc"] = r.int(), r.int(), r.int()
        f["stride"] = (r.int(), r.int())
        f["padding"] = (r.int(), r.int())
        f["filters_shape"], f["bias_shape"] = r.alias(), r.alias()
        f["multipliers"] = [r.float() for _ in range(4)]
        suffix = name.rsplit("_", 1)[1]
        version = int(suffix) if suffix.isdigit() else 1
        f["use_bias"] = r.bool() if version >= 5 else True
        if version >= 6:
            r.bool()
    elif kind == "affine":
        f["params"] = r.tensor()
        f["gamma_shape"], f["beta_shape"] = r.alias(), r.alias()
        f["mode"] = r.int()
        if name == "affine_2":
            r.bool()
    elif kind == "relu":
        if name == "relu_2":
            r.bool()
    elif kind in ("max_pool", "avg_pool"):
        f["size"] = (r.int(), r.int())
        f["stride"] = (r.int(), r.int())
        f["padding"] = (r.int(), r.int())
    elif kind == "add_prev":
        pass
    elif kind == "fc":
        f["num_outputs"], f["num_inputs"] = r.int(), r.int()
        f["params"] = r.tensor()
        f["weights_shape"], f["bias_shape"] = r.alias(), r.alias()
        f["bias_mode"] = r.int()
        f["multipliers"] = [r.float() for _ in range(4)]
        if name == "fc_3":
            r.bool()
    else:
        r.fail(f"unknown layer {name!r}")
    return DlibLayer(kind, name, f)


def read_dlib_network(path: str | Path) -> DlibNetwork:
    """Parse a dlib ``loss_metric`` network file into layer records (input to output)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise FileNotFoundError(f"cannot read dlib model file {path}: {err.strerror}") from None
    r = _Reader(data, str(path))
    if r.int() != 1 or r.string() != "loss_metric_2":
        r.fail("missing loss_metric_2 header")
    r.float()  # margin
    threshold = r.float()
    start = data.find(bytes([0x01, len(INPUT_LAYER)]) + INPUT_LAYER, r.pos)
    if start < 0:
        r.fail("no input layer")
    # Between the header and the input layer: one version integer per wrapper.
    while r.pos < start:
        if r.int() not in (1, 2, 3):
            r.fail("unexpected wrapper version")
    r.string()
    mean = (r.float(), r.float(), r.float())
    size = (r.int(), r.int())
    layers = []
    first = True
    while r.pos < len(data):
        name = r.string()
        layer = _read_layer(r, name)
        for _ in range(3):  # training-state flags
            r.bool()
        for _ in range(3):  # gradients and cached outputs
            r.tensor()
        if first:
            r.int()  # sample expansion factor (wrapper version 3)
            first = False
        layers.append(layer)
    if not layers or layers[-1].kind != "fc":
        r.fail("the network does not end with its fc layer")
    return DlibNetwork(mean, size, threshold, layers)
