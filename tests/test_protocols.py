"""Evaluation protocols (ROAD, verification accuracy, replacement rates, MPRT) against
values computed by hand on tiny images and linear scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xcos_xai.explainers.protocols import (
    decision_accuracy,
    layer_randomisation,
    perturbation_curve,
    randomisable_layers,
    replace,
    replacement_fractions,
    replacement_rate_curves,
    road_impute,
    verification_accuracy_curve,
)

D, G = 1 / 6, 1 / 12  # ROAD's direct and diagonal neighbour weights


def test_road_one_removed_pixel_is_the_weighted_mean_of_its_neighbours():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 2, 5, 5, generator=g)
    removed = torch.zeros(5, 5, dtype=torch.bool)
    removed[2, 2] = True
    removed[0, 0] = True  # a corner: 2 direct + 1 diagonal neighbour, renormalised
    out = road_impute(x, removed, noise_std=0)
    v = x[0]
    interior = (D * (v[:, 1, 2] + v[:, 3, 2] + v[:, 2, 1] + v[:, 2, 3])
                + G * (v[:, 1, 1] + v[:, 1, 3] + v[:, 3, 1] + v[:, 3, 3]))
    corner = (D * (v[:, 0, 1] + v[:, 1, 0]) + G * v[:, 1, 1]) / (2 * D + G)
    torch.testing.assert_close(out[0, :, 2, 2], interior, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, :, 0, 0], corner, atol=1e-5, rtol=0)
    keep = ~removed
    assert torch.equal(out[0][:, keep], x[0][:, keep])  # the rest is untouched
    # with noise: within a few noise sds of the mean, and seeded
    noisy = road_impute(x, removed, noise_std=0.01, seed=3)
    assert (noisy[0, :, 2, 2] - interior).abs().max() < 0.05
    assert (noisy[0, :, 2, 2] - interior).abs().max() > 0
    assert torch.equal(noisy, road_impute(x, removed, noise_std=0.01, seed=3))


def test_road_two_adjacent_pixels_are_solved_jointly():
    # p at (2, 1) and q at (2, 2) are each other's direct neighbour: p = q/6 + K_p,
    # q = p/6 + K_q, so p = (K_p + K_q / 6) / (1 - 1/36).
    g = torch.Generator().manual_seed(1)
    v = torch.rand(1, 1, 5, 5, generator=g)
    removed = torch.zeros(5, 5, dtype=torch.bool)
    removed[2, 1] = removed[2, 2] = True
    a = v[0, 0]
    k_p = D * (a[1, 1] + a[3, 1] + a[2, 0]) + G * (a[1, 0] + a[1, 2] + a[3, 0] + a[3, 2])
    k_q = D * (a[1, 2] + a[3, 2] + a[2, 3]) + G * (a[1, 1] + a[1, 3] + a[3, 1] + a[3, 3])
    p = (k_p + k_q / 6) / (1 - 1 / 36)
    q = p / 6 + k_q
    out = road_impute(v, removed, noise_std=0)
    assert out[0, 0, 2, 1].item() == pytest.approx(p.item(), abs=1e-5)
    assert out[0, 0, 2, 2].item() == pytest.approx(q.item(), abs=1e-5)


def test_road_restores_a_linear_ramp_inside_a_removed_block():
    # symmetric weights reproduce any linear function exactly (a discrete harmonic function)
    ramp = (torch.arange(12.0)[None, :] * 0.5 + torch.arange(12.0)[:, None] * 0.2)
    x = ramp.expand(1, 3, 12, 12).clone()
    removed = torch.zeros(12, 12, dtype=torch.bool)
    removed[3:9, 2:8] = True
    out = road_impute(x, removed, noise_std=0)
    torch.testing.assert_close(out, x, atol=1e-4, rtol=0)
    # everything removed: no known pixel, the faint pull gives the image mean
    all_out = road_impute(x, torch.ones(12, 12, dtype=torch.bool), noise_std=0)
    torch.testing.assert_close(all_out, torch.full_like(x, float(x.mean())), atol=1e-3, rtol=0)


W = torch.tensor([[4.0, 3.0, 0.0, 0.0],
                  [2.0, 1.0, 0.0, 0.0],
                  [0.0, 0.0, -1.0, 0.0],
                  [0.0, 0.0, 0.0, -2.0]])


def linear_score(v):
    return (v[:, 0] * W).sum((1, 2))


def test_perturbation_curves_most_and_least_relevant_first_by_hand():
    x = torch.ones(1, 1, 4, 4)
    fractions = [0, 1 / 16, 2 / 16]
    morf = perturbation_curve(linear_score, x, W, fractions, "mean", True, unit=1)
    assert morf.tolist() == [7.0, 3.0, 0.0]  # 4, then 3 go
    lerf = perturbation_curve(linear_score, x, W, fractions, "mean", False, unit=1)
    assert lerf.tolist() == [7.0, 9.0, 10.0]  # -2, then -1 go
    ins = perturbation_curve(linear_score, x, W, fractions, "mean", True, insertion=True,
                             unit=1)
    assert ins.tolist() == [0.0, 4.0, 7.0]
    # ROAD on a constant face: an imputed pixel is the constant again (plus no noise)
    road = perturbation_curve(linear_score, x, W, fractions, "road", True, unit=1,
                              noise_std=0)
    torch.testing.assert_close(road, torch.full((3,), 7.0), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="unknown replacement 'zeros'"):
        replace(x, torch.zeros(4, 4), "zeros")


def test_verification_accuracy_curve_by_hand():
    # pair 0 genuine (score 7 > 2.5): deleting 4 then 3 gives 3, then 0 -> rejected at 2/16.
    # pair 1 impostor, face with the opposite map order: its lowest units (-2, -1) go first,
    # 7 -> 9 -> 10 stays accepted: wrong at every step (a threshold of 2.5 on this toy).
    x = torch.ones(1, 1, 4, 4)
    out = verification_accuracy_curve([linear_score, linear_score], [x, x], [W, W],
                                      [True, False], 2.5, [0, 1 / 16, 2 / 16], "deletion",
                                      replacement="mean", unit=1)
    np.testing.assert_allclose(out["scores"], [[7, 3, 0], [7, 9, 10]])
    np.testing.assert_allclose(out["accuracy"], [0.5, 0.5, 0.0])
    assert out["auc"] == pytest.approx((0.5 + 0.5) / 2 * 0.5 + (0.5 + 0.0) / 2 * 0.5)
    ins = verification_accuracy_curve([linear_score], [x], [W], [True], 2.5,
                                      [0, 1 / 16, 2 / 16], "insertion", "mean", unit=1)
    np.testing.assert_allclose(ins["accuracy"], [0.0, 1.0, 1.0])  # 0 -> 4 -> 7
    assert decision_accuracy([[0.9, 0.2], [0.1, 0.7]], [True, False], [0.5, 0.8]).tolist() \
        == [1.0, 0.5]


def test_replacement_rate_curves_map_order_against_random_by_hand():
    fr = replacement_fractions()
    assert len(fr) == 19 and fr[0] == pytest.approx(0.05) and fr[-1] == pytest.approx(0.95)
    x = torch.ones(1, 1, 4, 4)
    # threshold 6.5: the genuine pair (score 7) is rejected as soon as its top unit (4) goes,
    # i.e. from 1/16 replaced on: FNMR 1 at every fraction >= 0.0625 in map order
    fractions = [1 / 16, 2 / 16, 0.5]
    out = replacement_rate_curves([linear_score] * 3, [x] * 3, [W] * 3, [True] * 3, 6.5,
                                  fractions, replacement="mean", unit=1, seed=0)
    np.testing.assert_allclose(out["fnmr"], [1.0, 1.0, 1.0])
    assert np.isnan(out["fmr"]).all()
    # the random order reaches FNMR 1 no sooner than the map order
    assert (out["fnmr_random"] <= out["fnmr"]).all()
    # brute force of the random order: 3 seeded random maps, the same ranking rule
    g = torch.Generator().manual_seed(0)
    manual = []
    for _ in range(3):
        r = torch.rand(4, 4, generator=g)
        s = perturbation_curve(linear_score, x, r, fractions, "mean", True, unit=1)
        manual.append((s <= 6.5).float())
    np.testing.assert_allclose(out["fnmr_random"], torch.stack(manual).mean(0).numpy())


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 5))
        self.head = nn.Linear(5, 1)


def test_layer_randomisation_cascades_from_the_top_or_resets_one_layer():
    torch.manual_seed(0)
    model = TwoLayers()
    assert randomisable_layers(model) == ["head", "backbone.2", "backbone.0"]
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def explain(m):  # a "map" that is the first backbone layer's weights
        return m.backbone[0].weight

    cascading = layer_randomisation(model, explain, mode="cascading")
    independent = layer_randomisation(model, explain, mode="independent")
    assert [n for n, _ in cascading] == ["head", "backbone.2", "backbone.0"]
    # the map only changes once its own layer is re-initialised
    assert cascading[0][1] == pytest.approx(1.0) and cascading[1][1] == pytest.approx(1.0)
    assert abs(cascading[2][1]) < 0.6
    assert independent[0][1] == pytest.approx(1.0) and abs(independent[2][1]) < 0.6

    def explain_top(m):  # depends on the head: cascading keeps it reset, independent not
        return torch.cat([m.head.weight.flatten(), m.backbone[2].weight.flatten()])

    cas = dict(layer_randomisation(model, explain_top, mode="cascading"))
    ind = dict(layer_randomisation(model, explain_top, mode="independent"))
    assert cas["backbone.0"] < 0.9 and ind["backbone.0"] == pytest.approx(1.0)
    for k, v in model.state_dict().items():  # the model itself is untouched
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="unknown layer"):
        layer_randomisation(model, explain, layers=["nope"])


def test_cascading_randomisation_measured_at_a_subset_still_resets_every_layer_above():
    torch.manual_seed(0)
    model = TwoLayers()

    def explain_top(m):  # depends on the head and backbone.2 only
        return torch.cat([m.head.weight.flatten(), m.backbone[2].weight.flatten()])

    full = dict(layer_randomisation(model, explain_top, mode="cascading"))
    sub = layer_randomisation(model, explain_top, mode="cascading", measure_at=["backbone.0"])
    # measured only at the stem, but the head and backbone.2 above it were reset on the way
    assert [n for n, _ in sub] == ["backbone.0"]
    assert sub[0][1] == pytest.approx(full["backbone.0"]) and sub[0][1] < 0.9
    ind = layer_randomisation(model, explain_top, mode="independent", measure_at=["backbone.0"])
    assert ind == [("backbone.0", pytest.approx(1.0))]
