"""xcos_xai: explainable face verification with xCos.

- :func:`explain_pair`: why two photos are (not) the same person, with xCos maps.
- :func:`load_pretrained`: the default model (dlib's face ResNet + a bundled xCos head).
- :mod:`xcos_xai.core`: patch cosine map, attention, grid adapter, xCos score, margin heads.
- :mod:`xcos_xai.models`: backbones (IResNet, IR-SE-50, dlib's face ResNet) and loaders.
- :func:`create_explainer`, :func:`list_explainers`: every pair explainer (xCos, Grad-CAM,
  Integrated Gradients, ...) behind one interface (:mod:`xcos_xai.explainers`).
- :class:`FaceAligner`, :func:`lfw_aligner`: the one alignment path (:mod:`xcos_xai.data`).
- :func:`ten_fold_accuracy` and friends: the one threshold protocol (:mod:`xcos_xai.evaluation`).
- :mod:`xcos_xai.training`, :mod:`xcos_xai.viz`, :mod:`xcos_xai.widgets`: training, views,
  notebook widgets (imported on demand: ``import xcos_xai`` loads none of training).

The layers import one way only (see README "Architecture"; checked by ``lint-imports``).
"""

from .core import XCosHead, XCosModel, XCosOutput, patch_cosine_map
from .data import FaceAligner, lfw_aligner
from .evaluation import (
    accuracy_at,
    best_threshold,
    roc_auc,
    tar_at_far,
    ten_fold_accuracy,
    threshold_at_far,
)
from .explain import PairExplanation, explain_pair
from .explainers import create_explainer, list_explainers
from .models.registry import create_backbone, list_backbones
from .pretrained import load_pretrained

__version__ = "0.1.0"

__all__ = [
    "FaceAligner", "PairExplanation", "XCosHead", "XCosModel", "XCosOutput", "accuracy_at",
    "best_threshold", "create_backbone", "create_explainer", "explain_pair", "lfw_aligner",
    "list_backbones", "list_explainers", "load_pretrained", "patch_cosine_map", "roc_auc",
    "tar_at_far", "ten_fold_accuracy", "threshold_at_far",
]
