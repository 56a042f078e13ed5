"""The paper's pair sampler, made seeded, resumable and safe across workers and DDP ranks.

xCos training (Lin et al., ACM TOMM 2021, section 3.3) walks over **every image
once per epoch as the anchor** A; a fair coin picks the partner B:

- genuine: another image of A's identity, uniformly (an identity with a single image has
  no other image: its anchors get an impostor partner instead, so sampling never loops);
- impostor: a uniformly chosen *other* identity, then a uniformly chosen image of it.

Each item is ``(a, b, flip_a, flip_b)``: image indices and horizontal-flip bits (the
training augmentation), so the data set's ``__getitem__`` is a pure function of its
argument and DataLoader workers need no random state of their own.

One epoch's pairs are a pure function of ``(seed, epoch)`` (numpy ``PCG64``), drawn
identically on every rank. The epoch is cut into *global batches* of
``batch_size * world_size * accum_steps`` pairs (the last one padded by wrapping around the
anchor order, so every image is an anchor at least once). Inside global batch ``k`` the
``world_size * accum_steps`` micro-batches are laid out rank-major: rank ``r``'s micro-batch
``m`` is chunk ``r * accum_steps + m``. So a 2-process run without accumulation sees exactly
the micro-batches a 1-process run with ``accum_steps=2`` sees, which is what makes their
updates equal. ``set_epoch(epoch, start_step)`` starts mid-epoch (exact resume).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["AnchorPairSampler", "epoch_pairs"]


def _class_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images sorted by class: ``order``, each class's ``start`` and ``count``, and each
    image's position inside its class."""
    order = np.argsort(labels, kind="stable")
    classes, start, count = np.unique(labels[order], return_index=True, return_counts=True)
    pos = np.empty(len(labels), dtype=np.int64)
    pos[order] = np.arange(len(labels)) - np.repeat(start, count)
    return order, start, count, pos


