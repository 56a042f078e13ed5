"""The faithful xCos maps: each map's defining property, by hand on toy grids and on real faces.

- exact split: complete (sums to the model's cosine), different for A and B, the cell-pair
  matrix's rows and columns sum to the two maps;
- reference maps: zero for the reference face, sums relative to the reference;
- cell deletion: the map and the feature-space deletion metric agree cell by cell;
- amortised occlusion: agrees with measured occlusion better than today's evidence map, and
  (fitted with hybrid faces) finds a region swapped in from another person.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xcos_xai.core import XCosHead, XCosModel
from xcos_xai.core.map_stats import pack_map_stats
from xcos_xai.explainers import create_explainer
from xcos_xai.explainers.metrics import cell_deletion_curve
from xcos_xai.explainers.xcos_maps import (
    AmortisedOcclusion,
    MapStats,
    cell_parts,
    exact_decomposition,
    feature_cell_deletion,
    reference_parts,
)

R = 1 / math.sqrt(2)


class MeanGrid(torch.nn.Module):
    """A toy local grid: the embedding is the mean of the cells (dlib's 4x4-local form)."""

    grid_size = (1, 2)

    def forward_head(self, grid):
        return grid.mean(dim=(2, 3))


def _grid(*cells):
    """``(1, D, 1, n)`` grid from n cell vectors."""
    return torch.tensor(cells, dtype=torch.float32).T.reshape(1, -1, 1, len(cells))


def test_exact_split_by_hand():
    # A's cells (1, 0), (0, 1) -> e_A = (0.5, 0.5); B's cells (1, 0), (1, 0) -> e_B = (1, 0)
    a, b = _grid((1, 0), (0, 1)), _grid((1, 0), (1, 0))
    dec = exact_decomposition(MeanGrid(), a, b)
    assert dec.cosine.item() == pytest.approx(R, abs=1e-6)  # 0.5 / (0.7071 * 1)
    # A: <(0.5, 0), e_B> / 0.7071 = 0.7071 and <(0, 0.5), e_B> = 0
    assert dec.cell_a.flatten().tolist() == pytest.approx([R, 0.0], abs=1e-6)
    # B: <e_A, (0.5, 0)> / 0.7071 = 0.25 / 0.7071 for each cell
    assert dec.cell_b.flatten().tolist() == pytest.approx([0.25 / R * 1, 0.25 / R], abs=1e-6)
    torch.testing.assert_close(dec.pairs[0], torch.tensor([[0.25 / R, 0.25 / R], [0.0, 0.0]]))
    # relative to a reference face whose cells are (1, 0), (0, 1): A IS the reference
    ref = reference_parts(MeanGrid(), a[0])
    dec_ref = exact_decomposition(MeanGrid(), a, b, ref)
    assert dec_ref.cell_a.abs().max().item() == 0.0


def test_cell_parts_refuse_a_head_that_is_not_a_sum():
    class Relu(MeanGrid):
        def forward_head(self, grid):
            return torch.relu(grid.mean(dim=(2, 3)))

    # relu(mean) = (0, 0.5) but the cells alone give relu(0.5, 0) + relu(-0.5, 0.5)
    with pytest.raises(ValueError, match="not a sum over the grid cells.*-local"):
        cell_parts(Relu(), _grid((1, 0), (-1, 1)))


def test_feature_cell_deletion_by_hand():
    # uniform attention, no adapter: score = mean over cells of cos(a_i, b_i)
    model = XCosModel(MeanGrid(), XCosHead(2, None, attention="uniform"))
    a, b = _grid((1, 0), (0, 1)), _grid((1, 0), (1, 0))  # S = (1, 0): score 0.5
    reference = _grid((0, 1), (1, 1))[0]
    drop_a, drop_b = feature_cell_deletion(model, a, b, reference)
    # A's cell 0 -> (0, 1): S = (0, 0), drop 0.5; A's cell 1 -> (1, 1): S = (1, R), drop -R/2
    assert drop_a.flatten().tolist() == pytest.approx([0.5, -R / 2], abs=1e-6)
    # B's cell 0 -> (0, 1): S = (0, 0), drop 0.5; B's cell 1 -> (1, 1): S = (1, R)
    assert drop_b.flatten().tolist() == pytest.approx([0.5, -R / 2], abs=1e-6)
    # the metric removes cells in map order: cell 1 first (map 0.9), then cell 0
    curve = cell_deletion_curve(model, a, b, torch.tensor([[0.1, 0.9]]), reference)
    assert curve.tolist() == pytest.approx([0.5, 0.5 + R / 2, 0.5 * (0 + R)], abs=1e-6)
    assert curve[1].item() == pytest.approx(0.5 - drop_a[0, 0, 1].item(), abs=1e-6)


def test_amortiser_fit_matches_least_squares():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    true = torch.randn(5, 4, generator=g)
    y = x @ true + 0.3 + 0.01 * torch.randn(200, 4, generator=g)
    model = AmortisedOcclusion.fit(x, y, (2, 2), ridge=0.0)
    design = np.c_[x.numpy(), np.ones(200)]
    coef = np.linalg.lstsq(design, y.numpy(), rcond=None)[0]  # independent reference
    np.testing.assert_allclose(model(x).reshape(200, 4).numpy(), design @ coef, atol=1e-4)
    stats = MapStats(torch.zeros(2, 2), torch.zeros(3, 2, 2), torch.ones(4, 3, 2, 2),
                     amortiser=model, fine_shift=torch.ones(4, 3, 2, 2), fine_amortiser=model)
    again = MapStats.from_tensors(stats.tensors("fold1."), "fold1.")
    assert torch.equal(again.amortiser(x), model(x))
    assert torch.equal(again.fine_amortiser(x), model(x))  # a 2x2 block grid from its shift
    assert torch.equal(again.occlusion_shift, stats.occlusion_shift)
    with pytest.raises(ValueError, match="lack 'fold2.cos_ref'.*build_xcos_maps"):
        MapStats.from_tensors(stats.tensors("fold1."), "fold2.")


def test_packed_statistics_share_the_shifts_in_float16():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 5, generator=g)
    amortiser = AmortisedOcclusion.fit(x, torch.randn(50, 4, generator=g), (2, 2))
    shift = torch.randn(4, 3, 2, 2, generator=g)
    one = MapStats(torch.rand(2, 2, generator=g), torch.randn(3, 2, 2, generator=g), shift,
                   amortiser=amortiser, fine_shift=shift, fine_amortiser=amortiser)
    other = MapStats(one.cos_ref, one.local_ref, shift + 1, amortiser=amortiser)
    packed = pack_map_stats({"": one, "fold0.": other})
    assert {v.dtype for v in packed.values()} == {torch.float16}
    assert not any(k.startswith("fold0.") and k.endswith("shift") for k in packed)
    again = MapStats.from_tensors(packed, "fold0.")  # the shift of "" is shared
    assert again.occlusion_shift.dtype == torch.float32
    torch.testing.assert_close(again.occlusion_shift, shift, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(again.amortiser(x), amortiser(x), atol=2e-2, rtol=1e-2)


def test_bundled_map_statistics_are_small():
    """The companion file holds what the maps need at run time, packed (< 2 MB)."""
    from safetensors import safe_open

    from xcos_xai.pretrained import HERE

    path = HERE / "dlib_xcos_maps.safetensors"
    assert path.stat().st_size < 1_000_000
    with safe_open(str(path), framework="pt") as fh:
        keys = list(fh.keys())
        assert {fh.get_tensor(k).dtype for k in keys} == {torch.float16}
    assert {"occlusion_shift", "fine_shift"} <= set(keys)
    assert not [k for k in keys if k.startswith("fold") and k.endswith("shift")]
    assert all(f"fold{k}.fine_amortiser.weight" in keys for k in range(10))


def test_reference_maps_without_statistics_are_one_clear_error():
    model = XCosModel(MeanGrid(), XCosHead(2, None, attention="uniform"))
    # the default map needs the bundled statistics: without them, the evidence map
    assert create_explainer("xcos", model).map == "evidence"
    with pytest.raises(ValueError, match="needs per-cell reference statistics"):
        create_explainer("xcos", model, map="evidence_ref")
    with pytest.raises(ValueError, match="unknown xCos map 'exact2'"):
        create_explainer("xcos", model, map="exact2")


def test_default_map_falls_back_to_the_best_the_statistics_allow():
    """Statistics without the fine amortiser (SFace's 7x7 bundle): the cells' amortised
    occlusion; a variant keeps its own map whatever the statistics hold."""
    from xcos_xai.core.map_stats import MapStats
    from xcos_xai.explainers.xcos import best_available_map, map_available

    stats = MapStats(torch.zeros(2, 2), torch.zeros(2, 2, 2), None)
    assert best_available_map(stats) == "evidence"  # no amortiser fitted
    assert map_available("cell_deletion", stats) and not map_available("shift", stats)
    stats.amortiser = object()
    assert best_available_map(stats) == "amortised"
    model = XCosModel(MeanGrid(), XCosHead(2, None, attention="uniform"))
    assert create_explainer("xcos", model, stats=stats).map == "amortised"
    assert create_explainer("xcos_cell_deletion", model, stats=stats).map == "cell_deletion"
    stats.fine_amortiser = object()
    assert create_explainer("xcos", model, stats=stats).map == "amortised_fine"


# --------------------------------------------------------------------------- real faces


def _fold0_pairs(lfw_root, bundle: str):
    """Fold 0's held-out model of ``bundle`` and six of its View-2 pairs (three genuine,
    three impostor), aligned by the model's own aligner."""
    from xcos_xai.data.align import faces_to_tensor
    from xcos_xai.data.aligners import lfw_aligner_for
    from xcos_xai.data.lfw import LFW
    from xcos_xai.pretrained import load_pretrained

    torch.set_num_threads(1)
    lfw = LFW(lfw_root)
    frame = lfw.pairs_frame()
    fold0 = frame[frame["fold"] == 0]
    rows = list(fold0[fold0["same"]].index[:3]) + list(fold0[~fold0["same"]].index[:3])
    model = load_pretrained(bundle, fold=0)
    aligner = lfw_aligner_for(model.backbone)
    if model.map_stats is None:
        pytest.fail("the bundled map statistics are missing: run training/build_xcos_maps.py")

    def load(paths):
        faces = aligner.align_many([lfw.image_root / p for p in paths], progress=False)
        return model.input_spec.normalize(faces_to_tensor(faces))

    return (model, load(frame.loc[rows, "path_a"].tolist()),
            load(frame.loc[rows, "path_b"].tolist()), frame.loc[rows, "same"].to_numpy())


@pytest.fixture(scope="module")
def real_pairs(lfw_root):
    """dlib's fold-0 model and six fold-0 pairs."""
    return _fold0_pairs(lfw_root, "dlib-xcos")


@pytest.fixture(scope="module", params=["dlib-xcos", "sface-xcos"])
def both_models_pairs(request, lfw_root):
    """The same for each bundled model (the maps' defining properties hold on both)."""
    if request.param == "dlib-xcos":
        return request.getfixturevalue("real_pairs")
    return _fold0_pairs(lfw_root, request.param)


@pytest.mark.data
def test_exact_split_is_complete_on_real_faces(both_models_pairs):
    model, x_a, x_b, _ = both_models_pairs
    r = create_explainer("xcos", model, map="exact").attribute(x_a, x_b)
    with torch.no_grad():  # independent reference: the embedding by the full forward
        cosine = F.cosine_similarity(model.backbone(x_a), model.backbone(x_b))
    torch.testing.assert_close(r.grid_a.sum((1, 2)), cosine, atol=1e-5, rtol=0)
    torch.testing.assert_close(r.grid_b.sum((1, 2)), cosine, atol=1e-5, rtol=0)
    assert not torch.allclose(r.grid_a, r.grid_b, atol=1e-3)  # A's and B's regions differ
    pairs = r.extras["cell_pairs"]  # (B, n, n): rows are A's cells, columns B's
    n = r.grid_a[0].numel()  # dlib 16, SFace 49
    assert pairs.shape == (6, n, n)
    torch.testing.assert_close(pairs.sum(2), r.grid_a.flatten(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(pairs.sum(1), r.grid_b.flatten(1), atol=1e-5, rtol=0)
    assert r.map_a.shape == (6, *x_a.shape[-2:])
    # the cell-pair view of the first pair: its title's sum is that pair's cosine
    from xcos_xai.viz.cell_pairs import cell_pair_figure

    fig = cell_pair_figure(pairs[0].numpy(), tuple(r.grid_a.shape[1:]))
    assert f"sum: {cosine[0].item():.4f}" in fig.layout.title.text


@pytest.mark.data
def test_reference_maps_on_real_faces(both_models_pairs):
    model, x_a, x_b, _ = both_models_pairs
    stats = model.map_stats
    with torch.no_grad():
        grid_a, grid_b = model.grids(x_a, x_b)
        out = model.head(grid_a, grid_b)
        e_a, e_b = model.backbone(x_a), model.backbone(x_b)
        r_emb = model.backbone.forward_head(stats.local_ref[None])[0]  # the mean face
    ev = create_explainer("xcos", model, map="evidence_ref").attribute(x_a, x_b)
    torch.testing.assert_close(ev.grid_a, (out.cos_map - stats.cos_ref) * out.attention)
    # the reference is a typical impostor S: below the genuine pairs' S on most cells
    assert (out.cos_map[:3] > stats.cos_ref).float().mean() > 0.7
    ex = create_explainer("xcos", model, map="exact_ref").attribute(x_a, x_b)
    norm = e_a.norm(dim=1) * e_b.norm(dim=1)
    expected = (F.cosine_similarity(e_a, e_b) - (r_emb * e_b).sum(1) / norm)
    torch.testing.assert_close(ex.grid_a.sum((1, 2)), expected, atol=1e-5, rtol=0)
    # the mean face itself carries no evidence relative to itself, against any face B
    mean_face = stats.local_ref[None].expand_as(grid_a)
    ref = reference_parts(model.backbone, stats.local_ref)
    dec = exact_decomposition(model.backbone, mean_face, grid_b, ref)
    assert dec.cell_a.abs().max().item() < 1e-6


@pytest.mark.data
def test_cell_deletion_map_agrees_with_the_metric(both_models_pairs):
    model, x_a, x_b, same = both_models_pairs
    r = create_explainer("xcos", model, map="cell_deletion").attribute(x_a, x_b)
    with torch.no_grad():
        grid_a, grid_b = model.grids(x_a, x_b)
    for i in range(len(same)):
        curve = cell_deletion_curve(model, grid_a[i:i + 1], grid_b[i:i + 1], r.grid_a[i],
                                    model.map_stats.local_ref, descending=bool(same[i]))
        top = r.grid_a[i].max() if same[i] else r.grid_a[i].min()
        # the metric's first step removes the map's top cell: the score drops by its value
        assert curve[0] - curve[1] == pytest.approx(top.item(), abs=1e-5)
        assert curve[0].item() == pytest.approx(r.extras["score"][i].item(), abs=1e-5)


def _spearman(a, b):
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


@pytest.mark.data
def test_amortised_occlusion_tracks_measured_occlusion(real_pairs):
    model, x_a, x_b, _ = real_pairs
    occ = create_explainer("occlusion", model).attribute(x_a, x_b)
    amo = create_explainer("xcos", model, map="amortised").attribute(x_a, x_b)
    ev = create_explainer("xcos", model, map="evidence").attribute(x_a, x_b)
    both = lambda r: torch.cat([r.grid_a.flatten(1), r.grid_b.flatten(1)])  # noqa: E731
    rho_amo = np.mean([_spearman(p, t) for p, t in zip(both(amo), both(occ))])
    rho_ev = np.mean([_spearman(p, t) for p, t in zip(both(ev), both(occ))])
    # held out (fold 0's model never saw these pairs): Spearman 0.56 over the 2000 faces of
    # held-out folds (training/results/faithful_maps/held_out_agreement.md), against -0.12
    # for the evidence map
    assert rho_amo > 0.25 and rho_amo > rho_ev + 0.2
    # the predicted drops are in score units, like occlusion's
    assert 0.2 < amo.grid_a.abs().mean() / occ.grid_a.abs().mean() < 5


def test_closed_form_gradient_matches_autograd():
    from xcos_xai.core.cosine import patch_cosine_map
    from xcos_xai.explainers.xcos_maps import linearised_drops, score_gradients

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 5, 3, 3, generator=g), torch.randn(2, 5, 3, 3, generator=g)
    w = torch.softmax(torch.randn(2, 9, generator=g), 1).view(2, 3, 3)
    ga, gb = score_gradients(a, b, w)
    a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
    (patch_cosine_map(a_, b_) * w).sum().backward()  # independent reference: autograd
    torch.testing.assert_close(ga, a_.grad)
    torch.testing.assert_close(gb, b_.grad)
    # a small shift: the first-order drop matches the real change of sum(S * W)
    shift = 1e-3 * torch.randn(9, 5, 3, 3, generator=g)
    ref = torch.zeros(5, 3, 3)
    _, (drop_a, _) = linearised_drops(a, b, w, ref, shift)
    moved = a[:, None] + shift[None]  # (2, 9, 5, 3, 3)
    real = ((patch_cosine_map(a, b) * w).sum((1, 2))[:, None]
            - (patch_cosine_map(moved.flatten(0, 1), b.repeat_interleave(9, 0))
               * w.repeat_interleave(9, 0)).sum((1, 2)).view(2, 9))
    torch.testing.assert_close(drop_a.flatten(1), real, atol=1e-5, rtol=1e-2)


@pytest.mark.data
def test_fine_amortised_map_is_finer_than_the_grid(real_pairs):
    model, x_a, x_b, _ = real_pairs
    if model.map_stats.fine_amortiser is None:
        pytest.fail("the bundled map statistics lack the fine amortiser: rebuild them")
    assert create_explainer("xcos", model).map == "amortised_fine"  # the default
    r = create_explainer("xcos", model, map="amortised_fine").attribute(x_a, x_b)
    fine = r.extras["fine_a"]
    assert fine.shape == (6, 8, 8)
    # the grid is the cell mean of the pixel map; a cell holds 2x2 blocks that differ
    torch.testing.assert_close(r.grid_a, F.avg_pool2d(fine[:, None], 2)[:, 0], atol=1e-5,
                               rtol=0)
    assert (fine.view(6, 4, 2, 4, 2).std(dim=(2, 4)) > 0).float().mean() > 0.9


@pytest.mark.data
@pytest.mark.parametrize("bundle, least", [("sface-xcos", 15), ("dlib-xcos", 9)])
def test_default_map_points_at_a_swapped_region(lfw_root, bundle, least):
    """The localisation game on held-out faces (fold 0's maps were fitted without fold 0): face
    B of 8 genuine pairs with its eyes, nose or mouth from another person; the default map's
    most opposing unit of B lies in the swapped region more often than the evidence map's
    (measured when written: SFace 17 of 24 against 9, dlib 11 against 7)."""
    from xcos_xai.data.align import faces_to_tensor
    from xcos_xai.data.aligners import lfw_aligner_for
    from xcos_xai.data.lfw import LFW
    from xcos_xai.explainers.metrics import facial_region_mask, make_hybrid, pointing_game
    from xcos_xai.pretrained import load_pretrained

    torch.set_num_threads(1)
    lfw = LFW(lfw_root)
    frame = lfw.pairs_frame()
    fold0 = frame[frame["fold"] == 0]
    genuine, impostor = fold0[fold0["same"]].iloc[:8], fold0[~fold0["same"]].iloc[:8]
    model = load_pretrained(bundle, fold=0)
    aligner = lfw_aligner_for(model.backbone)

    def load(paths):
        faces = aligner.align_many([lfw.image_root / p for p in paths], progress=False)
        return model.input_spec.normalize(faces_to_tensor(faces))

    x_a, x_b = load(genuine["path_a"].tolist()), load(genuine["path_b"].tolist())
    donor = load(impostor["path_b"].tolist())  # other people (fold 0's impostor faces)
    assert not set(genuine["name_a"]) & set(impostor["name_b"])
    hits = {}
    for name in ("default", "evidence"):
        explainer = create_explainer("xcos", model, **({} if name == "default" else {"map": name}))
        hits[name] = 0
        for region in ("eyes", "nose", "mouth"):
            mask = facial_region_mask(region, tuple(x_b.shape[-2:]))
            r = explainer.attribute(x_a, make_hybrid(x_b, donor, mask))
            hits[name] += sum(bool(pointing_game(m, mask)) for m in r.map_b)
    assert hits["default"] >= least, hits
    assert hits["default"] > hits["evidence"], hits


class PoolCells(torch.nn.Module):
    """A toy backbone whose grid is each 2 x 2 cell's mean colour (so every cell sees only
    its own pixels)."""

    grid_size = (2, 2)

    def forward_features(self, x):
        return F.adaptive_avg_pool2d(x, self.grid_size)


def _build_maps_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "training" / "build_xcos_maps.py"
    spec = importlib.util.spec_from_file_location("build_xcos_maps", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("restore", [False, True])
def test_occlusion_and_insertion_grids_by_hand(restore):
    """training/build_xcos_maps.py: cell j's variant differs from the start grid in cell j
    only, where it takes the other image's value (blurred for occlusion, the face for the
    insertion data), as the deletion and insertion curves' first steps do."""
    from xcos_xai.explainers.base import replacement_baseline

    build = _build_maps_module()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    face = F.adaptive_avg_pool2d(x, (2, 2))[0]
    blurred = F.adaptive_avg_pool2d(replacement_baseline(x, "blur"), (2, 2))[0]
    assert (face - blurred).abs().max() > 0.05  # the two starts differ, so the test can fail
    whole, part = (blurred, face) if restore else (face, blurred)
    grids, variants = build.grids_with_occlusions(PoolCells(), [x], 1, restore=restore)
    assert grids.shape == (1, 3, 2, 2) and variants.shape == (1, 4, 3, 2, 2)
    assert torch.allclose(grids[0].float(), whole, atol=2e-3)
    for j in range(4):
        want = whole.clone().flatten(1)
        want[:, j] = part.flatten(1)[:, j]
        assert torch.allclose(variants[0, j].float().flatten(1), want, atol=2e-3), j


def test_cell_pair_view_shows_the_exact_split_matrix():
    """The cell-pair view: the heatmap holds the matrix as given (rows A, columns B), its
    title the sum (the cosine), and the top pairs are the largest entries, by hand."""
    from xcos_xai.viz.cell_pairs import cell_pair_figure, top_cell_pairs

    m = np.array([[0.1, 0.0, 0.0, 0.0], [0.0, 0.0, 0.3, 0.0],
                  [0.0, -0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.05]])
    assert top_cell_pairs(m, (2, 2), k=3) == [("0,1", "1,0", 0.3), ("0,0", "0,0", 0.1),
                                              ("1,1", "1,1", 0.05)]
    fig = cell_pair_figure(m, (2, 2))
    heat = fig.data[0]
    np.testing.assert_array_equal(np.asarray(heat.z), m)
    assert list(heat.y) == ["0,0", "0,1", "1,0", "1,1"] and heat.zmin == -0.3 == -heat.zmax
    assert "sum: 0.2500" in fig.layout.title.text
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        top_cell_pairs(m[:3], (2, 2))
