"""The statistics the faithful xCos maps need, stored beside a bundled head.

:class:`MapStats` holds each cell's reference (mean patch cosine over impostor pairs, mean
local descriptor), the mean occlusion shifts and the fitted :class:`AmortisedOcclusion`
models; :mod:`xcos_xai.explainers.xcos_maps` computes the maps from them and
:func:`xcos_xai.pretrained.load_map_stats` loads them (plain tensors, no code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class AmortisedOcclusion(torch.nn.Module):
    """Predicted pixel-occlusion effect of every cell: ``(B, F) -> (B, h, w)``.

    A ridge regression on standardised :func:`cell_features`: ``y = ((x - mean) / std) @ W + c``.
    Fitted by :meth:`fit` on training pairs whose targets are the measured occlusion effects.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor, grid_size: tuple[int, int]):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.grid_size = tuple(int(v) for v in grid_size)

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, grid_size, ridge: float = 1.0):
        """Closed-form ridge fit: ``x`` ``(N, F)`` features, ``y`` ``(N, h*w)`` effects."""
        x, y = x.double(), y.double()
        mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
        z = (x - mean) / std
        ym = y.mean(0)
        gram = z.T @ z + ridge * len(z) * torch.eye(z.shape[1], dtype=z.dtype)
        weight = torch.linalg.solve(gram, z.T @ (y - ym))
        return cls(mean.float(), std.float(), weight.float(), ym.float(), grid_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # the features' dtype (e.g. a float64 model); the module itself stays as it is
        mean, std, weight, bias = (t.to(features) for t in (self.mean, self.std, self.weight,
                                                            self.bias))
        return (((features - mean) / std) @ weight + bias).view(-1, *self.grid_size)

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}{k}": v for k, v in self.state_dict().items()}


@dataclass
class MapStats:
    """What the reference-relative and amortised maps need, stored beside the bundled head.

    Attributes:
        cos_ref: ``(h, w)`` mean patch cosine S of each cell over training impostor pairs.
        local_ref: ``(D, h, w)`` mean local descriptor of each cell over training faces.
        occlusion_shift: ``(h*w, D, h, w)`` mean change of the local grid when one cell's
            pixels are replaced by the blurred face (training faces), or ``None``.
        amortiser: the fitted :class:`AmortisedOcclusion`, or ``None``.
        fine_shift: ``(c*c, D, h, w)``: the same for a finer ``c x c`` split of the face.
        fine_amortiser: the :class:`AmortisedOcclusion` of the ``c x c`` blocks, or ``None``.
    """

    cos_ref: torch.Tensor
    local_ref: torch.Tensor
    occlusion_shift: torch.Tensor | None = None
    amortiser: AmortisedOcclusion | None = None
    fine_shift: torch.Tensor | None = None
    fine_amortiser: AmortisedOcclusion | None = None

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str = "") -> MapStats:
        """From ``{prefix}cos_ref``, ``{prefix}local_ref``, ``{prefix}occlusion_shift`` and
        ``{prefix}amortiser.*`` (float16 or float32; returned as float32). A shift without
        the prefix (``occlusion_shift``, ``fine_shift``) is shared by every prefix that has
        none of its own (see :func:`pack_map_stats`)."""
        try:
            cos_ref, local_ref = tensors[f"{prefix}cos_ref"], tensors[f"{prefix}local_ref"]
        except KeyError as err:
            raise ValueError(f"map statistics lack {err.args[0]!r}: rebuild them with "
                             "`python training/build_xcos_maps.py`") from None
        def amortiser(name, grid_size):
            if f"{prefix}{name}.weight" not in tensors:
                return None
            get = lambda k: tensors[f"{prefix}{name}.{k}"].float()  # noqa: E731
            return AmortisedOcclusion(get("mean"), get("std"), get("weight"), get("bias"),
                                      grid_size)

        def opt(name):
            t = tensors.get(f"{prefix}{name}", tensors.get(name))
            return None if t is None else t.float()

        fine_shift = opt("fine_shift")
        c = int(round(len(fine_shift) ** 0.5)) if fine_shift is not None else 0
        return cls(cos_ref.float(), local_ref.float(), opt("occlusion_shift"),
                   amortiser("amortiser", tuple(cos_ref.shape)), fine_shift,
                   amortiser("fine_amortiser", (c, c)) if c else None)

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        out = {f"{prefix}cos_ref": self.cos_ref, f"{prefix}local_ref": self.local_ref}
        if self.occlusion_shift is not None:
            out[f"{prefix}occlusion_shift"] = self.occlusion_shift
        if self.amortiser is not None:
            out.update(self.amortiser.state(f"{prefix}amortiser."))
        if self.fine_shift is not None:
            out[f"{prefix}fine_shift"] = self.fine_shift
        if self.fine_amortiser is not None:
            out.update(self.fine_amortiser.state(f"{prefix}fine_amortiser."))
        return out


SHARED = ("occlusion_shift", "fine_shift")


def pack_map_stats(stats: dict[str, MapStats], shared_from: str = "") -> dict[str, torch.Tensor]:
    """The tensors of several :class:`MapStats` (``{prefix: stats}``, e.g. ``""`` and
    ``"fold0."``) for one small file: float16, and the mean occlusion shifts (``SHARED``, the
    bulk of the bytes) stored once, from ``stats[shared_from]``, without a prefix.

    The shifts are label-free image statistics of the frozen backbone (how blurring a block
    moves its grid, averaged over faces), so every head of one backbone can share them.

    Example:
        >>> one = MapStats(torch.zeros(2, 2), torch.ones(3, 2, 2), torch.ones(4, 3, 2, 2))
        >>> packed = pack_map_stats({"": one, "fold0.": one})
        >>> sorted(packed), packed["occlusion_shift"].dtype
        (['cos_ref', 'fold0.cos_ref', 'fold0.local_ref', 'local_ref', 'occlusion_shift'], \
torch.float16)
        >>> MapStats.from_tensors(packed, "fold0.").occlusion_shift.shape
        torch.Size([4, 3, 2, 2])
    """
    out = {}
    for prefix, st in stats.items():
        for key, value in st.tensors(prefix).items():
            if key[len(prefix):] in SHARED:
                if prefix == shared_from:
                    out[key[len(prefix):]] = value
                continue
            out[key] = value
    return {k: v.detach().to(torch.float16).contiguous() for k, v in out.items()}
