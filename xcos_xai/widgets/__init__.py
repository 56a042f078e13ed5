"""Interactive JupyterLab views (ipywidgets + plotly ``FigureWidget``), testable without a
browser: every control is an attribute that code can set, every view a figure it can read.

- :class:`PairExplorer`: one pair's faces, S, W and evidence; threshold; other methods beside.
- :class:`FailureBrowser`: the false accepts and rejects of the 10-fold LFW evaluation.
- :class:`AttentionAblation`: learned vs uniform vs prior vs top-k-masked attention.
- :class:`MethodComparer`: two methods' maps of one pair and one faithfulness protocol's
  curves of both (deletion, insertion, ROAD, the decision at the pair's threshold).

The figures come from :mod:`xcos_xai.viz`, the same builders as the static HTML report.
"""

from ._common import available_methods, lfw_or_none, method_label
from ._lfw import HeldOutEvaluation
from .ablation import AttentionAblation
from .failures import FailureBrowser, failure_table
from .method_compare import PROTOCOLS, MethodComparer, ProtocolCurve
from .pair_explorer import PairExplorer, PairSource, lfw_pairs, photo_pairs

__all__ = ["PROTOCOLS", "AttentionAblation", "FailureBrowser", "HeldOutEvaluation",
           "MethodComparer", "PairExplorer", "PairSource", "ProtocolCurve", "available_methods",
           "failure_table", "lfw_or_none", "lfw_pairs", "method_label", "photo_pairs"]
