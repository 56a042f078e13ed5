"""Grad-CAM (Captum ``LayerGradCam``) on the pair score, at the xCos grid, for both faces."""

from __future__ import annotations

import torch
from captum.attr import LayerGradCam

from .base import PairExplainer, PairScoreNet, register_explainer, to_pixels


@register_explainer("gradcam")
class GradCAMExplainer(PairExplainer):
    """Grad-CAM at the backbone grid: ``sum_c mean_hw(d score / d grid_c) * grid_c``.

    Both faces go through the backbone in one call, so the hooked grid layer holds
    ``(2B, C, h, w)``: rows ``:B`` give face A's map, ``B:`` face B's. The map is signed
    (no ReLU: the negative part is the evidence against "same person") and is upsampled
    bilinearly to the input (Captum's ``LayerAttribution.interpolate`` habit).

    Args:
        relu: apply Grad-CAM's usual ReLU (only the supporting part is kept).
    """

    label = "Grad-CAM (Captum LayerGradCam)"
    short_label = "Grad-CAM"

    def __init__(self, model, relu: bool = False, **kwargs):
        super().__init__(model, **kwargs)
        self.relu = relu

    def _attribute(self, x_a, x_b, target):
        net = PairScoreNet(self.model, target)
        cam = LayerGradCam(net, net.grid_layer).attribute((x_a, x_b),
                                                          relu_attributions=self.relu)
        cam = cam.squeeze(1)  # (2B, h, w): A's rows, then B's
        grid_a, grid_b = cam.chunk(2)
        size = x_a.shape[-2:]
        with torch.no_grad():
            score = net(x_a, x_b)
        return (to_pixels(grid_a, size, "bilinear"), to_pixels(grid_b, size, "bilinear"),
                grid_a, grid_b, {"score": score})

