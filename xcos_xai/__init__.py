"""xcos_xai: explainable face verification with xCos.

- :func:`explain_pair`: why two photos are (not) the same person, with xCos maps.
- :func:`load_pretrained`: the default model (dlib's face ResNet + a bundled xCos head).
- :mod:`xcos_xai.core`: patch cosine map, attention, grid adapter, xCos score, margin heads.
- :mod:`xcos_xai.models`: backbones (IResNet, IR-SE-50, dlib's face ResNet) and loaders.
- :mod:`xcos_xai.data`, :mod:`xcos_xai.evaluation`, :mod:`xcos_xai.training`,
  :mod:`xcos_xai.viz`: images and alignment, protocols, training, views.
"""

from .core import XCosHead, XCosModel, XCosOutput, patch_cosine_map
from .explain import PairExplanation, explain_pair
from .models.registry import create_backbone, list_backbones
from .pretrained import load_pretrained

__version__ = "0.1.0"

__all__ = [
    "PairExplanation", "XCosHead", "XCosModel", "XCosOutput", "create_backbone",
    "explain_pair", "list_backbones", "load_pretrained", "patch_cosine_map",
]
