"""The floor: a random map. A method that does no better than this explains nothing."""

from __future__ import annotations

import torch

from .base import PairExplainer, register_explainer, to_grid


@register_explainer("random")
class RandomExplainer(PairExplainer):
    """Independent standard-normal values per pixel and face, from a seeded generator.

    Each call draws new maps; ``seed`` fixes the sequence (no global random state is used).
    """

    label = "Random map (floor)"
    short_label = "Random (control)"
    control = True
    compare_options = {"seed": "seed"}

    def __init__(self, model, seed: int = 0, **kwargs):
        super().__init__(model, **kwargs)
        self.generator = torch.Generator().manual_seed(int(seed))

    @torch.no_grad()
    def _attribute(self, x_a, x_b, target):
        b, _, h, w = x_a.shape
        map_a = torch.randn(b, h, w, generator=self.generator).to(x_a.device)
        map_b = torch.randn(b, h, w, generator=self.generator).to(x_a.device)
        grid = self.grid_size(x_a)
        return map_a, map_b, to_grid(map_a, grid), to_grid(map_b, grid), {}
