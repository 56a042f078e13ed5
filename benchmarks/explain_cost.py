"""What an xCos explanation costs over a plain verification of the same pair.

Cases, all under ``torch.inference_mode`` and taking turns in one loop:

- ``verify``: the plain verification forward: both faces through the backbone in one call
  (``backbone(cat([x_a, x_b]))``, dlib's descriptors), then their cosine.
- ``xcos``: the ``explain_pair``-style explanation on the same tensors: ``XCosModel(x_a, x_b)``
  (score, S, W, S*W and the model's cosine, one batched backbone call), with the maps copied
  out to numpy as ``explain_pair`` does.
- ``explain_pair``: the full public call ``explain_pair(chip_a, chip_b, model=model,
  assume_aligned=True)`` on ``150x150x3`` uint8 chips (input checks, normalisation, result
  object), one pair.
- ``verify_from_chips``: its plain counterpart: normalise the two chips, backbone, cosine.
- ``xcos_without_input_checks`` (batched, diagnostic): ``XCosModel.forward``'s computation
  without ``_check_images`` (``torch.isfinite(x).all()`` on every pixel of both inputs).

Goals: one pair, ``xcos / verify <= 1.15``; batched (64 pairs), explanation throughput
``verify_time / xcos_time >= 0.9``.

    python benchmarks/explain_cost.py            # full: 1 pair x 100 reps, 64 pairs x 15 reps
    python benchmarks/explain_cost.py --quick
"""

from __future__ import annotations

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
    setup_torch,
    summary,
    verdict,
    write_results,
)

NAME = "explain_cost"


