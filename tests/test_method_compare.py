"""``MethodComparer``: its curves against the measures called directly, its caches by
counted explainer calls, its errors beside their controls (the bundled dlib model on the
shipped photos: pair 0 two people, pair 1 a photo against its mirror image)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xcos_xai.data.align import faces_to_tensor
from xcos_xai.evaluation.faithfulness import CompareConfig, measure_pair
from xcos_xai.explainers import create_explainer, replacement_baseline
from xcos_xai.explainers.metrics import deletion_curve, fixed_face_scorer
from xcos_xai.explainers.protocols import perturbation_curve
from xcos_xai.widgets import PROTOCOLS, MethodComparer, photo_pairs
from xcos_xai.widgets import method_compare as mc

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def model():
    from xcos_xai.pretrained import load_pretrained

    return load_pretrained()


@pytest.fixture
def counted(monkeypatch):
    """Every explainer the widget creates counts its ``attribute`` calls per method."""
    calls: dict[str, int] = {}

    def create(name, model, **kwargs):
        explainer = create_explainer(name, model, **kwargs)
        attribute = explainer.attribute

        def counting(*args, **kw):
            calls[name] = calls.get(name, 0) + 1
            return attribute(*args, **kw)

        explainer.attribute = counting
        return explainer

    monkeypatch.setattr(mc, "create_explainer", create)
    return calls


def inputs(comparer):
    """The pair's normalised faces, from the aligned chips the widget shows."""
    p = comparer.current
    x = comparer.model().input_spec.normalize(faces_to_tensor([p.face_a, p.face_b]))
    return x[:1], x[1:]


def test_curves_are_the_compare_measures_called_directly(model, one_thread):
    comparer = MethodComparer(photo_pairs(), model=model, method_a="saliency",
                              method_b="gradcam", start=1)
    p = comparer.current
    assert p.same and p.truth_known  # the mirror pair: genuine, support ranked first
    x_a, x_b = inputs(comparer)
    torch.testing.assert_close(p.x_a, x_a)
    map_a = create_explainer("saliency", model).attribute(x_a, x_b, target="xcos").map_a[0]
    torch.testing.assert_close(comparer.attribution("saliency")[0], map_a.detach())
    # deletion: 0, 10 %, ..., 100 % of the 10x10 units, most supporting first, towards blur
    score_fn = fixed_face_scorer(model, x_b, "xcos", vary="a")
    fractions = np.linspace(0, 1, 11)
    expected = deletion_curve(score_fn, x_a, replacement_baseline(x_a, "blur"), map_a,
                              fractions, unit=10, descending=True, seed=0).numpy()
    c = comparer.curve("saliency", "deletion")
    np.testing.assert_allclose(c.fractions, fractions)
    np.testing.assert_allclose(c.scores, expected, atol=1e-6)
    with torch.no_grad():
        assert c.scores[0] == pytest.approx(float(model(x_a, x_b).score[0]), abs=1e-5)
    trapezoid = (expected[:-1] + expected[1:]).sum() / 2 * 0.1
    assert c.auc == pytest.approx(trapezoid)
    # ROAD MoRF: the protocols module's curve at the run's fractions, noise and seed
    morf = perturbation_curve(score_fn, x_a, map_a, [0.0, 0.1, 0.3, 0.5, 0.7, 0.9], "road",
                              most_relevant_first=True, unit=10, noise_std=0.01, seed=0)
    np.testing.assert_allclose(comparer.curve("saliency", "road_morf").scores, morf.numpy(),
                               atol=1e-6)
    # the decision protocol: the first fraction (of all but 100 %) that rejects the pair
    wrong = expected[:-1] <= p.threshold
    flip = comparer.curve("saliency", "decision").flip
    assert flip == (pytest.approx(fractions[np.argmax(wrong)]) if wrong.any() else None)
    # and the compare run's own record of the pair holds the same curves
    explainer = create_explainer("saliency", model)
    record = measure_pair(model, {"saliency": explainer}, x_a, x_b, True, CompareConfig(),
                          road=True)["methods"]["saliency"]
    np.testing.assert_allclose(record["deletion"], expected, atol=1e-6)
    np.testing.assert_allclose(record["insertion"], comparer.curve("saliency", "insertion")
                               .scores, atol=1e-6)
    np.testing.assert_allclose(record["road_lerf"], comparer.curve("saliency", "road_lerf")
                               .scores, atol=1e-6)


def test_caches_recompute_only_what_changed(model, counted, one_thread):
    comparer = MethodComparer(photo_pairs(), model=model, method_a="saliency",
                              method_b="gradcam")
    assert counted == {"saliency": 1, "gradcam": 1, "random": 1}
    assert not comparer.current.same  # two people: the opposing part ranked first
    for protocol in PROTOCOLS:  # every protocol on the cached maps
        comparer.protocol.value = protocol
        assert comparer.protocol_status.value == ""
    assert counted == {"saliency": 1, "gradcam": 1, "random": 1}
    comparer.method_b.value = "occlusion"
    assert counted == {"saliency": 1, "gradcam": 1, "random": 1, "occlusion": 1}
    comparer.method_b.value = "gradcam"  # back: cached
    assert counted == {"saliency": 1, "gradcam": 1, "random": 1, "occlusion": 1}
    # the figures show what the widget says it computed
    fig = comparer.curve_figure
    for trace, role in zip(fig.data[:3], ("A", "B", "control")):
        np.testing.assert_allclose(trace.y, comparer.curves[role].scores)
        assert f"AUC {comparer.curves[role].auc:.3f}" in trace.name
    assert fig.data[-1].y == (pytest.approx(comparer.current.threshold),) * 2
    assert "Grad-CAM" in comparer.map_figure.layout.annotations[2].text
    assert "accepted" in fig.data[0].name  # the decision protocol, impostor pair
    comparer.pair.value = 1  # a new pair: each shown method once more
    assert counted == {"saliency": 2, "gradcam": 2, "random": 2, "occlusion": 1}


def test_a_bad_name_is_one_clear_error_and_a_failing_method_stays_beside_its_menu(
        model, counted, monkeypatch):
    pairs = photo_pairs()
    with pytest.raises(ValueError, match=r"unknown method b 'gradcm': choose one of xcos, "):
        MethodComparer(pairs, model=model, method_b="gradcm")
    with pytest.raises(ValueError, match=r"unknown protocol 'ROAD'"):
        MethodComparer(pairs, model=model, protocol="ROAD")
    comparer = MethodComparer(pairs, model=model, method_a="saliency", method_b="random")
    before = dict(comparer.curves)
    with pytest.raises(ValueError, match=r"unknown method a 'nope'"):
        comparer.select(method_a="nope", protocol="insertion")
    assert comparer.protocol.value == "deletion" and comparer.curves == before

    def failing(name, model, **kwargs):
        if name == "occlusion":
            raise RuntimeError("occlusion broke")
        return create_explainer(name, model, **kwargs)

    monkeypatch.setattr(mc, "create_explainer", failing)
    comparer.method_b.value = "occlusion"
    assert "occlusion broke" in comparer.status_b.value
    assert comparer.status_a.value == comparer.pair_status.value == ""
    assert comparer.curves == before  # the figures keep what they showed
