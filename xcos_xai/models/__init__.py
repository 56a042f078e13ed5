"""Face backbones behind one registry, and safe loading of their checkpoints."""

from .registry import InputSpec, create_backbone, list_backbones, register_backbone

__all__ = ["InputSpec", "create_backbone", "list_backbones", "register_backbone"]
