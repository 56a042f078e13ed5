"""Saliency (Captum): the gradient of the pair score, as a first-order replacement effect."""

from __future__ import annotations

import torch
from captum.attr import Saliency

from .base import PairExplainer, PairScoreNet, pixel_maps_from_input_attr, register_explainer


@register_explainer("saliency")
class SaliencyExplainer(PairExplainer):
    """``grad(score) * (x - baseline)`` per pixel, summed over channels (signed).

    The gradient alone is not a contribution (its sign says which way a pixel should move);
    times ``x - baseline`` it is the first-order estimate of how much the score changes when
    the pixel is replaced by the baseline, the same replacement the metrics make.

    Args:
        absolute: the classic unsigned saliency ``max_c |grad|`` instead (Simonyan et al.).
    """

    label = "Saliency (Captum), gradient x (input - baseline)"
    short_label = "Saliency"

    def __init__(self, model, absolute: bool = False, **kwargs):
        super().__init__(model, **kwargs)
        self.absolute = absolute

    def _attribute(self, x_a, x_b, target):
        net = PairScoreNet(self.model, target)
        inputs = (x_a.clone().requires_grad_(), x_b.clone().requires_grad_())
        grad_a, grad_b = Saliency(net).attribute(inputs, abs=False)
        with torch.no_grad():
            score = net(x_a, x_b)
        if self.absolute:
            grad_a = grad_a.abs().amax(1, keepdim=True)
            grad_b = grad_b.abs().amax(1, keepdim=True)
        else:
            base_a, base_b = self._baselines(x_a, x_b)
            grad_a, grad_b = grad_a * (x_a - base_a), grad_b * (x_b - base_b)
        return pixel_maps_from_input_attr(grad_a, grad_b, self.grid_size(x_a), score)
