"""Feature cache (hits, staleness, atomic files) and attention statistics."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _processes import run_in_two_processes
from safetensors import safe_open
from safetensors.torch import load, load_file
from torch import nn

from xcos_xai.evaluation.attention_stats import (
    effective_cells,
    static_cells,
    summarize_attention,
)
from xcos_xai.evaluation.features import atomic_save_safetensors, compute_features
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


def test_a_copied_or_touched_data_set_keeps_its_features(images, tmp_path):
    """The key follows the images' bytes: the same photos copied elsewhere (new paths, new
    modification times, as a re-extracted LFW has) are served from the cache, under the
    same keys (the names the caller gives)."""
    import os
    import shutil

    aligner = _CountingAligner()
    cache = tmp_path / "cache"
    keys = [p.name for p in images]
    a = compute_features(_TinyBackbone(0), images, aligner, keys=keys, cache=cache,
                         progress=False)
    copy = tmp_path / "copy"
    copy.mkdir()
    moved = [Path(shutil.copy(p, copy / p.name)) for p in images]
    os.utime(moved[0], ns=(1, 1))  # an older time stamp
    b = compute_features(_TinyBackbone(0), moved, aligner, keys=keys, cache=cache,
                         progress=False)
    assert aligner.calls == 5  # nothing recomputed
    torch.testing.assert_close(a.embeddings, b.embeddings)
    assert len(list(cache.glob("*.safetensors"))) == 1


class _BarrierAligner(_CountingAligner):
    """Waits for the other process before aligning: both have missed the cache by then, so
    both compute and both write the same entry."""

    def __init__(self, barrier):
        super().__init__()
        self.barrier = barrier

    def align_many(self, paths, workers=1, progress=False):
        self.barrier.wait(timeout=60)
        return super().align_many(paths, workers, progress)


def _fill_features(cache, paths, barrier, queue):
    torch.set_num_threads(1)  # a forked child: no OpenMP pool inherited half-alive
    aligner = _BarrierAligner(barrier)
    fs = compute_features(_TinyBackbone(0).eval(), paths, aligner, cache=cache,
                          progress=False, batch_size=2)
    queue.put((os.getpid(), aligner.calls, fs.embeddings.numpy().tobytes(),
               fs.grids["grid"].numpy().tobytes(), str(fs.meta["cache"])))


def test_two_processes_filling_the_feature_cache_leave_one_valid_entry(images, tmp_path):
    cache = tmp_path / "cache"
    results, pids = run_in_two_processes(_fill_features, cache, images)
    assert {r[0] for r in results} == pids
    assert [r[1] for r in results] == [5, 5]  # both missed the cache and wrote the entry
    direct = compute_features(_TinyBackbone(0).eval(), images, _CountingAligner(),
                              cache=False, progress=False)
    for _, _, emb, grid, _ in results:
        assert emb == direct.embeddings.numpy().tobytes()
        assert grid == direct.grids["grid"].numpy().tobytes()
    (entry,) = cache.glob("*.safetensors")
    assert not list(cache.glob("*.tmp")) and {r[4] for r in results} == {str(entry)}
    stored = load_file(str(entry))
    torch.testing.assert_close(stored["embedding"], direct.embeddings, rtol=0, atol=0)
    with safe_open(str(entry), "pt") as fh:
        assert json.loads(fh.metadata()["keys"]) == [str(p) for p in images]
    aligner = _CountingAligner()
    again = compute_features(_TinyBackbone(0).eval(), images, aligner, cache=cache,
                             progress=False)
    assert aligner.calls == 0  # a cache hit on the entry the two processes left
    torch.testing.assert_close(again.embeddings, direct.embeddings, rtol=0, atol=0)


def _write_many(path, fill, n, barrier):
    barrier.wait(timeout=60)
    for i in range(n):
        atomic_save_safetensors({"a": torch.full((20_000,), fill), "b": torch.full((3, 7), fill)},
                                path, metadata={"writer": str(fill), "i": str(i)})


def _snapshot(path):
    """One read of the file (one open: one version of it): its metadata and tensors. Not
    ``safe_open``, which re-opens the path for tensor data and could pair one version's
    header with the next version's data."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n])["__metadata__"], load(data)  # load: torn data raises


