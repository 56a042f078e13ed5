"""xCos on LFW View 2: features once, fold-held-out heads, every scorer through one protocol.

For each View-2 fold ``k``, a plug-in head is trained on the people of the other nine
``people.txt`` folds only (the folds are identity-disjoint, and ``pairs.txt`` fold ``k`` uses
exactly ``people.txt`` fold ``k``'s people), then scores fold ``k``'s 600 pairs. The 6000
held-out scores of each scorer go through the one 10-fold threshold protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core import UniformAttention
from ..core.device import full_float32, resolve_device
from ..data.aligners import lfw_aligner_for
from ..data.lfw import LFW
from ..evaluation.features import FeatureSet, compute_features
from ..models.registry import create_backbone
from ..pretrained import bundle_metadata, load_head
from ..training.plugin import PluginConfig, train_plugin_head


@dataclass
class LFWIndex:
    """LFW View 2 as integer arrays over a feature set's rows."""

    pair_a: np.ndarray  # (6000,) row of image A
    pair_b: np.ndarray
    same: np.ndarray  # (6000,) bool
    pair_fold: np.ndarray  # (6000,) 0..9
    image_fold: np.ndarray  # (N,) people.txt fold of each image's person
    image_label: np.ndarray  # (N,) person id
    frame: object = None  # the pairs as a pandas DataFrame (names and indices)

    @classmethod
    def build(cls, lfw, keys: list[str]) -> LFWIndex:
        pos = {k: i for i, k in enumerate(keys)}
        frame = lfw.pairs_frame()
        pair_a = np.array([pos[p] for p in frame["path_a"]])
        pair_b = np.array([pos[p] for p in frame["path_b"]])
        person_fold = {name: fold for fold, name, _ in lfw.people()}
        people = sorted(person_fold)
        person_id = {name: i for i, name in enumerate(people)}
        names = [k.split("/")[0] for k in keys]
        return cls(pair_a, pair_b, frame["same"].to_numpy(bool), frame["fold"].to_numpy(int),
                   np.array([person_fold[n] for n in names]),
                   np.array([person_id[n] for n in names]), frame)


@dataclass
class HeldOutResult:
    """Held-out xCos of one head configuration on all pairs."""

    name: str
    scores: np.ndarray
    cos_maps: np.ndarray
    attention: np.ndarray
    uniform_scores: np.ndarray  # the same heads with W swapped to uniform
    heads: list = field(default_factory=list)
    histories: list = field(default_factory=list)


def model_scores(features: FeatureSet, index: LFWIndex) -> dict[str, np.ndarray]:
    """The plugged model's own scores: embedding cosine and (negated) L2 distance."""
    emb = features.embeddings.float()
    a, b = emb[index.pair_a], emb[index.pair_b]
    return {"model_cosine": F.cosine_similarity(a, b).numpy(),
            "model_neg_l2": (-(a - b).norm(dim=1)).numpy()}


PAIR_BATCH = 1024
"""Pairs per head forward when scoring (a head on two grids is cheap: big batches)."""


