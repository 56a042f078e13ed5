"""Training configuration: TOML or YAML files, ``--set a.b=value`` overrides, strict keys.

A configuration is a tree of dataclasses (:class:`TrainConfig`). Files are parsed with
``tomllib`` (``.toml``) or ``yaml.safe_load`` (``.yaml``/``.yml``): plain data only, never
evaluated. An override ``section.key=value`` parses ``value`` as a TOML value
(``0.01``, ``true``, ``[12, 15]``, ``"text"``) and, when that fails, takes it as a string
(``model.pretrained=/models/r50.pth``). Unknown sections or keys, and values of the wrong
type, raise one :class:`ConfigError` naming the key, the source and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["ConfigError", "TrainConfig", "ValSet", "load_config", "parse_override"]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the fix."""


@dataclass
class RunConfig:
    out: str = "runs/xcos"  # output folder: config, logs, checkpoints, final weights
    recipe: str = "paper"  # "paper" (frozen teacher), "scratch", "head_only"
    seed: int = 0
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...


@dataclass
class ModelConfig:
    backbone: str = "iresnet50"  # a create_backbone name
    pretrained: bool | str = False  # teacher and trunk init (paper, head_only): a path
    backbone_kwargs: dict = field(default_factory=dict)  # e.g. {grid = "4x4"} for dlib
    channels: int = 32  # grid adapter output channels C'
    attention: str = "learned"  # learned | symmetric | uniform
    temperature: float = 1.0
    margin: str = "arcface"  # arcface | cosface
    margin_scale: float | None = None  # None: s = 64 (ArcFace) / 30 (CosFace)
    margin_m: float | None = None  # None: m = 0.5 (ArcFace) / 0.35 (CosFace)
    detach_cos_map: bool = False  # [F] detachAttentionGradient: no L_cos gradient through S
    freeze: list = field(default_factory=list)  # parameter-name prefixes kept frozen,
    # e.g. ["trunk.stem_conv", "trunk.units.0."] (partial fine-tuning; [] = whole trunk)


@dataclass
class DataConfig:
    format: str = "folders"  # folders | rec | lfw
    root: str = ""  # folders: root/<id>/<img>; rec: folder with train.rec/.idx; lfw: LFW root
    min_images: int = 1  # identities with fewer images are skipped (folders, lfw)
    lfw_folds: list = field(default_factory=list)  # lfw: people.txt folds to train on ([]=all)
    p_genuine: float = 0.5
    flip: bool = True  # random horizontal flip (the paper's only augmentation)
    workers: int = 4  # DataLoader processes per rank


@dataclass
class OptimConfig:
    epochs: int = 20
    max_steps: int = 0  # stop after this many optimiser steps (0: run all epochs)
    batch_size: int = 96  # pairs per micro-batch per rank (2x that many images)
    accum_steps: int = 1  # micro-batches per optimiser step
    lr: float = 1e-3  # SGD: trunk, grid adapter, margin head
    new_layers_lr: float | None = None  # SGD lr of grid adapter + margin head (None: lr)
    momentum: float = 0.9
    weight_decay: float = 5e-4  # not on normalisation parameters
    milestones: list = field(default_factory=lambda: [12, 15, 18])  # epochs (may be fractions)
    gamma: float = 0.1
    warmup_steps: int = 0
    attention_lr: float = 1e-3  # Adam, no weight decay, constant ([F])
    alpha: float = 0.5  # loss = alpha * L_id + (1 - alpha) * L_cos
    grad_clip: float = 0.0  # max global grad norm (0: off)


@dataclass
class EngineConfig:
    amp: str = "auto"  # auto (bf16 if supported else fp16, on CUDA only) | bf16 | fp16 | none
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the training module
    checkpoint_every: int = 1000  # optimiser steps (and at every epoch end)
    log_every: int = 50
    tensorboard: bool = True
    progress: bool = True


@dataclass
class ValSet:
    name: str = ""
    format: str = "bin"  # bin | lfw
    path: str = ""  # bin: the .bin file; lfw: the LFW root ("" = $XCOS_XAI_DATA/lfw)
    folds: list = field(default_factory=list)  # lfw: pairs.txt folds to use ([] = all 10)
    max_pairs: int = 0  # 0: all


@dataclass
class ValConfig:
    every: int = 2000  # optimiser steps (0: only at the end)
    batch_size: int = 128  # pairs
    sets: list = field(default_factory=list)  # of ValSet tables


