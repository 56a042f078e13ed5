"""Plotly views (and static PNGs) of explanations, and the short notes on how faces were
found that figures, widgets and the command line show instead of warnings."""

from .notes import detection_notes, notes_line
from .pair_figure import pair_figure, save_pair_png

__all__ = ["detection_notes", "notes_line", "pair_figure", "save_pair_png"]
