"""Applications built on the library: the jobs the command line and the notebooks run.

- :mod:`.lfw_benchmark`, :mod:`.lfw_report`, :mod:`.lfw_html`: the LFW View-2 evaluation
  (fold-held-out heads, every scorer through the one protocol) and its HTML report.
- :mod:`.photo_demo`: the main job without LFW (photos that installed packages ship).
- :mod:`.compare`: every pair explainer on the same LFW pairs (``xcos-xai compare``).

They sit above :mod:`xcos_xai.training` (the LFW job trains fold heads) and below the
command line and the widgets; nothing in the library imports them.
"""
