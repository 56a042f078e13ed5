"""Safe loading of checkpoints into the project's models.

Checkpoints are read without ever running code from the file:

- ``.safetensors`` files are read by :mod:`safetensors` (pure tensors, no pickle);
- anything else goes through ``torch.load(path, map_location="cpu", weights_only=True)``,
  PyTorch's restricted unpickler, which accepts tensors and plain containers only. A file
  that needs anything more (a custom class, a function such as ``os.system``, numpy
  objects) is refused with a :class:`UnsafeCheckpointError`; we never fall back to a full
  unpickle.

:func:`load_state_dict_file` also unwraps the usual training wrappers (``{"state_dict":
...}``, ``{"model": ...}``, DataParallel's ``module.`` prefixes) and :func:`load_into` loads
a state dict into a module, reporting every missing key, unexpected key and shape mismatch
in one readable error.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

__all__ = [
    "CheckpointError", "LoadReport", "StateDictMismatchError", "UnsafeCheckpointError",
    "describe_layout", "load_into", "load_backbone_weights", "load_state_dict_file", "strip_prefix",
    "unwrap_state_dict",
]

# Keys under which training scripts commonly nest the weights, tried in this order.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "params",
                 "weights")
_MAX_LISTED = 8  # keys listed per category in an error message
_CONVERT_HINT = ("If you trust its source, convert it once to safetensors in a separate "
                 "session (torch.load(..., weights_only=False), then "
                 "safetensors.torch.save_file(state_dict, 'model.safetensors')) and load the "
                 ".safetensors file instead.")


class CheckpointError(ValueError):
    """A file is not a usable checkpoint (not a state dict, unreadable, or refused)."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle checkpoint holds code or objects beyond tensors; it was not unpickled."""


class StateDictMismatchError(CheckpointError):
    """A state dict does not fit a module (missing/unexpected keys, wrong shapes)."""


class LoadReport(NamedTuple):
    """What :func:`load_into` left out (both empty after a strict load)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


# --------------------------------------------------------------------------- reading files


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely and return its flat ``{name: tensor}`` state dict.

    Args:
        path: a ``.safetensors`` file, or a PyTorch file (``.pth``, ``.pt``, ``.bin``, ...)
            made by ``torch.save`` holding a state dict, possibly wrapped (see
            :func:`unwrap_state_dict`). The format is recognised from the file's first
            bytes (the suffix decides only when they match neither), so a renamed file is
            still read by the right, safe reader.

    Returns:
        The state dict on the CPU, with DataParallel ``module.`` prefixes removed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: the pickle needs code or objects beyond tensors and plain
            containers; nothing was executed.
        CheckpointError: the file is empty, not a checkpoint, or holds no state dict.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory: give the checkpoint file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): re-download or re-save the "
                              "checkpoint")
    kind = _sniff(path)  # the content decides; the suffix only when the content cannot
    if kind == "safetensors" or (kind is None and path.suffix == ".safetensors"):
        obj = _read_safetensors(path)
    else:
        obj = _read_torch(path)
    return unwrap_state_dict(obj, source=str(path))


def _sniff(path: Path) -> str | None:
    """``"safetensors"`` or ``"torch"`` from the first bytes (so a renamed file is still
    read by the right safe reader), ``None`` when they look like neither."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return None  # the reader below reports it
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save zip, or a raw pickle
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: u64 header length, JSON header
        if 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size - 8:
            return "safetensors"
    return None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable .safetensors file: {err}") from err


