"""What every pair explainer shares: the pair score, the result type, the registry.

A pair explainer answers "which regions of face A and of face B made this pair score high or
low?" for one scalar pair score (the xCos score or the plugged model's own cosine). Every
method, and every metric that judges them, goes through :func:`pair_score`, so they explain
and are judged on exactly the same function.

Captum keeps only the last call of a hooked module, so a backbone called once per face would
silently explain face B only. :class:`PairScoreNet` therefore runs both faces through the
backbone in ONE batched call (``cat([x_a, x_b])``); Captum's tuple inputs ``(x_a, x_b)`` then
give one attribution per face.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..core._checks import check_image_pair, check_same_shape

TARGETS = ("xcos", "model_cosine")


# --------------------------------------------------------------------------- the pair score


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}: 'xcos' explains "
                         "the xCos score, 'model_cosine' the plugged model's own cosine")


def pair_score_from_grids(model, grid_a: torch.Tensor, grid_b: torch.Tensor,
                          target: str = "xcos") -> torch.Tensor:
    """``(B,)`` pair scores from the two faces' backbone grids ``(B, C, h, w)``.

    Only for models whose cosine comes from the backbone itself (``model.teacher is None``).
    """
    _check_target(target)
    if target == "xcos":
        return model.head(grid_a, grid_b).score
    if getattr(model, "teacher", None) is not None:
        raise ValueError("this model has a separate teacher: its cosine cannot be computed "
                         "from the backbone grids; use pair_score(model, x_a, x_b, target)")
    return model.model_cosine_from_grids(grid_a, grid_b)


def pair_score(model, x_a: torch.Tensor, x_b: torch.Tensor,
               target: str = "xcos") -> torch.Tensor:
    """THE pair score that all explainers and metrics share: ``(B,)``, differentiable.

    Args:
        model: an :class:`~xcos_xai.core.XCosModel`.
        x_a, x_b: ``(B, 3, H, W)`` normalised faces (``model.input_spec.normalize``).
        target: ``"xcos"`` (the xCos score) or ``"model_cosine"`` (the plugged model's
            embedding cosine).
    """
    _check_target(target)
    if target == "model_cosine" and getattr(model, "teacher", None) is not None:
        emb_a, emb_b = model.teacher(torch.cat([x_a, x_b])).chunk(2)
        return F.cosine_similarity(emb_a, emb_b, dim=1)
    grid_a, grid_b = model.grids(x_a, x_b)  # one batched backbone call, shapes checked
    return pair_score_from_grids(model, grid_a, grid_b, target)


class _GridLayer(nn.Module):
    """The backbone up to its xCos grid, as a module Captum can hook (Grad-CAM's layer)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)


class PairScoreNet(nn.Module):
    """``forward(x_a, x_b) -> (B,)`` pair score, both faces through ONE backbone call.

    ``grid_layer`` outputs the ``(2B, C, h, w)`` grids of ``cat([x_a, x_b])``: the layer for
    Captum's layer methods (rows ``:B`` are face A, ``B:`` face B).
    """

    def __init__(self, model, target: str = "xcos"):
        super().__init__()
        _check_target(target)
        if target == "model_cosine" and getattr(model, "teacher", None) is not None:
            raise ValueError("explaining a separate teacher's cosine is not supported: use "
                             "target='xcos' or a plug-in model (teacher=None)")
        self.model = model
        self.target = target
        self.grid_layer = _GridLayer(model.backbone)

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        check_same_shape("x_a", x_a, "x_b", x_b)
        grid_a, grid_b = self.grid_layer(torch.cat([x_a, x_b])).chunk(2)
        return pair_score_from_grids(self.model, grid_a, grid_b, self.target)


# --------------------------------------------------------------------------- replacement baseline


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(B, C, H, W)`` blurred with a separable Gaussian of ``sigma`` pixels (reflect pad)."""
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad_h, pad_w = min(radius, x.shape[2] - 1), min(radius, x.shape[3] - 1)
    y = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect")
    kw = k[radius - pad_w:radius + pad_w + 1].view(1, 1, 1, -1).expand(c, 1, 1, -1)
    y = F.conv2d(y, kw, groups=c)
    y = F.pad(y, (0, 0, pad_h, pad_h), mode="reflect")
    kh = k[radius - pad_h:radius + pad_h + 1].view(1, 1, -1, 1).expand(c, 1, -1, 1)
    return F.conv2d(y, kh, groups=c)


BASELINES = ("blur", "mean")


def replacement_baseline(x: torch.Tensor, kind: str = "blur", sigma: float | None = None):
    """The stated baseline that replaces "removed" pixels, shaped like ``x``.

    ``"blur"``: a Gaussian-blurred copy of the face (sigma = 8 % of the face width, 12 px at
    150 px: the identity-bearing detail goes, colour and layout stay). ``"mean"``: zeros in the
    normalised space, i.e. every pixel at the data set mean colour.
    """
    if kind == "mean":
        return torch.zeros_like(x)
    if kind == "blur":
        return gaussian_blur(x, sigma if sigma is not None else 0.08 * x.shape[-1])
    raise ValueError(f"unknown baseline {kind!r}: choose one of {BASELINES}")


# --------------------------------------------------------------------------- the result


@dataclass
class PairAttribution:
    """What a pair explainer says about a batch of pairs.

    Attributes:
        method: the explainer's registry name.
        target: the explained score, ``"xcos"`` or ``"model_cosine"``.
        map_a, map_b: ``(B, H, W)`` signed maps at input resolution: positive where the
            region supports "same person", negative where it opposes.
        grid_a, grid_b: ``(B, gh, gw)`` the same evidence on the xCos grid.
        extras: method-specific tensors (xCos: ``cos_map``, ``attention``, ``contribution``;
            all: ``score``, the ``(B,)`` explained score).
    """

    method: str
    target: str
    map_a: torch.Tensor
    map_b: torch.Tensor
    grid_a: torch.Tensor
    grid_b: torch.Tensor
    extras: dict = field(default_factory=dict)

    def detach(self) -> PairAttribution:
        """A copy holding detached CPU tensors."""
        def d(v):
            return v.detach().cpu() if isinstance(v, torch.Tensor) else v

        return PairAttribution(self.method, self.target, d(self.map_a), d(self.map_b),
                               d(self.grid_a), d(self.grid_b),
                               {k: d(v) for k, v in self.extras.items()})


def to_grid(pixel_map: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """``(B, H, W)`` map to ``(B, gh, gw)``: the mean over each cell's pixels."""
    return F.adaptive_avg_pool2d(pixel_map.unsqueeze(1), tuple(grid_size)).squeeze(1)


def to_pixels(grid_map: torch.Tensor, size: tuple[int, int], mode: str = "nearest"):
    """``(B, gh, gw)`` map to ``(B, H, W)`` (nearest keeps the cells; bilinear smooths)."""
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(grid_map.unsqueeze(1), size=tuple(size), mode=mode,
                         **kwargs).squeeze(1)


# --------------------------------------------------------------------------- the registry


_REGISTRY: dict[str, type] = {}
_REGISTRY_ORDER: dict[str, str] = {}  # module name -> explainer name (for a stable order)


def register_explainer(name: str):
    """Class decorator: make an explainer class available as ``create_explainer(name, ..)``."""

    def wrap(cls):
        if name in _REGISTRY:
            raise ValueError(f"explainer {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        _REGISTRY_ORDER.setdefault(cls.__module__.rsplit(".", 1)[-1], name)  # first per module
        return cls

    return wrap


_BUILTIN = ("xcos", "gradcam", "integrated_gradients", "saliency", "smoothgrad", "occlusion",
            "random_map", "xssab", "corrrise", "fggb", "multiscale_occlusion")


def _import_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(f"{__package__}.{module}")


def list_explainers() -> list[str]:
    """Names accepted by :func:`create_explainer`, in a stable order (xCos first).

    Example:
        >>> [n for n in list_explainers() if n in ("xcos", "gradcam", "random")]
        ['xcos', 'gradcam', 'random']
    """
    _import_builtin()
    builtin = [_REGISTRY_ORDER[m] for m in _BUILTIN]
    return builtin + [n for n in _REGISTRY if n not in builtin]


def explainer_class(name: str) -> type:
    """The class registered as ``name`` (its ``label``, ``short_label``, ``control``, ...).

    Example:
        >>> explainer_class("gradcam").short_label
        'Grad-CAM'
    """
    _import_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown explainer {name!r}: choose one of {list_explainers()}")
    return _REGISTRY[name]


def create_explainer(name: str, model, **kwargs):
    """Build the explainer ``name`` for an :class:`~xcos_xai.core.XCosModel`.

    ``kwargs`` are the method's options (e.g. ``n_steps`` for Integrated Gradients).
    """
    return explainer_class(name)(model, **kwargs)


class PairExplainer:
    """Base class: ``attribute(x_a, x_b, target) -> PairAttribution``.

    Subclasses implement :meth:`_attribute` returning ``(map_a, map_b, grid_a, grid_b,
    extras)``; inputs are checked here once.
    """

    name = "base"
    #: what the method is and how it is computed (tables, reports)
    label = "pair explainer"
    #: a short name for legends and menus
    short_label = "pair explainer"
    #: a control (e.g. random maps): a floor to compare against, not an explanation
    control = False
    #: its maps are xCos's own grid maps (the pair figure, with S and W, shows them)
    xcos_maps = False
    #: the options a comparison run sets: ``{keyword: CompareConfig field}``
    compare_options: dict[str, str] = {}
    # image passes per pair: one face through the backbone, forward or backward, counts 1
    # (None: not stated; see pass_count for methods whose count depends on the model)
    passes_per_pair: float | None = None

    def __init__(self, model, baseline: str = "blur"):
        if not hasattr(model, "backbone") or not hasattr(model, "head"):
            raise TypeError(f"model must be an XCosModel (backbone + head), got "
                            f"{type(model).__name__}: build one with load_pretrained()")
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}: choose one of {BASELINES}")
        self.model = model.eval()
        self.baseline = baseline

    @classmethod
    def get_name(cls) -> str:
        return cls.label

    def pass_count(self, target: str = "xcos") -> float | None:
        """Image passes (forwards + backwards of one face) per explained pair, not counting
        the bookkeeping forward that reports the explained score in ``extras``."""
        return self.passes_per_pair

    def grid_size(self, x: torch.Tensor) -> tuple[int, int]:
        size = getattr(self.model.backbone, "grid_size", None)
        if size is None:
            with torch.no_grad():
                size = tuple(self.model.backbone.forward_features(x[:1]).shape[-2:])
        return tuple(size)

    def attribute(self, x_a: torch.Tensor, x_b: torch.Tensor,
                  target: str = "xcos") -> PairAttribution:
        """Explain ``target`` for the pairs ``(x_a[i], x_b[i])``.

        Args:
            x_a, x_b: ``(B, 3, H, W)`` normalised faces, as :class:`XCosModel` takes them.
            target: ``"xcos"`` or ``"model_cosine"``.
        """
        _check_target(target)
        check_image_pair(x_a, x_b)
        x_a, x_b = x_a.detach(), x_b.detach()
        map_a, map_b, grid_a, grid_b, extras = self._attribute(x_a, x_b, target)
        return PairAttribution(self.name, target, map_a.detach(), map_b.detach(),
                               grid_a.detach(), grid_b.detach(), extras)

    def _attribute(self, x_a, x_b, target):  # pragma: no cover - abstract
        raise NotImplementedError

    def _baselines(self, x_a, x_b):
        return replacement_baseline(x_a, self.baseline), replacement_baseline(x_b, self.baseline)


def pixel_maps_from_input_attr(attr_a, attr_b, grid_size, score=None,
                               extras: dict | None = None):
    """Channel-summed ``(B, 3, H, W)`` attributions to the maps and grids of a result."""
    map_a, map_b = attr_a.sum(1), attr_b.sum(1)
    extras = dict(extras or {})
    if score is not None:
        extras["score"] = score.detach()
    return map_a, map_b, to_grid(map_a, grid_size), to_grid(map_b, grid_size), extras


ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
