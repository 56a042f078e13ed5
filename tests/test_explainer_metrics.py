"""Explanation metrics against values computed by hand on tiny cases."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from xcos_xai.apps.compare import select_pairs, to_markdown
from xcos_xai.core.rng import seeded
from xcos_xai.explainers import create_explainer, pair_score
from xcos_xai.explainers.metrics import (
    curve_auc,
    deletion_curve,
    facial_region_mask,
    fixed_face_scorer,
    insertion_curve,
    make_hybrid,
    pointing_game,
    randomisation_init,
    randomised_copy,
    rank_correlation,
    rank_units,
    reinitialise,
    replacement_error_rates,
    restore_to_flip,
    sensitivity,
    stage_module_names,
    static_mass_share,
    top_iou,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_explainers import toy_model  # noqa: E402

# A linear "pair score" on a 1x4x4 face: score = sum(w * x), so deleting pixel p (x -> 0)
# lowers it by w[p] * x[p], and every curve is a cumulative sum we can write down.
W = torch.tensor([[4.0, 3.0, 0.0, 0.0],
                  [2.0, 1.0, 0.0, 0.0],
                  [0.0, 0.0, -1.0, 0.0],
                  [0.0, 0.0, 0.0, -2.0]])


def linear_score(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0] * W).sum(dim=(1, 2))


def test_deletion_and_insertion_curves_by_hand():
    x = torch.ones(1, 1, 4, 4)
    base = torch.zeros_like(x)
    fractions = [0, 1 / 16, 2 / 16, 4 / 16, 1]
    # map = W: delete 4, then 3, then 2 and 1; the total is 7
    d = deletion_curve(linear_score, x, base, W, fractions, unit=1)
    assert d.tolist() == [7.0, 3.0, 0.0, -3.0, 0.0]
    i = insertion_curve(linear_score, x, base, W, fractions, unit=1)
    assert i.tolist() == [0.0, 4.0, 7.0, 10.0, 7.0]
    # the opposing part first (impostor order): -2, then -1
    d_neg = deletion_curve(linear_score, x, base, W, [0, 1 / 16, 2 / 16], unit=1,
                           descending=False)
    assert d_neg.tolist() == [7.0, 9.0, 10.0]
    # 2x2-pixel units: the top-left unit (sum 10) goes first
    d2 = deletion_curve(linear_score, x, base, W, [0, 0.25], unit=2)
    assert d2.tolist() == [7.0, -3.0]


def test_curve_auc_and_error_rates_against_brute_force():
    assert curve_auc([0, 0.5, 1], [1.0, 0.0, 1.0]) == pytest.approx(0.5)
    assert curve_auc([0, 0.25, 1], [0.0, 1.0, 1.0]) == pytest.approx(0.125 + 0.75)
    rng = np.random.default_rng(0)
    curves = rng.uniform(0, 1, (50, 7))
    same = rng.uniform(size=50) < 0.5
    fnmr, fmr = replacement_error_rates(curves, same, 0.4)
    for k in range(7):
        gen = [c[k] for c, s in zip(curves, same) if s]
        imp = [c[k] for c, s in zip(curves, same) if not s]
        assert fnmr[k] == pytest.approx(sum(v <= 0.4 for v in gen) / len(gen))
        assert fmr[k] == pytest.approx(sum(v > 0.4 for v in imp) / len(imp))
    fnmr, fmr = replacement_error_rates(curves[:3], [True] * 3, 0.4)
    assert np.isnan(fmr).all()


def test_ties_are_broken_at_random_not_by_position():
    flat = torch.zeros(1, 100)
    firsts = {int(rank_units(flat, seed=s)[0]) for s in range(20)}
    assert len(firsts) > 10  # a constant map does not always delete the top-left first


def test_localisation_game_by_hand():
    region = facial_region_mask("cells:0:1:0:1:2:2", (4, 4))  # the top-left quarter
    assert region.sum() == 4 and region[:2, :2].all()
    m = torch.zeros(4, 4)
    m[0, 0] = -1.0  # the most opposing pixel is inside the region
    assert pointing_game(m, region, unit=1)
    m2 = torch.zeros(4, 4)
    m2[3, 3] = -1.0
    assert not pointing_game(m2, region, unit=1)
    # lowest 4 pixels: the region's 4 pixels -> IoU 1; a disjoint block -> IoU 0
    m3 = torch.zeros(4, 4)
    m3[:2, :2] = -1.0
    assert top_iou(m3, region, unit=1) == 1.0
    m4 = torch.zeros(4, 4)
    m4[2:, 2:] = -1.0
    assert top_iou(m4, region, unit=1) == 0.0
    m5 = torch.zeros(4, 4)
    m5[:2, 1:3] = -1.0  # 2 of 4 inside: IoU 2/6
    assert top_iou(m5, region, unit=1) == pytest.approx(1 / 3)
    # hybrid: the region's pixels come from the donor
    x, donor = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    h = make_hybrid(x, donor, region)
    assert h.sum() == 4 and h[0, 0, :2, :2].eq(1).all()
    for name in ("eyes", "nose", "mouth"):
        r = facial_region_mask(name, (150, 150))
        assert 0.02 < r.float().mean() < 0.2
    with pytest.raises(ValueError, match="unknown region"):
        facial_region_mask("ears", (150, 150))


def test_restore_to_flip_by_hand():
    # score = mean of the face; the hybrid is 0 on a 2x2 block, the original 1 everywhere;
    # threshold 0.8: restoring the block (4 of 16 pixels) gives 1.0, restoring 2 gives 0.875
    def score(x):
        return x.mean(dim=(1, 2, 3))

    original = torch.ones(1, 1, 4, 4)
    region = facial_region_mask("cells:0:1:0:1:2:2", (4, 4))
    hybrid = make_hybrid(original, torch.zeros_like(original), region)
    good = torch.zeros(4, 4)
    good[region] = -1.0  # points at the swapped block
    fractions = np.arange(17) / 16
    assert score(hybrid).item() == 0.75
    assert restore_to_flip(score, hybrid, original, good, 0.8, fractions, unit=1) == 1 / 16
    bad = torch.zeros(4, 4)
    bad[~region] = -1.0  # points everywhere else: 12 useless pixels first
    assert restore_to_flip(score, hybrid, original, bad, 0.8, fractions, unit=1) == 13 / 16


def test_fixed_face_scorer_equals_the_pair_score():
    model = toy_model()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 16, 16, generator=g)
    fixed = torch.randn(1, 3, 16, 16, generator=g)
    for target in ("xcos", "model_cosine"):
        with torch.no_grad():
            expected_a = pair_score(model, x, fixed.expand(5, -1, -1, -1), target)
            expected_b = pair_score(model, fixed.expand(5, -1, -1, -1), x, target)
        got_a = fixed_face_scorer(model, fixed, target, vary="a", batch=2)(x)
        got_b = fixed_face_scorer(model, fixed, target, vary="b")(x)
        torch.testing.assert_close(got_a, expected_a, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got_b, expected_b, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="one face"):
        fixed_face_scorer(model, x, "xcos")


class _FakeExplainer:
    """Maps are face A's and B's first channel (or constants)."""

    def __init__(self, constant=False):
        self.constant = constant

    def attribute(self, a, b, target="xcos"):
        from types import SimpleNamespace

        if self.constant:
            return SimpleNamespace(map_a=torch.ones_like(a[:, 0]), map_b=torch.ones_like(b[:, 0]))
        return SimpleNamespace(map_a=a[:, 0].clone(), map_b=b[:, 0].clone())


def test_sensitivity_by_hand():
    a = torch.full((1, 3, 4, 4), 2.0)
    b = torch.full((1, 3, 4, 4), -2.0)
    assert sensitivity(_FakeExplainer(constant=True), a, b, n_samples=3).item() == 0.0
    # maps = the inputs' first channel: the change is the noise, at most r*sqrt(32) over a
    # norm of 2*sqrt(32), i.e. at most r / 2, and uniform noise gets close to that bound
    s = sensitivity(_FakeExplainer(), a, b, radius=0.1, n_samples=5).item()
    assert 0.02 < s <= 0.05 + 1e-6


def test_model_randomisation_and_rank_correlation():
    assert rank_correlation(torch.tensor([1.0, 2, 3, 4]), torch.tensor([4.0, 3, 2, 1])) == -1.0
    assert math.isnan(rank_correlation(torch.ones(4), torch.arange(4.0)))
    model = toy_model()
    stages = stage_module_names(model)
    assert [s for s, _ in stages] == ["head", "head+backbone_top", "all"]
    head_only = randomised_copy(model, stages[0][1], seed=123)
    assert torch.equal(head_only.backbone.conv.weight, model.backbone.conv.weight)
    assert not torch.equal(head_only.head.adapter.conv1x1[0].weight,
                           model.head.adapter.conv1x1[0].weight)
    everything = randomised_copy(model, stages[-1][1], seed=123)
    assert not torch.equal(everything.backbone.conv.weight, model.backbone.conv.weight)
    # the original is untouched, and a randomised model changes a gradient map
    x_a = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    x_b = x_a + 0.5
    before = create_explainer("saliency", model).attribute(x_a, x_b).map_a
    after = create_explainer("saliency", everything).attribute(x_a, x_b).map_a
    assert rank_correlation(before, after) < 0.9


def test_reinitialise_default_or_permuted_and_the_model_declares_which():
    lin = torch.nn.Linear(4, 3)
    w, b = lin.weight.detach().clone(), lin.bias.detach().clone()
    with seeded(0):
        reinitialise(lin, "permute")
    assert not torch.equal(lin.weight, w)
    torch.testing.assert_close(lin.weight.flatten().sort().values, w.flatten().sort().values,
                               rtol=0, atol=0)
    torch.testing.assert_close(lin.bias.sort().values, b.sort().values, rtol=0, atol=0)
    bn = torch.nn.BatchNorm1d(3)
    bn.running_var.fill_(4.0)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
    reinitialise(bn, "permute")  # buffers are kept
    assert torch.equal(bn.running_var, torch.full((3,), 4.0))
    assert sorted(bn.weight.tolist()) == [1.0, 2.0, 3.0]
    reinitialise(bn, "default")  # BatchNorm's own reset: identity and fresh statistics
    assert torch.equal(bn.weight, torch.ones(3)) and torch.equal(bn.running_var, torch.ones(3))
    with pytest.raises(ValueError, match="permute"):
        reinitialise(lin, "shuffle")
    model = toy_model()
    assert randomisation_init(model) == "default"
    model.backbone.randomisation_init = "permute"
    assert randomisation_init(model) == "permute"
    stages = stage_module_names(model)
    permuted = randomised_copy(model, stages[-1][1], seed=3)
    conv, new = model.backbone.conv.weight, permuted.backbone.conv.weight
    assert not torch.equal(new, conv)
    torch.testing.assert_close(new.flatten().sort().values, conv.flatten().sort().values,
                               rtol=0, atol=0)
    model.backbone.randomisation_init = "gaussian"
    with pytest.raises(ValueError, match="randomisation_init is 'gaussian'"):
        randomisation_init(model)


def test_static_mass_share_by_hand():
    grids = np.array([[[1.0, 1.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]],
                      [[-1.0, 0.0], [0.0, 1.0]]])
    static = np.array([[True, False], [False, False]])
    # pair 1: 1/4; pair 2: no mass (ignored); pair 3: 1/2
    assert static_mass_share(grids, static) == pytest.approx((0.25 + 0.5) / 2)


def test_select_pairs_is_balanced_per_fold():
    rows = [(f, s, f"p{f}_{i}") for f in range(10) for s in (True, False) for i in range(7)]
    frame = pd.DataFrame(rows, columns=["fold", "same", "name_a"])
    sel = select_pairs(frame, 100, seed=0)
    counts = sel.groupby(["fold", "same"]).size()
    assert (counts == 5).all() and len(counts) == 20
    assert select_pairs(frame, 100, seed=0).equals(sel)
    with pytest.raises(ValueError, match="multiple of 20"):
        select_pairs(frame, 30)
    with pytest.raises(ValueError, match="only 7 genuine"):
        select_pairs(frame, 160)


def test_markdown_table():
    table = pd.DataFrame([{"method": "xcos", "del_auc_genuine": 0.5, "pointing": float("nan"),
                           "cost_x_forward": 1.234}])
    md = to_markdown(table)
    assert md.splitlines()[0] == ("| method | deletion AUC gen. ↓ | pointing game ↑ | "
                                  "cost (x forward) ↓ |")
    assert md.splitlines()[2] == "| xcos | 0.500 | – | 1.23 |"
