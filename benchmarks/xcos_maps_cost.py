"""What each xCos map costs over a plain verification of the same pair (issue 13's budget).

Cases, all under ``torch.inference_mode``, taking turns in one loop on one LFW pair:

- ``verify``: the plain verification: both faces through the backbone in one call, cosine.
- ``<map>``: ``create_explainer("xcos", model, map=<map>).attribute(x_a, x_b)``: the full
  explainer call (input checks, one batched backbone call, the map on the grid, pixel maps),
  for every map of :data:`xcos_xai.explainers.xcos.MAPS`.
- ``occlusion``: Captum occlusion of the 16 grid cells (the faithfulness yardstick).

Goal: the default map's explanation <= 1.15x the plain verification.

    python benchmarks/xcos_maps_cost.py            # full: 60 reps
    python benchmarks/xcos_maps_cost.py --quick
    python benchmarks/xcos_maps_cost.py --maps evidence,amortised_fine --reps 200
    python benchmarks/xcos_maps_cost.py --model sface --maps evidence,amortised --reps 200
"""

from __future__ import annotations

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
from explain_cost import load_chips

NAME = "xcos_maps_cost"


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--maps", default=None,
                   help="comma-separated maps (default: all, and occlusion)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 60)")
    p.add_argument("--model", default="dlib", choices=["dlib", "sface"],
                   help="the bundle (dlib-xcos, sface-xcos) and its aligner")
    args = p.parse_args(argv)
    setup_torch(args.threads)
    import xcos_xai
    from xcos_xai.explainers import create_explainer
    from xcos_xai.explainers.xcos import MAPS, map_available
    from xcos_xai.pretrained import bundle_name

    reps = args.reps or (6 if args.quick else 60)
    env = environment(args.threads)
    model = xcos_xai.load_pretrained(bundle_name(args.model)).eval()
    backbone = model.backbone
    chips, chip_source = load_chips(2, model=args.model)
    x = model.input_spec.normalize(torch.from_numpy(chips).permute(0, 3, 1, 2))
    xa, xb = x[:1].contiguous(), x[1:].contiguous()

    def verify():
        with torch.inference_mode():
            emb_a, emb_b = backbone(torch.cat([xa, xb])).chunk(2)
            return F.cosine_similarity(emb_a, emb_b, dim=1)

    maps = (args.maps.split(",") if args.maps else
            [m for m in MAPS if map_available(m, model.map_stats)] + ["occlusion"])
    explainers = {m: create_explainer(m, model) if m == "occlusion"
                  else create_explainer("xcos", model, map=m) for m in maps}

    def run(explainer):
        with torch.inference_mode():
            return explainer.attribute(xa, xb)

    cases = {"verify": verify}
    cases.update({m: (lambda e=e: run(e)) for m, e in explainers.items()})
    times = interleave(cases, reps, warmup=2, progress=not args.no_progress, desc="1 pair")
    ratios = {k: paired_ratio(times[k], times["verify"]) for k in cases if k != "verify"}
    default = create_explainer("xcos", model).map  # the bundle's default map
    goal = ratios[default]["median"] <= 1.15 if default in ratios else None
    payload = {"name": NAME, "model": args.model, "quick": args.quick, "environment": env,
               "chips": chip_source,
               "default_map": default, "times": {k: summary(v) for k, v in times.items()},
               "raw_times_s": times, "ratios": ratios,
               "goals": {"default_map_at_most_1.15x": goal}}
    rows = [[f"`{k}`" + (" (default)" if k == default else ""), fmt_ratio(r),
             "<= 1.15" if k == default else "-", verdict(goal) if k == default else "-"]
            for k, r in ratios.items()]
    med = {k: summary(v)["median_s"] * 1e3 for k, v in times.items()}
    # a run of chosen maps (the default against the evidence map) is its own result file
    flags = (f" --model {args.model}" * (args.model != "dlib")
             + (f" --maps {args.maps} --reps {reps}" if args.maps else ""))
    title = ("the default against the evidence map" if set(cases) == {"verify", "evidence", default}
             else f"maps {args.maps}" if args.maps else "cost per map")
    on = " on SFace" if args.model == "sface" else ""
    md = [f"## xCos maps{on}: {title} (`benchmarks/{NAME}.py{flags}`)", "",
          f"Model: {bundle_name(args.model)}. "
          "Explainer call / plain verification of the same pair, median of paired "
          f"per-repetition ratios (interquartile range); {reps} reps, cases alternating in "
          f"one loop, 1 pair, inputs: {chip_source}.", "",
          md_table(["map", "ratio", "goal", "status"], rows), "",
          "Median milliseconds per call in this run (shared machine: for scale only): "
          + ", ".join(f"{k} {v:.1f}" for k, v in med.items()) + "."]
    name = NAME + (f"_{args.model}" if args.model != "dlib" else "_default" if args.maps else "")
    write_results(args.out, name, payload, "\n".join(md))


if __name__ == "__main__":
    main()