def _read_torch(path: Path) -> object:
    try:
        with warnings.catch_warnings():
            # Raw pickles (not torch.save) make the restricted unpickler warn about their
            # protocol before it refuses or reads them: the error below says it better.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            with open(path, "rb") as f:  # a file object: torch.load never switches reader by suffix
                return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err)
        if "Weights only load failed" not in message:
            raise CheckpointError(f"{path} is not a PyTorch checkpoint (the file could not "
                                  f"be read as one: {message.strip()[:200]})") from err
        found = re.search(r"GLOBAL ([\w.]+)", message)
        name = found.group(1) if found else _code_in_raw_pickle(path)
        if name or "global" in message.lower():
            what = f" (it asks for {name})" if name else ""
            raise UnsafeCheckpointError(
                f"refused to load {path}: the file contains code or Python objects beyond "
                f"tensors{what}, and xcos_xai never unpickles files that could run code. "
                f"{_CONVERT_HINT}") from None
        # An opcode the restricted unpickler does not know: random bytes, or a pickle
        # written with instructions beyond tensors and plain containers.
        raise CheckpointError(
            f"{path} could not be read by the safe (weights-only) loader: it is not a PyTorch "
            "checkpoint, or a pickle that needs more than tensors and plain containers (it was "
            f"not unpickled). {_CONVERT_HINT}") from None
    except Exception as err:
        # torch.load's errors for non-checkpoint bytes vary by format and are open-ended
        # (bad zip, bad magic number, truncated pickle, struct.error for a 1-byte file,
        # ...): report one sentence with the original reason.
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a PyTorch checkpoint or is truncated "
                              f"({type(err).__name__}: {reason[:200]})") from err


_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "REDUCE",
                 "BUILD"}


def _code_in_raw_pickle(path: Path, max_ops: int = 1_000_000) -> str | None:
    """The first callable/class a raw (non-zip) pickle refers to, found by *parsing* its
    opcodes with :mod:`pickletools` (nothing is executed); ``None`` if it names none or is
    not a pickle. Used to explain why the restricted unpickler refused a file."""
    try:
        if zipfile.is_zipfile(path):
            return None
    except Exception:  # a damaged zip64 end record makes is_zipfile raise BadZipFile
        return None
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for count, (op, arg, _) in enumerate(pickletools.genops(f)):
                if count >= max_ops:
                    return None
                if isinstance(arg, str):
                    strings = (strings + [arg])[-2:]
                if op.name in _CODE_OPCODES:
                    if op.name == "GLOBAL" and isinstance(arg, str):
                        return arg.replace(" ", ".")
                    if op.name == "STACK_GLOBAL" and len(strings) == 2:
                        return ".".join(strings)
                    return f"a {op.name} instruction"
    except Exception:  # not a pickle at all: parsing stops, nothing ran
        return None
    return None


# --------------------------------------------------------------------------- unwrapping


