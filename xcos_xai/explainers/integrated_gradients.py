"""Integrated Gradients (Captum) from the replacement baseline to each face, jointly."""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients

from .base import PairExplainer, PairScoreNet, pixel_maps_from_input_attr, register_explainer


@register_explainer("integrated_gradients")
class IntegratedGradientsExplainer(PairExplainer):
    """IG along the straight path from ``(baseline_a, baseline_b)`` to ``(x_a, x_b)``.

    Both faces move together (Captum's tuple inputs), so by completeness
    ``map_a.sum() + map_b.sum() = score(x_a, x_b) - score(baseline_a, baseline_b)`` up to
    the Riemann error. Maps are summed over colour channels.

    Args:
        n_steps: integration steps (default 32).
        internal_batch_size: pairs per backward pass inside Captum (memory/speed).
        method: Captum's integration rule (default ``"gausslegendre"``, Captum's own).
        baseline: ``"blur"`` (default) or ``"mean"``, see :func:`replacement_baseline`.
    """

    label = "Integrated Gradients (Captum)"
    short_label = "Integrated Gradients"
    compare_options = {"n_steps": "ig_steps"}

    def __init__(self, model, n_steps: int = 32, internal_batch_size: int | None = 16,
                 method: str = "gausslegendre", **kwargs):
        super().__init__(model, **kwargs)
        self.n_steps = int(n_steps)
        self.method = method
        self.internal_batch_size = internal_batch_size

    def _attribute(self, x_a, x_b, target):
        net = PairScoreNet(self.model, target)
        base_a, base_b = self._baselines(x_a, x_b)
        attr_a, attr_b = IntegratedGradients(net).attribute(
            (x_a, x_b), baselines=(base_a, base_b), n_steps=self.n_steps,
            method=self.method, internal_batch_size=self.internal_batch_size)
        with torch.no_grad():
            score = net(x_a, x_b)
            base_score = net(base_a, base_b)
        return pixel_maps_from_input_attr(attr_a, attr_b, self.grid_size(x_a), score,
                                          {"baseline_score": base_score})
