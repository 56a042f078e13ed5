"""The field's pair explainers (xSSAB, CorrRISE, FGGB, multi-scale occlusion): each one's
defining property on a model small enough to check by hand, and end to end on LFW faces.

The hand-checkable model (:class:`PixelEmbedding`): the embedding of a face is a fixed linear
function of its pixels, ``e = M @ x.flatten()``, so every gradient has a closed form.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from xcos_xai.core import XCosHead, XCosModel
from xcos_xai.explainers import create_explainer, pair_score
from xcos_xai.explainers.corrrise import correlation_map, random_masks
from xcos_xai.explainers.multiscale_occlusion import decision_confidence, occlusion_deviation_map
from xcos_xai.explainers.xssab import split_by_support
from xcos_xai.models.registry import InputSpec


class PixelEmbedding(nn.Module):
    """``e = M @ x.flatten()`` (``M``: ``(D, 3*H*W)``), a 1x1 grid holding ``e``."""

    grid_size = (1, 1)

    def __init__(self, matrix: torch.Tensor, size: int):
        super().__init__()
        self.register_buffer("matrix", matrix)
        self.embedding_dim = self.grid_channels = matrix.shape[0]
        self.input_spec = InputSpec((size, size), "RGB", (127.5,) * 3, (127.5,) * 3)
        self.dummy = nn.Parameter(torch.zeros(1))  # the model's dtype

    def forward_features(self, x):
        return (x.flatten(1) @ self.matrix.T)[:, :, None, None]

    def forward_head(self, grid):
        return grid.flatten(1)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def pixel_model(matrix, size, threshold=0.4):
    head = XCosHead(matrix.shape[0], None, attention="uniform")
    # one 1x1 cell with uniform attention: xCos is the embedding cosine
    return XCosModel(PixelEmbedding(matrix, size), head, threshold=threshold,
                     model_threshold=threshold).eval()


def selector(d, size):
    """``M`` that reads pixel ``(0, 0, k)`` into dimension ``k``."""
    m = torch.zeros(d, 3 * size * size)
    m[torch.arange(d), torch.arange(d)] = 1.0
    return m


def faces_with_embeddings(a, b, size):
    x_a, x_b = torch.zeros(1, 3, size, size), torch.zeros(1, 3, size, size)
    x_a[0, 0, 0, :len(a)] = torch.tensor(a)
    x_b[0, 0, 0, :len(b)] = torch.tensor(b)
    return x_a, x_b


# --------------------------------------------------------------------------- xSSAB


def _cosine_part_gradient(a, b, keep):
    """d/da of ``sum_{k in keep} a_k b_k / (|a||b|)``, by hand: ``(c - â (â.c)) / |a|`` with
    ``c = b̂ * keep``."""
    a, b, keep = (np.asarray(v, dtype=np.float64) for v in (a, b, keep))
    a_hat, b_hat = a / np.linalg.norm(a), b / np.linalg.norm(b)
    c = b_hat * keep
    return (c - a_hat * (a_hat @ c)) / np.linalg.norm(a)


@pytest.mark.parametrize("target", ["model_cosine", "xcos"])
def test_xssab_splits_the_cosine_and_backpropagates_each_part_by_hand(target):
    # a = (2, 1, 1, -1), b = (1, 1, -1, -1): terms a_k b_k / (|a||b|) = (2, 1, -1, 1) / (2 √7)
    # = (0.378, 0.189, -0.189, 0.189). Threshold 0.4 cuts at 0.4 / 4 = 0.1: dimensions 0, 1
    # and 3 support the match, dimension 2 opposes it.
    size = 4
    model = pixel_model(selector(4, size), size, threshold=0.4)
    a, b = [2.0, 1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]
    x_a, x_b = faces_with_embeddings(a, b, size)
    r = create_explainer("xssab", model).attribute(x_a, x_b, target=target)
    if target == "xcos":  # one grid cell: a single term, the whole cosine 3 / (2 √7) > 0.4
        assert r.extras["support"].tolist() == [[True]]
        assert r.extras["score_support"].item() == pytest.approx(3 / (2 * math.sqrt(7)))
        assert r.extras["score_oppose"].item() == 0.0 and r.extras["negative_a"].max() == 0
        return
    assert r.extras["support"].tolist() == [[True, True, False, True]]
    assert r.extras["score_support"].item() == pytest.approx(4 / (2 * math.sqrt(7)), abs=1e-6)
    assert r.extras["score_oppose"].item() == pytest.approx(-1 / (2 * math.sqrt(7)), abs=1e-6)
    keep = np.array([1.0, 1.0, 0.0, 1.0])
    for face, (u, v) in {"a": (a, b), "b": (b, a)}.items():
        pos = np.abs(_cosine_part_gradient(u, v, keep))
        neg = np.abs(_cosine_part_gradient(u, v, 1 - keep))
        got_pos = r.extras[f"positive_{face}"][0, 0, :4].double().numpy()
        got_neg = r.extras[f"negative_{face}"][0, 0, :4].double().numpy()
        np.testing.assert_allclose(got_pos, pos, atol=1e-6)
        np.testing.assert_allclose(got_neg, neg, atol=1e-6)
        combined = getattr(r, f"map_{face}")
        np.testing.assert_allclose(combined[0, 0, :4].double().numpy(), pos - neg, atol=1e-6)
        # no other pixel reaches the embedding: zero gradient there
        assert combined[0].abs().sum().item() == pytest.approx(np.abs(pos - neg).sum(), abs=1e-5)
    # a higher threshold (1.0: cut at 0.25) leaves only dimension 0 supporting
    high = create_explainer("xssab", pixel_model(selector(4, size), size, 1.0))
    assert high.attribute(x_a, x_b, target).extras["support"].tolist() == \
        [[True, False, False, False]]


def test_xssab_parts_add_up_to_the_score_on_a_random_linear_model():
    torch.manual_seed(0)
    size, d = 6, 8
    matrix = torch.randn(d, 3 * size * size)
    model = pixel_model(matrix, size, threshold=0.3)
    x_a = torch.randn(2, 3, size, size)
    x_b = x_a + torch.randn(2, 3, size, size)
    r = create_explainer("xssab", model).attribute(x_a, x_b, target="model_cosine")
    with torch.no_grad():
        score = pair_score(model, x_a, x_b, "model_cosine")
    torch.testing.assert_close(r.extras["score_support"] + r.extras["score_oppose"], score)
    emb_a, emb_b = x_a.flatten(1) @ matrix.T, x_b.flatten(1) @ matrix.T
    for i in range(2):
        a, b = emb_a[i].double().numpy(), emb_b[i].double().numpy()
        terms = a * b / np.linalg.norm(a) / np.linalg.norm(b)
        keep = (terms > 0.3 / d).astype(np.float64)
        assert r.extras["support"][i].numpy().tolist() == (keep > 0).tolist()
        assert 0 < keep.sum() < d  # both parts present
        # chain rule by hand through the linear embedding: d/dx = M^T d/da, summed |.| over c
        pos = np.abs((matrix.double().numpy().T @ _cosine_part_gradient(a, b, keep))
                     .reshape(3, size, size)).sum(0)
        neg = np.abs((matrix.double().numpy().T @ _cosine_part_gradient(a, b, 1 - keep))
                     .reshape(3, size, size)).sum(0)
        np.testing.assert_allclose(r.extras["positive_a"][i].double().numpy(), pos, rtol=1e-4,
                                   atol=1e-6)
        np.testing.assert_allclose(r.map_a[i].double().numpy(), pos - neg, rtol=1e-4,
                                   atol=1e-6)


def test_split_by_support_cuts_at_threshold_over_d():
    terms = torch.tensor([[0.26, 0.24, 0.5, -0.1]])
    assert split_by_support(terms, 1.0).tolist() == [[True, False, True, False]]


# --------------------------------------------------------------------------- CorrRISE


def test_corrrise_correlation_on_a_known_linear_score():
    # score = sum_p w_p x_p with x = 1 and a zero baseline: score = sum_p w_p m_p. With
    # independent Bernoulli(1/2) pixels, corr(m_p, score) = w_p sd(m) / (sd(m) |w|) = w_p / |w|.
    g = torch.Generator().manual_seed(5)
    w = torch.randn(6, 6, generator=g)

    def score_fn(v):
        return (v[:, 0] * w).sum((1, 2))

    x = torch.ones(1, 1, 6, 6)
    corr = correlation_map(score_fn, x, torch.zeros_like(x), n_masks=6000, cells=6,
                           smooth=False, batch=500, seed=1)
    expected = w / w.norm()
    assert (corr - expected).abs().max() < 4 / math.sqrt(6000)  # ~ 3 sd of the estimate
    # the same seed gives the same masks, hence the same map; another seed another draw
    again = correlation_map(score_fn, x, torch.zeros_like(x), 6000, 6, smooth=False,
                            batch=500, seed=1)
    assert torch.equal(corr, again)
    other = correlation_map(score_fn, x, torch.zeros_like(x), 6000, 6, smooth=False,
                            batch=500, seed=2)
    assert not torch.equal(corr, other)


def test_random_masks_are_in_range_and_smooth_masks_keep_the_rate():
    g = torch.Generator().manual_seed(0)
    m = random_masks(400, (30, 30), cells=5, p_keep=0.3, generator=g)
    assert m.shape == (400, 1, 30, 30) and m.min() >= 0 and m.max() <= 1
    assert m.mean().item() == pytest.approx(0.3, abs=0.02)
    assert ((m > 0) & (m < 1)).any()  # bilinear edges


def test_corrrise_explainer_finds_the_face_region_that_carries_the_score():
    # a pixel-selector embedding: only pixels (0, 0, 0..3) of channel 0 matter; A and B agree
    # on dims 0, 1 and disagree on 2, 3. Showing A's pixel 0 or 1 raises the cosine (similar),
    # showing 2 or 3 lowers it (dissimilar); every other pixel is uncorrelated.
    size = 8
    model = pixel_model(selector(4, size), size, threshold=0.1)
    x_a, x_b = faces_with_embeddings([1.0, 1.0, 1.0, -1.0], [1.0, 1.0, -1.0, 1.0], size)
    r = create_explainer("corrrise", model, n_masks=3000, cells=size, smooth=False, batch=500,
                         baseline="mean").attribute(x_a, x_b, target="model_cosine")
    row = r.map_a[0, 0, :4]
    assert row[0] > 0.2 and row[1] > 0.2 and row[2] < -0.2 and row[3] < -0.2
    rest = r.map_a[0].clone()
    rest[0, :4] = 0
    assert rest.abs().max() < 4 / math.sqrt(3000)
    torch.testing.assert_close(r.extras["similarity_a"] - r.extras["dissimilarity_a"], r.map_a)


# --------------------------------------------------------------------------- FGGB


def test_fggb_weights_each_channel_map_by_its_agreement_by_hand():
    # pixel-selector embedding: channel k's gradient is 1 on pixel (0, 0, k) and 0 elsewhere,
    # so its normalised map is that pixel alone and S there is w_k - thr / N exactly.
    size = 4
    model = pixel_model(selector(4, size), size, threshold=0.4)
    x_a, x_b = faces_with_embeddings([2.0, 1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0], size)
    explainer = create_explainer("fggb", model)
    r = explainer.attribute(x_a, x_b, target="model_cosine")
    w = np.array([2.0, 1.0, -1.0, 1.0]) / (2 * math.sqrt(7))
    expected = np.zeros((size, size))
    expected[0, :4] = w - 0.4 / 4
    for m in (r.map_a, r.map_b):  # both faces: the same pixels carry the same channels
        np.testing.assert_allclose(m[0].double().numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(r.extras["agreement"][0].double().numpy(), w, atol=1e-6)
    torch.testing.assert_close(r.extras["similarity_a"][0, 0, :4],
                               torch.tensor(np.maximum(w - 0.1, 0), dtype=torch.float32))
    torch.testing.assert_close(r.extras["dissimilarity_a"][0, 0, :4],
                               torch.tensor(np.maximum(0.1 - w, 0), dtype=torch.float32))
    assert explainer.pass_count("model_cosine") == 2 * (1 + 4)


def test_fggb_on_a_random_linear_embedding_matches_the_formula():
    torch.manual_seed(1)
    size, d = 5, 6
    matrix = torch.randn(d, 3 * size * size)
    model = pixel_model(matrix, size, threshold=0.3)
    x_a = torch.randn(2, 3, size, size)
    x_b = x_a + torch.randn(2, 3, size, size)
    r = create_explainer("fggb", model, chunk_size=4).attribute(x_a, x_b, "model_cosine")
    # linear embedding: d F^k / dx = M_k, the same for every face
    g = matrix.double().numpy().reshape(d, 3, size, size)
    g = np.abs(g).sum(1)
    g = g / g.reshape(d, -1).max(1)[:, None, None]
    for i in range(2):
        a = (x_a[i].flatten() @ matrix.T).double().numpy()
        b = (x_b[i].flatten() @ matrix.T).double().numpy()
        w = a * b / np.linalg.norm(a) / np.linalg.norm(b)
        expected = np.einsum("k,khw->hw", w - 0.3 / d, g)
        np.testing.assert_allclose(r.map_a[i].double().numpy(), expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(r.map_b[i].double().numpy(), expected, rtol=1e-4, atol=1e-6)


def test_fggb_on_xcos_cells_uses_the_cell_cosine_gradient():
    # one cell: N = 1, F = S (the cosine of A against B's fixed cell), w = S (attention 1):
    # the map is |dS/dx| / max |dS/dx| times (S - thr).
    size = 4
    model = pixel_model(selector(4, size), size, threshold=0.4)
    a, b = [2.0, 1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]
    x_a, x_b = faces_with_embeddings(a, b, size)
    r = create_explainer("fggb", model).attribute(x_a, x_b, target="xcos")
    grad = np.abs(_cosine_part_gradient(a, b, np.ones(4)))
    cos = 3 / (2 * math.sqrt(7))
    np.testing.assert_allclose(r.map_a[0, 0, :4].double().numpy(),
                               grad / grad.max() * (cos - 0.4), atol=1e-6)


# --------------------------------------------------------------------------- multi-scale occlusion


def test_multiscale_occlusion_against_brute_force_on_a_linear_score():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(7, 9, generator=g)

    def score_fn(v):
        return (v[:, 0] * w).sum((1, 2))

    x = torch.rand(1, 1, 7, 9, generator=g) + 0.5
    base = torch.zeros_like(x)
    got = occlusion_deviation_map(score_fn, x, base, [2, 3], stride=2, batch=5)
    # brute force: every patch position (the last one flush with the border), the drop is the
    # patch's sum of w * x; a pixel's value is the mean over its covering patches per scale,
    # then the mean of the two scales
    contrib = (w * x[0, 0]).double().numpy()
    scales = []
    for p in (2, 3):
        rows = sorted(set(list(range(0, 7 - p + 1, 2)) + [7 - p]))
        cols = sorted(set(list(range(0, 9 - p + 1, 2)) + [9 - p]))
        s, n = np.zeros((7, 9)), np.zeros((7, 9))
        for r in rows:
            for c in cols:
                s[r:r + p, c:c + p] += contrib[r:r + p, c:c + p].sum()
                n[r:r + p, c:c + p] += 1
        scales.append(s / n)
    np.testing.assert_allclose(got.double().numpy(), np.mean(scales, axis=0), atol=1e-5)


def test_multiscale_occlusion_explainer_by_hand_with_one_pixel_patches():
    size = 4
    model = pixel_model(selector(4, size), size, threshold=0.4)
    a, b = [2.0, 1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]
    x_a, x_b = faces_with_embeddings(a, b, size)
    explainer = create_explainer("multiscale_occlusion", model, patch_fractions=(1 / size,),
                                 stride_fraction=1 / size, baseline="mean",
                                 reference_scores=([0.5, 0.6, 0.9], [0.0, 0.1, 0.45]))
    r = explainer.attribute(x_a, x_b, target="model_cosine")

    def cos(u, v):
        return float(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))

    expected = np.zeros((size, size))
    for k in range(4):  # hiding pixel k sets a_k to the baseline, 0
        hidden = list(a)
        hidden[k] = 0.0
        expected[0, k] = cos(a, b) - cos(hidden, b)
    np.testing.assert_allclose(r.map_a[0].double().numpy(), expected, atol=1e-6)
    assert expected[0, 0] > 0 and expected[0, 2] < 0  # a similar and a dissimilar pixel
    torch.testing.assert_close(r.extras["similar_a"] - r.extras["dissimilar_a"], r.map_a)
    # cosine 3 / (2 √7) = 0.567 > 0.4, accepted; FNMR(0.567) = 1/3, FMR = 0: confidence 1
    assert r.extras["confidence"].tolist() == [1.0]
    assert explainer.pass_count() == 2 * (16 + 2)


def test_decision_confidence_is_half_where_the_error_rates_cross_and_symmetric():
    gen, imp = [0.6, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.65]
    assert decision_confidence(0.62, 0.5, gen, imp) == 0.5
    assert decision_confidence(0.05, 0.5, gen, imp) == 1.0  # below every score: surely not
    assert decision_confidence(0.25, 0.5, gen, imp) == 1.0  # no genuine below: p = 0
    # FNMR(0.68) = 1/4, FMR(0.68) = 0: p = 1 for an accept, so a reject there has 0
    assert decision_confidence(0.68, 0.7, gen, imp) == 0.0
    with pytest.raises(ValueError, match="genuine and impostor"):
        decision_confidence(0.5, 0.5, [], imp)


# --------------------------------------------------------------------------- real LFW faces


@pytest.fixture(scope="module")
def lfw_genuine_pair(lfw_root):
    """The first genuine pair of fold 0 as normalised dlib chips, with fold 0's held-out
    head (the bundled dlib model)."""
    from xcos_xai.data.align import faces_to_tensor, lfw_aligner
    from xcos_xai.data.lfw import LFW
    from xcos_xai.pretrained import load_pretrained

    lfw = LFW(lfw_root)
    frame = lfw.pairs_frame()
    row = frame[(frame["fold"] == 0) & frame["same"]].iloc[0]
    aligner = lfw_aligner()
    faces = aligner.align_many([lfw.image_root / row["path_a"], lfw.image_root / row["path_b"]],
                               progress=False)
    model = load_pretrained(fold=0)
    x_a, x_b = (model.input_spec.normalize(faces_to_tensor([f])) for f in faces)
    return model, x_a, x_b


REAL_OPTIONS = {"xssab": {}, "fggb": {}, "corrrise": {"n_masks": 300},
                "multiscale_occlusion": {}}


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", list(REAL_OPTIONS))
def test_field_methods_on_a_real_lfw_pair(lfw_genuine_pair, one_thread, name):
    from xcos_xai.explainers.metrics import fixed_face_scorer
    from xcos_xai.explainers.protocols import perturbation_curve

    model, x_a, x_b = lfw_genuine_pair
    explainer = create_explainer(name, model, **REAL_OPTIONS[name])
    start = time.perf_counter()
    r = explainer.attribute(x_a, x_b, target="xcos")
    seconds = time.perf_counter() - start
    with torch.no_grad():
        out = model(x_a, x_b)
    assert out.score.item() > float(model.threshold)  # a genuine pair the model accepts
    torch.testing.assert_close(r.extras["score"], out.score, atol=1e-5, rtol=0)
    assert r.map_a.shape == r.map_b.shape == (1, 150, 150)
    assert r.grid_a.shape == (1, 4, 4)
    assert torch.isfinite(r.map_a).all() and r.map_a.abs().max() > 0
    expected_passes = {"xssab": 6, "fggb": 2 * (1 + 16), "corrrise": 2 * 300 + 2,
                       # 150 px: 19 px patches at a 12 px stride start at 0, 12, .., 120 and
                       # 131 (12 x 12); 38 px ones at 0, .., 108 and 112 (11 x 11)
                       "multiscale_occlusion": 2 * (12 * 12 + 11 * 11 + 2)}[name]
    assert explainer.pass_count("xcos") == expected_passes
    if name == "xssab":  # the split adds up to the score; the support set is cut at t / 16
        torch.testing.assert_close(r.extras["score_support"] + r.extras["score_oppose"],
                                   out.score, atol=1e-5, rtol=0)
        terms = out.contribution.flatten(1)
        assert torch.equal(r.extras["support"], terms > float(model.threshold) / 16)
    if name == "fggb":
        torch.testing.assert_close(r.extras["agreement"], out.contribution.flatten(1))
    if name in ("corrrise", "multiscale_occlusion"):
        # black-box maps measure score changes directly: on this accepted pair, blurring the
        # 20 % most similar units costs more score than blurring the 20 % least similar
        fn = fixed_face_scorer(model, x_b)
        most = perturbation_curve(fn, x_a, r.map_a[0], [0, 0.2], "blur", True)
        least = perturbation_curve(fn, x_a, r.map_a[0], [0, 0.2], "blur", False)
        assert most[1] < least[1] - 0.02
    print(f"{name}: {seconds:.2f} s, {expected_passes} passes")