def epoch_pairs(labels: np.ndarray, seed: int, epoch: int, p_genuine: float = 0.5,
                flip: bool = True) -> dict[str, np.ndarray]:
    """All pairs of one epoch, in the epoch's order.

    Args:
        labels: ``(N,)`` integer identity of every image (any integers).
        seed, epoch: the pairs are a pure function of these (and of the labels).
        p_genuine: probability that an anchor gets a genuine partner.
        flip: draw horizontal-flip bits (otherwise all zero).

    Returns:
        ``{"a", "b", "flip_a", "flip_b", "genuine"}``, each ``(N,)``: anchor ``a`` runs over a
        permutation of all images; ``genuine`` says whether ``labels[a] == labels[b]``.

    Example:
        >>> p = epoch_pairs(np.array([0, 0, 1, 1, 2]), seed=0, epoch=0)
        >>> sorted(p["a"].tolist())
        [0, 1, 2, 3, 4]
        >>> bool(((np.array([0, 0, 1, 1, 2])[p["a"]] == np.array([0, 0, 1, 1, 2])[p["b"]])
        ...       == p["genuine"]).all())
        True
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if not 0.0 <= p_genuine <= 1.0:
        raise ValueError(f"p_genuine={p_genuine}: give a probability in [0, 1]")
    order, start, count, pos = _class_index(labels)
    n_classes = len(start)
    if n_classes < 2:
        raise ValueError("pair sampling needs at least 2 identities: impostor pairs are "
                         "impossible with one")
    cls = np.searchsorted(np.unique(labels), labels)  # dense class of every image
    rng = np.random.Generator(np.random.PCG64([int(seed) & 0xFFFFFFFF, int(epoch)]))
    n = len(labels)
    anchors = rng.permutation(n)
    u_coin, u_pick, u_class = rng.random(n), rng.random(n), rng.random(n)
    flips = rng.random((2, n)) < 0.5 if flip else np.zeros((2, n), dtype=bool)
    ca = cls[anchors]
    can_pair = count[ca] >= 2
    genuine = (u_coin < p_genuine) & can_pair
    # genuine: one of the count-1 other images of the class, uniformly
    offset = 1 + np.floor(u_pick * (count[ca] - 1)).astype(np.int64)
    offset = np.minimum(offset, np.maximum(count[ca] - 1, 1))
    same_pos = (pos[anchors] + offset) % count[ca]
    partner_gen = order[start[ca] + same_pos]
    # impostor: one of the other n_classes-1 classes uniformly, then one of its images
    other = np.minimum(np.floor(u_class * (n_classes - 1)).astype(np.int64), n_classes - 2)
    other = other + (other >= ca)
    pick = np.minimum(np.floor(u_pick * count[other]).astype(np.int64), count[other] - 1)
    partner_imp = order[start[other] + pick]
    b = np.where(genuine, partner_gen, partner_imp)
    return {"a": anchors.astype(np.int64), "b": b.astype(np.int64),
            "flip_a": flips[0], "flip_b": flips[1], "genuine": genuine}


class AnchorPairSampler(torch.utils.data.Sampler):
    """A DataLoader sampler of ``(a, b, flip_a, flip_b)`` items for one rank.

    Args:
        labels: ``(N,)`` identity of every image.
        batch_size: pairs per micro-batch on one rank (the DataLoader's ``batch_size``).
        seed: base seed; an epoch's pairs depend on ``(seed, epoch)`` only.
        world_size, rank: the DDP layout (1, 0 without DDP).
        accum_steps: micro-batches per optimiser step.
        p_genuine, flip: see :func:`epoch_pairs`.

    ``steps_per_epoch`` is the number of optimiser steps in an epoch; iterating yields this
    rank's ``(steps_per_epoch - start_step) * accum_steps * batch_size`` items.
    """

    def __init__(self, labels, batch_size: int, seed: int = 0, world_size: int = 1,
                 rank: int = 0, accum_steps: int = 1, p_genuine: float = 0.5,
                 flip: bool = True):
        self.labels = np.asarray(labels).astype(np.int64)
        for name, value, low in (("batch_size", batch_size, 1), ("world_size", world_size, 1),
                                 ("accum_steps", accum_steps, 1), ("rank", rank, 0)):
            if int(value) != value or value < low:
                raise ValueError(f"{name}={value!r}: give an integer >= {low}")
        if rank >= world_size:
            raise ValueError(f"rank={rank} must be below world_size={world_size}")
        self.batch_size, self.world_size = int(batch_size), int(world_size)
        self.rank, self.accum_steps = int(rank), int(accum_steps)
        self.seed, self.p_genuine, self.flip = int(seed), float(p_genuine), bool(flip)
        epoch_pairs(self.labels, self.seed, 0, self.p_genuine, self.flip)  # validates the labels
        self.epoch, self.start_step = 0, 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size * self.accum_steps

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.labels) // self.global_batch)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Iterate epoch ``epoch`` from optimiser step ``start_step`` (for mid-epoch resume)."""
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step={start_step} outside [0, {self.steps_per_epoch}]")
        self.epoch, self.start_step = int(epoch), int(start_step)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "start_step": self.start_step, "seed": self.seed,
                "n_images": len(self.labels), "global_batch": self.global_batch}

    def load_state_dict(self, state: dict) -> None:
        if state["n_images"] != len(self.labels) or state["seed"] != self.seed:
            raise ValueError(f"sampler state is for {state['n_images']} images and seed "
                             f"{state['seed']}, this sampler has {len(self.labels)} and "
                             f"{self.seed}: resume with the same data and seed")
        self.set_epoch(state["epoch"], state["start_step"])

    def rank_items(self, epoch: int, start_step: int = 0) -> np.ndarray:
        """``(M, 4)`` int64 rows ``(a, b, flip_a, flip_b)`` this rank iterates, in order."""
        p = epoch_pairs(self.labels, self.seed, epoch, self.p_genuine, self.flip)
        rows = np.stack([p["a"], p["b"], p["flip_a"].astype(np.int64),
                         p["flip_b"].astype(np.int64)], axis=1)
        total = self.steps_per_epoch * self.global_batch
        rows = np.resize(rows, (total, 4))  # pad the last global batch by wrapping around
        chunks = rows.reshape(self.steps_per_epoch, self.world_size, self.accum_steps,
                              self.batch_size, 4)
        return chunks[start_step:, self.rank].reshape(-1, 4)

    def __iter__(self) -> Iterator[tuple[int, int, int, int]]:
        for row in self.rank_items(self.epoch, self.start_step):
            yield tuple(int(v) for v in row)

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accum_steps * self.batch_size
