"""Loading the released xCos checkpoints (Lin et al.) into :class:`~xcos_xai.core.XCosModel`.

The official files (``20200217_accu_9931_Arcface.pth``, ``20200226_accu_9968_Cosface.pth``)
are ``torch.save({"state_dict": ...})`` with three groups of keys (method doc, sections
2.2-2.5):

==============================  ==========================================================
``attention.*``                 the attention module (``embedding_net``, ``attention``)
``backbone.*``                  the fine-tuned IR-SE-50 trunk (``input_layer``, ``body``),
                                the 512 -> 32 grid reduction ``conv1x1`` (conv with bias,
                                BN, PReLU(32)) and the original ``output_layer``, which
                                xCos does not use
``backbone_target.*``           the frozen original IR-SE-50 with its output layer, whose
                                embedding cosine xCos was trained to reproduce
==============================  ==========================================================

:func:`load_official_xcos` maps them onto our model without changing any tensor:

==============================  ==========================================================
``backbone.conv1x1.*``          ``head.adapter.conv1x1.*``
``backbone.*`` (the rest)       ``backbone.*`` (an :class:`~.irse.IRNet` IR-SE-50)
``attention.*``                 ``head.attention.*`` (:class:`~xcos_xai.core.XCosAttention`)
``backbone_target.*``           ``teacher.*`` (an IR-SE-50)
==============================  ==========================================================

**Feed BGR.** The released weights were trained on TreB1eN's BGR pipeline (method doc 2.1):
the model's ``input_spec`` is :data:`~xcos_xai.models.registry.ARCFACE_BGR`, i.e. aligned
112x112 faces in BGR order scaled to [-1, 1]; ``model.input_spec.normalize(rgb_uint8)``
does the conversion from RGB pixels.

The files are read with :func:`~.checkpoints.load_state_dict_file` (``weights_only``
unpickling; nothing in them is executed).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..core import XCosAttention, XCosHead, XCosModel
from .checkpoints import CheckpointError, load_into, load_state_dict_file
from .irse import IR_UNITS, IRNet

__all__ = [
    "OFFICIAL_MODEL_THRESHOLD", "OFFICIAL_THRESHOLD", "build_official_xcos",
    "from_official_state_dict", "load_official_xcos", "to_official_state_dict",
]

#: The xCos decision threshold hard-coded in the official code for xCos-ArcFace
#: (``checkTFPN``, method doc section 2.6). Recalibrate it on your own protocol.
OFFICIAL_THRESHOLD = 0.2545
#: LFW best threshold of the original IR-SE-50 cosine (method doc section 4.4), for the
#: teacher's cosine (``XCosModel.model_threshold``).
OFFICIAL_MODEL_THRESHOLD = 0.2825

# (prefix in the official file, prefix in our XCosModel), most specific first.
_PREFIX_MAP = (
    ("backbone.conv1x1.", "head.adapter.conv1x1."),
    ("backbone_target.", "teacher."),
    ("backbone.", "backbone."),
    ("attention.", "head.attention."),
)
# Top-level order of the keys in the released files.
_OFFICIAL_ORDER = ("attention.", "backbone.input_layer.", "backbone.conv1x1.",
                   "backbone.output_layer.", "backbone.body.", "backbone_target.")


def build_official_xcos(threshold: float = OFFICIAL_THRESHOLD,
                        model_threshold: float = OFFICIAL_MODEL_THRESHOLD) -> XCosModel:
    """The architecture of the released xCos models, with random weights.

    IR-SE-50 trunk (its output layer kept, as in the release), a 512 -> 32 grid adapter,
    the paper's order-dependent attention (hidden 16, softmax temperature 1) and an
    IR-SE-50 teacher. Its ``input_spec`` is BGR in [-1, 1].
    """
    backbone = IRNet(IR_UNITS[50], se=True)
    head = XCosHead(backbone.grid_channels, channels=32,
                    attention=XCosAttention(in_channels=32, hidden=16, temperature=1.0,
                                            symmetric=False))
    teacher = IRNet(IR_UNITS[50], se=True)
    return XCosModel(backbone, head, teacher=teacher, threshold=threshold,
                     model_threshold=model_threshold)


def _map_key(key: str, pairs) -> str | None:
    for old, new in pairs:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def from_official_state_dict(state_dict: Mapping[str, torch.Tensor],
                             source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """Rename an official ``state_dict`` to :func:`build_official_xcos`'s keys (same tensors).

    Raises:
        CheckpointError: a key outside ``attention.*``, ``backbone.*``, ``backbone_target.*``
            (the file is not an official xCos checkpoint).
    """
    renamed, stray = {}, []
    for key, value in state_dict.items():
        new = _map_key(key, _PREFIX_MAP)
        if new is None:
            stray.append(key)
        else:
            renamed[new] = value
    if stray:
        shown = ", ".join(stray[:8]) + (", ..." if len(stray) > 8 else "")
        raise CheckpointError(f"{source} is not an official xCos checkpoint: {len(stray)} key(s) "
                              f"outside attention.*, backbone.*, backbone_target.*: {shown}")
    return renamed


def to_official_state_dict(model: XCosModel) -> dict[str, torch.Tensor]:
    """The inverse of :func:`from_official_state_dict`: ``model``'s weights in the official
    layout and key order (``attention``, ``backbone.input_layer``, ``backbone.conv1x1``,
    ``backbone.output_layer``, ``backbone.body``, ``backbone_target``), e.g. to
    ``torch.save({"state_dict": ...})`` for the official code.

    The decision thresholds, which the official files do not hold, are left out.
    """
    back = [(new, old) for old, new in _PREFIX_MAP]
    back.sort(key=lambda pair: -len(pair[0]))  # "head.adapter.conv1x1." before "head."
    renamed = {}
    for key, value in model.state_dict().items():
        old = _map_key(key, back)
        if old is not None:
            renamed[old] = value

    def rank(key: str) -> int:
        return next(i for i, prefix in enumerate(_OFFICIAL_ORDER) if key.startswith(prefix))

    return dict(sorted(renamed.items(), key=lambda item: rank(item[0])))  # stable sort


def load_official_xcos(path: str | Path, threshold: float = OFFICIAL_THRESHOLD,
                       model_threshold: float = OFFICIAL_MODEL_THRESHOLD) -> XCosModel:
    """Build the released xCos model and load an official checkpoint into it, unchanged.

    Args:
        path: ``20200217_accu_9931_Arcface.pth``, ``20200226_accu_9968_Cosface.pth`` or any
            file in that layout (``.safetensors`` also accepted).
        threshold: the xCos decision threshold stored in the model (default: the official
            code's 0.2545 for xCos-ArcFace; recalibrate on your protocol).
        model_threshold: the decision threshold on the teacher's cosine.

    Returns:
        An :class:`~xcos_xai.core.XCosModel` in eval mode whose ``forward(x_a, x_b)`` gives
        the xCos score, maps, and the teacher's (original IR-SE-50's) cosine. **Feed BGR**
        faces in [-1, 1]: ``model.input_spec.normalize(rgb_uint8)`` converts RGB pixels.

    Raises:
        FileNotFoundError, CheckpointError (incl. UnsafeCheckpointError): see
            :func:`~.checkpoints.load_state_dict_file`.
        StateDictMismatchError: the file lacks keys of the released model or has extra
            ones or other shapes (every key of the file must be used: strict loading).
    """
    path = Path(path).expanduser()
    state = from_official_state_dict(load_state_dict_file(path), source=str(path))
    model = build_official_xcos(threshold, model_threshold)
    # The thresholds are ours, not the file's: keep the model's values.
    own = model.state_dict()
    for key in ("threshold", "model_threshold"):
        state[key] = own[key]
    load_into(model, state, strict=True, source=str(path))
    return model.eval()

