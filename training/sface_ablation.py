"""xCos on SFace's 7x7 local descriptors without training, and trained heads ablated.

    python training/sface_ablation.py
    python training/build_pretrained.py --model sface --config local-norm-learned-7x7 \
        --out /tmp/trained
    python training/sface_ablation.py --heads /tmp/trained/sface_xcos.safetensors

On LFW View 2 (cached SFace features, the 10-fold protocol), prints the accuracy of:
- untrained weightings of the 49 local descriptors' cosines: uniform, ``W ∝ |e_A,c| |e_B,c|``
  and its square, with the cells as the model gives them and with the shared constant
  ``(s b + t) / 49`` taken out of every cell;
- the bundled ``sface-xcos`` fold heads (head k on fold k; since the untrained weighting was
  bundled they equal ``W = |a||b|``), or with ``--heads`` the fold heads of another bundle file
  (e.g. the trained ``local-norm-learned-7x7``), as they are and, where they have one, with
  their pair-dependent part switched off (``learned_scale = 0``).
The numbers are quoted in ``xcos_xai/pretrained/MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from xcos_xai.apps.lfw_benchmark import lfw_features, score_pairs
from xcos_xai.evaluation.protocol import ten_fold_accuracy
from xcos_xai.models import create_backbone
from xcos_xai.pretrained import BUNDLES, load_head


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heads", default=None,
                        help="a bundle file (build_pretrained.py --out) instead of sface-xcos")
    args = parser.parse_args(argv)
    bundle = "sface-xcos"
    if args.heads:
        bundle = "sface-heads-under-test"
        BUNDLES[bundle] = Path(args.heads)  # read by load_head like a bundled head
    torch.set_num_threads(1)
    model = create_backbone("sface", pretrained=True, grid="7x7-local").eval()
    with torch.no_grad():
        s, t = model._fc1_affine()
        constant = (s * model.pre_fc1.bias + t) / 49.0
    _, features, index = lfw_features(model="sface")
    grids = features.grids["7x7-local"]
    cells = grids.float().flatten(2)  # (N, 128, 49)
    emb = features.embeddings.float()

    def report(name: str, scores: np.ndarray) -> None:
        res = ten_fold_accuracy(scores, index.same, index.pair_fold)
        print(f"{name:55s} {100 * res.mean:6.2f} ± {100 * res.std:.2f}  AUC {res.auc:.4f}")

    report("model cosine", torch.nn.functional.cosine_similarity(
        emb[index.pair_a], emb[index.pair_b]).numpy())
    for label, g in (("cells as given", cells), ("cells minus the shared constant",
                                                  cells - constant[None, :, None])):
        a, b = g[index.pair_a], g[index.pair_b]
        na, nb = a.norm(dim=1), b.norm(dim=1)
        cos = (a * b).sum(1) / (na * nb).clamp_min(1e-12)
        for wname, w in (("uniform", torch.ones_like(na)), ("|a||b|", na * nb),
                         ("(|a||b|)^2", (na * nb) ** 2)):
            report(f"untrained, {label}, W = {wname}",
                   (cos * w / w.sum(1, keepdim=True)).sum(1).numpy())
    n = len(index.same)
    heads = {f"{bundle} fold heads": np.full(n, np.nan),
             f"{bundle} fold heads, learned_scale = 0": np.full(n, np.nan)}
    for k in range(10):
        head, _, _ = load_head(bundle, fold=k)
        sel = np.flatnonzero(index.pair_fold == k)
        rows = (index.pair_a[sel], index.pair_b[sel])
        heads[f"{bundle} fold heads"][sel] = score_pairs(head, grids, *rows)[0]
        if getattr(head.attention, "learned_scale", None) is not None:  # a learned part only
            with torch.no_grad():
                head.attention.learned_scale.zero_()
            heads[f"{bundle} fold heads, learned_scale = 0"][sel] = score_pairs(
                head, grids, *rows)[0]
    for name, scores in heads.items():
        if not np.isnan(scores).any():
            report(name, scores)


if __name__ == "__main__":
    main()
