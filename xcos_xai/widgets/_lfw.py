"""The 10-fold LFW evaluation as the widgets need it, from the feature cache (seconds, warm)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..apps.lfw_benchmark import bundled_fold_scores, lfw_features, model_scores
from ..data.align import MultipleFacesWarning
from ..data.aligners import lfw_aligner_for
from ..evaluation.protocol import ten_fold_accuracy
from ..explain import PairExplanation
from ..explain.pair import xcos_map_fields
from ..pretrained import bundle_input_spec, bundle_metadata, bundle_name, load_pretrained
from ..viz.notes import face_notes


@dataclass
class HeldOutEvaluation:
    """Held-out xCos of the bundled fold heads on LFW View 2, with the protocol's thresholds.

    It needs the model's features of every LFW photo (13,233), read from the feature cache
    (``<XCOS_XAI_CACHE>/features``) or computed once and cached: for dlib (the default) about
    5 minutes cold on 2 CPU cores, for SFace about 20 minutes (aligning with YuNet and
    embedding); seconds from the cache.

    Attributes:
        bundle: the bundled heads (``"dlib-xcos"``, ``"sface-xcos"``).
        lfw, features, index: as :func:`~xcos_xai.apps.lfw_benchmark.lfw_features`.
        result: :func:`~xcos_xai.apps.lfw_benchmark.bundled_fold_scores` (scores, S, W).
        model_cosine: ``(6000,)`` the plugged model's own cosine per pair.
        thresholds, model_thresholds: ``(10,)`` the 10-fold protocol's threshold of each fold
            (chosen on the other nine) for xCos and for the model cosine.
    """

    lfw: object
    features: object
    index: object
    result: object
    model_cosine: np.ndarray
    thresholds: np.ndarray
    model_thresholds: np.ndarray
    bundle: str = "dlib-xcos"

    @classmethod
    def load(cls, root=None, progress: bool = False, images=None,
             model: str = "dlib") -> HeldOutEvaluation:
        """The evaluation of ``model`` (``"dlib"``, ``"sface"`` or a bundle name): see the
        class for what it costs without the feature cache."""
        bundle = bundle_name(model)
        lfw, features, index = lfw_features(root=root, progress=progress, images=images,
                                            model=bundle_metadata(bundle)["backbone"])
        result = bundled_fold_scores(features, index, name=bundle)
        model_cos = model_scores(features, index)["model_cosine"]
        thr = ten_fold_accuracy(result.scores, index.same, index.pair_fold).thresholds
        mthr = ten_fold_accuracy(model_cos, index.same, index.pair_fold).thresholds
        return cls(lfw, features, index, result, model_cos, np.asarray(thr, float),
                   np.asarray(mthr, float), bundle)

    @property
    def pair_thresholds(self) -> np.ndarray:
        """``(6000,)`` the xCos threshold that decides each pair (its fold's)."""
        return self.thresholds[self.index.pair_fold]

    def caption(self, i: int) -> str:
        r = self.index.frame.iloc[int(i)]
        kind = "genuine" if r["same"] else "impostor"
        return (f"pair {int(i)} (fold {int(r['fold'])}, {kind}): {r['name_a']} "
                f"#{r['index_a']} vs {r['name_b']} #{r['index_b']}")

    def explanation(self, i: int, attention: np.ndarray | None = None,
                    aligner=None) -> PairExplanation:
        """Pair ``i`` explained from the cached maps (the numbers the evaluation used), with
        its fold's protocol thresholds; ``attention`` replaces W (ablations). The evidence
        map is the fold head's xCos explainer's default (one forward of the two faces; with
        ``attention``: ``(S - t) * W``)."""
        i = int(i)
        r = self.index.frame.iloc[i]
        fold = int(r["fold"])
        face_a, face_b = self.faces(i, aligner)
        s = np.asarray(self.result.cos_maps[i], np.float32)
        w = np.asarray(self.result.attention[i] if attention is None else attention,
                       np.float32)
        score = float((s * w).sum()) if attention is not None else float(self.result.scores[i])
        t = float(self.thresholds[fold])
        maps = {} if attention is not None else xcos_map_fields(
            self.fold_model(fold), face_a.chip, face_b.chip)
        return PairExplanation(
            score=score, threshold=t, same=score > t,
            model_cosine=float(self.model_cosine[i]),
            model_threshold=float(self.model_thresholds[fold]), cos_map=s, attention=w,
            contribution=s * w, face_a=face_a.chip, face_b=face_b.chip,
            info={"model": f"{self.bundle}/fold{fold}", "pair": i, "caption": self.caption(i),
                  "face_a": _face_info(face_a), "face_b": _face_info(face_b)}, **maps)

    def fold_model(self, fold: int):
        """The fold's held-out model (loaded once)."""
        models = self.__dict__.setdefault("_models", {})
        if fold not in models:
            models[fold] = load_pretrained(self.bundle, fold=fold)
        return models[fold]

    def faces(self, i: int, aligner=None) -> tuple:
        """The two :class:`~xcos_xai.data.align.AlignedFace` of pair ``i`` (the model's LFW
        aligner on the chip cache)."""
        r = self.index.frame.iloc[int(i)]
        aligner = aligner or lfw_aligner_for(bundle_input_spec(self.bundle))
        with warnings.catch_warnings():  # shown as a note on the face instead
            warnings.simplefilter("ignore", MultipleFacesWarning)
            return (aligner(self.lfw.image_root / r["path_a"]),
                    aligner(self.lfw.image_root / r["path_b"]))

    def alignment_notes(self, i: int, aligner=None) -> str:
        """How pair ``i``'s faces were found, when not cleanly: e.g. ``"face B: no face
        found: fixed box"`` (:mod:`xcos_xai.viz.notes`); ``""`` otherwise."""
        return "; ".join(f"face {side}: {note}" for side, face in zip("AB", self.faces(
            i, aligner)) for note in face_notes(_face_info(face), face.chip))


def _face_info(face) -> dict:
    return {"n_faces_found": int(face.n_faces_found), "reason": face.reason}
