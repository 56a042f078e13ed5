"""Measuring verification: the one 10-fold threshold protocol, cached features, attention
statistics and dlib's own pipeline as a reference.

- :func:`ten_fold_accuracy` and friends (``protocol``): thresholds chosen on 9 folds, accuracy
  on the 10th; ROC AUC; TAR at a FAR.
- :func:`~xcos_xai.evaluation.features.compute_features` (``features``): backbone grids and
  embeddings of many images, cached by content.
- ``attention_stats``: where an attention looks; ``dlib_reference``: dlib's own scores.
"""

from .protocol import (
    ProtocolResult,
    accuracy_at,
    best_threshold,
    roc_auc,
    tar_at_far,
    ten_fold_accuracy,
    threshold_at_far,
)

__all__ = ["ProtocolResult", "accuracy_at", "best_threshold", "roc_auc", "tar_at_far",
           "ten_fold_accuracy", "threshold_at_far"]
