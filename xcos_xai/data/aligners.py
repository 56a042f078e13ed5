"""Which aligner a model needs: :func:`aligner_for` reads it off the model's input spec."""

from __future__ import annotations

import os

from .._env import cache_dir as default_cache_dir
from .align import FaceAligner
from .align_arcface import YuNetAligner

__all__ = ["aligner_for", "lfw_aligner_for"]


def aligner_for(backbone_or_spec, cache_dir: str | os.PathLike | None = None,
                lfw: bool = False, **kwargs) -> FaceAligner:
    """The aligner that makes the faces a backbone was trained on.

    - 112x112 input (ArcFace-style models: SFace, the IResNets): :class:`YuNetAligner`
      (YuNet + the ArcFace 5-point template);
    - 150x150 input (dlib's ResNet): :class:`FaceAligner` (dlib's HOG detector, 5 landmarks
      and ``get_face_chip(150, padding=0.25)``).

    Args:
        backbone_or_spec: a backbone (anything with ``input_spec``) or an ``InputSpec``.
        cache_dir: where the aligner caches faces (``None``: no cache).
        lfw: the aligner's LFW preset (``for_lfw``: dlib's fallback box, YuNet's retry).
        **kwargs: passed to the aligner.

    >>> from xcos_xai.models.registry import ARCFACE_RGB
    >>> type(aligner_for(ARCFACE_RGB)).__name__
    'YuNetAligner'
    """
    spec = getattr(backbone_or_spec, "input_spec", backbone_or_spec)
    size = getattr(spec, "size", None)
    if size == (112, 112):
        cls = YuNetAligner
    elif size == (150, 150):
        cls = FaceAligner
    else:
        raise ValueError(f"no aligner for {backbone_or_spec!r}: give a backbone or InputSpec "
                         "with a 112x112 (ArcFace) or 150x150 (dlib) input size")
    if lfw:
        return cls.for_lfw(cache_dir=cache_dir, **kwargs)
    return cls(cache_dir=cache_dir, **kwargs)


def lfw_aligner_for(backbone_or_spec, **kwargs) -> FaceAligner:
    """The LFW preset of a model's aligner on the shared chip cache
    (``<XCOS_XAI_CACHE>/chips``): :func:`~xcos_xai.data.align.lfw_aligner` for dlib's
    150x150 input, :meth:`YuNetAligner.for_lfw` for 112x112 (ArcFace) inputs. ``kwargs`` go
    to :func:`aligner_for`.

    >>> from xcos_xai.models.registry import ARCFACE_RGB
    >>> lfw_aligner_for(ARCFACE_RGB).cache_dir.name
    'chips'
    """
    kwargs.setdefault("cache_dir", default_cache_dir() / "chips")
    return aligner_for(backbone_or_spec, lfw=True, **kwargs)
