"""Systematic multi-scale occlusion with similar/dissimilar maps and a confidence
(Knoche, Teepe, Hörmann and Rigoll, WACV workshops 2023): a black-box reference.

Implemented from the paper's description. Square patches of several sizes slide over one face
(the other held fixed); each occluded copy (the patch replaced by the stated baseline) is
scored, and each pixel gets the mean score drop over the patches that covered it, averaged
over the scales. A positive drop (hiding the pixel lowers the score) marks a *similar*
region, a negative one a *dissimilar* region. The decision's confidence compares the pair's
score with reference genuine and impostor score distributions.

Beside it, ``"occlusion"`` (Captum's ``FeatureAblation`` of the xCos grid cells) is the
single-scale, cell-aligned form.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import PairExplainer, pair_score, register_explainer, to_grid
from .metrics import fixed_face_scorer

# The paper's scales on a 112-pixel face: patches of 7, 14 and 28 pixels, stride 5.
PAPER_PATCH_FRACTIONS = (7 / 112, 14 / 112, 28 / 112)
PAPER_STRIDE_FRACTION = 5 / 112


def patch_starts(length: int, patch: int, stride: int) -> list[int]:
    """Start offsets of a patch sliding over ``length`` pixels, the last one flush with the
    end (every pixel is covered).

    Example:
        >>> patch_starts(10, 4, 3)
        [0, 3, 6]
        >>> patch_starts(11, 4, 3)
        [0, 3, 6, 7]
    """
    if not 1 <= patch <= length or stride < 1:
        raise ValueError(f"patch {patch} and stride {stride} must be >= 1, the patch at most "
                         f"the image side {length}")
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def scaled_patches(size: int, patch_fractions, stride_fraction: float) -> tuple[list[int], int]:
    """Patch sizes and stride in pixels for a face of ``size`` pixels (at least 1 each).

    Example:
        >>> scaled_patches(112, PAPER_PATCH_FRACTIONS, PAPER_STRIDE_FRACTION)
        ([7, 14, 28], 5)
    """
    patches = [max(1, int(round(f * size))) for f in patch_fractions]
    return patches, max(1, int(round(stride_fraction * size)))


@torch.no_grad()
def occlusion_deviation_map(score_fn, x: torch.Tensor, baseline: torch.Tensor,
                            patch_sizes, stride: int, batch: int = 64) -> torch.Tensor:
    """``(H, W)`` mean score drop of the patches covering each pixel, averaged over scales.

    Args:
        score_fn: ``(K, 3, H, W) -> (K,)`` pair scores of K variants of this face.
        x, baseline: ``(1, C, H, W)`` the face and what replaces an occluded patch.
        patch_sizes: square patch sides in pixels, one scale each.
        stride: the step between patches, in pixels.
        batch: occluded copies per ``score_fn`` call.

    Example (a linear score, non-overlapping 1x2 cells: each pixel gets its cell's weight):
        >>> w = torch.tensor([[1.0, 2.0, 0.0, -1.0]])
        >>> fn = lambda v: (v[:, 0] * w).sum((1, 2))
        >>> x = torch.ones(1, 1, 1, 4)
        >>> occlusion_deviation_map(fn, x, 0 * x, [1], 1).tolist()
        [[1.0, 2.0, 0.0, -1.0]]
    """
    h, w = x.shape[-2:]
    full = score_fn(x)[0]
    total = torch.zeros(h, w, dtype=torch.float64)
    for patch in patch_sizes:
        boxes = [(r, c) for r in patch_starts(h, patch, stride)
                 for c in patch_starts(w, patch, stride)]
        drop_sum = torch.zeros(h, w, dtype=torch.float64)
        count = torch.zeros(h, w, dtype=torch.float64)
        for s in range(0, len(boxes), batch):
            part = boxes[s:s + batch]
            masks = torch.zeros(len(part), 1, h, w, dtype=x.dtype, device=x.device)
            for k, (r, c) in enumerate(part):
                masks[k, :, r:r + patch, c:c + patch] = 1
            drops = (full - score_fn(x * (1 - masks) + baseline * masks)).double().cpu()
            m = masks[:, 0].double().cpu()
            drop_sum += (m * drops[:, None, None]).sum(0)
            count += m.sum(0)
        total += drop_sum / count
    return (total / len(patch_sizes)).to(x.dtype).to(x.device)


def decision_confidence(score: float, threshold: float, genuine_scores,
                        impostor_scores) -> float:
    """Confidence in the decision ``score > threshold``, from reference score distributions.

    ``p = FNMR(s) / (FNMR(s) + FMR(s))`` with ``FNMR(s)`` the share of genuine reference
    scores at or below ``s`` and ``FMR(s)`` the share of impostor scores above ``s``: the
    chance that a pair scoring ``s`` is genuine, read off the two empirical distributions
    (equal priors). The confidence is ``p`` for an accepted pair and ``1 - p`` for a rejected
    one; 0.5 where the two error rates cross.

    Example:
        >>> gen, imp = [0.6, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.65]
        >>> decision_confidence(0.75, 0.5, gen, imp)  # FNMR 2/4, FMR 0/4: surely genuine
        1.0
        >>> decision_confidence(0.62, 0.5, gen, imp)  # FNMR 1/4, FMR 1/4
        0.5
    """
    g = np.asarray(genuine_scores, dtype=np.float64)
    i = np.asarray(impostor_scores, dtype=np.float64)
    if g.size == 0 or i.size == 0:
        raise ValueError("decision_confidence needs genuine and impostor reference scores")
    fnmr, fmr = float(np.mean(g <= score)), float(np.mean(i > score))
    p_genuine = 0.5 if fnmr + fmr == 0 else fnmr / (fnmr + fmr)
    return p_genuine if score > threshold else 1.0 - p_genuine


@register_explainer("multiscale_occlusion")
class MultiScaleOcclusionExplainer(PairExplainer):
    """Knoche et al.'s occlusion: each face's mean score drop over patches of several sizes.

    ``map`` is the signed drop (score units): positive where hiding the pixel lowers the
    score. ``extras``: ``similar_a = relu(map_a)``, ``dissimilar_a = relu(-map_a)``, the same
    for B, ``confidence`` (``(B,)``, NaN without ``reference_scores``) and ``score``.

    Args:
        patch_fractions: patch sides as fractions of the face side (default ``(1/8, 1/4)``:
            19 and 38 pixels on dlib's 150-pixel chip; the paper's ``(1/16, 1/8, 1/4)`` is
            :data:`PAPER_PATCH_FRACTIONS`).
        stride_fraction: the stride as a fraction of the face side (default 1/12: 12 px on
            150; the paper's 5/112 is :data:`PAPER_STRIDE_FRACTION`).
        reference_scores: ``(genuine, impostor)`` score arrays of the explained target for
            :func:`decision_confidence`.
        batch: occluded copies per forward.
    """

    label = "Multi-scale occlusion (Knoche et al. 2023), similar/dissimilar"
    short_label = "Multi-scale occlusion"

    def __init__(self, model, patch_fractions=(1 / 8, 1 / 4), stride_fraction: float = 1 / 12,
                 reference_scores=None, batch: int = 64, **kwargs):
        super().__init__(model, **kwargs)
        self.patch_fractions = tuple(float(f) for f in patch_fractions)
        self.stride_fraction = float(stride_fraction)
        self.reference_scores = reference_scores
        self.batch = int(batch)

    def _scales(self, size: tuple[int, int]):
        return scaled_patches(min(size), self.patch_fractions, self.stride_fraction)

    def pass_count(self, target: str = "xcos") -> float:
        h, w = self.model.input_spec.size
        patches, stride = self._scales((h, w))
        copies = sum(len(patch_starts(h, p, stride)) * len(patch_starts(w, p, stride))
                     for p in patches)
        return 2 * (copies + 2)  # per face: its copies, the unoccluded face, the fixed face

    @torch.no_grad()
    def _attribute(self, x_a, x_b, target):
        base_a, base_b = self._baselines(x_a, x_b)
        patches, stride = self._scales(tuple(x_a.shape[-2:]))
        maps_a, maps_b = [], []
        for i in range(len(x_a)):
            a, b = x_a[i:i + 1], x_b[i:i + 1]
            fn_a = fixed_face_scorer(self.model, b, target, vary="a", batch=self.batch)
            fn_b = fixed_face_scorer(self.model, a, target, vary="b", batch=self.batch)
            maps_a.append(occlusion_deviation_map(fn_a, a, base_a[i:i + 1], patches, stride,
                                                  self.batch))
            maps_b.append(occlusion_deviation_map(fn_b, b, base_b[i:i + 1], patches, stride,
                                                  self.batch))
        map_a, map_b = torch.stack(maps_a), torch.stack(maps_b)
        score = pair_score(self.model, x_a, x_b, target)
        threshold = float(self.model.threshold if target == "xcos"
                          else self.model.model_threshold)
        if self.reference_scores is None:
            confidence = torch.full_like(score, float("nan"))
        else:
            gen, imp = self.reference_scores
            confidence = torch.tensor([decision_confidence(float(s), threshold, gen, imp)
                                       for s in score], dtype=score.dtype)
        grid = self.grid_size(x_a)
        extras = {"similar_a": map_a.clamp_min(0), "dissimilar_a": (-map_a).clamp_min(0),
                  "similar_b": map_b.clamp_min(0), "dissimilar_b": (-map_b).clamp_min(0),
                  "confidence": confidence, "score": score}
        return map_a, map_b, to_grid(map_a, grid), to_grid(map_b, grid), extras
