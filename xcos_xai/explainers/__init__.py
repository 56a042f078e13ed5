"""Pair explainers behind one interface, and the measures that judge them.

- :func:`list_explainers`, :func:`create_explainer`, :func:`explainer_class`: the registry
  (``"xcos"``, ``"gradcam"``, ``"integrated_gradients"``, ``"saliency"``, ``"smoothgrad"``,
  ``"occlusion"``, ``"random"``); every explainer has ``attribute(x_a, x_b, target) ->
  PairAttribution`` and its labels (``label``, ``short_label``) and options on its class.
- :func:`pair_score`: the one pair score (xCos or the model's cosine) they all explain.
- :mod:`.metrics`: deletion/insertion, replacement error rates, the localisation game,
  sensitivity, model randomisation, attention shortcut, cost.
- The comparison of all methods on LFW pairs: :mod:`xcos_xai.evaluation.faithfulness`
  (measures, table) and :mod:`xcos_xai.apps.compare` (``xcos-xai compare``).
"""

from .base import (
    TARGETS,
    PairAttribution,
    PairExplainer,
    PairScoreNet,
    create_explainer,
    explainer_class,
    list_explainers,
    pair_score,
    pair_score_from_grids,
    register_explainer,
    replacement_baseline,
)

__all__ = [
    "TARGETS", "PairAttribution", "PairExplainer", "PairScoreNet", "create_explainer",
    "explainer_class", "list_explainers", "pair_score", "pair_score_from_grids",
    "register_explainer", "replacement_baseline",
]