def load_chips(n: int, seed: int = 0, model: str = "dlib") -> tuple[np.ndarray, str]:
    """``(n, H, W, 3)`` uint8 aligned LFW faces (from the chip cache) by ``model``'s aligner
    (dlib: 150x150 chips, SFace: 112x112 ArcFace faces), or random chips when no LFW is
    available (the cost does not depend on the pixels)."""
    import os
    import warnings

    if os.environ.get("XCOS_XAI_DATA"):
        try:
            from xcos_xai.data.align import MultipleFacesWarning
            from xcos_xai.data.aligners import lfw_aligner_for
            from xcos_xai.data.lfw import LFW
            from xcos_xai.pretrained import bundle_input_spec, bundle_name

            warnings.simplefilter("ignore", MultipleFacesWarning)

            images = LFW().images()
            pick = np.random.default_rng(seed).choice(len(images), n, replace=False)
            aligner = lfw_aligner_for(bundle_input_spec(bundle_name(model)))
            faces = aligner.align_many([images[i] for i in sorted(pick)], workers=1,
                                       progress=False)
            return np.stack([f.chip for f in faces]), "LFW chips"
        except Exception as err:  # noqa: BLE001 - any failure: fall back to random chips
            print(f"LFW chips unavailable ({err}); using random chips")
    size = (112, 112) if model == "sface" else (150, 150)
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *size, 3), dtype=np.uint8), "random chips"


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--batch", type=int, default=None, help="pairs in the batched case (64)")
    args = p.parse_args(argv)
    setup_torch(args.threads)
    import xcos_xai
    from xcos_xai import explain_pair

    quick = args.quick
    batch = args.batch or (8 if quick else 64)
    reps_single, reps_batch = (6, 2) if quick else (100, 15)
    env = environment(args.threads)
    model = xcos_xai.load_pretrained().eval()
    backbone = model.backbone
    spec = model.input_spec
    chips, chip_source = load_chips(2 * batch)
    x = spec.normalize(torch.from_numpy(chips).permute(0, 3, 1, 2))
    xa_all, xb_all = x[:batch].contiguous(), x[batch:].contiguous()
    progress = not args.no_progress

    def verify(xa, xb):
        with torch.inference_mode():
            emb_a, emb_b = backbone(torch.cat([xa, xb])).chunk(2)
            return F.cosine_similarity(emb_a, emb_b, dim=1)

    def explain(xa, xb):
        with torch.inference_mode():
            out = model(xa, xb)
            # what explain_pair hands back: numbers and numpy maps
            return (out.score.tolist(), out.model_cosine.tolist(), out.cos_map.cpu().numpy(),
                    out.attention.cpu().numpy(), out.contribution.cpu().numpy())

    def explain_unchecked(xa, xb):
        # XCosModel.forward minus its input checks (_check_images: isfinite over every
        # pixel): how much of the batched gap those checks are
        with torch.inference_mode():
            grid_a, grid_b = backbone.forward_features(torch.cat([xa, xb])).chunk(2)
            out = model.head(grid_a, grid_b)
            cos = model.model_cosine_from_grids(grid_a, grid_b)
            return (out.score.tolist(), cos.tolist(), out.cos_map.cpu().numpy(),
                    out.attention.cpu().numpy(), out.contribution.cpu().numpy())

    def verify_from_chips(ca, cb):
        t = torch.from_numpy(np.stack([ca, cb])).permute(0, 3, 1, 2)
        with torch.inference_mode():
            emb_a, emb_b = backbone(spec.normalize(t)).chunk(2)
            return float(F.cosine_similarity(emb_a, emb_b, dim=1)[0])

    # sanity: xCos's model cosine is the plain verification's cosine
    diff = float((verify(xa_all[:2], xb_all[:2])
                  - model(xa_all[:2], xb_all[:2]).model_cosine.detach()).abs().max())

    xa1, xb1 = xa_all[:1].contiguous(), xb_all[:1].contiguous()
    ca, cb = chips[0], chips[batch]
    single = interleave({
        "verify": lambda: verify(xa1, xb1),
        "xcos": lambda: explain(xa1, xb1),
        "verify_from_chips": lambda: verify_from_chips(ca, cb),
        "explain_pair": lambda: explain_pair(ca, cb, model=model, assume_aligned=True),
    }, reps_single, warmup=2, progress=progress, desc="1 pair")
    batched = interleave({
        "verify": lambda: verify(xa_all, xb_all),
        "xcos": lambda: explain(xa_all, xb_all),
        "xcos_without_input_checks": lambda: explain_unchecked(xa_all, xb_all),
    }, reps_batch, warmup=1, progress=progress, desc=f"{batch} pairs")

    r_single = paired_ratio(single["xcos"], single["verify"])
    r_pair = paired_ratio(single["explain_pair"], single["verify"])
    r_pair_chips = paired_ratio(single["explain_pair"], single["verify_from_chips"])
    r_batch_time = paired_ratio(batched["xcos"], batched["verify"])
    r_batch_tput = paired_ratio(batched["verify"], batched["xcos"])
    r_batch_unchecked = paired_ratio(batched["verify"], batched["xcos_without_input_checks"])
    goal_single = r_single["median"] <= 1.15
    goal_batch = r_batch_tput["median"] >= 0.9
    payload = {
        "name": NAME, "quick": quick, "environment": env, "batch_pairs": batch,
        "chips": chip_source, "max_abs_cosine_difference_xcos_vs_verify": diff,
        "times": {"single": {k: summary(v) for k, v in single.items()},
                  f"batch_{batch}": {k: summary(v) for k, v in batched.items()}},
        "raw_times_s": {"single": single, "batched": batched},
        "ratios": {"single_xcos_over_verify": r_single,
                   "single_explain_pair_over_verify": r_pair,
                   "single_explain_pair_over_verify_from_chips": r_pair_chips,
                   "batched_xcos_over_verify_time": r_batch_time,
                   "batched_throughput_xcos_over_verify": r_batch_tput,
                   "batched_throughput_xcos_without_input_checks_over_verify":
                       r_batch_unchecked},
        "goals": {"single_pair_at_most_1.15x": goal_single,
                  "batched_throughput_at_least_0.9x": goal_batch},
    }
    med = {k: summary(v)["median_s"] * 1e3 for k, v in single.items()}
    medb = {k: summary(v)["median_s"] * 1e3 for k, v in batched.items()}
    rows = [
        ["1 pair: xCos explanation / plain verification (time)", fmt_ratio(r_single),
         "<= 1.15", verdict(goal_single)],
        ["1 pair: `explain_pair(assume_aligned=True)` on chips / verification on tensors",
         fmt_ratio(r_pair), "-", "-"],
        ["1 pair: `explain_pair(assume_aligned=True)` / verification from the same chips",
         fmt_ratio(r_pair_chips), "-", "-"],
        [f"{batch} pairs: xCos explanation / verification (time)", fmt_ratio(r_batch_time),
         "-", "-"],
        [f"{batch} pairs: explanation throughput / verification throughput",
         fmt_ratio(r_batch_tput), ">= 0.9", verdict(goal_batch)],
        [f"{batch} pairs: the same, `XCosModel.forward` without its input checks "
         "(diagnostic)", fmt_ratio(r_batch_unchecked), "-", "-"],
    ]
    md = [f"## Explanation cost (`benchmarks/{NAME}.py`)", "",
          "Median of paired per-repetition ratios (interquartile range in brackets); the "
          f"cases alternate in one loop ({reps_single} reps for 1 pair, {reps_batch} for "
          f"{batch} pairs), `torch.inference_mode` for all; inputs: {chip_source}.", "",
          md_table(["comparison", "ratio", "goal", "status"], rows), "",
          "Median milliseconds per call in this run (for scale only; the machine is shared): "
          + ", ".join(f"{k} {v:.0f}" for k, v in med.items())
          + f"; {batch} pairs: " + ", ".join(f"{k} {v:.0f}" for k, v in medb.items()) + ".",
          f"xCos's `model_cosine` equals the verification cosine to {diff:.1e}."]
    write_results(args.out, NAME, payload, "\n".join(md))


if __name__ == "__main__":
    main()
