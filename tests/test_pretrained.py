"""The bundled default model loads offline and is the model its card describes."""

from __future__ import annotations

import socket

import pytest
import torch

from xcos_xai import load_pretrained
from xcos_xai.core import UniformAttention, XCosModel
from xcos_xai.pretrained import BUNDLES, bundle_metadata


def test_bundle_is_small_and_described():
    path = BUNDLES["dlib-xcos"]
    assert path.stat().st_size < 1_200_000  # 11 heads of ~93 kB (float32)
    meta = bundle_metadata()
    assert meta["backbone"] == "dlib_resnet_v1"
    assert len(meta["fold_thresholds"]) == 10
    assert meta["training"]["command"].startswith("python training/build_pretrained.py")
    card = (path.parent / "MODEL_CARD.md").read_text()
    assert f"{meta['metrics']['lfw_10fold_xcos'][0]:.2f}" in card


def test_load_pretrained_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_pretrained tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    model = load_pretrained()
    assert isinstance(model, XCosModel) and not model.training
    assert float(model.threshold) == pytest.approx(bundle_metadata()["thresholds"]["xcos"])
    x = torch.randn(2, 3, 150, 150) * 0.3
    with torch.no_grad():
        out = model(x[:1], x[1:])
    torch.testing.assert_close(out.contribution.sum((1, 2)), out.score)


def test_fold_heads_differ_and_uniform_swap():
    default, fold3 = load_pretrained(), load_pretrained(fold=3)
    assert default.backbone.grid == "4x4-local" and default.head.in_channels == 128
    b0 = default.head.attention.cell_bias
    assert not torch.allclose(b0, fold3.head.attention.cell_bias)
    uniform = load_pretrained(attention="uniform")
    assert isinstance(uniform.head.attention, UniformAttention)
    x = torch.rand(2, 3, 150, 150) * 0.5
    with torch.no_grad():
        out, flat = default(x[:1], x[1:]), uniform(x[:1], x[1:])
    # same S (no adapter), W uniform: xCos is then the mean local-descriptor cosine
    torch.testing.assert_close(flat.cos_map, out.cos_map)
    torch.testing.assert_close(flat.score, out.cos_map.mean((1, 2)))
    with pytest.raises(ValueError, match="unknown pretrained"):
        load_pretrained("nope")