@torch.no_grad()
def score_pairs(head, grids: torch.Tensor, rows_a, rows_b, batch: int = PAIR_BATCH,
                device: str | torch.device = "cpu"):
    """Scores, S and W of a head on pairs of feature rows (and the uniform-W score).

    The head runs on ``device`` (moved there) in float32, ``batch`` pairs at a time: each
    batch's grids go there, the outputs come back as CPU numpy arrays.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1 pair, got {batch}")
    device = resolve_device("auto") if str(device) == "auto" else device
    head = head.eval().to(device)
    uniform = head.with_attention(UniformAttention()).to(device)
    scores, cos_maps, attn, uni = [], [], [], []
    with full_float32():
        for s in range(0, len(rows_a), batch):
            # the rows are picked on the CPU; only this batch's (float16) grids are copied
            ga = grids[rows_a[s:s + batch]].to(device).float()
            gb = grids[rows_b[s:s + batch]].to(device).float()
            out = head(ga, gb)
            scores.append(out.score.cpu())
            cos_maps.append(out.cos_map.cpu())
            attn.append(out.attention.cpu())
            uni.append(uniform(ga, gb).score.cpu())
    cat = lambda xs: torch.cat(xs).numpy()  # noqa: E731
    return cat(scores), cat(cos_maps), cat(attn), cat(uni)


def held_out_xcos(features: FeatureSet, index: LFWIndex, config: PluginConfig,
                  name: str | None = None, folds=range(10), progress: bool = True,
                  keep_heads: bool = False) -> HeldOutResult:
    """Train one head per fold on the other folds' people and score that fold's pairs."""
    grids = features.grids[config.grid]
    n = len(index.same)
    h, w = grids.shape[-2:]
    scores, uni = np.full(n, np.nan), np.full(n, np.nan)
    cos_maps = np.full((n, h, w), np.nan, dtype=np.float32)
    attn = np.full((n, h, w), np.nan, dtype=np.float32)
    result = HeldOutResult(name or config.grid, scores, cos_maps, attn, uni)
    for k in tqdm(list(folds), desc=f"folds ({result.name})", disable=not progress):
        train = np.flatnonzero(index.image_fold != k)
        head, history = train_plugin_head(grids[train], features.embeddings[train],
                                          torch.from_numpy(index.image_label[train]), config,
                                          progress=False)
        sel = np.flatnonzero(index.pair_fold == k)
        s, c, a, u = score_pairs(head, grids, index.pair_a[sel], index.pair_b[sel])
        scores[sel], cos_maps[sel], attn[sel], uni[sel] = s, c, a, u
        result.histories.append(history)
        if keep_heads:
            result.heads.append(head)
    return result


def lfw_features(backbone=None, root=None, workers: int = 2, progress: bool = True,
                 batch_size: int = 64, images=None, model: str = "dlib_resnet_v1",
                 device: str | torch.device = "cpu"):
    """``(LFW, FeatureSet, LFWIndex)`` for all LFW images through one network (cached).

    Args:
        backbone: a built backbone, or ``None`` for ``create_backbone(model, pretrained=True)``.
        root, images: the LFW folder and its image folder (see :class:`LFW`).
        model: the registry name used when ``backbone`` is ``None`` (``"dlib_resnet_v1"``,
            ``"sface"``). The aligner follows the backbone's input spec
            (:func:`~xcos_xai.data.aligners.lfw_aligner_for`, LFW preset, shared chip cache).
        batch_size, device: images per backbone forward and where it runs (``"auto"``: CUDA
            when present); the feature cache is shared by every device
            (:func:`~xcos_xai.evaluation.features.compute_features`).
    """
    lfw = LFW(root, images=images)
    backbone = backbone if backbone is not None else create_backbone(model, pretrained=True)
    keys = [str(p.relative_to(lfw.image_root)) for p in lfw.images()]
    paths = [lfw.image_root / k for k in keys]
    aligner = lfw_aligner_for(backbone)
    features = compute_features(backbone, paths, aligner, keys=keys, workers=workers,
                                progress=progress, batch_size=batch_size, device=device)
    return lfw, features, LFWIndex.build(lfw, keys)


def bundled_fold_scores(features: FeatureSet, index: LFWIndex, name: str = "dlib-xcos",
                        device: str | torch.device = "cpu", batch: int = PAIR_BATCH):
    """Held-out scores of the bundled fold heads (head ``k`` scores fold ``k``), ``batch``
    pairs at a time on ``device`` (:func:`score_pairs`)."""
    grid = bundle_metadata(name)["config"]["grid"]
    grids = features.grids[grid]
    n = len(index.same)
    h, w = grids.shape[-2:]
    result = HeldOutResult(f"xcos_{grid}", np.full(n, np.nan), np.zeros((n, h, w), np.float32),
                           np.zeros((n, h, w), np.float32), np.full(n, np.nan))
    for k in range(10):
        head, _, _ = load_head(name, fold=k)  # the head alone: no backbone to build
        sel = np.flatnonzero(index.pair_fold == k)
        s, c, a, u = score_pairs(head, grids, index.pair_a[sel], index.pair_b[sel],
                                 batch=batch, device=device)
        result.scores[sel], result.cos_maps[sel], result.attention[sel] = s, c, a
        result.uniform_scores[sel] = u
    return result
