"""The trainable xCos network of the paper's recipe and its loss.

``XCosTrainModule`` = trunk (a registry backbone, up to its grid) + :class:`XCosHead`
(grid adapter, patch cosines, attention) + a margin head on the ID vector. One forward
takes the ``2B`` images of ``B`` pairs (all A faces, then all B faces) and returns

    loss = alpha * L_id + (1 - alpha) * L_cos

- ``L_id``: cross-entropy of the ArcFace/CosFace logits of **both** faces of every pair,
  computed on the flattened, adapted grid (the ID vector; 32 x 7 x 7 = 1568-d for IResNets).
- ``L_cos``: mean squared error between xCos and the target cosine. Recipe ``paper``: the
  target is the cosine of the **frozen teacher's** embeddings (the original pretrained
  model, always in eval mode: dropout off, BN running statistics; the official code ran it in
  train mode, bug 1 of the method notes). Recipe ``scratch`` (no teacher): the target is the
  cosine of the two faces' own ID vectors, detached, i.e. xCos learns to decompose the global
  similarity that the identity loss is shaping.
- ``detach_cos_map``: the ``detachAttentionGradient`` option of the authors' fork: S is
  computed on detached features so ``L_cos`` reaches the trunk through the attention only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core import XCosHead, create_margin_head, patch_cosine_map, xcos_from_maps

__all__ = ["XCosTrainModule", "freeze_unused_parameters", "split_decay"]


class XCosTrainModule(nn.Module):
    """Trunk + xCos head + margin head; ``forward`` returns the loss and its parts.

    Args:
        trunk: a registry backbone; only ``forward_features`` is used.
        head: the :class:`XCosHead` on the trunk's grid.
        margin_head: ArcFace/CosFace over ``head.channels * H * W`` inputs.
        alpha: weight of ``L_id`` (``1 - alpha`` for ``L_cos``).
        detach_cos_map: see the module notes.
    """

    def __init__(self, trunk: nn.Module, head: XCosHead, margin_head: nn.Module,
                 alpha: float = 0.5, detach_cos_map: bool = False):
        super().__init__()
        self.trunk, self.head, self.margin_head = trunk, head, margin_head
        self.alpha = float(alpha)
        self.detach_cos_map = bool(detach_cos_map)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H_in, W_in)`` images to adapted grids ``(N, C', H, W)``."""
        return self.head.adapter(self.trunk.forward_features(x))

    def pair_outputs(self, feats: torch.Tensor):
        """xCos output and the two ID vectors from the adapted grids of ``2B`` images."""
        fa, fb = feats.chunk(2)
        if self.detach_cos_map:
            cos_map = patch_cosine_map(fa.detach().float(), fb.detach().float())
        else:
            cos_map = patch_cosine_map(fa.float(), fb.float())
        out = xcos_from_maps(cos_map, self.head.attention(fa, fb).float())
        return out, feats.flatten(1).float()

    def forward(self, x: torch.Tensor, labels: torch.Tensor,
                target_cos: torch.Tensor | None = None):
        """Loss of one micro-batch.

        Args:
            x: ``(2B, 3, H, W)``: the A faces then the B faces.
            labels: ``(2B,)`` identities in the same order.
            target_cos: ``(B,)`` teacher cosines; ``None`` for the scratch target.

        Returns:
            ``(loss, stats)`` with ``stats`` = detached ``l_id``, ``l_cos``, ``id_acc``.
        """
        out, ids = self.pair_outputs(self.features(x))
        logits = self.margin_head(ids, labels).float()
        l_id = F.cross_entropy(logits, labels)
        if target_cos is None:
            ea, eb = F.normalize(ids.detach(), dim=1).chunk(2)
            target_cos = (ea * eb).sum(1)
        l_cos = F.mse_loss(out.score, target_cos.float())
        loss = self.alpha * l_id + (1.0 - self.alpha) * l_cos
        with torch.no_grad():
            cos = self.margin_head.cosine(ids)
            acc = (cos.argmax(1) == labels).float().mean()
        return loss, {"l_id": l_id.detach(), "l_cos": l_cos.detach(), "id_acc": acc}

    @torch.no_grad()
    def scores(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B,)`` xCos and the cosine of the ID vectors (the model's own embedding)."""
        out, ids = self.pair_outputs(self.features(torch.cat([x_a, x_b])))
        ea, eb = F.normalize(ids, dim=1).chunk(2)
        return {"xcos": out.score, "id_cosine": (ea * eb).sum(1)}


def build_train_module(trunk: nn.Module, num_classes: int, channels: int = 32,
                       attention: str = "learned", temperature: float = 1.0,
                       margin: str = "arcface", margin_kwargs: dict | None = None,
                       alpha: float = 0.5, detach_cos_map: bool = False) -> XCosTrainModule:
    """The paper's trainable network on ``trunk``'s grid."""
    head = XCosHead(trunk.grid_channels, channels, attention=attention,
                    temperature=temperature)
    h, w = trunk.grid_size
    margin_head = create_margin_head(margin, channels * h * w, num_classes,
                                     **(margin_kwargs or {}))
    return XCosTrainModule(trunk, head, margin_head, alpha, detach_cos_map)


def freeze_unused_parameters(module: XCosTrainModule, n_classes: int) -> list[str]:
    """Freeze the parameters the loss never reaches (e.g. the backbone's original embedding
    head, which the official code kept training with weight decay but no gradient) and
    return their names. Found by one probing backward pass in eval mode (no state changes).
    """
    was_training = module.training
    module.eval()
    h, w = module.trunk.input_spec.size
    device = next(module.parameters()).device
    x = torch.zeros(4, 3, h, w, device=device)
    labels = torch.arange(4, device=device) % n_classes
    module.zero_grad(set_to_none=True)
    loss, _ = module(x, labels, torch.zeros(2, device=device))
    loss.backward()
    unused = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    for n, p in module.named_parameters():
        p.grad = None
        if n in unused:
            p.requires_grad_(False)
    module.train(was_training)
    return unused


_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def split_decay(modules: list[nn.Module]) -> tuple[list, list]:
    """Trainable parameters with and without weight decay (normalisation layers: none)."""
    decay, no_decay, seen = [], [], set()
    for root in modules:
        for mod in root.modules():
            for p in mod.parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                (no_decay if isinstance(mod, _NORMS) else decay).append(p)
    return decay, no_decay
