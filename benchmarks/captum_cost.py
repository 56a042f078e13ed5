"""What each Captum attribution costs relative to xCos's own maps, on the same pairs.

Every explainer of ``xcos_xai.explainers`` runs through its one interface,
``create_explainer(name, model).attribute(x_a, x_b, target="xcos")``, on the same aligned,
normalised LFW pairs. Each repetition times every method and xCos next to each other (order
rotated), and the reported cost of a method is the median over repetitions of
``time(method) / time(xcos)`` from the same repetition.

Settings (full run): Grad-CAM at the xCos grid; Integrated Gradients with 50 steps;
occlusion of the grid cells (16 cells per face on the 4x4 grid); SmoothGrad with 16 noisy
samples (stdev 0.1); saliency (gradient x (input - baseline)). ``--quick`` uses 8 IG steps
and 4 SmoothGrad samples (stated in the output).

    python benchmarks/captum_cost.py            # 1 pair (9 repetitions), 4 pairs (6)
    python benchmarks/captum_cost.py --quick
"""

from __future__ import annotations

import torch
from _common import (
    environment,
    fmt_ratio,
    interleave,
    md_table,
    paired_ratio,
    parser,
    setup_torch,
    summary,
    write_results,
)
from explain_cost import load_chips

NAME = "captum_cost"
METHODS = ("gradcam", "integrated_gradients", "occlusion", "smoothgrad", "saliency")


def options(quick: bool) -> dict[str, dict]:
    """Every method's options, stated explicitly (they appear in the table)."""
    return {"xcos": {}, "gradcam": {},
            "integrated_gradients": {"n_steps": 8 if quick else 50},
            "occlusion": {}, "smoothgrad": {"nt_samples": 4 if quick else 16, "stdev": 0.1},
            "saliency": {}}


SETTINGS = {"gradcam": "at the xCos grid", "occlusion": "16 grid cells per face (4x4)",
            "saliency": "one backward"}


def gradcam_one_pass(model, x_a: torch.Tensor, x_b: torch.Tensor):
    """Grad-CAM at the xCos grid from ONE backbone forward (diagnostic, not an explainer).

    Grad-CAM only needs ``d score / d grid``: the backbone runs without autograd, only the
    head is differentiated, and the score comes from the same pass. Returns the ``(2B, h, w)``
    signed maps (rows ``:B`` face A) and the ``(B,)`` scores.
    """
    with torch.no_grad():
        grid = model.backbone.forward_features(torch.cat([x_a, x_b]))
    grid = grid.detach().requires_grad_()
    with torch.enable_grad():
        score = model.head(*grid.chunk(2)).score
        (grad,) = torch.autograd.grad(score.sum(), grid)
    cam = (grad.mean(dim=(2, 3), keepdim=True) * grid).sum(1)
    return cam.detach(), score.detach()


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--pairs", type=int, nargs="+", default=None,
                   help="batch sizes in pairs (full: 1 4; quick: 1)")
    p.add_argument("--reps", type=int, default=None,
                   help="repetitions (full: 9 for 1 pair, 6 for larger batches; quick 1)")
    args = p.parse_args(argv)
    setup_torch(args.threads)
    import xcos_xai
    from xcos_xai.explainers import create_explainer, list_explainers

    quick = args.quick
    sizes = args.pairs or ([1] if quick else [1, 4])
    env = environment(args.threads)
    model = xcos_xai.load_pretrained().eval()
    available = list_explainers()
    methods = [m for m in METHODS if m in available]
    missing = [m for m in METHODS if m not in available]
    opts = options(quick)
    explainers = {name: create_explainer(name, model, **opts[name])
                  for name in ["xcos", *methods]}
    chips, chip_source = load_chips(2 * max(sizes), seed=1)
    x = model.input_spec.normalize(torch.from_numpy(chips).permute(0, 3, 1, 2))
    half = max(sizes)
    results, raw = {}, {}
    reps_of, agree = {}, {}
    for b in sizes:
        reps = args.reps or (1 if quick else 9 if b == 1 else 6)
        reps_of[b] = reps
        xa, xb = x[:b].contiguous(), x[half:half + b].contiguous()
        cases = {name: (lambda e=e, xa=xa, xb=xb: e.attribute(xa, xb, target="xcos"))
                 for name, e in explainers.items()}
        if "gradcam" in explainers:
            cases["gradcam_one_pass"] = lambda xa=xa, xb=xb: gradcam_one_pass(model, xa, xb)
            ref = explainers["gradcam"].attribute(xa, xb, target="xcos")
            cam, _ = gradcam_one_pass(model, xa, xb)
            agree[b] = float(torch.cat([ref.grid_a, ref.grid_b]).sub(cam).abs().max())
        # one warm-up round (first-call costs) on the first batch size only: a round of the
        # larger sizes costs minutes and their shapes inside Captum are the same
        times = interleave(cases, reps, warmup=int(b == sizes[0]), progress=not args.no_progress,
                           desc=f"{b} pair(s)")
        raw[b] = times
        results[b] = {"times": {k: summary(v) for k, v in times.items()},
                      "ratio_to_xcos": {m: paired_ratio(times[m], times["xcos"])
                                        for m in times if m != "xcos"}}
    labels = {name: type(e).get_name() for name, e in explainers.items()}
    payload = {"name": NAME, "quick": quick, "environment": env, "pairs": sizes,
               "repetitions": reps_of, "options": opts, "chips": chip_source,
               "labels": labels, "missing_explainers": missing, "results": results,
               "raw_times_s": raw,
               "gradcam_one_pass_max_abs_difference_to_gradcam": agree}
    headers = ["method", "settings"] + [f"x xCos, {b} pair{'s' * (b > 1)}" for b in sizes]
    rows = []
    for m in methods:
        setting = ", ".join(f"{k}={v}" for k, v in opts[m].items()) or SETTINGS.get(
            m, "defaults")
        rows.append([labels[m], setting]
                    + [fmt_ratio(results[b]["ratio_to_xcos"][m], 1) for b in sizes])
    if agree:
        rows.append(["Grad-CAM in one pass (diagnostic: `gradcam_one_pass` here)",
                     "backbone without autograd, head backward only"]
                    + [fmt_ratio(results[b]["ratio_to_xcos"]["gradcam_one_pass"], 1)
                       for b in sizes])
    xcos_ms = ", ".join(f"{b} pair(s) {1e3 * results[b]['times']['xcos']['median_s']:.0f} ms"
                        for b in sizes)
    md = [f"## Captum attributions vs xCos (`benchmarks/{NAME}.py`)", "",
          "Time of one `attribute(x_a, x_b, target=\"xcos\")` call relative to xCos's own "
          "maps on the same pairs: median of paired repetitions ("
          + ", ".join(f"{r} for {b} pair(s)" for b, r in reps_of.items())
          + f"; interquartile range in brackets); inputs: {chip_source}.", "",
          md_table(headers, rows), "",
          f"xCos itself (median, for scale only): {xcos_ms}."]
    if agree:
        md.append("The one-pass Grad-CAM equals the explainer's grid maps to "
                  f"{max(agree.values()):.1e} (max abs difference).")
    if missing:
        md.append(f"Not registered in `xcos_xai.explainers` at run time: {', '.join(missing)}.")
    write_results(args.out, NAME, payload, "\n".join(md))


if __name__ == "__main__":
    main()
