"""Training xCos: the paper's recipe (frozen teacher + fine-tuned trunk), from scratch, and
the plug-in head on cached features.

- :func:`train` / :class:`Trainer` (``engine``): the GPU-ready, torchrun-ready engine;
  its checkpoints and resume checks (``checkpoint.CheckpointManager``) and the one validator
  of both recipes (``validation``).
- :func:`load_config` / :class:`TrainConfig` (``config``): TOML/YAML with overrides.
- :func:`train_plugin_head` / :class:`PluginConfig` (``plugin``): the head-only trainer.
"""

from .config import ConfigError, TrainConfig, load_config
from .engine import Trainer, train
from .plugin import PairSampler, PluginConfig, train_plugin_head

__all__ = ["ConfigError", "PairSampler", "PluginConfig", "TrainConfig", "Trainer",
           "load_config", "train", "train_plugin_head"]
