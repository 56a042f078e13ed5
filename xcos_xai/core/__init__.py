"""The xCos maths: patch cosine map, attention, grid adapter, score, margin heads, model."""

from .adapter import GridAdapter
from .attention import (
    MaskedAttention,
    NormAttention,
    PriorAttention,
    UniformAttention,
    XCosAttention,
    build_attention,
)
from .cosine import patch_cosine_map
from .margin import ArcFaceHead, CosFaceHead, create_margin_head
from .model import XCosModel
from .xcos import XCosHead, XCosOutput, evidence_map, xcos_from_maps

__all__ = [
    "ArcFaceHead", "CosFaceHead", "GridAdapter", "MaskedAttention", "NormAttention",
    "PriorAttention", "UniformAttention", "XCosAttention", "XCosHead", "XCosModel", "XCosOutput",
    "build_attention", "create_margin_head", "evidence_map", "patch_cosine_map",
    "xcos_from_maps",
]
