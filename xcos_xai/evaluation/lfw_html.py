"""The HTML report of the LFW evaluation: table, score plots, and explained pairs."""

from __future__ import annotations

import html

import numpy as np

from ..viz.report import scatter_vs_model, score_histogram, write_report
from .protocol import ten_fold_accuracy


def _explain_rows(lfw, index, rows, protocol_thresholds, aligner, bundle="dlib-xcos"):
    from ..explain import explain_pair
    from ..pretrained import load_pretrained

    items = []
    frame = index.frame
    models = {}  # one model per fold, however many of its pairs are explained
    for i in rows:
        rec = frame.iloc[int(i)]
        fold = int(rec["fold"])
        if fold not in models:
            models[fold] = load_pretrained(bundle, fold=fold)
            # Decide with the 10-fold protocol's threshold for this fold (chosen on the others).
            models[fold].threshold.fill_(float(protocol_thresholds[fold]))
        model = models[fold]
        expl = explain_pair(lfw.image_root / rec["path_a"], lfw.image_root / rec["path_b"],
                            model=model, aligner=aligner)
        label = "genuine" if rec["same"] else "impostor"
        caption = (f"pair {int(i)} (fold {fold}, {label}): {rec['name_a']} #{rec['index_a']} vs "
                   f"{rec['name_b']} #{rec['index_b']}")
        items.append((caption, expl))
    return items


def write_lfw_report(path, lfw, features, index, scores, table, summary, n_examples: int = 4,
                     seed: int = 0, bundle: str = "dlib-xcos"):
    from .._env import cache_dir
    from ..data.aligners import aligner_for
    from ..models.registry import create_backbone
    from ..pretrained import bundle_metadata

    backbone = create_backbone(bundle_metadata(bundle)["backbone"])  # its input spec only
    aligner = aligner_for(backbone, cache_dir=cache_dir() / "chips", lfw=True)
    res = ten_fold_accuracy(scores["xcos"], index.same, index.pair_fold)
    thr = np.asarray(res.thresholds)
    pred = scores["xcos"] > thr[index.pair_fold]
    rng = np.random.default_rng(seed)
    correct_gen = np.flatnonzero(pred & index.same)
    correct_imp = np.flatnonzero(~pred & ~index.same)
    margin = np.abs(scores["xcos"] - thr[index.pair_fold])
    false_rej = np.flatnonzero(~pred & index.same)
    false_acc = np.flatnonzero(pred & ~index.same)
    false_rej = false_rej[np.argsort(-margin[false_rej])][:n_examples]
    false_acc = false_acc[np.argsort(-margin[false_acc])][:n_examples]
    sections = [
        ("Genuine pairs, correctly accepted (random)",
         _explain_rows(lfw, index, rng.choice(correct_gen, n_examples, replace=False), thr,
                       aligner, bundle)),
        ("Impostor pairs, correctly rejected (random)",
         _explain_rows(lfw, index, rng.choice(correct_imp, n_examples, replace=False), thr,
                       aligner, bundle)),
        ("False rejects (genuine pairs xCos rejects), worst first",
         _explain_rows(lfw, index, false_rej, thr, aligner, bundle)),
        ("False accepts (impostor pairs xCos accepts), worst first",
         _explain_rows(lfw, index, false_acc, thr, aligner, bundle)),
    ]
    figures = [
        ("xCos score distributions", score_histogram(scores["xcos"], index.same,
                                                      float(thr.mean()), "xCos (held-out)")),
        ("Model cosine distributions", score_histogram(
            scores["model_cosine"], index.same,
            float(np.mean(ten_fold_accuracy(scores["model_cosine"], index.same,
                                            index.pair_fold).thresholds)), "model cosine")),
        ("Agreement with the model", scatter_vs_model(scores["xcos"], scores["model_cosine"],
                                                      index.same)),
    ]
    s = summary
    intro = (
        "<p>LFW View 2 (6000 pairs, 10 identity-disjoint folds). Every xCos score comes from a "
        "head that never saw the evaluated fold's people. Thresholds: chosen on 9 folds, "
        "applied to the 10th. Explanations below use the fold's head and threshold.</p>"
        f"<p>Attention: {s.mean_effective_cells:.2f} effective cells of {s.n_cells} on average; "
        f"{100 * s.static_cell_share:.1f}% of the weight on {s.n_static_cells} static cells "
        "(cells whose patch cosine barely varies across pairs: a shortcut detector).</p>"
        f"<p>{html.escape(str(len(false_rej)))} worst false rejects and "
        f"{len(false_acc)} worst false accepts are shown.</p>")
    return write_report(path, "xCos on LFW: evaluation report", intro, table, figures, sections)
