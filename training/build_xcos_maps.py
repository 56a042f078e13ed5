"""Build the statistics of the faithful xCos maps (``xcos_xai/pretrained/*_maps.safetensors``).

    python training/build_xcos_maps.py            # both stages
    python training/build_xcos_maps.py --stage occlusion   # only the slow part

Stage ``occlusion`` (slow, cached): for LFW View-2 pairs sampled from every fold (``--per-fold``
pairs each, half genuine; never one of the 300 pairs of ``training/results/compare_lfw300``),
every image's local-descriptor grid, and its grid after each of the 16 cells' pixels is
replaced by the blurred copy of the face (the replacement the explanation metrics use).
With these, the occlusion effect of any cell in any pair under any head is a head call.

The same for ``--fine-cells`` x ``--fine-cells`` blocks of pixels (8 x 8 by default, 64
forwards an image, ``--fine-per-fold`` pairs a fold), for the amortiser of finer maps.

Stage ``fit`` (minutes): for the default head and each fold head k, from the images and pairs
of the folds other than k only (held out by fold):
- the per-cell reference: the mean patch cosine S of each cell over the impostor pairs of
  ``pairs.txt`` and the mean local descriptor of each cell over the images
  (from the LFW feature cache);
- the mean occlusion shift: the mean change of the local grid when one cell's pixels are
  blurred, over the occlusion stage's images of those folds;
- the amortised occlusion model (:class:`xcos_xai.explainers.xcos_maps.AmortisedOcclusion`):
  a ridge regression from one forward's cell statistics to each cell's occlusion effect.
Writes ``<bundle>_maps.safetensors`` beside the bundle (the head weights are untouched),
small (about 0.5 MB): float16 (the maps change by less than 5e-5), and the mean occlusion
shifts (the bulk: 64 x 128 x 4 x 4 numbers per head for the 8x8 blocks) stored once, those of
all LFW faces (a label-free statistic of the frozen backbone, shared by every head). The fold
heads' amortisers are fitted with their own folds' shifts; with the shared shift their maps
move by at most 3.4e-4 (``--stage pack`` rewrites an existing file in this form).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from xcos_xai._env import cache_dir
from xcos_xai._io import atomic_save_safetensors
from xcos_xai.pretrained import bundle_name

OUT = Path(__file__).resolve().parents[1] / "xcos_xai" / "pretrained"


def training_pairs(frame, per_fold: int, seed: int = 0, exclude_n: int = 300):
    """``per_fold`` pairs of every fold (half genuine), none of the compare run's pairs."""
    from xcos_xai.apps.compare import select_pairs

    excluded = set(select_pairs(frame, exclude_n, seed)["pair_id"])
    rng = np.random.default_rng(seed + 13)
    chosen = []
    for fold in range(10):
        for same in (True, False):
            rows = [i for i in np.flatnonzero((frame["fold"] == fold).to_numpy()
                                              & (frame["same"] == same).to_numpy())
                    if i not in excluded]
            chosen += sorted(rng.choice(rows, per_fold // 2, replace=False).tolist())
    return frame.iloc[chosen].assign(pair_id=chosen).reset_index(drop=True)


@torch.no_grad()
def occluded_grids(paths, root, threads: int = 1, cells: int | None = None,
                   bundle: str = "dlib-xcos"):
    """``(N, D, h, w)`` grids and ``(N, c*c, D, h, w)`` grids with one of ``c x c`` blocks of
    the face blurred (default: the model's own ``h x w`` cells), through ``bundle``'s
    backbone on the faces of its aligner."""
    from xcos_xai.pretrained import load_pretrained

    torch.set_num_threads(threads)
    model = load_pretrained(bundle)
    return grids_with_occlusions(model.backbone, _face_inputs(model, [root / p for p in paths]),
                                 len(paths), cells)


@torch.no_grad()
def grids_with_occlusions(backbone, inputs, n: int, cells: int | None = None,
                          restore: bool = False):
    """``(N, D, h, w)`` grids of the normalised faces ``inputs`` (``(1, 3, H, W)`` each) and
    ``(N, c*c, D, h, w)`` grids with one of ``c x c`` blocks blurred (default: the cells).

    With ``restore``, the other way round, as the insertion curve goes: the grids of the
    blurred faces and of the blurred face with one block restored.
    """
    from xcos_xai.explainers.base import replacement_baseline
    from xcos_xai.explainers.occlusion import cell_mask

    grids, occluded = [], []
    start = time.perf_counter()
    for k, x in enumerate(inputs):
        base = replacement_baseline(x, "blur")
        whole, part = (base, x) if restore else (x, base)
        gh, gw = (cells, cells) if cells else backbone.grid_size
        ids = cell_mask(tuple(x.shape[-2:]), (gh, gw))[0]  # (1, H, W)
        masks = torch.stack([(ids == j).float() for j in range(gh * gw)])  # (c*c, 1, H, W)
        g = backbone.forward_features(torch.cat([whole, whole * (1 - masks) + part * masks]))
        grids.append(g[0].half())
        occluded.append(g[1:].half())
        if k % 100 == 0:
            print(f"{k}/{n} images, {time.perf_counter() - start:.0f} s", flush=True)
    return torch.stack(grids), torch.stack(occluded)


def stage_insertion(args, source: Path, hybrids: bool = False) -> Path:
    """The insertion grids (:func:`grids_with_occlusions` with ``restore``) of the images of
    the occlusion cache ``source`` (or, with ``hybrids``, of the hybrid cache ``source``),
    cached beside it."""
    from safetensors import safe_open

    from xcos_xai.data.lfw import LFW
    from xcos_xai.pretrained import load_pretrained

    key = hashlib.sha256(json.dumps(["insertion", source.name, args.cells]).encode())
    path = cache_dir() / "xcos_maps" / f"inserted_{key.hexdigest()[:16]}.safetensors"
    if path.exists():
        print(f"cached: {path}")
        return path
    torch.set_num_threads(args.threads)
    lfw = LFW()
    model = load_pretrained(bundle_name(args.model))
    with safe_open(str(source), framework="pt") as fh:
        meta = fh.metadata()
    if hybrids:
        pairs = training_pairs(lfw.pairs_frame(), args.per_fold, args.seed)
        by_id = {int(r["pair_id"]): i for i, r in pairs.iterrows()}
        items = [(by_id[pid], d, r) for pid, d, r in json.loads(meta["hybrids"])]
        inputs, n = _hybrid_inputs(model, lfw, pairs, items), len(items)
    else:
        paths = json.loads(meta["paths"])
        inputs, n = _face_inputs(model, [lfw.image_root / p for p in paths]), len(paths)
    blurred, inserted = grids_with_occlusions(model.backbone, inputs, n, args.cells,
                                              restore=True)
    atomic_save_safetensors({"blurred": blurred, "inserted": inserted}, path,
                            metadata={"source": source.name})
    print(f"wrote {path}")
    return path


def _face_inputs(model, files):
    """The normalised ``(1, 3, H, W)`` faces of ``files`` by the model's aligner."""
    from xcos_xai.data.align import faces_to_tensor
    from xcos_xai.data.aligners import lfw_aligner_for

    faces = lfw_aligner_for(model.backbone).align_many(files, workers=1, progress=True)
    return (model.input_spec.normalize(faces_to_tensor([face])) for face in faces)


def _hybrid_inputs(model, lfw, pairs, hybrids):
    """The normalised hybrid faces of ``hybrids`` (``[(pair row, donor path, region)]``)."""
    from xcos_xai.data.align import faces_to_tensor
    from xcos_xai.data.aligners import lfw_aligner_for
    from xcos_xai.explainers.metrics import facial_region_mask, make_hybrid

    aligner = lfw_aligner_for(model.backbone)
    paths = sorted({pairs.loc[i, "path_b"] for i, _, _ in hybrids} | {d for _, d, _ in hybrids})
    chips = dict(zip(paths, (f.chip for f in aligner.align_many(
        [lfw.image_root / p for p in paths], workers=1, progress=True))))
    normalise = lambda p: model.input_spec.normalize(faces_to_tensor([chips[p]]))  # noqa: E731
    size = tuple(normalise(paths[0]).shape[-2:])
    return (make_hybrid(normalise(pairs.loc[i, "path_b"]), normalise(d),
                        facial_region_mask(r, size)) for i, d, r in hybrids)


def stage_occlusion(args) -> Path:
    from xcos_xai.data.lfw import LFW

    lfw = LFW()
    pairs = training_pairs(lfw.pairs_frame(), args.per_fold, args.seed)
    paths = sorted(set(pairs["path_a"]) | set(pairs["path_b"]))
    parts = [paths, args.per_fold, args.seed] + ([args.cells] if args.cells else [])
    if args.model != "dlib":  # (the dlib caches keep the keys they were made with)
        parts.append(args.model)
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
    path = cache_dir() / "xcos_maps" / f"occluded_{key}.safetensors"
    if path.exists():
        print(f"cached: {path}")
        return path
    grids, occluded = occluded_grids(paths, lfw.image_root, args.threads, args.cells,
                                     bundle_name(args.model))
    atomic_save_safetensors(
        {"grids": grids, "occluded": occluded,
         "pair_a": torch.tensor([paths.index(p) for p in pairs["path_a"]]),
         "pair_b": torch.tensor([paths.index(p) for p in pairs["path_b"]]),
         "pair_fold": torch.tensor(pairs["fold"].to_numpy()),
         "pair_same": torch.tensor(pairs["same"].to_numpy()),
         "pair_id": torch.tensor(pairs["pair_id"].to_numpy())},
        path, metadata={"paths": json.dumps(paths)})
    print(f"wrote {path}")
    return path


def training_hybrids(pairs, seed: int = 0):
    """The localisation game on the training pairs: for each genuine pair, face B with one
    facial region (eyes, nose, mouth: each in turn) taken from a face of another person of
    the same fold (as ``xcos-xai compare`` makes its held-out hybrids).

    Returns ``[(pair row, donor path, region), ...]``.
    """
    from xcos_xai.evaluation.faithfulness import REGIONS

    rng = np.random.default_rng(seed + 29)
    out = []
    for i, row in pairs.iterrows():
        if not row["same"]:
            continue
        donors = sorted(set(pairs[(pairs["fold"] == row["fold"]) & ~pairs["same"]
                                  & (pairs["name_b"] != row["name_a"])]["path_b"]))
        for region in REGIONS:
            out.append((int(i), donors[int(rng.integers(len(donors)))], region))
    return out


def stage_hybrids(args, occ_path: Path) -> Path:
    """Grids of the training hybrids (and with each cell, or ``args.cells`` block, blurred),
    cached like the occlusion stage; their face A is an image of ``occ_path``."""
    from safetensors import safe_open

    from xcos_xai.data.lfw import LFW
    from xcos_xai.pretrained import load_pretrained

    lfw = LFW()
    pairs = training_pairs(lfw.pairs_frame(), args.per_fold, args.seed)
    hybrids = training_hybrids(pairs, args.seed)
    with safe_open(str(occ_path), framework="pt") as fh:
        cached = json.loads(fh.metadata()["paths"])
    parts = ["hybrids", occ_path.name, [(i, d, r) for i, d, r in hybrids]]
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
    path = cache_dir() / "xcos_maps" / f"hybrids_{key}.safetensors"
    if path.exists():
        print(f"cached: {path}")
        return path
    torch.set_num_threads(args.threads)
    model = load_pretrained(bundle_name(args.model))
    inputs = _hybrid_inputs(model, lfw, pairs, hybrids)
    grids, occluded = grids_with_occlusions(model.backbone, inputs, len(hybrids), args.cells)
    regions = sorted({r for _, _, r in hybrids})
    atomic_save_safetensors(
        {"grids": grids, "occluded": occluded,
         "pair_a": torch.tensor([cached.index(pairs.loc[i, "path_a"]) for i, _, _ in hybrids]),
         "pair_fold": torch.tensor([int(pairs.loc[i, "fold"]) for i, _, _ in hybrids]),
         "region": torch.tensor([regions.index(r) for _, _, r in hybrids])},
        path, metadata={"regions": json.dumps(regions),
                        "hybrids": json.dumps([(int(pairs.loc[i, "pair_id"]), d, r)
                                               for i, d, r in hybrids])})
    print(f"wrote {path}")
    return path


RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of each row of ``a`` with the same row of ``b``: ``(N,)``."""
    ra = a.argsort(1).argsort(1).double()
    rb = b.argsort(1).argsort(1).double()
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)


@torch.no_grad()
def pair_table(model, stats, grids, occluded, pa, pb, batch: int = 128, blurred=None,
               inserted=None):
    """Features and measured occlusion effects of both faces of every pair.

    Returns ``(x (2P, F), y (2P, h*w), maps)`` with rows ``0..P-1`` face A and ``P..`` face B;
    ``maps`` holds the other maps' grids in the same row order (for the diagnostics). With
    the insertion grids (``blurred``, ``inserted``: :func:`grids_with_occlusions` with
    ``restore``, of the same images), ``maps["insertion"]`` holds each cell's measured
    insertion effect: the score gain when the cell alone is restored into the blurred face
    (the other face whole).
    """
    from xcos_xai.explainers.xcos_maps import (
        cell_features,
        exact_decomposition,
        feature_cell_deletion,
        reference_evidence,
        reference_parts,
        shifted_cell_drops,
    )

    xs_a, xs_b, ys_a, ys_b = [], [], [], []
    maps = {k: ([], []) for k in ("evidence", "evidence_ref", "exact", "exact_ref",
                                   "feature_deletion", "shift")}
    if inserted is not None:
        maps["insertion"] = ([], [])
    head = model.head
    for s in range(0, len(pa), batch):
        ia, ib = pa[s:s + batch], pb[s:s + batch]
        ga, gb = grids[ia].float(), grids[ib].float()
        out = head(ga, gb)
        fa, fb = cell_features(model, ga, gb, stats, out)
        xs_a.append(fa)
        xs_b.append(fb)
        n, c = len(ia), occluded.shape[1]
        oa = occluded[ia].float().flatten(0, 1)
        ob = occluded[ib].float().flatten(0, 1)
        sa = head(oa, gb.repeat_interleave(c, 0)).score.view(n, c)
        sb = head(ga.repeat_interleave(c, 0), ob).score.view(n, c)
        ys_a.append(out.score[:, None] - sa)
        ys_b.append(out.score[:, None] - sb)
        if inserted is not None:  # the insertion curve's first step, for each cell
            za = head(blurred[ia].float(), gb).score[:, None]
            zb = head(ga, blurred[ib].float()).score[:, None]
            ia_ = head(inserted[ia].float().flatten(0, 1), gb.repeat_interleave(c, 0)).score
            ib_ = head(ga.repeat_interleave(c, 0), inserted[ib].float().flatten(0, 1)).score
            maps["insertion"][0].append(ia_.view(n, c) - za)
            maps["insertion"][1].append(ib_.view(n, c) - zb)
        ev = ((out.cos_map - model.threshold) * out.attention).flatten(1)
        evr = reference_evidence(out.cos_map, out.attention, stats.cos_ref).flatten(1)
        dec = exact_decomposition(model.backbone, ga, gb)
        ref = reference_parts(model.backbone, stats.local_ref)
        decr = exact_decomposition(model.backbone, ga, gb, ref)
        da, db = feature_cell_deletion(model, ga, gb, stats.local_ref)
        sha, shb = shifted_cell_drops(model, ga, gb, stats.occlusion_shift)
        for key, va, vb in (("evidence", ev, ev), ("evidence_ref", evr, evr),
                            ("exact", dec.cell_a.flatten(1), dec.cell_b.flatten(1)),
                            ("exact_ref", decr.cell_a.flatten(1), decr.cell_b.flatten(1)),
                            ("feature_deletion", da.flatten(1), db.flatten(1)),
                            ("shift", sha.flatten(1), shb.flatten(1))):
            maps[key][0].append(va)
            maps[key][1].append(vb)
    cat = torch.cat
    x = cat([cat(xs_a), cat(xs_b)])
    y = cat([cat(ys_a), cat(ys_b)])
    return x, y, {k: cat([cat(a), cat(b)]) for k, (a, b) in maps.items()}


@torch.no_grad()
def fine_table(model, stats, grids, occluded, pa, pb, batch: int = 128):
    """Fine features, measured block-occlusion effects ``(2P, c*c)`` and the cell-level
    amortised prediction repeated onto the blocks (rows: faces A, then faces B)."""
    from xcos_xai.explainers.xcos_maps import cell_features, fine_features

    xs, ys, coarse = ([], []), ([], []), ([], [])
    c = int(round(occluded.shape[1] ** 0.5))
    head = model.head
    for s in range(0, len(pa), batch):
        ia, ib = pa[s:s + batch], pb[s:s + batch]
        ga, gb = grids[ia].float(), grids[ib].float()
        out = head(ga, gb)
        fa, fb = fine_features(model, ga, gb, stats, out)
        ca, cb = (stats.amortiser(f) for f in cell_features(model, ga, gb, stats, out))
        n, k = len(ia), occluded.shape[1]
        sa = head(occluded[ia].float().flatten(0, 1), gb.repeat_interleave(k, 0)).score
        sb = head(ga.repeat_interleave(k, 0), occluded[ib].float().flatten(0, 1)).score
        for side, f, y, cc in ((0, fa, out.score[:, None] - sa.view(n, k), ca),
                               (1, fb, out.score[:, None] - sb.view(n, k), cb)):
            xs[side].append(f)
            ys[side].append(y)
            up = torch.nn.functional.interpolate(cc[:, None], size=(c, c), mode="nearest")
            coarse[side].append(up.flatten(1))
    cat = lambda pair: torch.cat([torch.cat(pair[0]), torch.cat(pair[1])])  # noqa: E731
    return cat(xs), cat(ys), cat(coarse)


def choose_ridge(x, y, folds, grid_size, ridges=RIDGES) -> float:
    """The ridge with the best mean Spearman (rows) over leave-one-fold-out splits."""
    from xcos_xai.core.map_stats import AmortisedOcclusion

    best, best_r = ridges[0], -2.0
    for ridge in ridges:
        rs = []
        for k in np.unique(folds):
            tr, te = folds != k, folds == k
            m = AmortisedOcclusion.fit(x[tr], y[tr], grid_size, ridge)
            rs.append(_spearman_rows(m(x[te]).flatten(1), y[te]).mean().item())
        if np.mean(rs) > best_r:
            best, best_r = ridge, float(np.mean(rs))
    return best


@torch.no_grad()
def _load_occlusion(path: Path) -> dict:
    from safetensors.torch import load_file

    t = load_file(str(path))
    t["pair_fold"] = t["pair_fold"].numpy()
    image_fold = np.full(len(t["grids"]), -1)  # a View-2 fold's people are in no other fold
    image_fold[t["pair_a"].numpy()] = t["pair_fold"]
    image_fold[t["pair_b"].numpy()] = t["pair_fold"]
    t["image_fold"] = image_fold
    return t


def region_cells(region: str, size: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """``(h*w,)`` booleans: the cells at least half inside a facial region of the chip."""
    from xcos_xai.explainers.metrics import facial_region_mask
    from xcos_xai.explainers.occlusion import cell_mask

    mask = facial_region_mask(region, size).float().flatten()
    ids = cell_mask(size, grid)[0].flatten()
    cover = torch.zeros(grid[0] * grid[1]).index_add_(0, ids, mask)
    return cover / torch.bincount(ids, minlength=len(cover)) >= 0.5


def _pointing(pred: torch.Tensor, inside: torch.Tensor) -> float:
    """Share of rows whose lowest value is in a cell of their region (``inside`` rows)."""
    return float(inside[torch.arange(len(pred)), pred.argmin(1)].float().mean())


def fit_and_write(occ_path: Path, out_dir: Path, threads: int = 1,
                  fine_path: Path | None = None, model_name: str = "dlib",
                  ridges: tuple[float, ...] = RIDGES,
                  command: str = "python training/build_xcos_maps.py",
                  hybrid_path: Path | None = None,
                  fine_hybrid_path: Path | None = None,
                  insertion_paths: tuple[Path, Path | None] | None = None) -> Path:
    """Fit the maps' statistics for the default head and each fold head (held out by fold).

    With ``insertion_paths`` (the insertion grids of the occlusion cache's images and of the
    hybrids', :func:`stage_insertion`), the cells' amortiser is fitted to the sum of each
    cell's deletion effect and its insertion effect (what a map must rank first on both
    replacement curves); the diagnostics still compare with the measured occlusion.
    """
    from safetensors.torch import load_file

    from xcos_xai.apps.lfw_benchmark import lfw_features
    from xcos_xai.core.map_stats import AmortisedOcclusion, MapStats, pack_map_stats
    from xcos_xai.pretrained import _bundle_path, bundle_metadata, load_pretrained

    name = bundle_name(model_name)

    torch.set_num_threads(threads)
    t = load_file(str(occ_path))
    grids, occluded = t["grids"], t["occluded"]
    pa, pb = t["pair_a"], t["pair_b"]
    pfold = t["pair_fold"].numpy()
    image_fold = np.full(len(grids), -1)  # a View-2 fold's people appear in no other fold
    image_fold[pa.numpy()], image_fold[pb.numpy()] = pfold, pfold
    meta = bundle_metadata(name)
    _, features, index = lfw_features(progress=False, model=meta["backbone"])
    grid_name = meta["config"]["grid"]
    lfw_grids = features.grids[grid_name]
    grid_size = tuple(lfw_grids.shape[-2:])
    tensors, report = {}, {"occlusion_pairs": int(len(pa)), "ridges": {}, "held_out": {}}
    rows, fine_rows = [], []
    fine = _load_occlusion(fine_path) if fine_path is not None else None
    n_nat = len(pa)
    all_grids, all_occluded, all_pa, all_pb, all_fold = grids, occluded, pa, pb, pfold
    if hybrid_path is not None:  # the training hybrids' face B grids come after the images
        from safetensors import safe_open

        hyb = load_file(str(hybrid_path))
        with safe_open(str(hybrid_path), framework="pt") as fh:
            regions = json.loads(fh.metadata()["regions"])
        size = tuple(load_pretrained(name).input_spec.size)
        inside_by_region = torch.stack([region_cells(r, size, tuple(grids.shape[-2:]))
                                        for r in regions])
        hyb_inside = inside_by_region[hyb["region"]]  # (H, h*w)
        all_grids = torch.cat([grids, hyb["grids"]])
        all_occluded = torch.cat([occluded, hyb["occluded"]])
        all_pa = torch.cat([pa, hyb["pair_a"]])
        all_pb = torch.cat([pb, len(grids) + torch.arange(len(hyb["grids"]))])
        all_fold = np.concatenate([pfold, hyb["pair_fold"].numpy()])
        report["hybrid_pairs"] = int(len(hyb["grids"]))
    all_blurred = all_inserted = None
    if insertion_paths is not None:
        ins = [load_file(str(q)) for q in insertion_paths if q is not None]
        if len(ins) != 1 + (hybrid_path is not None):
            raise ValueError("insertion_paths: give the insertion grids of the images and, "
                             "with hybrids, of the hybrids")
        all_blurred = torch.cat([t_["blurred"] for t_ in ins])
        all_inserted = torch.cat([t_["inserted"] for t_ in ins])
        if len(all_blurred) != len(all_grids):
            raise ValueError(f"insertion grids of {len(all_blurred)} faces for "
                             f"{len(all_grids)} occlusion grids: rebuild them")
        report["targets"] = "deletion + insertion effect"
    n_all = len(all_pa)
    natural2 = np.concatenate([np.arange(n_all) < n_nat] * 2)
    hybrid_b = np.concatenate([np.zeros(n_all, bool), np.arange(n_all) >= n_nat])
    hyb_rows, fine_hyb_rows = [], []
    if fine is not None:
        f_grids, f_occ, f_pa, f_pb = (fine["grids"], fine["occluded"], fine["pair_a"],
                                      fine["pair_b"])
        f_fold, fn_nat = fine["pair_fold"], len(fine["pair_a"])
        if fine_hybrid_path is not None:
            fh = load_file(str(fine_hybrid_path))
            c = int(round(fh["occluded"].shape[1] ** 0.5))
            size = tuple(load_pretrained(name).input_spec.size)
            f_inside = torch.stack([region_cells(r, size, (c, c)) for r in regions])[
                fh["region"]]
            f_grids, f_occ = torch.cat([f_grids, fh["grids"]]), torch.cat([f_occ, fh["occluded"]])
            f_pa = torch.cat([f_pa, fh["pair_a"]])
            f_pb = torch.cat([f_pb, len(fine["grids"]) + torch.arange(len(fh["grids"]))])
            f_fold = np.concatenate([f_fold, fh["pair_fold"].numpy()])
        fn_all = len(f_pa)
        f_natural2 = np.concatenate([np.arange(fn_all) < fn_nat] * 2)
        f_hybrid_b = np.concatenate([np.zeros(fn_all, bool), np.arange(fn_all) >= fn_nat])
    for fold in [None, *range(10)]:
        model = load_pretrained(name, fold=fold)
        images = np.ones(len(index.image_fold), bool) if fold is None else index.image_fold != fold
        local_ref = lfw_grids[torch.from_numpy(np.flatnonzero(images))].float().mean(0)
        imp = np.flatnonzero(~index.same & ((index.pair_fold != fold) if fold is not None
                                            else True))
        cos_sum = torch.zeros(grid_size)
        for s in range(0, len(imp), 1024):
            sel = imp[s:s + 1024]
            out = model.head(lfw_grids[index.pair_a[sel]].float(),
                             lfw_grids[index.pair_b[sel]].float())
            cos_sum += out.cos_map.sum(0)
        img = np.ones(len(grids), bool) if fold is None else image_fold != fold
        shift = torch.zeros_like(occluded[0], dtype=torch.float32)
        for s in np.array_split(np.flatnonzero(img), 8):
            idx = torch.from_numpy(s)
            shift += (occluded[idx].float() - grids[idx].float()[:, None]).sum(0)
        stats = MapStats(cos_sum / len(imp), local_ref, shift / img.sum())
        x, y, maps = pair_table(model, stats, all_grids, all_occluded, all_pa, all_pb,
                                blurred=all_blurred, inserted=all_inserted)
        target = y + maps["insertion"] if all_inserted is not None else y
        folds2 = np.concatenate([all_fold, all_fold])
        train = folds2 != fold if fold is not None else np.ones(len(folds2), bool)
        ridge = choose_ridge(x[train], target[train], folds2[train], grid_size, ridges)
        stats.amortiser = AmortisedOcclusion.fit(x[train], target[train], grid_size, ridge)
        report["ridges"][str(fold)] = ridge
        if fine is not None:  # the amortiser of finer pixel blocks
            f_img = (np.ones(len(fine["grids"]), bool) if fold is None
                     else fine["image_fold"] != fold)
            idx = torch.from_numpy(np.flatnonzero(f_img))
            stats.fine_shift = (fine["occluded"][idx].float()
                                - fine["grids"][idx].float()[:, None]).mean(0)
            fx, fy, coarse = fine_table(model, stats, f_grids, f_occ, f_pa, f_pb)
            ffold = np.concatenate([f_fold, f_fold])
            ftrain = ffold != fold if fold is not None else np.ones(len(ffold), bool)
            c = int(round(fy.shape[1] ** 0.5))
            fridge = choose_ridge(fx[ftrain], fy[ftrain], ffold[ftrain], (c, c), ridges)
            stats.fine_amortiser = AmortisedOcclusion.fit(fx[ftrain], fy[ftrain], (c, c),
                                                          fridge)
            report["ridges"][f"fine{fold}"] = fridge
            if fold is not None and fine_hybrid_path is not None:
                hb = np.flatnonzero((ffold == fold) & f_hybrid_b)
                inside = f_inside[hb - fn_all - fn_nat]
                te = torch.from_numpy(hb)
                n_cells = fx.shape[1] - fy.shape[1]
                fine_hyb_rows.append({
                    "fold": fold,
                    "amortised_fine": _pointing(stats.fine_amortiser(fx[te]).flatten(1), inside),
                    "block occlusion (measured)": _pointing(fy[te], inside),
                    "amortised_cells_on_blocks": _pointing(coarse[te], inside),
                    "fine_shift": _pointing(fx[te][:, n_cells:], inside)})
                print("hybrid pointing, blocks", fine_hyb_rows[-1], flush=True)
            if fold is not None:
                te = torch.from_numpy((ffold == fold) & f_natural2)
                n_cells = fx.shape[1] - fy.shape[1]  # the fine shift drops come last
                fine_rows.append({
                    "fold": fold,
                    "amortised_fine": _spearman_rows(stats.fine_amortiser(fx[te]).flatten(1),
                                                     fy[te]).mean().item(),
                    "amortised_cells_on_blocks": _spearman_rows(coarse[te], fy[te]).mean().item(),
                    "fine_shift": _spearman_rows(fx[te][:, n_cells:], fy[te]).mean().item()})
                print(fine_rows[-1], flush=True)
        tensors["" if fold is None else f"fold{fold}."] = stats
        if fold is not None:  # held-out agreement of every map with the measured occlusion
            te = torch.from_numpy((folds2 == fold) & natural2)
            pred = stats.amortiser(x[te]).flatten(1)
            row = {"fold": fold, "amortised": _spearman_rows(pred, y[te]).mean().item()}
            for key, m in maps.items():
                row[key] = _spearman_rows(m[te], y[te]).mean().item()
            rows.append(row)
            print(row, flush=True)
            if hybrid_path is not None:  # the held-out hybrids: is B's lowest cell swapped?
                hb = np.flatnonzero((folds2 == fold) & hybrid_b)
                inside = hyb_inside[hb - n_all - n_nat]
                te = torch.from_numpy(hb)
                hrow = {"fold": fold, "amortised": _pointing(stats.amortiser(x[te]).flatten(1),
                                                             inside),
                        "occlusion (measured)": _pointing(y[te], inside)}
                for key, m in maps.items():
                    hrow[key] = _pointing(m[te], inside)
                hyb_rows.append(hrow)
                print("hybrid pointing", hrow, flush=True)
    report["held_out"] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "fold"}
    if hyb_rows:
        report["held_out_hybrid_pointing"] = {k: float(np.mean([r[k] for r in hyb_rows]))
                                              for k in hyb_rows[0] if k != "fold"}
        print(json.dumps(report["held_out_hybrid_pointing"], indent=1))
    if fine_hyb_rows:
        report["held_out_hybrid_pointing_blocks"] = {
            k: float(np.mean([r[k] for r in fine_hyb_rows])) for k in fine_hyb_rows[0]
            if k != "fold"}
        print(json.dumps(report["held_out_hybrid_pointing_blocks"], indent=1))
    if fine_rows:
        report["held_out_fine_blocks"] = {k: float(np.mean([r[k] for r in fine_rows]))
                                          for k in fine_rows[0] if k != "fold"}
        report["per_fold_fine"] = fine_rows
        print(json.dumps(report["held_out_fine_blocks"], indent=1))
    report["per_fold"] = rows
    path = out_dir / (_bundle_path(name).stem + "_maps.safetensors")
    meta = {"bundle": _bundle_path(name).name, "grid": grid_name,
            "occlusion_cache": occ_path.name,
            "fine_occlusion_cache": fine_path.name if fine_path else None, "report": report,
            "command": command}
    atomic_save_safetensors(pack_map_stats(tensors), path, metadata={"maps": json.dumps(meta)})
    print(json.dumps(report["held_out"], indent=1))
    print(f"wrote {path}")
    return path


RESULTS = Path(__file__).resolve().parent / "results" / "faithful_maps"

LABELS = {
    "amortised": "amortised occlusion (ridge on one forward's cell statistics)",
    "shift": "feature-space occlusion: mean shift of the grid (no fitting beyond the mean)",
    "evidence_ref": "(S - S_ref) * W",
    "feature_deletion": "feature-space cell deletion (mean-face descriptor)",
    "exact_ref": "exact split relative to the mean face",
    "exact": "exact split of the model cosine",
    "evidence": "(S - t) * W (the default before issue 13)",
    "amortised_fine": "amortised occlusion of 8x8 blocks",
    "amortised_cells_on_blocks": "the 4x4 amortised map, each cell repeated on its 4 blocks",
    "fine_shift": "mean shift of the grid per 8x8 block, first order",
    "insertion": "measured insertion effect (the cell alone restored into the blurred face)",
}


def write_report(maps_path: Path, out: Path = RESULTS, per_fold: int = 100,
                 fine_per_fold: int = 50, model_name: str = "dlib") -> Path:
    """``held_out_agreement.md``: how each map ranks a face's cells like measured occlusion."""
    from safetensors import safe_open

    with safe_open(str(maps_path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["maps"])
    rep = meta["report"]
    stats = MapStatsShape.of(maps_path)
    h, w = stats.grid
    flag = "" if model_name == "dlib" else f" --model {model_name}"
    bundled = maps_path.resolve().parent == OUT.resolve()
    where = (f"`xcos_xai/pretrained/{maps_path.name}`" if bundled else
             f"`{maps_path.name}` built by the command at the end, an experiment: not the "
             "bundled file")
    lines = ["# Which maps rank the cells as occlusion does (held out by fold)", "",
             f"`python training/build_xcos_maps.py{flag} --stage report` (numbers written by the "
             f"fit stage into the metadata of {where}).", "",
             f"For every face of {rep['occlusion_pairs']} LFW View-2 pairs ({per_fold} per fold, "
             f"none of the 300 compare pairs), the measured occlusion effect of each of the "
             f"{h * w} cells "
             "(xCos score drop when the cell's pixels are replaced by the blurred face, under "
             "the fold's held-out head) against each map. Spearman correlation over the cells "
             "of a face, averaged over the faces of the held-out fold, then over the 10 folds "
             "(each fold's map statistics and amortiser fitted on the other 9).", "",
             f"| map ({h}x{w} cells) | Spearman with occlusion |", "|---|---:|"]
    for k, v in sorted(rep["held_out"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {LABELS.get(k, k)} | {v:.3f} |")
    if "held_out_fine_blocks" in rep:
        c = stats.fine
        lines += ["", f"The same over {c * c} blocks of {c}x{c} ({fine_per_fold} pairs per "
                  "fold):", "", f"| map ({c}x{c} blocks) | Spearman with block occlusion |",
                  "|---|---:|"]
        for k, v in sorted(rep["held_out_fine_blocks"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {_fine_label(k, stats)} | {v:.3f} |")
    if "held_out_hybrid_pointing" in rep:
        lines += ["", "## The localisation game on held-out training hybrids", "",
                  f"{rep['hybrid_pairs']} hybrids of the training folds' genuine pairs (face B "
                  "with the eyes, nose or mouth of another person of the same fold, as "
                  "`xcos-xai compare` makes them); the amortiser was fitted on the natural "
                  "pairs and the hybrids of the other 9 folds. Pointing game: share of "
                  "held-out hybrids whose most opposing cell of face B (lowest value; for "
                  "measured occlusion, the cell whose occlusion raises the score most) lies "
                  "in the swapped region.", "",
                  "| map | pointing game |", "|---|---:|"]
        lines += [f"| {LABELS.get(k, k)} | {v:.3f} |" for k, v in
                  sorted(rep["held_out_hybrid_pointing"].items(), key=lambda kv: -kv[1])]
    if "held_out_hybrid_pointing_blocks" in rep:
        lines += ["", f"The same over {stats.fine}x{stats.fine} blocks:", "",
                  "| map | pointing game |", "|---|---:|"]
        lines += [f"| {_fine_label(k, stats)} | {v:.3f} |" for k, v in
                  sorted(rep["held_out_hybrid_pointing_blocks"].items(), key=lambda kv: -kv[1])]
    lines += ["", f"Ridge penalties chosen by leave-one-fold-out inside the training folds: "
              f"{rep['ridges']}."]
    if "command" in meta:
        lines += ["", f"Built with `{meta['command']}`."]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "held_out_agreement.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(path.read_text())
    return path


def _fine_label(key: str, stats: MapStatsShape) -> str:
    """A fine-block row's label with the file's own grid and block sizes (dlib: 4x4, 8x8)."""
    (h, w), c = stats.grid, stats.fine
    return LABELS.get(key, key).replace("8x8", f"{c}x{c}").replace("4x4", f"{h}x{w}")


class MapStatsShape:
    """The grid (and fine block count) of a maps file, read from its tensors."""

    def __init__(self, grid, fine):
        self.grid, self.fine = grid, fine

    @classmethod
    def of(cls, path: Path) -> MapStatsShape:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            grid = tuple(fh.get_slice("cos_ref").get_shape())
            fine = None
            if "fine_shift" in fh.keys():
                fine = int(round(fh.get_slice("fine_shift").get_shape()[0] ** 0.5))
        return cls(grid, fine)


def pack(path: Path) -> Path:
    """Rewrite a maps file in the small form of :func:`~xcos_xai.core.map_stats.pack_map_stats`
    (float16, the occlusion shifts once), keeping its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from xcos_xai.core.map_stats import MapStats, pack_map_stats

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata()
    prefixes = [""] + [f"fold{k}." for k in range(10) if f"fold{k}.cos_ref" in tensors]
    stats = {p: MapStats.from_tensors(tensors, p) for p in prefixes}
    atomic_save_safetensors(pack_map_stats(stats), path, metadata=metadata)
    print(f"packed {path}: {path.stat().st_size / 1e6:.2f} MB")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", choices=["occlusion", "fit", "report", "pack", "all"],
                        default="all")
    parser.add_argument("--per-fold", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cells", type=int, default=None,
                        help="occlude c x c blocks instead of the model's cells (finer maps)")
    parser.add_argument("--fine-cells", type=int, default=8,
                        help="also fit the amortiser of c x c pixel blocks (0: no)")
    parser.add_argument("--fine-per-fold", type=int, default=50,
                        help="pairs per fold of its occlusion stage (64 forwards an image)")
    parser.add_argument("--ridges", default=",".join(map(str, RIDGES)),
                        help="ridge penalties tried by leave-one-fold-out (comma-separated)")
    parser.add_argument("--model", default="dlib", choices=["dlib", "sface"],
                        help="whose bundle gets the statistics (dlib-xcos, sface-xcos)")
    parser.add_argument("--hybrids", action="store_true",
                        help="also fit the amortiser on the training pairs' hybrids (face B "
                             "with eyes, nose or mouth of another person), as the localisation "
                             "game makes them")
    parser.add_argument("--insertion", action="store_true",
                        help="fit the cells' amortiser to each cell's deletion effect plus its "
                             "insertion effect (the score gain when the cell alone is restored "
                             "into the blurred face): 49 more forwards an image on SFace")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--results", default=None,
                        help="folder of held_out_agreement.md (default: training/results/"
                             "faithful_maps for dlib, faithful_maps_<model> otherwise)")
    args = parser.parse_args(argv)
    from xcos_xai.pretrained import _bundle_path

    maps_path = Path(args.out) / (_bundle_path(bundle_name(args.model)).stem
                                  + "_maps.safetensors")
    results = (Path(args.results) if args.results else RESULTS if args.model == "dlib"
               else RESULTS.with_name(f"faithful_maps_{args.model}"))
    report = dict(out=results, per_fold=args.per_fold, fine_per_fold=args.fine_per_fold,
                  model_name=args.model)
    if args.stage == "report":
        write_report(maps_path, **report)
        return
    if args.stage == "pack":
        pack(maps_path)
        return
    occ = stage_occlusion(args)
    fine = None
    if args.fine_cells and not args.cells:
        fine = stage_occlusion(argparse.Namespace(**{**vars(args), "cells": args.fine_cells,
                                                     "per_fold": args.fine_per_fold}))
    if args.stage in ("fit", "all"):
        ridges = tuple(float(r) for r in args.ridges.split(","))
        command = " ".join(["python training/build_xcos_maps.py",
                            *(sys.argv[1:] if argv is None else argv)])
        hybrids = fine_hybrids = None
        if args.hybrids:
            hybrids = stage_hybrids(args, occ)
            if fine is not None:
                fine_hybrids = stage_hybrids(argparse.Namespace(**{
                    **vars(args), "cells": args.fine_cells, "per_fold": args.fine_per_fold}), fine)
        insertion = None
        if args.insertion:
            insertion = (stage_insertion(args, occ),
                         stage_insertion(args, hybrids, hybrids=True) if hybrids else None)
        write_report(fit_and_write(occ, Path(args.out), args.threads, fine, args.model, ridges,
                                   command, hybrids, fine_hybrids, insertion), **report)


if __name__ == "__main__":
    main()
