"""How a plug-in xCos head is built and trained: :class:`PluginConfig`.

It lives in ``core`` because building a head from it is needed everywhere a bundled head is
loaded (:mod:`xcos_xai.pretrained`), not only where heads are trained
(:mod:`xcos_xai.training.plugin`, which re-exports it).
"""

from __future__ import annotations

from dataclasses import dataclass

from .xcos import XCosHead

__all__ = ["PluginConfig"]


@dataclass
class PluginConfig:
    """How a plug-in head is built and trained (defaults: the measured best on dlib 4x4)."""

    grid: str = "4x4"
    channels: int | None = 32  # None: no adapter, the grid's own features are compared
    attention: str = "learned"
    temperature: float = 1.0
    context_channels: int | None = None
    cell_offset: bool = False
    epochs: int = 6
    pairs_per_epoch: int = 40_000
    batch_size: int = 512
    lr: float = 1.5e-3
    weight_decay: float = 0.0
    id_loss_weight: float = 0.0  # alpha in alpha * L_id + (1 - alpha) * L_cos
    id_head: str = "cosface"
    seed: int = 0
    device: str = "cpu"

    def build_head(self, in_channels: int, grid_size: tuple[int, int] | None) -> XCosHead:
        return XCosHead(in_channels, self.channels, attention=self.attention,
                        temperature=self.temperature, context_channels=self.context_channels,
                        grid_size=grid_size if self.cell_offset else None, cells=grid_size)
