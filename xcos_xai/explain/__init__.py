"""Explanations of verification pairs: xCos maps (and attribution methods to compare)."""

from .pair import PairExplanation, explain_pair

__all__ = ["PairExplanation", "explain_pair"]
