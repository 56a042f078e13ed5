"""xCos plugged into a face-verification backbone: images in, score and maps out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_image_pair
from .xcos import XCosHead, XCosOutput


class XCosModel(nn.Module):
    """A backbone with an xCos head, and the reference ("plugged") model for its cosine.

    Args:
        backbone: a registry backbone (``forward_features`` gives the grid xCos compares).
        head: the :class:`XCosHead` on that grid.
        teacher: the original model whose embedding cosine xCos is trained to match. ``None``
            means the backbone itself is that model (the plug-in on a frozen backbone), so its
            cosine comes from ``backbone.forward_head`` on the same grids at no extra cost.
        threshold: the decision threshold on the xCos score (same person if above).
        model_threshold: the decision threshold on the model's own cosine.

    ``forward(x_a, x_b)`` takes ``(B, 3, H, W)`` preprocessed faces (see ``input_spec``) and
    returns an :class:`XCosOutput` including ``model_cosine``.
    """

    def __init__(self, backbone: nn.Module, head: XCosHead, teacher: nn.Module | None = None,
                 threshold: float = 0.0, model_threshold: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.register_buffer("model_threshold", torch.tensor(float(model_threshold)))

    @property
    def input_spec(self):
        return self.backbone.input_spec

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:  # a frozen teacher always runs in eval mode
            self.teacher.eval()
        return self

    def grids(self, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both faces' backbone grids from one batched backbone call."""
        check_image_pair(x_a, x_b)
        # Named here, before the backbone's own checks see the concatenated batch.
        size = getattr(getattr(self.backbone, "input_spec", None), "size", None)
        if size is not None and tuple(x_a.shape[2:]) != tuple(size):
            raise ValueError(f"x_a and x_b must be {size[0]}x{size[1]} faces, got "
                             f"{tuple(x_a.shape)}: align them with FaceAligner(chip_size="
                             f"{size[0]}) (or resize to the model's input_spec.size)")
        param = next(self.backbone.parameters(), None)
        if param is not None and x_a.dtype != param.dtype:
            raise TypeError(f"x_a and x_b are {x_a.dtype} but the model's weights are "
                            f"{param.dtype}: convert them with x.to({param.dtype}) (or the "
                            f"model with model.to({x_a.dtype}))")
        grid_a, grid_b = self.backbone.forward_features(torch.cat([x_a, x_b])).chunk(2)
        return grid_a, grid_b

    def model_cosine_from_grids(self, grid_a: torch.Tensor, grid_b: torch.Tensor) -> torch.Tensor:
        emb = self.backbone.forward_head(torch.cat([grid_a, grid_b]))
        emb_a, emb_b = emb.chunk(2)
        return F.cosine_similarity(emb_a, emb_b, dim=1)

    @torch.no_grad()
    def teacher_cosine(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        emb_a, emb_b = self.teacher(torch.cat([x_a, x_b])).chunk(2)
        return F.cosine_similarity(emb_a, emb_b, dim=1)

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> XCosOutput:
        grid_a, grid_b = self.grids(x_a, x_b)
        out = self.head(grid_a, grid_b)
        if self.teacher is None:
            model_cos = self.model_cosine_from_grids(grid_a, grid_b)
        else:
            model_cos = self.teacher_cosine(x_a, x_b)
        return out._replace(model_cosine=model_cos)

    def score(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        """``(B,)`` xCos scores only."""
        return self.head(*self.grids(x_a, x_b)).score

    def decide(self, output: XCosOutput) -> torch.Tensor:
        """``(B,)`` booleans: same person where the xCos score is above the threshold."""
        return output.score > self.threshold
