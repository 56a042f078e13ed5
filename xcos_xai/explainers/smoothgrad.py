"""SmoothGrad (Captum ``NoiseTunnel`` over ``Saliency``), as a replacement effect."""

from __future__ import annotations

import torch
from captum.attr import NoiseTunnel, Saliency

from ..core.rng import seeded
from .base import PairExplainer, PairScoreNet, pixel_maps_from_input_attr, register_explainer


@register_explainer("smoothgrad")
class SmoothGradExplainer(PairExplainer):
    """The gradient averaged over noisy copies of both faces, times ``x - baseline``.

    Args:
        nt_samples: noisy copies (default 16).
        stdev: the noise's standard deviation in the normalised input (dlib's inputs span
            about 1 unit, so 0.1 is 10 % of the range).
        seed: the noise's seed (Captum draws from torch's global generator; it is seeded
            here and restored afterwards).
    """

    label = "SmoothGrad (Captum NoiseTunnel)"
    short_label = "SmoothGrad"
    compare_options = {"nt_samples": "smoothgrad_samples", "stdev": "smoothgrad_stdev",
                       "seed": "seed"}

    def __init__(self, model, nt_samples: int = 16, stdev: float = 0.1, seed: int = 0,
                 batch_size: int | None = 8, **kwargs):
        super().__init__(model, **kwargs)
        self.nt_samples, self.stdev, self.seed = int(nt_samples), float(stdev), int(seed)
        self.batch_size = batch_size

    def _attribute(self, x_a, x_b, target):
        net = PairScoreNet(self.model, target)
        inputs = (x_a.clone().requires_grad_(), x_b.clone().requires_grad_())
        with seeded(self.seed, x_a.device):
            grad_a, grad_b = NoiseTunnel(Saliency(net)).attribute(
                inputs, nt_type="smoothgrad", nt_samples=self.nt_samples,
                nt_samples_batch_size=self.batch_size, stdevs=self.stdev, abs=False)
        base_a, base_b = self._baselines(x_a, x_b)
        with torch.no_grad():
            score = net(x_a, x_b)
        return pixel_maps_from_input_attr(grad_a * (x_a - base_a), grad_b * (x_b - base_b),
                                          self.grid_size(x_a), score)
