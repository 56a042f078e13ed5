"""Pair explainers: every registry entry, and each face's map against an independent reference.

A toy backbone (one 4x4/4 convolution + tanh: each grid cell sees only its own 4x4 patch of a
16x16 face) keeps every test fast and every expected value computable by hand with autograd.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xcos_xai.core import XCosHead, XCosModel
from xcos_xai.explainers import (
    PairAttribution,
    create_explainer,
    list_explainers,
    pair_score,
    replacement_baseline,
)
from xcos_xai.explainers.occlusion import cell_mask
from xcos_xai.explainers.xcos_maps import FEATURES, AmortisedOcclusion, MapStats
from xcos_xai.models.registry import InputSpec


class ToyBackbone(nn.Module):
    """``(B, 3, 16, 16) -> (B, 6, 4, 4)`` grid (patch-local), ``forward_head``: mean + linear."""

    grid_size = (4, 4)
    grid_channels = 6
    embedding_dim = 5
    input_spec = InputSpec((16, 16), "RGB", (127.5,) * 3, (127.5,) * 3)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 4, stride=4)
        self.fc = nn.Linear(6, 5)

    def forward_features(self, x):
        return torch.tanh(self.conv(x)) + 0.5

    def forward_head(self, grid):
        return self.fc(grid.mean(dim=(2, 3)))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def toy_model(attention="learned", channels=4, seed=0):
    torch.manual_seed(seed)
    head = XCosHead(6, channels, attention=attention)
    model = XCosModel(ToyBackbone(), head, threshold=0.3, model_threshold=0.5).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics in the adapter
        if channels:
            bn = head.adapter.conv1x1[1]
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    model.map_stats = toy_map_stats(seed)  # what the reference-relative xCos maps need
    return model.requires_grad_(False)


def toy_map_stats(seed=0):
    """Reference statistics of the toy grid and an amortiser with random weights."""
    g = torch.Generator().manual_seed(seed + 100)
    n_features = len(FEATURES) * 16
    amortiser = AmortisedOcclusion(torch.zeros(n_features), torch.ones(n_features),
                                   0.1 * torch.randn(n_features, 16, generator=g),
                                   torch.zeros(16), (4, 4))
    n_fine = n_features + 64  # the cell features and the 8x8 blocks' shift drops
    fine = AmortisedOcclusion(torch.zeros(n_fine), torch.ones(n_fine),
                              0.1 * torch.randn(n_fine, 64, generator=g), torch.zeros(64),
                              (8, 8))
    return MapStats(0.5 + 0.1 * torch.rand(4, 4, generator=g),
                    0.5 + 0.2 * torch.randn(6, 4, 4, generator=g),
                    0.1 * torch.randn(16, 6, 4, 4, generator=g), amortiser,
                    0.1 * torch.randn(64, 6, 4, 4, generator=g), fine)


@pytest.fixture(scope="module")
def model():
    return toy_model()


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(1)
    x_a = torch.randn(2, 3, 16, 16, generator=g)
    x_b = x_a + 0.8 * torch.randn(2, 3, 16, 16, generator=g)  # related but different faces
    return x_a, x_b


def test_registry_lists_the_contract_names():
    names = list_explainers()
    for required in ("xcos", "gradcam", "integrated_gradients", "saliency", "smoothgrad",
                     "occlusion", "random"):
        assert required in names
    assert names[0] == "xcos"


@pytest.mark.parametrize("name", list_explainers())
@pytest.mark.parametrize("target", ["xcos", "model_cosine"])
def test_every_explainer_gives_signed_maps_of_both_faces(model, pair, name, target):
    kwargs = {"n_steps": 8} if name == "integrated_gradients" else {}
    kwargs = {"nt_samples": 4} if name == "smoothgrad" else kwargs
    r = create_explainer(name, model, **kwargs).attribute(*pair, target=target)
    assert isinstance(r, PairAttribution) and r.method == name and r.target == target
    assert r.map_a.shape == r.map_b.shape == (2, 16, 16)
    assert r.grid_a.shape == r.grid_b.shape == (2, 4, 4)
    for t in (r.map_a, r.map_b, r.grid_a, r.grid_b):
        assert torch.isfinite(t).all() and not t.requires_grad
    assert r.map_a.abs().sum() > 0 and r.map_b.abs().sum() > 0
    if name != "random":
        with torch.no_grad():
            expected = pair_score(model, *pair, target=target)
        torch.testing.assert_close(r.extras["score"], expected, atol=1e-5, rtol=0)
    if not name.startswith("xcos") and name != "random":  # another target, another map
        other = "xcos" if target == "model_cosine" else "model_cosine"
        r2 = create_explainer(name, model, **kwargs).attribute(*pair, target=other)
        assert not torch.allclose(r.map_a, r2.map_a)


def _reference_grads(model, x_a, x_b, target):
    """Independent reference: each face through its OWN backbone call, plain autograd."""
    x_a = x_a.clone().requires_grad_()
    x_b = x_b.clone().requires_grad_()
    grid_a = model.backbone.forward_features(x_a)
    grid_b = model.backbone.forward_features(x_b)
    if target == "xcos":
        score = model.head(grid_a, grid_b).score
    else:
        emb_a, emb_b = model.backbone.forward_head(grid_a), model.backbone.forward_head(grid_b)
        score = F.cosine_similarity(emb_a, emb_b)
    ga, gb, xa, xb = torch.autograd.grad(score.sum(), (grid_a, grid_b, x_a, x_b))
    return grid_a.detach(), grid_b.detach(), ga, gb, xa, xb


@pytest.mark.parametrize("target", ["xcos", "model_cosine"])
def test_gradcam_matches_a_hand_computed_reference_for_each_face(model, pair, target):
    grid_a, grid_b, ga, gb, _, _ = _reference_grads(model, *pair, target)
    cam_a = (ga.mean(dim=(2, 3), keepdim=True) * grid_a).sum(1)
    cam_b = (gb.mean(dim=(2, 3), keepdim=True) * grid_b).sum(1)
    r = create_explainer("gradcam", model).attribute(*pair, target=target)
    torch.testing.assert_close(r.grid_a, cam_a, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(r.grid_b, cam_b, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(cam_a, cam_b, atol=1e-4)  # the two faces really differ
    # the pixel map is the bilinear upsampling of the grid map
    up = F.interpolate(cam_a[:, None], size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(r.map_a, up[:, 0])


@pytest.mark.parametrize("target", ["xcos", "model_cosine"])
def test_saliency_matches_autograd_for_each_face(model, pair, target):
    *_, grad_a, grad_b = _reference_grads(model, *pair, target)
    x_a, x_b = pair
    expected_a = (grad_a * (x_a - replacement_baseline(x_a))).sum(1)
    expected_b = (grad_b * (x_b - replacement_baseline(x_b))).sum(1)
    r = create_explainer("saliency", model).attribute(x_a, x_b, target=target)
    torch.testing.assert_close(r.map_a, expected_a, atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(r.map_b, expected_b, atol=1e-7, rtol=1e-4)
    classic = create_explainer("saliency", model, absolute=True).attribute(x_a, x_b, target)
    torch.testing.assert_close(classic.map_b, grad_b.abs().amax(1), atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("name", ["gradcam", "saliency", "integrated_gradients", "occlusion",
                                  "smoothgrad"])
def test_swapping_the_faces_swaps_the_maps(pair, name):
    # A symmetric score (uniform attention): explaining (B, A) must give A's map as face B's.
    # An explainer that lets Captum see only the last backbone call fails this.
    model = toy_model(attention="uniform")
    kwargs = {"n_steps": 8} if name == "integrated_gradients" else {}
    kwargs = {"nt_samples": 4, "stdev": 0.0} if name == "smoothgrad" else kwargs
    x_a, x_b = pair
    ab = create_explainer(name, model, **kwargs).attribute(x_a, x_b)
    ba = create_explainer(name, model, **kwargs).attribute(x_b, x_a)
    torch.testing.assert_close(ab.map_a, ba.map_b, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(ab.map_b, ba.map_a, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(ab.map_a, ab.map_b, atol=1e-4)


def test_only_face_a_matters_when_face_b_is_its_own_baseline(model, pair):
    # A flat face B equals its blurred baseline, so replacing any of B's pixels changes
    # nothing: every replacement-based map of B is zero and A carries the whole change.
    x_a = pair[0][:1]
    x_b = torch.full_like(x_a, 0.3)
    assert torch.allclose(replacement_baseline(x_b), x_b, atol=1e-6)
    ig = create_explainer("integrated_gradients", model, n_steps=64).attribute(x_a, x_b)
    assert ig.map_b.abs().max() == 0
    with torch.no_grad():
        drop = pair_score(model, x_a, x_b) - pair_score(model, replacement_baseline(x_a), x_b)
    # completeness: A's attributions add up to the score change (up to the quadrature error
    # at the adapter's PReLU kinks, about 1 %)
    assert ig.map_a.sum().item() == pytest.approx(drop.item(), rel=0.015)
    sal = create_explainer("saliency", model).attribute(x_a, x_b)
    assert sal.map_b.abs().max() == 0 and sal.map_a.abs().max() > 0
    occ = create_explainer("occlusion", model).attribute(x_a, x_b)
    assert occ.grid_b.abs().max() < 1e-6
    # occlusion by hand: replace A's cell (i, j) with the baseline, record the score drop
    base = replacement_baseline(x_a)
    ids = cell_mask((16, 16), (4, 4))
    with torch.no_grad():
        full = pair_score(model, x_a, x_b)
        for k in range(16):
            m = (ids == k).float()
            dropped = pair_score(model, x_a * (1 - m) + base * m, x_b)
            assert occ.grid_a.flatten()[k].item() == pytest.approx((full - dropped).item(),
                                                                    abs=1e-6)
    assert occ.grid_a.abs().max() > 1e-4


def test_xcos_maps_are_the_forward_outputs(model, pair):
    with torch.no_grad():
        out = model(*pair)
    r = create_explainer("xcos", model, map="evidence").attribute(*pair)
    torch.testing.assert_close(r.extras["cos_map"], out.cos_map)
    torch.testing.assert_close(r.extras["attention"], out.attention)
    torch.testing.assert_close(r.grid_a, (out.cos_map - 0.3) * out.attention)
    torch.testing.assert_close(r.grid_a.sum((1, 2)), out.score - 0.3)  # evidence vs threshold
    assert torch.equal(r.map_a, r.map_b)
    assert torch.equal(r.map_a[:, :4, :4], r.grid_a[:, :1, :1].expand(-1, 4, 4))  # cell blocks
    c = create_explainer("xcos", model, map="contribution").attribute(*pair)
    torch.testing.assert_close(c.grid_a.sum((1, 2)), out.score)


def test_random_is_seeded_and_uninformative(model, pair):
    a = create_explainer("random", model, seed=3).attribute(*pair)
    b = create_explainer("random", model, seed=3).attribute(*pair)
    assert torch.equal(a.map_a, b.map_a) and not torch.equal(a.map_a, a.map_b)


def test_bad_input_gets_one_clear_error(model, pair):
    x_a, x_b = pair
    explainer = create_explainer("saliency", model)
    with pytest.raises(ValueError, match="target must be one of"):
        explainer.attribute(x_a, x_b, target="cosine")
    with pytest.raises(ValueError, match=r"x_a must be a \(B, 3, H, W\)"):
        explainer.attribute(x_a[0], x_b)
    with pytest.raises(ValueError, match="same shape"):
        explainer.attribute(x_a, x_b[:1])
    with pytest.raises(ValueError, match="unknown explainer 'lime'.*gradcam"):
        create_explainer("lime", model)
    with pytest.raises(TypeError, match="XCosModel"):
        create_explainer("gradcam", nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown baseline"):
        create_explainer("saliency", model, baseline="zeros")


@pytest.mark.parametrize("name", list_explainers())
def test_every_explainer_states_its_passes_per_pair(model, name):
    kwargs = {"n_steps": 8} if name == "integrated_gradients" else {}
    kwargs = {"nt_samples": 4} if name == "smoothgrad" else kwargs
    passes = create_explainer(name, model, **kwargs).pass_count("xcos")
    expected = {"xcos": 2, "gradcam": 4, "saliency": 4, "random": 0, "smoothgrad": 16,
                "integrated_gradients": 32, "occlusion": 2 + 2 * 17, "xssab": 6,
                "fggb": 2 * (1 + 16), "corrrise": 2 * 500 + 2,
                # 16 px: 2 px patches at stride 1 (15 x 15 starts), 4 px ones (13 x 13)
                "multiscale_occlusion": 2 * (15 * 15 + 13 * 13 + 2),
                "occlusion_blocks": 2 + 2 * 65}  # the toy statistics' 8x8 blocks
    # every xCos map (xcos_<map>) comes from the same forward of both faces
    expected.update({n: 2 for n in list_explainers() if n.startswith("xcos_")})
    assert passes == expected[name]


def test_block_occlusion_measures_the_default_maps_blocks(model, pair, monkeypatch):
    """``occlusion_blocks`` ablates the finer blocks of the model's map statistics (what the
    default map predicts), the cells without them."""
    blocks = create_explainer("occlusion_blocks", model)
    assert blocks.cells == (8, 8)  # the toy statistics' 64 blocks
    r = blocks.attribute(*pair)
    ref = create_explainer("occlusion", model, grid_size=(8, 8)).attribute(*pair)
    torch.testing.assert_close(r.map_a, ref.map_a)
    # 8 x 8 blocks of a 16 px face: 2 x 2 pixels share a value, not 4 x 4
    assert not torch.equal(r.map_a[:, 0, 0], r.map_a[:, 0, 2])
    torch.testing.assert_close(r.map_a[:, 0, 0], r.map_a[:, 1, 1])
    monkeypatch.setattr(model, "map_stats", None)
    plain = create_explainer("occlusion_blocks", model)
    assert plain.cells is None and plain.pass_count() == 2 + 2 * 17  # the grid cells
    torch.testing.assert_close(plain.attribute(*pair).map_a,
                               create_explainer("occlusion", model).attribute(*pair).map_a)