def test_two_cache_writers_of_one_entry_never_leave_a_torn_or_mixed_file(tmp_path):
    """The level where mixing would show: compute_features writes identical entries, so
    here two writers put *different* content under one name while this process reads."""
    path = tmp_path / "cache" / "entry.safetensors"
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_write_many, args=(path, fill, 150, barrier))
             for fill in (1.0, 2.0)]
    for p in procs:
        p.start()
    reads, seen = 0, set()
    while any(p.is_alive() for p in procs) or reads == 0:
        if not path.exists():
            continue
        meta, tensors = _snapshot(path)
        fill = float(meta["writer"])
        assert tensors["a"].shape == (20_000,) and tensors["b"].shape == (3, 7)
        assert bool((tensors["a"] == fill).all()) and bool((tensors["b"] == fill).all()), \
            f"mixed entry: metadata of writer {fill}, other tensors"
        reads += 1
        seen.add(meta["writer"])
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert reads >= 10 and seen == {"1.0", "2.0"}
    assert [q.name for q in path.parent.iterdir()] == ["entry.safetensors"]  # no .tmp left


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


@pytest.mark.data
def test_explicit_cpu_device_and_small_batches_give_the_default_numbers(lfw_root, tmp_path,
                                                                       one_thread):
    """On real LFW faces: the features with ``device="cpu"`` and batches of 2 images, and the
    bundled fold head's pair scores in batches of 2 pairs, equal those of the defaults; the
    backbone sees its input on the asked device; the cache entry (CPU tensors) is the same
    whatever the device and batch size, so GPU and CPU runs share it."""
    from xcos_xai.apps.lfw_benchmark import score_pairs
    from xcos_xai.data.aligners import lfw_aligner_for
    from xcos_xai.models import create_backbone
    from xcos_xai.pretrained import bundle_metadata, load_head

    root = lfw_root / "lfw-deepfunneled"
    paths = ([root / "Aaron_Peirsol" / f"Aaron_Peirsol_000{i}.jpg" for i in (1, 2, 3)]
             + [root / "Abel_Pacheco" / f"Abel_Pacheco_000{i}.jpg" for i in (1, 2)])
    backbone = create_backbone("dlib_resnet_v1", pretrained=True).eval()
    aligner = lfw_aligner_for(backbone)
    seen = []
    hook = backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].device))
    default = compute_features(backbone, paths, aligner, cache=False, progress=False)
    small = compute_features(backbone, paths, aligner, cache=False, progress=False,
                             device="cpu", batch_size=2)
    hook.remove()
    assert set(seen) <= {torch.device("cpu")}
    torch.testing.assert_close(small.embeddings, default.embeddings, rtol=0, atol=1e-6)
    for name, grid in default.grids.items():
        assert grid.dtype == torch.float16  # the cache format: float32 computed, stored half
        # float32 differences below 1e-6 may round a few values to the next float16
        torch.testing.assert_close(small.grids[name].float(), grid.float(), rtol=1e-3,
                                   atol=1e-5)

    meta = bundle_metadata("dlib-xcos")
    head, _, _ = load_head("dlib-xcos", fold=0)
    grids = default.grids[meta["config"]["grid"]]
    rows_a, rows_b = np.array([0, 0, 1, 3, 4]), np.array([1, 2, 2, 4, 0])
    expected = score_pairs(head, grids, rows_a, rows_b)
    got = score_pairs(head, grids, rows_a, rows_b, batch=2, device="cpu")
    for e, g in zip(expected, got):
        assert isinstance(g, np.ndarray) and g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-6)
    assert np.isfinite(expected[0]).all()

    cache = tmp_path / "cache"
    first = compute_features(backbone, paths[:2], aligner, cache=cache, progress=False,
                             device="cpu", batch_size=1)
    again = compute_features(backbone, paths[:2], aligner, cache=cache, progress=False,
                             device="auto")
    assert first.meta["cache"] == again.meta["cache"]
    assert len(list(cache.glob("*.safetensors"))) == 1
    stored = load_file(str(first.meta["cache"]))
    assert {t.device.type for t in stored.values()} == {"cpu"}
    torch.testing.assert_close(again.embeddings, default.embeddings[:2], rtol=0, atol=1e-6)
