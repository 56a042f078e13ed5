"""Feature cache (hits, staleness, atomic files) and attention statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xcos_xai.evaluation.attention_stats import (
    effective_cells,
    static_cells,
    summarize_attention,
)
from xcos_xai.evaluation.features import compute_features
from xcos_xai.models.registry import InputSpec


class _Face:
    def __init__(self, chip):
        self.chip = chip


class _CountingAligner:
    """Reads a tiny PNG as the 'chip' and counts how often it is asked to."""

    def __init__(self):
        self.calls = 0

    def config(self):
        return {"kind": "counting"}

    def align_many(self, paths, workers=1, progress=False):
        from xcos_xai.data.images import load_image

        self.calls += len(paths)
        return [_Face(load_image(p)) for p in paths]


class _TinyBackbone(nn.Module):
    input_spec = InputSpec((32, 32), "RGB", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0))

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 8, stride=8)

    def forward_features(self, x):
        return self.conv(x)

    def forward_head(self, grid):
        return grid.mean((2, 3))


@pytest.fixture
def images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_features_are_computed_once_and_match_a_direct_forward(images, tmp_path):
    aligner, backbone = _CountingAligner(), _TinyBackbone().eval()
    cache = tmp_path / "cache"
    first = compute_features(backbone, images, aligner, cache=cache, progress=False,
                             batch_size=2)
    assert aligner.calls == 5
    second = compute_features(backbone, images, aligner, cache=cache, progress=False)
    assert aligner.calls == 5  # served from the cache
    torch.testing.assert_close(first.embeddings, second.embeddings)
    from xcos_xai.data.images import load_image

    x = backbone.input_spec.normalize(
        torch.from_numpy(np.stack([load_image(p) for p in images])).permute(0, 3, 1, 2))
    with torch.no_grad():
        expected = backbone.forward_head(backbone.forward_features(x))
    torch.testing.assert_close(first.embeddings, expected)
    assert first.grids["grid"].dtype == torch.float16
    assert len(list(cache.glob("*.safetensors"))) == 1 and not list(cache.glob("*.tmp"))


def test_other_model_or_changed_file_never_reuses_stale_entries(images, tmp_path):
    aligner = _CountingAligner()
    cache = tmp_path / "cache"
    a = compute_features(_TinyBackbone(0), images, aligner, cache=cache, progress=False)
    b = compute_features(_TinyBackbone(1), images, aligner, cache=cache, progress=False)
    assert aligner.calls == 10 and not torch.allclose(a.embeddings, b.embeddings)
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images[0])  # the photo changed
    c = compute_features(_TinyBackbone(0), images, aligner, cache=cache, progress=False)
    assert aligner.calls == 15
    assert not torch.allclose(c.embeddings[0], a.embeddings[0])
    torch.testing.assert_close(c.embeddings[1:], a.embeddings[1:])
    assert len(list(cache.glob("*.safetensors"))) == 3


def test_effective_cells_and_static_cells_by_hand():
    uniform = np.full((2, 4, 4), 1 / 16)
    np.testing.assert_allclose(effective_cells(uniform), [16, 16])
    one_hot = np.zeros((1, 4, 4))
    one_hot[0, 1, 2] = 1
    np.testing.assert_allclose(effective_cells(one_hot), [1])
    half = np.zeros((1, 2, 2))
    half[0, 0] = 0.5
    np.testing.assert_allclose(effective_cells(half), [2])
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, (500, 2, 2))
    s[:, 1, 1] = 0.99  # a cell whose patch cosine never varies
    static = static_cells(s)
    assert static.tolist() == [[False, False], [False, True]]
    w = np.zeros((500, 2, 2))
    w[:, 1, 1] = 0.7
    w[:, 0, 0] = 0.3
    summary = summarize_attention(w, s)
    assert summary.static_cell_share == pytest.approx(0.7)
    assert summary.argmax_mode_share == 1.0 and summary.n_static_cells == 1
