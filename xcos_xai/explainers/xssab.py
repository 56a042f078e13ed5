"""xSSAB: similarity score argument backpropagation (Huber et al., WACV 2024).

Implemented from the paper's description. The pair score is a sum of terms
(:func:`~.score_terms.score_terms`: embedding dimensions for the model's cosine, grid cells
for xCos). A term above ``threshold / D`` *supports* the match, the others *oppose* it. The
gradient of the supporting part of the score, taken to each face, is the positive map; the
gradient of the opposing part the negative map; the combined map is positive minus negative.
"""

from __future__ import annotations

import torch

from .base import PairExplainer, register_explainer, to_grid
from .score_terms import score_terms, threshold_of


def split_by_support(terms: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(B, D)`` booleans: the terms that support the match (``term > threshold / D``).

    Example:
        >>> split_by_support(torch.tensor([[0.4, 0.2, -0.1, 0.3]]), 0.8).tolist()
        [[True, False, False, True]]
    """
    return terms > threshold / terms.shape[-1]


@register_explainer("xssab")
class XSSABExplainer(PairExplainer):
    """Positive, negative and combined gradient maps of the pair score's two parts.

    With ``terms`` the score's ``D`` terms and ``support = terms > threshold / D``:

    - ``s_pos = sum(terms[support])``, ``s_neg = sum(terms[~support])`` (``s_pos + s_neg``
      is the score);
    - ``positive_x = sum_c |d s_pos / d x_c|`` and ``negative_x = sum_c |d s_neg / d x_c|``,
      ``(B, H, W)`` per face ``x`` (score units per normalised input unit);
    - the map is ``positive - negative``: positive where a pixel moves the supporting part
      of the score more than the opposing part.

    Both faces go through the backbone in one batched forward; one backward per part gives
    both faces' gradients (2 image forwards and 2 backwards of the pair batch: the paper's
    "2 forward+backward passes per image", with the forward shared).

    ``extras``: ``positive_a``, ``negative_a``, ``positive_b``, ``negative_b`` (``(B, H, W)``),
    ``support`` (``(B, D)`` booleans), ``score_support``, ``score_oppose`` (``(B,)``),
    ``score``.
    """

    label = "xSSAB (Huber et al. 2024), gradient of the supporting - opposing score"
    short_label = "xSSAB"
    passes_per_pair = 6  # 2 image forwards + 2 backwards of both faces

    def _attribute(self, x_a, x_b, target):
        threshold = threshold_of(self.model, target)
        with torch.enable_grad():
            xa = x_a.clone().requires_grad_()
            xb = x_b.clone().requires_grad_()
            terms = score_terms(self.model, xa, xb, target)
            support = split_by_support(terms.detach(), threshold)
            s_pos = (terms * support).sum(1)
            s_neg = (terms * ~support).sum(1)
            # the pairs are independent, so the gradient of the batch sum is each pair's own
            pos_a, pos_b = torch.autograd.grad(s_pos.sum(), (xa, xb), retain_graph=True,
                                               allow_unused=True)
            neg_a, neg_b = torch.autograd.grad(s_neg.sum(), (xa, xb), allow_unused=True)
        maps = [torch.zeros_like(x_a[:, 0]) if g is None else g.abs().sum(1)
                for g in (pos_a, neg_a, pos_b, neg_b)]
        positive_a, negative_a, positive_b, negative_b = maps
        map_a, map_b = positive_a - negative_a, positive_b - negative_b
        grid = self.grid_size(x_a)
        extras = {"positive_a": positive_a, "negative_a": negative_a,
                  "positive_b": positive_b, "negative_b": negative_b, "support": support,
                  "score_support": s_pos.detach(), "score_oppose": s_neg.detach(),
                  "score": (s_pos + s_neg).detach()}
        return map_a, map_b, to_grid(map_a, grid), to_grid(map_b, grid), extras
