"""xcos_xai: explainable face verification with xCos.

The packages, from the maths outwards:

- :mod:`xcos_xai.core`: patch cosine map, attention, grid adapter, xCos score, margin heads.
- :mod:`xcos_xai.models`: backbones (IResNet, IR-SE-50, dlib's face ResNet) and loaders.
"""

from .core import XCosHead, XCosModel, XCosOutput, patch_cosine_map
from .models.registry import create_backbone, list_backbones

__version__ = "0.1.0"

__all__ = [
    "XCosHead", "XCosModel", "XCosOutput", "create_backbone", "list_backbones",
    "patch_cosine_map",
]
