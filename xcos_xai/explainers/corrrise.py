"""CorrRISE (Lu, Xu and Ebrahimi, WACV 2024): random masks, correlated with the score.

Implemented from the paper's description. Face A is shown through ``N`` random smooth masks
(the hidden part replaced by the stated baseline) while face B is held fixed; each pixel's
mask values over the ``N`` draws are correlated (Pearson) with the ``N`` pair scores. Where
showing a pixel goes with a higher score the correlation is positive (a *similar* region);
where it goes with a lower score, negative (a *dissimilar* region). Then the same for face B.
Black-box: only pair scores are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import PairExplainer, pair_score, register_explainer, to_grid
from .metrics import fixed_face_scorer


def random_masks(n: int, size: tuple[int, int], cells: int = 8, p_keep: float = 0.5,
                 smooth: bool = True, generator: torch.Generator | None = None,
                 device=None) -> torch.Tensor:
    """``(n, 1, H, W)`` masks in ``[0, 1]`` (1: the pixel is shown).

    ``smooth=True`` (RISE's masks): a ``cells x cells`` Bernoulli(``p_keep``) grid, upsampled
    bilinearly to ``cells + 1`` cells' size and cropped at a random offset, so mask edges fall
    anywhere. ``smooth=False``: the grid upsampled by nearest neighbour, no offset (with
    ``cells == H == W``, independent pixels).
    """
    h, w = size
    grid = (torch.rand(n, 1, cells, cells, generator=generator) < p_keep).float()
    if not smooth:
        return F.interpolate(grid, size=(h, w), mode="nearest").to(device)
    cell_h, cell_w = -(-h // cells), -(-w // cells)
    up = F.interpolate(grid, size=((cells + 1) * cell_h, (cells + 1) * cell_w),
                       mode="bilinear", align_corners=False)
    dy = torch.randint(0, cell_h, (n,), generator=generator)
    dx = torch.randint(0, cell_w, (n,), generator=generator)
    rows = dy[:, None] + torch.arange(h)[None]  # (n, H)
    cols = dx[:, None] + torch.arange(w)[None]  # (n, W)
    out = up[torch.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]]
    return out[:, None].clamp(0, 1).to(device)


@torch.no_grad()
def correlation_map(score_fn, x: torch.Tensor, baseline: torch.Tensor, n_masks: int = 500,
                    cells: int = 8, p_keep: float = 0.5, smooth: bool = True,
                    batch: int = 50, seed: int = 0) -> torch.Tensor:
    """``(H, W)`` Pearson correlation of each pixel's mask value with the score.

    Args:
        score_fn: ``(K, 3, H, W) -> (K,)`` pair scores of K variants of this face (the other
            face fixed), e.g. :func:`~.metrics.fixed_face_scorer`.
        x, baseline: ``(1, 3, H, W)`` the face and what replaces its hidden pixels.
        n_masks: random masks (forwards).
        cells, p_keep, smooth: see :func:`random_masks`.
        batch: masks per ``score_fn`` call.
        seed: the masks' seed (the same seed gives the same masks).

    Returns:
        ``(H, W)`` in ``[-1, 1]``; 0 where a pixel's mask never varies.

    Example (a linear score with independent pixels: the correlation is ``w / |w|``):
        >>> w = torch.tensor([[3.0, 0.0], [0.0, -4.0]])
        >>> fn = lambda v: (v[:, 0] * w).sum((1, 2))
        >>> x = torch.ones(1, 1, 2, 2)
        >>> c = correlation_map(fn, x, 0 * x, 4000, cells=2, smooth=False)
        >>> bool((c - w / w.norm()).abs().max() < 0.05)  # w / |w| = [[0.6, 0], [0, -0.8]]
        True
    """
    if n_masks < 2:
        raise ValueError(f"n_masks must be at least 2 for a correlation, got {n_masks}")
    generator = torch.Generator().manual_seed(int(seed))
    size = tuple(x.shape[-2:])
    acc = {k: torch.zeros(size, dtype=torch.float64) for k in ("m", "mm", "ms")}
    s_sum = s_sq = 0.0
    for start in range(0, n_masks, batch):
        k = min(batch, n_masks - start)
        m = random_masks(k, size, cells, p_keep, smooth, generator, device=x.device)
        scores = score_fn(x * m + baseline * (1 - m)).double().cpu()
        m = m[:, 0].double().cpu()
        acc["m"] += m.sum(0)
        acc["mm"] += (m * m).sum(0)
        acc["ms"] += (m * scores[:, None, None]).sum(0)
        s_sum += float(scores.sum())
        s_sq += float((scores * scores).sum())
    n = n_masks
    cov = acc["ms"] / n - (acc["m"] / n) * (s_sum / n)
    var_m = (acc["mm"] / n - (acc["m"] / n) ** 2).clamp_min(0)
    var_s = max(s_sq / n - (s_sum / n) ** 2, 0.0)
    denom = (var_m * var_s).sqrt()
    corr = torch.where(denom > 1e-12, cov / denom.clamp_min(1e-300), torch.zeros_like(cov))
    return corr.clamp(-1, 1).to(x.dtype).to(x.device)


@register_explainer("corrrise")
class CorrRISEExplainer(PairExplainer):
    """Per face: the correlation of its random masks with the pair score (the other face
    fixed). ``map = corr``: positive on similar regions, negative on dissimilar ones.

    ``extras``: ``similarity_a = relu(corr_a)``, ``dissimilarity_a = relu(-corr_a)``, the
    same for B, and ``score``.

    Args:
        n_masks: masks per face (the paper's maps use thousands; 500 by default, see the
            cost table of the comparison).
        cells, p_keep, smooth: RISE's mask grid, keep probability and smooth edges
            (see :func:`random_masks`).
        batch: masked faces per forward.
        seed: the masks' seed (no global random state is used).
        baseline: what hidden pixels become (``"blur"`` default, ``"mean"``).
    """

    label = "CorrRISE (Lu et al. 2024), mask-score correlation"
    short_label = "CorrRISE"
    compare_options = {"n_masks": "corrrise_masks", "seed": "seed"}

    def __init__(self, model, n_masks: int = 500, cells: int = 8, p_keep: float = 0.5,
                 smooth: bool = True, batch: int = 50, seed: int = 0, **kwargs):
        super().__init__(model, **kwargs)
        self.smooth = bool(smooth)
        self.n_masks, self.cells, self.p_keep = int(n_masks), int(cells), float(p_keep)
        self.batch, self.seed = int(batch), int(seed)

    def pass_count(self, target: str = "xcos") -> float:
        return 2 * self.n_masks + 2  # N masked forwards per face + each fixed face once

    @torch.no_grad()
    def _attribute(self, x_a, x_b, target):
        base_a, base_b = self._baselines(x_a, x_b)
        maps_a, maps_b = [], []
        for i in range(len(x_a)):
            a, b = x_a[i:i + 1], x_b[i:i + 1]
            opts = dict(n_masks=self.n_masks, cells=self.cells, p_keep=self.p_keep,
                        smooth=self.smooth, batch=self.batch, seed=self.seed)
            fn_a = fixed_face_scorer(self.model, b, target, vary="a", batch=self.batch)
            fn_b = fixed_face_scorer(self.model, a, target, vary="b", batch=self.batch)
            maps_a.append(correlation_map(fn_a, a, base_a[i:i + 1], **opts))
            maps_b.append(correlation_map(fn_b, b, base_b[i:i + 1], **opts))
        map_a, map_b = torch.stack(maps_a), torch.stack(maps_b)
        score = pair_score(self.model, x_a, x_b, target)
        grid = self.grid_size(x_a)
        extras = {"similarity_a": map_a.clamp_min(0), "dissimilarity_a": (-map_a).clamp_min(0),
                  "similarity_b": map_b.clamp_min(0), "dissimilarity_b": (-map_b).clamp_min(0),
                  "score": score}
        return map_a, map_b, to_grid(map_a, grid), to_grid(map_b, grid), extras
