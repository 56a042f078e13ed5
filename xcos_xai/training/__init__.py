"""Training xCos heads and models."""

from .plugin import PairSampler, PluginConfig, train_plugin_head

__all__ = ["PairSampler", "PluginConfig", "train_plugin_head"]
