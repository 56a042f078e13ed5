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
