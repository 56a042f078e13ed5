"""The ``xcos-xai`` command line: ``demo``, ``evaluate``, ``explain``, ``compare``, ``train``
(every model-using command takes ``--model dlib|sface``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from ._env import dataset_dir
from ._io import atomic_path
from .apps.compare_distributed import run_compare_distributed
from .apps.lfw_report import run_lfw_evaluation
from .apps.photo_demo import run_photo_demo
from .core.device import resolve_device
from .data.align import MultipleFacesWarning, NoFaceError
from .data.lfw import IMAGE_FOLDERS
from .evaluation.faithfulness import CompareConfig, to_markdown
from .explain import explain_pair
from .explainers import list_explainers
from .pretrained import MODEL_BUNDLES, bundle_name, load_pretrained
from .training.run import add_arguments as add_train_arguments
from .training.run import run as run_training
from .viz.notes import notes_line

MODEL_HELP = ("the face model: dlib's ResNet (default) or OpenCV Zoo's SFace, each with its "
              "bundled xCos head (dlib-xcos, sface-xcos) and its aligner")
DEVICE_HELP = "auto (CUDA when present), cpu, cuda, cuda:N"
IMAGES_HELP = ("the LFW image folder: a name inside the LFW folder or a path (default: the "
               "first of " + ", ".join(IMAGE_FOLDERS) + " found there)")


def _cmd_explain(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model = load_pretrained(name=bundle_name(args.model), attention=args.attention).to(device)
    try:
        expl = explain_pair(args.image_a, args.image_b, model=model,
                            assume_aligned=args.assume_aligned, device=device,
                            method=args.method)
    except NoFaceError as err:  # its fix is worded for Python: give the flag's name too
        raise NoFaceError(f"{err} (command line: --assume-aligned)") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    expl.save_html(out / "explanation.html")
    expl.save_png(out / "explanation.png")
    with atomic_path(out / "explanation.json") as tmp:
        tmp.write_text(json.dumps(expl.to_dict(), indent=1, default=str), encoding="utf-8")
    verdict = "same person" if expl.same else "different people"
    print(f"xCos {expl.score:.4f} (threshold {expl.threshold:.4f}): {verdict}; "
          f"model cosine {expl.model_cosine:.4f} ({expl.info.get('model', args.model)})")
    if notes_line(expl):  # how the faces were found, when not cleanly (one line, no paths)
        print(f"note: {notes_line(expl)}")
    print(f"wrote {out / 'explanation.html'}, explanation.png, explanation.json")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    table = run_lfw_evaluation(Path(args.out), root=args.lfw, images=args.images,
                               workers=args.workers, reference=args.reference,
                               report=args.report, model=args.model,
                               device=resolve_device(args.device), batch_size=args.batch_size)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"evaluation took {time.perf_counter() - start:.1f} s; results in {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    args.device = resolve_device(args.device)  # a wrong --device fails before any work
    lfw = dataset_dir("lfw", required=False)
    if lfw is not None:
        print(f"LFW found at {lfw}: running the LFW View-2 evaluation and the report")
        args.lfw, args.images, args.reference, args.report = str(lfw), None, False, True
        return _cmd_evaluate(args)
    print("No LFW under XCOS_XAI_DATA: explaining photos that installed packages ship "
          "(matplotlib's grace_hopper.jpg, scikit-image's astronaut.png)")
    path = run_photo_demo(Path(args.out), model=args.model, device=args.device)
    print(f"wrote {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    return run_training(args)


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``xcos-xai compare`` options (defaults: :class:`CompareConfig`'s)."""
    d = CompareConfig()
    parser.add_argument("--lfw", default=None, help="LFW folder (default: $XCOS_XAI_DATA/lfw)")
    parser.add_argument("--images", default=None, help=IMAGES_HELP)
    parser.add_argument("--out", default="outputs/compare", help="output folder")
    parser.add_argument("--model", default="dlib", choices=sorted(MODEL_BUNDLES),
                        help=MODEL_HELP + "; the fold heads are that bundle's")
    parser.add_argument("--pairs", type=int, default=d.n_pairs,
                        help="pairs, a multiple of 20 (balanced per fold and class)")
    parser.add_argument("--methods", default=",".join(d.methods),
                        help="comma-separated explainers (default: all registered)")
    parser.add_argument("--target", default=d.target, choices=["xcos", "model_cosine"],
                        help="the explained pair score")
    parser.add_argument("--default-head", action="store_true",
                        help="use the default head for every pair instead of the fold heads")
    parser.add_argument("--deletion-step", type=float, default=d.deletion_step,
                        help="replaced fraction per deletion step (0.05: 21 points, 0..100 %%)")
    parser.add_argument("--insertion-step", type=float, default=d.insertion_step,
                        help="restored fraction per insertion step")
    parser.add_argument("--ig-steps", type=int, default=d.ig_steps)
    parser.add_argument("--smoothgrad-samples", type=int, default=d.smoothgrad_samples)
    parser.add_argument("--localisation", type=int, default=d.n_localisation,
                        help="genuine pairs used for the localisation game")
    parser.add_argument("--sensitivity", type=int, default=d.n_sensitivity,
                        help="pairs for Captum's sensitivity_max")
    parser.add_argument("--randomisation", type=int, default=d.n_randomisation,
                        help="pairs for the model-randomisation check")
    parser.add_argument("--corrrise-masks", type=int, default=d.corrrise_masks,
                        help="CorrRISE's random masks per face")
    parser.add_argument("--road", type=int, default=d.n_road,
                        help="pairs for the ROAD (noisy linear imputation) curves")
    parser.add_argument("--mprt-layers", type=int, default=d.mprt_layers,
                        help="layers for cascading/independent randomisation (0: off)")
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present), cpu, cuda, cuda:N; under torchrun "
                             "each CUDA rank takes GPU LOCAL_RANK")
    parser.add_argument("--workers", type=int, default=1, help="processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--seed", type=int, default=d.seed)
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--merge", nargs="+", metavar="FOLDER", default=None,
                       help="run nothing: merge finished runs of the same pairs and settings "
                            "with different --methods into --out (one table of every method)")
    again.add_argument("--redo-randomisation", action="store_true",
                       help="run only the randomisation checks again, for every method of the "
                            "finished run in --out (the layers re-initialised as the model now "
                            "declares), and rewrite its records and table")
    parser.add_argument("--replace", default="",
                        help="with --merge: methods (comma-separated) taken from the last run "
                             "that measured them, e.g. xcos after re-fitting its statistics")


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.replace and not args.merge:
        raise SystemExit("--replace only works with --merge (it names the methods that a "
                         "later run measured again)")
    if args.merge or args.redo_randomisation:
        from .apps.compare import merge_method_runs, redo_randomisation
        from .core.device import resolve_device

        if args.merge:
            replace = tuple(m.strip() for m in args.replace.split(",") if m.strip())
            table, _ = merge_method_runs(args.merge, args.out, replace=replace)
        else:
            table, _ = redo_randomisation(args.out, root=args.lfw, images=args.images,
                                          device=resolve_device(args.device))
        print(to_markdown(table))
        print(f"results in {args.out}")
        return 0
    config = CompareConfig(
        n_pairs=args.pairs, bundle=bundle_name(args.model),
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        target=args.target, fold_heads=not args.default_head, ig_steps=args.ig_steps,
        deletion_step=args.deletion_step, insertion_step=args.insertion_step,
        smoothgrad_samples=args.smoothgrad_samples, n_localisation=args.localisation,
        n_sensitivity=args.sensitivity, n_randomisation=args.randomisation, seed=args.seed,
        threads=args.threads, corrrise_masks=args.corrrise_masks, n_road=args.road,
        mprt_layers=args.mprt_layers)
    start = time.perf_counter()
    # one process, or one torchrun rank of a sharded run
    table, curves = run_compare_distributed(args.out, root=args.lfw, config=config,
                                            device=args.device, workers=args.workers,
                                            images=args.images)
    if table is None:  # a torchrun rank other than 0: rank 0 prints the merged table
        return 0
    print(to_markdown(table))
    print(f"compare took {time.perf_counter() - start:.1f} s; results in {args.out} "
          "(table.csv, table.md, table.json, curves.html, curves.png, "
          "cost_faithfulness.html/.png, example_*.png)")
    return 0


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--batch-size`` of the LFW evaluation (``evaluate``, ``demo``)."""
    parser.add_argument("--device", default="auto",
                        help=DEVICE_HELP + "; the model and the fold heads run there, float32")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="faces per backbone forward (the fold heads score pairs in "
                             "batches of 1024)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xcos-xai", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the main job on the embedded default model: LFW "
                                       "evaluation and an HTML report (or a photo demo)")
    demo.add_argument("--out", default="outputs/demo", help="output folder")
    demo.add_argument("--workers", type=int, default=2, help="processes for face alignment")
    demo.add_argument("--model", default="dlib", choices=sorted(MODEL_BUNDLES), help=MODEL_HELP)
    add_device_arguments(demo)
    demo.set_defaults(func=_cmd_demo)

    ev = sub.add_parser("evaluate", help="LFW View-2 10-fold evaluation of every scorer")
    ev.add_argument("--lfw", default=None, help="LFW folder (default: $XCOS_XAI_DATA/lfw)")
    ev.add_argument("--images", default=None, help=IMAGES_HELP)
    ev.add_argument("--out", default="outputs/lfw", help="output folder")
    ev.add_argument("--workers", type=int, default=2, help="processes for face alignment")
    ev.add_argument("--model", default="dlib", choices=sorted(MODEL_BUNDLES), help=MODEL_HELP)
    ev.add_argument("--reference", action="store_true",
                    help="also score with the model's own pipeline as the reference (dlib-bin, "
                         "or OpenCV + onnxruntime for SFace)")
    ev.add_argument("--report", action="store_true", help="also write the HTML report")
    add_device_arguments(ev)
    ev.set_defaults(func=_cmd_evaluate)

    ex = sub.add_parser("explain", help="explain one pair of photos")
    ex.add_argument("image_a")
    ex.add_argument("image_b")
    ex.add_argument("--out", default="outputs/explain", help="output folder")
    ex.add_argument("--device", default="auto", help=DEVICE_HELP)
    ex.add_argument("--model", default="dlib", choices=sorted(MODEL_BUNDLES), help=MODEL_HELP)
    ex.add_argument("--assume-aligned", action="store_true",
                    help="take the images as already aligned faces (no detection)")
    ex.add_argument("--method", default="xcos", choices=list_explainers(),
                    help="the explanation method (default: xCos's own maps)")
    ex.add_argument("--attention", default=None, choices=[None, "uniform"],
                    help="replace the learned attention (ablation)")
    ex.set_defaults(func=_cmd_explain)

    cmp = sub.add_parser("compare", help="every pair explainer (xCos, Grad-CAM, IG, ...) on "
                                         "LFW pairs: faithfulness, localisation, cost")
    add_compare_arguments(cmp)
    cmp.set_defaults(func=_cmd_compare)

    tr = sub.add_parser("train", help="train an xCos model from a TOML/YAML configuration "
                                      "(torchrun-ready; see training/configs/)")
    add_train_arguments(tr)
    tr.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            if not sys.warnoptions:  # (python -W ... shows them again, for developers)
                # the outputs carry a short detection note instead of a warning with paths
                warnings.simplefilter("ignore", MultipleFacesWarning)
            return args.func(args)
    except (ValueError, OSError, TypeError, FloatingPointError) as err:
        # OSError: also FileNotFoundError; FloatingPointError: a diverging training loss
        message = " ".join(str(err).split())  # always one line
        print(f"xcos-xai {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
