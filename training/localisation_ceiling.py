"""The best localisation game a map that is constant on c x c blocks can reach.

    python training/localisation_ceiling.py

An oracle map that knows the swapped region R: each block's value is minus the share of its
pixels inside R (most opposing where the block overlaps R most). Scored with the comparison's
own functions (:func:`~xcos_xai.explainers.metrics.pointing_game`, :func:`top_iou`, 10x10 px
units, ties broken by the seeded random order, averaged over seeds) on 150x150 chips.
"""

from __future__ import annotations

import numpy as np
import torch

from xcos_xai.explainers.base import to_pixels
from xcos_xai.explainers.metrics import facial_region_mask, pointing_game, top_iou


def ceiling(cells: int, region: str, seeds: int = 200) -> tuple[float, float]:
    """``(pointing, IoU)`` of the oracle ``cells x cells`` map for one facial region."""
    mask = facial_region_mask(region, (150, 150))
    share = torch.nn.functional.adaptive_avg_pool2d(mask.float()[None, None], (cells, cells))[0]
    pixels = to_pixels(-share, (150, 150))[0]
    pointing = np.mean([pointing_game(pixels, mask, 10, seed=s) for s in range(seeds)])
    iou = np.mean([top_iou(pixels, mask, 10, seed=s) for s in range(seeds // 4)])
    return float(pointing), float(iou)


def main() -> None:
    for cells in (4, 8):
        rows = {r: ceiling(cells, r) for r in ("eyes", "nose", "mouth")}
        mean = np.mean(list(rows.values()), axis=0)
        print(f"{cells}x{cells}: " + ", ".join(f"{r} pointing {p:.2f} IoU {i:.3f}"
                                               for r, (p, i) in rows.items())
              + f"; mean pointing {mean[0]:.2f}, IoU {mean[1]:.3f}")


if __name__ == "__main__":
    main()
