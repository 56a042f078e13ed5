"""Pair explainers behind one interface, and the measures that judge them.

- :func:`list_explainers`, :func:`create_explainer`, :func:`explainer_class`: the registry
  (``"xcos"``, ``"gradcam"``, ``"integrated_gradients"``, ``"saliency"``, ``"smoothgrad"``,
  ``"occlusion"``, ``"random"``, and the field's verification methods ``"xssab"``,
  ``"corrrise"``, ``"fggb"``, ``"multiscale_occlusion"``); every explainer has
  ``attribute(x_a, x_b, target) -> PairAttribution`` and its labels (``label``,
  ``short_label``) and options on its class; ``"xcos_<map>"`` is the xCos explainer
  with another default map (one per map).
- :mod:`.xcos_maps`: the faithful xCos maps (reference evidence, the exact split of the
  model's cosine, feature-space deletion, amortised occlusion) and their statistics.
- :func:`pair_score`: the one pair score (xCos or the model's cosine) they all explain.
- :mod:`.metrics`: deletion/insertion, replacement error rates, the localisation game,
  sensitivity, model randomisation, attention shortcut, cost.
- :mod:`.protocols`: ROAD imputation, verification-accuracy deletion/insertion, replacement
  FMR/FNMR curves, cascading and independent layer randomisation (pure functions).
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