@dataclass
class TrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    val: ValConfig = field(default_factory=ValConfig)
    head_only: dict = field(default_factory=dict)  # PluginConfig fields for recipe head_only

    def to_dict(self) -> dict:
        return asdict(self)

    def to_toml(self) -> str:
        return _to_toml(self.to_dict())

    def check(self) -> TrainConfig:
        """Value checks that types alone do not catch."""
        _choice("run.recipe", self.run.recipe, ("paper", "scratch", "head_only"))
        _choice("model.margin", self.model.margin, ("arcface", "cosface"))
        _choice("model.attention", self.model.attention, ("learned", "symmetric", "uniform"))
        _choice("data.format", self.data.format, ("folders", "rec", "lfw"))
        _choice("engine.amp", self.engine.amp, ("auto", "bf16", "fp16", "none"))
        for key, value, low in (("optim.batch_size", self.optim.batch_size, 1),
                                ("optim.accum_steps", self.optim.accum_steps, 1),
                                ("optim.epochs", self.optim.epochs, 1),
                                ("model.channels", self.model.channels, 1),
                                ("engine.checkpoint_every", self.engine.checkpoint_every, 1),
                                ("engine.log_every", self.engine.log_every, 1),
                                ("optim.max_steps", self.optim.max_steps, 0),
                                ("data.workers", self.data.workers, 0),
                                ("val.every", self.val.every, 0)):
            if value < low:
                raise ConfigError(f"{key} = {value}: give a value >= {low}")
        if not 0.0 <= self.optim.alpha <= 1.0:
            raise ConfigError(f"optim.alpha = {self.optim.alpha}: give a weight in [0, 1]")
        if self.run.recipe in ("paper", "head_only") and self.model.pretrained in (False, ""):
            raise ConfigError(f"run.recipe = {self.run.recipe!r} needs a pretrained teacher: "
                              "set model.pretrained to the weights file (or true for "
                              "dlib_resnet_v1), or use run.recipe = 'scratch'")
        if self.data.format != "lfw" and not self.data.root:
            raise ConfigError(f"data.root is empty (data.format = {self.data.format!r}): give "
                              "the training data folder (identity folders, or the folder "
                              "with train.rec/train.idx); only data.format = 'lfw' has a "
                              "default ($XCOS_XAI_DATA/lfw)")
        _numbers("optim.milestones", self.optim.milestones)
        _numbers("data.lfw_folds", self.data.lfw_folds, folds=True)
        for i, item in enumerate(self.model.freeze):
            if not isinstance(item, str):
                raise ConfigError(f"model.freeze[{i}] = {item!r}: give parameter-name "
                                  "prefixes as strings, e.g. [\"trunk.stem_conv\"]")
        for key, value in self.head_only.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"head_only.{key} = {value!r} is not a finite number: give "
                                  "a finite value")
        for i, s in enumerate(self.val.sets):
            _choice("val.sets[].format", s.format, ("bin", "lfw"))
            if not s.name:
                raise ConfigError("every val.sets entry needs a name")
            _numbers(f"val.sets[{i}].folds", s.folds, folds=True)
        return self


def _numbers(key: str, items: list, folds: bool = False) -> None:
    """Every item of a list setting is a finite number (``folds``: an integer fold 0-9)."""
    for i, v in enumerate(items):
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if folds and not (number and isinstance(v, int) and 0 <= v <= 9):
            raise ConfigError(f"{key}[{i}] = {v!r}: give fold numbers, integers 0-9, "
                              "e.g. [0, 1]")
        if not number or (isinstance(v, float) and not math.isfinite(v)):
            raise ConfigError(f"{key}[{i}] = {v!r}: give finite numbers, e.g. [12, 15, 18]")


def _choice(key: str, value, options) -> None:
    if value not in options:
        raise ConfigError(f"{key} = {value!r}: choose one of {', '.join(map(repr, options))}")


# ---------------------------------------------------------------------------- building


def _type_ok(value, hint) -> tuple[bool, object]:
    """Whether ``value`` fits the annotation; ints are accepted (and converted) as floats."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            ok, conv = _type_ok(value, arm)
            if ok:
                return True, conv
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return True, float(value)
            except OverflowError:  # an int beyond float range: refused as not finite
                return True, math.inf
        return False, value
    if hint is str:
        return isinstance(value, str), value
    if hint is list or origin is list:
        return isinstance(value, list), value
    if hint is dict or origin is dict:
        return isinstance(value, dict), value
    return False, value


def _build(cls, data, where: str, source: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [{where}] must be a table of keys, got "
                          f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key {where + '.' if where else ''}{unknown[0]}; "
                          f"valid keys{' of [' + where + ']' if where else ''}: "
                          f"{', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key, source)
            continue
        ok, conv = _type_ok(value, hint)
        if not ok:
            raise ConfigError(f"{source}: {key} = {value!r} is a {type(value).__name__}; "
                              f"expected {getattr(hint, '__name__', str(hint))}")
        if isinstance(conv, float) and not math.isfinite(conv):
            raise ConfigError(f"{source}: {key} = {conv!r} is not a finite number: give a "
                              "finite value")
        if cls is ValConfig and name == "sets":
            conv = [_build(ValSet, s, f"{key}[{i}]", source) for i, s in enumerate(conv)]
        kwargs[name] = conv
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], object]:
    """``"optim.lr=0.01"`` to ``(["optim", "lr"], 0.01)``; values are TOML, else strings.

    Example:
        >>> parse_override("optim.milestones=[4, 8]")
        (['optim', 'milestones'], [4, 8])
        >>> parse_override("model.pretrained=/m/r50.pth")
        (['model', 'pretrained'], '/m/r50.pth')
    """
    key, sep, raw = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(p.strip() for p in path):
        raise ConfigError(f"override {text!r}: write section.key=value, e.g. optim.lr=0.01")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return [p.strip() for p in path], value


def _read_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"configuration file {path} cannot be read: {err}") from None
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path} is not valid TOML: {err}") from None
    elif path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
        data = {} if data is None else data
    else:
        raise ConfigError(f"{path}: give a .toml, .yaml or .yml configuration file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a table of sections, got {type(data).__name__}")
    return data


def config_from_dict(data: dict, source: str = "configuration") -> TrainConfig:
    return _build(TrainConfig, data, "", source).check()


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """The configuration of a file (or the defaults) with ``section.key=value`` overrides."""
    data = _read_file(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k} is not a section")
        node[keys[-1]] = value
    return config_from_dict(data, source + (" with overrides" if overrides else ""))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _to_toml(data: dict) -> str:
    lines = []
    for section, table in data.items():
        lines.append(f"[{section}]")
        for key, value in table.items():
            if value is None:
                lines.append(f"# {key} = (default)")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
