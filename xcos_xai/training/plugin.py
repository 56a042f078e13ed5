"""Plug-in training: an xCos head on a frozen backbone, from cached features.

The backbone (the "plugged" model) stays frozen; only the grid adapter and the attention
are trained so that xCos matches the model's own embedding cosine (the paper's L_cos),
optionally with an identity loss (CosFace/ArcFace on the flattened adapted grid). Pairs
are sampled 50/50 genuine/impostor from the training identities; everything is seeded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core import XCosHead, create_margin_head
from ..core.plugin_config import PluginConfig

__all__ = ["PairSampler", "PluginConfig", "config_dict", "train_plugin_head"]


@dataclass
class PairSampler:
    """Random pairs over labelled items: genuine with probability ``p_genuine``.

    Genuine: an identity drawn uniformly among those with >= 2 items, then two distinct
    items of it. Impostor: two items drawn uniformly, redrawn until the identities differ.
    Identities with a single item only ever appear in impostor pairs (no endless loop).
    """

    labels: torch.Tensor
    p_genuine: float = 0.5
    generator: torch.Generator = field(default_factory=torch.Generator)

    def __post_init__(self):
        labels = self.labels.long()
        order = torch.argsort(labels, stable=True)
        uniq, counts = torch.unique_consecutive(labels[order], return_counts=True)
        if len(uniq) < 2:
            raise ValueError("pair sampling needs at least 2 identities")
        starts = torch.cumsum(counts, 0) - counts
        multi = counts >= 2
        if not multi.any():
            raise ValueError("no identity has 2 or more images: genuine pairs are impossible")
        self._order, self._starts, self._counts = order, starts[multi], counts[multi]
        self._labels = labels

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.generator
        n_gen = int(torch.binomial(torch.tensor(float(n)), torch.tensor(self.p_genuine),
                                   generator=g).item())
        ident = torch.randint(len(self._counts), (n_gen,), generator=g)
        cnt, start = self._counts[ident], self._starts[ident]
        first = (torch.rand(n_gen, generator=g) * cnt).long()
        second = (first + 1 + (torch.rand(n_gen, generator=g) * (cnt - 1)).long()) % cnt
        gen_a, gen_b = self._order[start + first], self._order[start + second]
        n_imp = n - n_gen
        imp_a = torch.randint(len(self._labels), (n_imp,), generator=g)
        imp_b = torch.randint(len(self._labels), (n_imp,), generator=g)
        clash = self._labels[imp_a] == self._labels[imp_b]
        while clash.any():
            imp_b[clash] = torch.randint(len(self._labels), (int(clash.sum()),), generator=g)
            clash = self._labels[imp_a] == self._labels[imp_b]
        a, b = torch.cat([gen_a, imp_a]), torch.cat([gen_b, imp_b])
        perm = torch.randperm(n, generator=g)
        return a[perm], b[perm]


def train_plugin_head(grids: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor,
                      config: PluginConfig | None = None, progress: bool = True,
                      log_every: int = 0) -> tuple[XCosHead, list[dict]]:
    """Train an xCos head on frozen features.

    Args:
        grids: ``(N, C, H, W)`` backbone grids (any float dtype) of the training images.
        embeddings: ``(N, D)`` the frozen model's embeddings of the same images (teacher).
        labels: ``(N,)`` identity labels.
        config: a :class:`PluginConfig`.
        log_every: record the mean training loss every this many steps (0: per epoch).

    Returns:
        The trained head in eval mode and the training history (list of dicts).
    """
    config = config or PluginConfig()
    if not (grids.shape[0] == embeddings.shape[0] == labels.shape[0]):
        raise ValueError(f"grids, embeddings and labels must have the same length, got "
                         f"{grids.shape[0]}, {embeddings.shape[0]}, {labels.shape[0]}")
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    head = config.build_head(grids.shape[1], tuple(grids.shape[-2:])).to(device).train()
    unit = F.normalize(embeddings.float(), dim=1)
    params = list(head.parameters())
    id_head = None
    if config.id_loss_weight > 0:
        _, classes = torch.unique(labels, return_inverse=True)
        labels_dense = classes
        dim = head.channels * grids.shape[-2] * grids.shape[-1]
        id_head = create_margin_head(config.id_head, dim, int(classes.max()) + 1).to(device)
        params += list(id_head.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(config.pairs_per_epoch / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    sampler = PairSampler(labels, generator=torch.Generator().manual_seed(config.seed))
    history: list[dict] = []
    bar = tqdm(total=total, desc="xCos head", unit="step", disable=not progress)
    running, count = 0.0, 0
    for step in range(total):
        a, b = sampler.sample(config.batch_size)
        ga, gb = grids[a].to(device).float(), grids[b].to(device).float()
        target = (unit[a] * unit[b]).sum(1).to(device)
        out = head(ga, gb)
        loss_cos = F.mse_loss(out.score, target)
        loss = loss_cos
        if id_head is not None:
            fa, fb = head.adapt(torch.cat([ga, gb])).flatten(1).chunk(2)
            logits = id_head(torch.cat([fa, fb]), torch.cat([labels_dense[a], labels_dense[b]]
                                                          ).to(device))
            loss_id = F.cross_entropy(logits, torch.cat([labels_dense[a], labels_dense[b]]
                                                        ).to(device))
            alpha = config.id_loss_weight
            loss = alpha * loss_id + (1 - alpha) * loss_cos
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running += loss_cos.item()
        count += 1
        every = log_every or steps_per_epoch
        if (step + 1) % every == 0 or step + 1 == total:
            history.append({"step": step + 1, "epoch": (step + 1) / steps_per_epoch,
                            "mse": running / count, "lr": scheduler.get_last_lr()[0]})
            bar.set_postfix(mse=f"{running / count:.2e}")
            running, count = 0.0, 0
        bar.update(1)
    bar.close()
    return head.eval(), history


def config_dict(config: PluginConfig) -> dict:
    return asdict(config)
