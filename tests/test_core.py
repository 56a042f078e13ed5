"""The xCos maths against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xcos_xai.core import (
    ArcFaceHead,
    CosFaceHead,
    MaskedAttention,
    NormAttention,
    PriorAttention,
    UniformAttention,
    XCosAttention,
    XCosHead,
    XCosModel,
    create_margin_head,
    patch_cosine_map,
    xcos_from_maps,
)


def _grid(vectors):
    """(H, W, C) nested lists -> (1, C, H, W) tensor."""
    return torch.tensor(vectors, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)


def test_patch_cosine_map_by_hand():
    # 2x2 grid of 2-d vectors; cosines: same direction 1, orthogonal 0, opposite -1, 45deg.
    a = _grid([[[1, 0], [0, 2]], [[3, 0], [1, 0]]])
    b = _grid([[[5, 0], [1, 0]], [[-1, 0], [1, 1]]])
    expected = torch.tensor([[[1.0, 0.0], [-1.0, 1 / math.sqrt(2)]]])
    torch.testing.assert_close(patch_cosine_map(a, b), expected)


def test_xcos_score_by_hand():
    s = torch.tensor([[[1.0, 0.0], [-1.0, 0.5]]])
    w = torch.tensor([[[0.5, 0.25], [0.125, 0.125]]])
    out = xcos_from_maps(s, w)
    # 0.5*1 + 0.25*0 + 0.125*(-1) + 0.125*0.5 = 0.4375
    assert out.score.item() == pytest.approx(0.4375)
    torch.testing.assert_close(out.contribution, s * w)


def test_head_by_hand_with_identity_adapter_and_uniform_attention():
    a = _grid([[[1, 0], [0, 2]], [[3, 0], [1, 0]]])
    b = _grid([[[5, 0], [1, 0]], [[-1, 0], [1, 1]]])
    head = XCosHead(2, channels=None, attention="uniform")
    out = head(a, b)
    assert out.score.item() == pytest.approx((1 + 0 - 1 + 1 / math.sqrt(2)) / 4, abs=1e-6)


@pytest.mark.parametrize("attention", ["learned", "symmetric", "uniform"])
def test_contribution_sums_to_score_and_weights_sum_to_one(attention):
    torch.manual_seed(0)
    head = XCosHead(16, channels=8, attention=attention).eval()
    a, b = torch.randn(5, 16, 7, 7), torch.randn(5, 16, 7, 7)
    out = head(a, b)
    torch.testing.assert_close(out.contribution.sum((1, 2)), out.score)
    torch.testing.assert_close(out.attention.sum((1, 2)), torch.ones(5))
    assert (out.attention >= 0).all()
    assert ((out.score >= -1) & (out.score <= 1)).all()


def test_uniform_attention_equals_mean_patch_cosine():
    torch.manual_seed(1)
    head = XCosHead(12, channels=4, attention="uniform").eval()
    a, b = torch.randn(3, 12, 4, 4), torch.randn(3, 12, 4, 4)
    out = head(a, b)
    fa, fb = head.adapt(a), head.adapt(b)
    torch.testing.assert_close(out.score, patch_cosine_map(fa, fb).mean((1, 2)))


def test_score_bounds_on_extreme_inputs():
    a = torch.randn(4, 3, 5, 5)
    for b, expected in ((a * 3.0, 1.0), (-a, -1.0)):
        out = XCosHead(3, channels=None, attention="learned")(a, b)
        torch.testing.assert_close(out.score, torch.full((4,), expected), atol=1e-5, rtol=0)


def test_symmetric_attention_is_symmetric_and_paper_form_is_not():
    torch.manual_seed(2)
    a, b = torch.randn(6, 32, 7, 7), torch.randn(6, 32, 7, 7)
    sym = XCosAttention(32, symmetric=True).eval()
    torch.testing.assert_close(sym(a, b), sym(b, a))
    paper = XCosAttention(32).eval()
    assert not torch.allclose(paper(a, b), paper(b, a))


def test_temperature_spreads_weights():
    torch.manual_seed(3)
    a, b = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    att = XCosAttention(8).eval()
    logits = att.logits(a, b)
    for t in (0.5, 2.0):
        att.temperature = t
        expected = torch.softmax(logits.flatten(1) / t, dim=1).view_as(logits)
        torch.testing.assert_close(att(a, b), expected)


def test_prior_and_masked_attention():
    prior = torch.tensor([[1.0, 3.0], [0.0, 4.0]])
    a = torch.randn(2, 3, 2, 2)
    w = PriorAttention(prior)(a, a)
    torch.testing.assert_close(w, (prior / 8).expand(2, 2, 2))
    keep = torch.tensor([[True, False], [True, True]])
    masked = MaskedAttention(UniformAttention(), keep)(a, a)
    torch.testing.assert_close(masked[0], torch.tensor([[1 / 3, 0.0], [1 / 3, 1 / 3]]))
    with pytest.raises(ValueError, match="keeps no cell"):
        MaskedAttention(UniformAttention(), torch.zeros(2, 2, dtype=torch.bool))


def test_official_layout_of_attention_and_adapter():
    names = [n for n, _ in XCosAttention(32).state_dict().items()]
    assert names[:2] == ["embedding_net.0.weight", "embedding_net.0.bias"]
    assert "attention.5.weight" in names and "attention.4.running_var" in names
    assert sum(p.numel() for p in XCosAttention(32).parameters()) == 9462  # as the paper's
    head = XCosHead(512, 32)
    assert sum(p.numel() for p in head.adapter.parameters()) == 16512  # 512->32 1x1+BN+PReLU


@pytest.mark.parametrize("bad", [torch.randn(3, 7, 7), torch.randn(1, 8, 7, 7)])
def test_shape_errors_are_clear(bad):
    head = XCosHead(16, 4)
    with pytest.raises(ValueError, match="grid"):
        head(torch.randn(1, 16, 7, 7), bad)


def test_arcface_logits_against_formula_with_fallback():
    head = ArcFaceHead(2, 3, scale=64.0, margin=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    # Embedding at angle 60deg to class 0 and 30deg to class 1; one nearly opposite class 0.
    emb = torch.tensor([[math.cos(math.pi / 3), math.sin(math.pi / 3)],
                        [-0.99, math.sqrt(1 - 0.99 ** 2)]])
    labels = torch.tensor([0, 0])
    logits = head(emb, labels)
    # Row 0: target cos(60+28.65deg); non-targets unchanged cosines, all times 64.
    assert logits[0, 0].item() == pytest.approx(64 * math.cos(math.pi / 3 + 0.5), abs=1e-4)
    assert logits[0, 1].item() == pytest.approx(64 * math.sin(math.pi / 3), abs=1e-4)
    assert logits[0, 2].item() == pytest.approx(-64 * math.cos(math.pi / 3), abs=1e-4)
    # Row 1: cos = -0.99 <= cos(pi - 0.5) = -0.8776 -> fallback cos - m*sin(m).
    assert logits[1, 0].item() == pytest.approx(64 * (-0.99 - 0.5 * math.sin(0.5)), abs=1e-4)


def test_cosface_logits_against_formula():
    head = CosFaceHead(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    emb = torch.tensor([[3.0, 4.0]])  # unit (0.6, 0.8)
    logits = head(emb, torch.tensor([1]))
    torch.testing.assert_close(logits, torch.tensor([[30 * 0.6, 30 * (0.8 - 0.35)]]))
    assert isinstance(create_margin_head("arcface", 4, 2), ArcFaceHead)
    with pytest.raises(ValueError, match="labels"):
        head(emb, torch.tensor([2]))


class _TinyBackbone(nn.Module):
    grid_channels, grid_size, embedding_dim = 8, (4, 4), 6

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.fc = nn.Linear(8 * 16, 6)

    def forward_features(self, x):
        return self.conv(x)

    def forward_head(self, grid):
        return self.fc(grid.flatten(1))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_gradients_reach_both_faces():
    torch.manual_seed(4)
    model = XCosModel(_TinyBackbone(), XCosHead(8, 4)).eval()
    x_a = torch.randn(2, 3, 16, 16, requires_grad=True)
    x_b = torch.randn(2, 3, 16, 16, requires_grad=True)
    out = model(x_a, x_b)
    out.score.sum().backward()
    assert x_a.grad.abs().sum() > 0 and x_b.grad.abs().sum() > 0
    expected = torch.nn.functional.cosine_similarity(model.backbone(x_a), model.backbone(x_b))
    torch.testing.assert_close(out.model_cosine, expected)


def test_teacher_stays_frozen_and_in_eval_mode():
    teacher = _TinyBackbone()
    model = XCosModel(_TinyBackbone(), XCosHead(8, 4), teacher=teacher).train()
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 3, 16, 16), float("nan")), torch.zeros(1, 3, 16, 16))


def test_norm_attention_by_hand():
    # 1x2 grid: cell 0 a=(3,4) |5|, b=(0,2) |2|; cell 1 a=(1,0) |1|, b=(1,1) |sqrt2|.
    a = _grid([[[3, 4], [1, 0]]])
    b = _grid([[[0, 2], [1, 1]]])
    att = NormAttention(2, (1, 2))
    w = att(a, b)
    n0, n1 = 5 * 2, 1 * math.sqrt(2)  # power 1, no bias: W ~ |a_c| |b_c|
    torch.testing.assert_close(w, torch.tensor([[[n0 / (n0 + n1), n1 / (n0 + n1)]]]))
    # so xCos = sum_c <a_c, b_c> / sum_c |a_c| |b_c| = (8 + 1) / (10 + sqrt 2)
    head = XCosHead(2, channels=None, attention=att)
    assert head(a, b).score.item() == pytest.approx(9 / (10 + math.sqrt(2)), abs=1e-6)
    with torch.no_grad():
        att.power.fill_(2.0)
        att.cell_bias.copy_(torch.tensor([[0.0, math.log(3.0)]]))
    w = att(a, b)
    m0, m1 = n0 ** 2, 3 * n1 ** 2
    torch.testing.assert_close(w, torch.tensor([[[m0 / (m0 + m1), m1 / (m0 + m1)]]]))
    with pytest.raises(ValueError, match=r"built for \(1, 2\) grids"):
        att(torch.ones(1, 2, 2, 2), torch.ones(1, 2, 2, 2))


def test_norm_learned_attention_starts_at_the_norm_weighting_and_learns():
    torch.manual_seed(0)
    a, b = torch.randn(6, 8, 4, 4), torch.randn(6, 8, 4, 4)
    learned = XCosHead(8, channels=None, attention="norm_learned", cells=(4, 4))
    plain = XCosHead(8, channels=None, attention="norm", cells=(4, 4))
    torch.testing.assert_close(learned(a, b).attention, plain(a, b).attention)
    out = learned(a, b)
    torch.testing.assert_close(out.attention.sum((1, 2)), torch.ones(6))
    out.score.sum().backward()
    assert learned.attention.learned_scale.grad.abs() > 0  # the learned part can switch on
    with pytest.raises(ValueError, match="grid_size"):
        XCosHead(8, channels=None, attention="norm")


def test_image_check_accepts_finite_values_whose_sum_overflows():
    """The finiteness check sums first: a sum that overflows (finite values near the float32
    maximum) falls back to the elementwise test instead of calling the faces non-finite."""
    from xcos_xai.core._checks import check_images

    check_images("x", torch.full((1, 3, 4, 4), 3e38))  # the sum is inf; no value is
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        check_images("x", torch.full((1, 3, 4, 4), 3e38).index_fill_(3, torch.tensor([1]),
                                                                       float("inf")))
