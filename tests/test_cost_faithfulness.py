"""The cost-faithfulness figure's Pareto front against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from xcos_xai.viz.cost_faithfulness import cost_faithfulness_figure, pareto_front


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(0)
    cost, quality = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 40).astype(float)
    cost[3] = np.nan
    for higher in (True, False):
        front = pareto_front(cost, quality, higher)
        sign = 1 if higher else -1
        for i in range(40):
            if np.isnan(cost[i]):
                assert not front[i]
                continue
            beaten = any(c <= cost[i] and sign * q >= sign * quality[i]
                         and (c < cost[i] or sign * q > sign * quality[i])
                         for j, (c, q) in enumerate(zip(cost, quality))
                         if j != i and not np.isnan(c))
            assert front[i] == (not beaten)
    # ties: two identical points do not dominate each other
    assert pareto_front([1, 1], [0.5, 0.5]).tolist() == [True, True]
    assert list(itertools.compress("abc", pareto_front([1, 2, 3], [1, 2, 3], False))) == ["a"]


def test_cost_faithfulness_figure_marks_the_front():
    table = pd.DataFrame({"method": ["a", "b", "c"], "time_s": [0.1, 1.0, 10.0],
                          "road_gap": [0.01, 0.05, 0.03]})
    fig = cost_faithfulness_figure(table, "road_gap")
    assert list(fig.data[1].x) == [0.1, 1.0]  # c is dearer and worse than b
    assert fig.layout.xaxis.type == "log"
    with pytest.raises(ValueError, match="no column 'iou'"):
        cost_faithfulness_figure(table, "iou")


def test_cost_faithfulness_png_has_one_panel_per_measure(tmp_path):
    """The static figure (README): a panel for each measure the table has, none for the rest;
    a table without any of them is one clear error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xcos_xai.viz.cost_faithfulness import save_cost_faithfulness_png

    table = pd.DataFrame({"method": ["a", "b", "c"], "time_s": [0.1, 1.0, 10.0],
                          "road_gap": [0.01, 0.05, 0.03], "acc_del_auc": [0.9, 0.6, 0.5]})
    seen = []
    real_savefig = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        seen.append([ax.get_ylabel() for ax in fig.axes if ax.axison])
        return real_savefig(fig, *args, **kwargs)

    plt.Figure.savefig = spy
    try:
        path = save_cost_faithfulness_png(tmp_path / "cf.png", table)
    finally:
        plt.Figure.savefig = real_savefig
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert seen == [["ROAD LeRF - MoRF gap ↑", "verification-accuracy deletion AUC ↓"]]
    with pytest.raises(ValueError, match="has none of"):
        save_cost_faithfulness_png(tmp_path / "none.png", table[["method", "time_s"]])
