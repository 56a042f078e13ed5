"""Helpers shared by the backbone and checkpoint tests."""

from __future__ import annotations

import torch


def random_state_dict(layout, seed=0):
    """Plausible random tensors with the layout's names and shapes (finite activations)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in layout:
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(int(torch.randint(1, 10_000, (), generator=gen)))
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=gen) + 0.5
        elif name.endswith("running_mean"):
            state[name] = 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) >= 2:  # conv / linear: ~ unit-variance outputs
            fan_in = torch.Size(shape[1:]).numel()
            state[name] = torch.randn(shape, generator=gen) / fan_in ** 0.5
        elif name.endswith(".bias"):
            state[name] = 0.1 * torch.randn(shape, generator=gen)
        else:  # BN scales and PReLU slopes
            state[name] = torch.rand(shape, generator=gen) * 0.5 + 0.25
    return state
