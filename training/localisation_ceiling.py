"""The best localisation game a map that is constant on c x c blocks can reach.

    python training/localisation_ceiling.py

dlib's 150x150 chips (4x4 cells, 8x8 blocks) and SFace's 112x112 ArcFace faces (7x7 cells).

An oracle map that knows the swapped region R: each block's value is minus the share of its
pixels inside R (most opposing where the block overlaps R most). Scored with the comparison's
own functions (:func:`~xcos_xai.explainers.metrics.pointing_game`, :func:`top_iou`, 10x10 px
units, ties broken by the seeded random order, averaged over seeds).
"""

from __future__ import annotations

import numpy as np
import torch

from xcos_xai.explainers.base import to_pixels
from xcos_xai.explainers.metrics import facial_region_mask, pointing_game, top_iou


def ceiling(cells: int, region: str, seeds: int = 200,
            size: tuple[int, int] = (150, 150)) -> tuple[float, float]:
    """``(pointing, IoU)`` of the oracle ``cells x cells`` map for one facial region of a
    ``size`` face (150x150: dlib's chip; 112x112: the ArcFace template's regions)."""
    mask = facial_region_mask(region, size)
    share = torch.nn.functional.adaptive_avg_pool2d(mask.float()[None, None], (cells, cells))[0]
    pixels = to_pixels(-share, size)[0]
    pointing = np.mean([pointing_game(pixels, mask, 10, seed=s) for s in range(seeds)])
    iou = np.mean([top_iou(pixels, mask, 10, seed=s) for s in range(seeds // 4)])
    return float(pointing), float(iou)


def main() -> None:
    for model, cells, size in (("dlib", 4, (150, 150)), ("dlib", 8, (150, 150)),
                               ("SFace", 7, (112, 112))):
        rows = {r: ceiling(cells, r, size=size) for r in ("eyes", "nose", "mouth")}
        mean = np.mean(list(rows.values()), axis=0)
        print(f"{model} {cells}x{cells}: " + ", ".join(f"{r} pointing {p:.2f} IoU {i:.3f}"
                                               for r, (p, i) in rows.items())
              + f"; mean pointing {mean[0]:.2f}, IoU {mean[1]:.3f}")


if __name__ == "__main__":
    main()
