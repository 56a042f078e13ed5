"""Plotly views (and static PNGs) of explanations."""

from .pair_figure import pair_figure, save_pair_png

__all__ = ["pair_figure", "save_pair_png"]
