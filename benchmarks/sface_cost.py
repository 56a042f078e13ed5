"""What SFace costs per pair on 2 cores, beside dlib's ResNet, all cases in one run.

Cases per pair of LFW photos (deep-funneled 250x250), taking turns in one loop:

- ``align_sface``: YuNet detection + ArcFace 5-point warp of both photos (no cache);
- ``align_dlib``: dlib's HOG detector + 5 landmarks + ``get_face_chip`` of both (no cache);
- ``verify_sface`` / ``verify_dlib``: both aligned faces through the backbone in one call,
  then the embeddings' cosine (``torch.inference_mode``);
- ``xcos_sface`` / ``xcos_dlib``: the bundled xCos model on the same tensors (score, S, W,
  S*W and the model cosine, maps copied to numpy as ``explain_pair`` does);
- ``explain_pair_sface``: the public call end to end from the two photos
  (``explain_pair(a, b, model=sface_model)``: alignment, checks, explanation), beside
  ``verify_photos_sface``: alignment + verification of the same photos.

    python benchmarks/sface_cost.py            # 40 reps, 2 threads
    python benchmarks/sface_cost.py --quick
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from _common import (
    environment,
    fmt_ratio,
    interleave,
    md_table,
    paired_ratio,
    parser,
    require_data,
    setup_torch,
    summary,
    write_results,
)

NAME = "sface_cost"


def main(argv=None) -> None:
    p = parser(__doc__)
    p.set_defaults(threads=2)
    args = p.parse_args(argv)
    setup_torch(args.threads)
    require_data()
    import xcos_xai
    from xcos_xai import explain_pair
    from xcos_xai.data.align import FaceAligner, MultipleFacesWarning
    from xcos_xai.data.align_arcface import YuNetAligner
    from xcos_xai.data.images import load_image
    from xcos_xai.data.lfw import LFW

    warnings.simplefilter("ignore", MultipleFacesWarning)
    reps = 6 if args.quick else 40
    env = environment(args.threads)
    images = LFW().images()
    pick = np.random.default_rng(0).choice(len(images), 2, replace=False)
    path_a, path_b = (images[i] for i in pick)
    photo_a, photo_b = load_image(path_a), load_image(path_b)
    sface_model = xcos_xai.load_pretrained("sface-xcos").eval()
    dlib_model = xcos_xai.load_pretrained("dlib-xcos").eval()
    yunet, dlib_aligner = YuNetAligner(), FaceAligner()

    def tensors(model, aligner):
        chips = np.stack([aligner(photo_a).chip, aligner(photo_b).chip])
        x = model.input_spec.normalize(torch.from_numpy(chips).permute(0, 3, 1, 2))
        return x[:1].contiguous(), x[1:].contiguous()

    xs, xd = tensors(sface_model, yunet), tensors(dlib_model, dlib_aligner)

    def verify(model, xa, xb):
        with torch.inference_mode():
            emb_a, emb_b = model.backbone(torch.cat([xa, xb])).chunk(2)
            return float(F.cosine_similarity(emb_a, emb_b, dim=1)[0])

    def explain(model, xa, xb):
        with torch.inference_mode():
            out = model(xa, xb)
            return (out.score.tolist(), out.model_cosine.tolist(), out.cos_map.cpu().numpy(),
                    out.attention.cpu().numpy(), out.contribution.cpu().numpy())

    def verify_photos():
        return verify(sface_model, *tensors(sface_model, yunet))

    times = interleave({
        "align_sface": lambda: (yunet(photo_a), yunet(photo_b)),
        "align_dlib": lambda: (dlib_aligner(photo_a), dlib_aligner(photo_b)),
        "verify_sface": lambda: verify(sface_model, *xs),
        "verify_dlib": lambda: verify(dlib_model, *xd),
        "xcos_sface": lambda: explain(sface_model, *xs),
        "xcos_dlib": lambda: explain(dlib_model, *xd),
        "verify_photos_sface": verify_photos,
        "explain_pair_sface": lambda: explain_pair(photo_a, photo_b, model=sface_model,
                                                   aligner=yunet),
    }, reps, warmup=2, progress=not args.no_progress, desc="SFace cost")
    ratios = {
        "xcos_over_verify_sface": paired_ratio(times["xcos_sface"], times["verify_sface"]),
        "xcos_over_verify_dlib": paired_ratio(times["xcos_dlib"], times["verify_dlib"]),
        "verify_sface_over_dlib": paired_ratio(times["verify_sface"], times["verify_dlib"]),
        "xcos_sface_over_dlib": paired_ratio(times["xcos_sface"], times["xcos_dlib"]),
        "align_sface_over_dlib": paired_ratio(times["align_sface"], times["align_dlib"]),
        "explain_pair_over_verify_photos_sface": paired_ratio(times["explain_pair_sface"],
                                                              times["verify_photos_sface"]),
    }
    med = {k: summary(v)["median_s"] * 1e3 for k, v in times.items()}
    rows = [
        ["align both photos", f"{med['align_sface']:.1f}", f"{med['align_dlib']:.1f}",
         fmt_ratio(ratios["align_sface_over_dlib"])],
        ["verify (backbone on both faces + cosine)", f"{med['verify_sface']:.1f}",
         f"{med['verify_dlib']:.1f}", fmt_ratio(ratios["verify_sface_over_dlib"])],
        ["xCos explanation (same tensors)", f"{med['xcos_sface']:.1f}",
         f"{med['xcos_dlib']:.1f}", fmt_ratio(ratios["xcos_sface_over_dlib"])],
        ["xCos / verify (paired ratio)", fmt_ratio(ratios["xcos_over_verify_sface"]),
         fmt_ratio(ratios["xcos_over_verify_dlib"]), "-"],
        ["photos to explanation: `explain_pair` / align + verify",
         fmt_ratio(ratios["explain_pair_over_verify_photos_sface"]), "-", "-"],
    ]
    payload = {"name": NAME, "quick": args.quick, "environment": env,
               "photos": [str(path_a), str(path_b)],
               "times": {k: summary(v) for k, v in times.items()}, "raw_times_s": times,
               "ratios": ratios}
    md = [f"## SFace per pair (`benchmarks/{NAME}.py`)", "",
          f"One pair of LFW photos, {reps} repetitions, all cases taking turns in one loop, "
          f"{args.threads} torch thread(s). Milliseconds are medians (the machine is shared: "
          "read the ratios, medians of paired per-repetition ratios with their interquartile "
          "range).", "",
          md_table(["per pair", "SFace (ms or ratio)", "dlib ResNet (ms or ratio)",
                    "SFace / dlib"], rows), "",
          f"`explain_pair` from photos: {med['explain_pair_sface']:.1f} ms; alignment + "
          f"verification of the same photos: {med['verify_photos_sface']:.1f} ms."]
    write_results(args.out, NAME, payload, "\n".join(md))


if __name__ == "__main__":
    main()