def _is_state_dict(obj: object) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` under ``prefix``, with the prefix removed.

    Keys without the prefix are dropped. ``strip_prefix(sd, "backbone.")`` takes the
    backbone's weights out of a bigger model's state dict.
    """
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The flat ``{name: tensor}`` state dict inside a loaded checkpoint object.

    Accepts a state dict itself, or a dict nesting it under one of ``state_dict``,
    ``model_state_dict``, ``model``, ``net``, ``network``, ``params`` or ``weights`` (other
    entries such as ``epoch`` or ``optimizer`` are ignored). When every key starts with
    ``module.`` (``nn.DataParallel``/DDP) the prefix is removed.

    Raises:
        CheckpointError: no state dict was found; the message lists what the file holds.
    """
    found = obj
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if _is_state_dict(found) or not isinstance(found, Mapping):
            break
        inner = next((found[k] for k in _WRAPPER_KEYS if k in found
                      and isinstance(found[k], Mapping)), None)
        if inner is None:
            break
        found = inner
    if not _is_state_dict(found):
        raise CheckpointError(f"{source} holds no state dict: {_describe_object(obj)}. "
                              "Expected {name: tensor}, possibly under 'state_dict' or 'model'")
    state = dict(found)
    if all(k.startswith("module.") for k in state):
        state = strip_prefix(state, "module.")
    return state


def _describe_object(obj: object) -> str:
    if isinstance(obj, Mapping):
        if not obj:
            return "an empty dict"
        items = list(obj.items())[:_MAX_LISTED]
        parts = [f"{k!r}: {type(v).__name__}" for k, v in items]
        more = ", ..." if len(obj) > _MAX_LISTED else ""
        return "a dict {" + ", ".join(parts) + more + "}"
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"


# --------------------------------------------------------------------------- loading


def describe_layout(keys) -> str | None:
    """Which known checkpoint layout a set of state-dict keys looks like, as a hint.

    Recognises the official xCos release, TreB1eN IR(-SE) and InsightFace arcface_torch
    IResNets; returns ``None`` otherwise.
    """
    keys = set(keys)
    if any(k.startswith("attention.embedding_net.") for k in keys) and any(
            k.startswith("backbone_target.") for k in keys):
        return ("the official xCos release (attention.*, backbone.*, backbone_target.*): "
                "load it with xcos_xai.models.official_release.load_official_xcos")
    if "input_layer.0.weight" in keys and any(".res_layer." in k for k in keys):
        units = {int(m.group(1)) for k in keys if (m := re.match(r"body\.(\d+)\.", k))}
        se = any(re.match(r"body\.\d+\.res_layer\.5\.fc1\.", k) for k in keys)
        depth = {24: 50, 49: 100, 50: 152}.get(len(units))
        name = f"ir{'_se' if se else ''}{depth}" if depth else "an IR/IR-SE network"
        return f"TreB1eN InsightFace_Pytorch {name} (input_layer, body, output_layer)"
    if "conv1.weight" in keys and "layer1.0.bn1.weight" in keys and "features.weight" in keys:
        counts = tuple(len({int(m.group(1)) for k in keys
                            if (m := re.match(rf"layer{i}\.(\d+)\.", k))}) for i in range(1, 5))
        depth = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34, (3, 4, 14, 3): 50,
                 (3, 13, 30, 3): 100}.get(counts)
        name = f"iresnet{depth}" if depth else f"an IResNet with blocks {counts}"
        return f"InsightFace arcface_torch {name}"
    return None


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def load_into(module: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True,
              source: str = "the state dict") -> LoadReport:
    """Load ``state_dict`` into ``module``, with one readable error for everything wrong.

    Args:
        module: the model to fill (its parameters and buffers are copied into in place).
        state_dict: ``{name: tensor}``, e.g. from :func:`load_state_dict_file`.
        strict: if true, missing and unexpected keys are errors; if false they are
            returned in the report and the matching keys are loaded. Shape mismatches are
            always errors.
        source: how to name the state dict in messages (e.g. the file path).

    Returns:
        A :class:`LoadReport` of missing and unexpected keys (empty when strict).

    Raises:
        StateDictMismatchError: listing the missing keys, unexpected keys and shape
            mismatches, with a hint of the layout the keys look like.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k}: {tuple(v.shape)} in {source}, {tuple(own[k].shape)} in the model"
                  for k, v in state_dict.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if mismatched or (strict and (missing or unexpected)):
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched)}")
        hint = describe_layout(state_dict.keys())
        looks = f" The checkpoint looks like {hint}." if hint else ""
        raise StateDictMismatchError(
            f"{source} does not fit {type(module).__name__}: " + "; ".join(problems) + "."
            + looks)
    module.load_state_dict(dict(state_dict), strict=strict)
    return LoadReport(missing, unexpected)


def load_backbone_weights(model: nn.Module, pretrained: bool | str | Path | None,
                          name: str) -> nn.Module:
    """The registry factories' ``pretrained`` argument for backbones without bundled weights.

    ``False``/``None``: ``model`` unchanged (random weights); a path: the file is read with
    :func:`load_state_dict_file` and loaded with :func:`load_into` (``strict=True``);
    ``True``: a ``ValueError`` (nothing is ever downloaded, so a path is needed).
    """
    if pretrained is None or pretrained is False:
        return model
    if pretrained is True:
        raise ValueError(f"{name} has no weights bundled with xcos_xai and nothing is "
                         f"downloaded: pass pretrained='path/to/weights.pth' (or .safetensors)")
    path = Path(pretrained).expanduser()
    load_into(model, load_state_dict_file(path), strict=True, source=str(path))
    return model
