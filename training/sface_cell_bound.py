"""How close can a weighting of SFace's 49 cell cosines get to SFace's own cosine? (issue 12)

    python training/sface_cell_bound.py

xCos scores a pair by ``sum_c W_c S_c``: the cosines ``S_c`` of the 49 local descriptors of
SFace's 7x7 grid, weighted by an attention ``W`` that sums to 1. The bundled head uses
``W ∝ |e_A,c| |e_B,c|`` and is 0.42 points below the model cosine on LFW (goal: 0.2). This
script measures, on the same 6000 pairs and 10 folds (cached SFace features), scores that
bound what such a weighting can reach:

- the *diagonal* of the exact split of the cosine, ``sum_c <e_A,c, e_B,c> / (|e_A| |e_B|)``:
  the cell-to-cell part of the model's own cosine, without the cross-cell terms
  ``<e_A,i, e_B,j>, i != j`` that no cell-wise map can hold;
- *learned* linear scorers on cell-wise features, trained per fold on the other nine folds'
  pairs (logistic regression, L2, the threshold is the classifier's), a generous upper bound
  on attention weightings with per-cell biases: on ``S_c``; on ``S_c`` and the normalised
  norm products ``n_c = |e_A,c| |e_B,c| / sum_c'``; on ``S_c``, ``n_c`` and ``S_c n_c``.

Fold accuracies use each fold's threshold chosen on the other nine folds, as everywhere in the
README. The printed table is quoted in the README and the model card.
"""

from __future__ import annotations

import numpy as np
import torch

from xcos_xai.apps.lfw_benchmark import lfw_features
from xcos_xai.evaluation.protocol import ten_fold_accuracy


def fit_logistic(z: torch.Tensor, y: torch.Tensor, weight_decay: float = 1e-3,
                 steps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w, b)`` of an L2-regularised logistic regression of ``y`` on ``z`` (L-BFGS)."""
    w = torch.zeros(z.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y)
        loss = loss + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fold_logistic(x: torch.Tensor, same: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Held-out accuracy per fold of a logistic regression on ``x`` (standardised on the
    training folds), trained on the other folds; returns the 10 fold accuracies."""
    y = torch.from_numpy(same.astype(np.float32))
    accs = []
    for k in np.unique(folds):
        tr, te = torch.from_numpy(folds != k), torch.from_numpy(folds == k)
        mu, sd = x[tr].mean(0), x[tr].std(0).clamp_min(1e-6)
        z = (x - mu) / sd
        w, b = fit_logistic(z[tr], y[tr])
        pred = (z[te] @ w + b) > 0
        accs.append((pred.numpy() == same[te.numpy()]).mean())
    return np.asarray(accs)


def main() -> None:
    torch.set_num_threads(1)
    _, features, index = lfw_features(model="sface", progress=False)
    cells = features.grids["7x7-local"].float().flatten(2)  # (N, 128, 49)
    emb = features.embeddings.float()
    a, b = cells[index.pair_a], cells[index.pair_b]
    ea, eb = emb[index.pair_a], emb[index.pair_b]
    same, folds = np.asarray(index.same), np.asarray(index.pair_fold)

    def fixed(name: str, scores: torch.Tensor) -> None:
        res = ten_fold_accuracy(scores.numpy(), same, folds)
        print(f"{name:68s} {100 * res.mean:6.2f} ± {100 * res.std:.2f}")

    print(f"{'scorer (LFW View 2, 6000 pairs, 10 folds)':68s} accuracy")
    fixed("SFace embedding cosine", torch.nn.functional.cosine_similarity(ea, eb))
    dots = (a * b).sum(1)  # (P, 49) <e_A,c, e_B,c>
    na, nb = a.norm(dim=1), b.norm(dim=1)
    s = dots / (na * nb).clamp_min(1e-12)  # S_c
    n = na * nb / (na * nb).sum(1, keepdim=True)  # normalised norm products
    fixed("xCos, W ∝ |e_A,c| |e_B,c| (the bundled sface-xcos)", (s * n).sum(1))
    fixed("xCos, uniform W", s.mean(1))
    fixed("diagonal of the exact split: sum_c <e_A,c, e_B,c> / (|e_A| |e_B|)",
          dots.sum(1) / (ea.norm(dim=1) * eb.norm(dim=1)))
    for name, x in (("learned: logistic on S_c (49)", s),
                    ("learned: logistic on S_c, n_c (98)", torch.cat([s, n], 1)),
                    ("learned: logistic on S_c, n_c, S_c n_c (147)",
                     torch.cat([s, n, s * n], 1))):
        acc = fold_logistic(x, same, folds)
        print(f"{name:68s} {100 * acc.mean():6.2f} ± {100 * acc.std():.2f}")


if __name__ == "__main__":
    main()
