"""explain_pair on real photos, with its views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xcos_xai import explain_pair
from xcos_xai.core import XCosHead, XCosModel
from xcos_xai.data.align import FaceAligner
from xcos_xai.models import create_backbone


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    backbone = create_backbone("dlib_resnet_v1", pretrained=True).requires_grad_(False)
    return XCosModel(backbone, XCosHead(256, 32), threshold=0.5, model_threshold=0.9).eval()


@pytest.fixture(scope="module")
def photos(lfw_root):
    root = lfw_root / "lfw-deepfunneled"
    return (root / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg",
            root / "Aaron_Peirsol" / "Aaron_Peirsol_0002.jpg")


def test_explanation_fields_are_consistent(model, photos):
    e = explain_pair(*photos, model=model)
    for name in ("score", "threshold", "same", "model_cosine", "cos_map", "attention",
                 "contribution"):
        assert hasattr(e, name)
    assert e.cos_map.shape == e.attention.shape == e.contribution.shape == (4, 4)
    assert e.contribution.sum() == pytest.approx(e.score, abs=1e-5)
    assert e.attention.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(e.contribution, e.cos_map * e.attention, atol=1e-6)
    assert e.same == (e.score > e.threshold) and e.threshold == 0.5
    # the model cosine is dlib's descriptor cosine of the two aligned chips
    aligner = FaceAligner()
    chips = np.stack([aligner(p).chip for p in photos])
    np.testing.assert_array_equal(chips[0], e.face_a)
    x = model.input_spec.normalize(torch.from_numpy(chips).permute(0, 3, 1, 2))
    with torch.no_grad():
        emb = model.backbone(x)
    expected = torch.nn.functional.cosine_similarity(emb[:1], emb[1:]).item()
    assert e.model_cosine == pytest.approx(expected, abs=1e-5)
    assert e.model_cosine > 0.9  # the same person, by dlib's own model


def test_views(model, photos, tmp_path):
    e = explain_pair(*photos, model=model)
    fig = e.figure()
    kinds = [t.type for t in fig.data]
    assert kinds.count("image") == 2 and kinds.count("heatmap") == 3
    heat = [t for t in fig.data if t.type == "heatmap"][0]
    assert (heat.zmin + heat.zmax) / 2 == pytest.approx(e.threshold)  # centred at threshold
    html = e.save_html(tmp_path / "e.html").read_text()
    assert "plotly" in html and "xCos score" in html and len(html) > 1_000_000  # js inlined
    png = e.save_png(tmp_path / "e.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert "<table>" in e._repr_html_()
    d = e.to_dict()
    assert d["same"] == e.same and len(d["cos_map"]) == 4


def test_repr_html_renders_offline(model, photos, monkeypatch):
    """A notebook's display needs no network: plotly.js inlined in the first explanation a
    kernel shows, reused (not inlined again) by the later ones; never the CDN."""
    from xcos_xai.explain import pair

    monkeypatch.setattr(pair, "_PLOTLYJS_SHOWN", [False])
    e = explain_pair(*photos, model=model)
    first, second = e._repr_html_(), e._repr_html_()
    assert 'src="http' not in first + second  # nothing fetched (no CDN, no require.js)
    assert len(first) > 1_000_000 and len(second) < 500_000  # plotly.js once
    assert "<table>" in second and "Plotly.newPlot" in second


def _script_sources(page: str) -> list[str]:
    import re

    return re.findall(r"<script[^>]*\bsrc=[\"']?([^\"' >]+)", page)


def test_save_html_is_offline_and_atomic(model, photos, tmp_path, monkeypatch):
    """The saved page fetches nothing (plotly.js inlined, no CDN script); a write that fails
    midway leaves the previous file as it was, and no partial or temporary file."""
    import pathlib

    e = explain_pair(*photos, model=model)
    target = e.save_html(tmp_path / "e.html")
    page = target.read_text(encoding="utf-8")
    assert _script_sources(page) == [] and "Plotly.newPlot" in page
    assert 'src="https://cdn.plot.ly' not in page and "require.js" not in page

    def torn_write(self, data, *args, **kwargs):
        with open(self, "w", encoding="utf-8") as fh:
            fh.write(data[:1000])  # half a page, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", torn_write)
    with pytest.raises(OSError, match="No space"):
        e.save_html(target)
    with pytest.raises(OSError, match="No space"):
        e.save_html(tmp_path / "new.html")
    monkeypatch.undo()
    assert target.read_text(encoding="utf-8") == page  # unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.html"]  # no new.html, no *.tmp


def test_assume_aligned_and_no_face(model):
    flat = np.full((150, 150, 3), 120, np.uint8)
    with pytest.raises(ValueError, match="assume_aligned"):
        explain_pair(flat, flat, model=model)
    e = explain_pair(flat, flat, model=model, assume_aligned=True)
    assert e.model_cosine == pytest.approx(1.0, abs=1e-5)


def test_every_method_gives_one_explanation_type(model, photos, tmp_path):
    """explain_pair(method=...) = alignment + the explainer registry: the same xCos numbers
    for every method, the method's own maps (checked against the explainer run directly)."""
    from xcos_xai.explainers import create_explainer

    xcos = explain_pair(*photos, model=model)
    grad = explain_pair(*photos, model=model, method="gradcam")
    assert (xcos.method, grad.method, grad.label) == ("xcos", "gradcam", "Grad-CAM")
    for name in ("score", "model_cosine", "threshold", "same"):
        assert getattr(grad, name) == pytest.approx(getattr(xcos, name), abs=1e-6), name
    np.testing.assert_allclose(grad.cos_map, xcos.cos_map, atol=1e-6)
    # xCos's maps: the evidence (S - t) * W of each cell, spread over its pixels
    assert xcos.map_a.shape == xcos.face_a.shape[:2] == (150, 150)
    np.testing.assert_allclose(xcos.evidence().sum(), xcos.score - xcos.threshold, atol=1e-5)
    np.testing.assert_allclose(xcos.map_a[0, 0], xcos.evidence()[0, 0], atol=1e-6)
    np.testing.assert_allclose(xcos.map_a[-1, -1], xcos.evidence()[-1, -1], atol=1e-6)
    # Grad-CAM's maps are the explainer's on the same normalised chips
    chips = torch.from_numpy(np.stack([grad.face_a, grad.face_b])).permute(0, 3, 1, 2)
    x = model.input_spec.normalize(chips)
    direct = create_explainer("gradcam", model).attribute(x[:1], x[1:], target="xcos")
    np.testing.assert_allclose(grad.map_a, direct.map_a[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(grad.map_b, direct.map_b[0].numpy(), atol=1e-6)
    # the views work for every method
    fig = grad.figure()
    assert [t.name for t in fig.data if t.type == "heatmap"] == ["Grad-CAM", "Grad-CAM"]
    assert grad.save_png(tmp_path / "g.png").stat().st_size > 1000
    assert "Grad-CAM" in grad.save_html(tmp_path / "g.html").read_text(encoding="utf-8")
    assert grad.to_dict()["method"] == "gradcam" and "Grad-CAM" in grad._repr_html_()
    with pytest.raises(ValueError, match="unknown explainer 'nope'"):
        explain_pair(*photos, model=model, method="nope")
