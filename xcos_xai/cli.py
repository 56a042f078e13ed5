"""The ``xcos-xai`` command line: ``demo``, ``evaluate``, ``explain``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _cmd_explain(args: argparse.Namespace) -> int:
    from .data.align import NoFaceError
    from .explain import explain_pair
    from .pretrained import load_pretrained

    model = load_pretrained(attention=args.attention)
    try:
        expl = explain_pair(args.image_a, args.image_b, model=model,
                            assume_aligned=args.assume_aligned)
    except NoFaceError as err:  # its fix is worded for Python: give the flag's name too
        raise NoFaceError(f"{err} (command line: --assume-aligned)") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    expl.save_html(out / "explanation.html")
    expl.save_png(out / "explanation.png")
    (out / "explanation.json").write_text(json.dumps(expl.to_dict(), indent=1, default=str))
    verdict = "same person" if expl.same else "different people"
    print(f"xCos {expl.score:.4f} (threshold {expl.threshold:.4f}): {verdict}; "
          f"model cosine {expl.model_cosine:.4f}")
    print(f"wrote {out / 'explanation.html'}, explanation.png, explanation.json")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.lfw_report import run_lfw_evaluation

    start = time.perf_counter()
    table = run_lfw_evaluation(Path(args.out), root=args.lfw, workers=args.workers,
                               reference=args.reference, report=args.report,
                               model=getattr(args, "model", "dlib"))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"evaluation took {time.perf_counter() - start:.1f} s; results in {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._env import dataset_dir

    lfw = dataset_dir("lfw", required=False)
    if lfw is not None:
        print(f"LFW found at {lfw}: running the LFW View-2 evaluation and the report")
        args.lfw, args.reference, args.report = str(lfw), False, True
        return _cmd_evaluate(args)
    from .evaluation.photo_demo import run_photo_demo

    print("No LFW under XCOS_XAI_DATA: explaining photos that installed packages ship "
          "(matplotlib's grace_hopper.jpg, scikit-image's astronaut.png)")
    path = run_photo_demo(Path(args.out))
    print(f"wrote {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.run import run

    return run(args)


def _cmd_compare(args: argparse.Namespace) -> int:
    from .explainers.compare import main_compare

    return main_compare(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xcos-xai", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the main job on the embedded default model: LFW "
                                       "evaluation and an HTML report (or a photo demo)")
    demo.add_argument("--out", default="outputs/demo", help="output folder")
    demo.add_argument("--workers", type=int, default=2, help="processes for face alignment")
    demo.set_defaults(func=_cmd_demo)

    ev = sub.add_parser("evaluate", help="LFW View-2 10-fold evaluation of every scorer")
    ev.add_argument("--lfw", default=None, help="LFW folder (default: $XCOS_XAI_DATA/lfw)")
    ev.add_argument("--out", default="outputs/lfw", help="output folder")
    ev.add_argument("--workers", type=int, default=2, help="processes for face alignment")
    ev.add_argument("--model", default="dlib", choices=["dlib", "sface"],
                    help="the face model: dlib's ResNet (default) or OpenCV Zoo's SFace")
    ev.add_argument("--reference", action="store_true",
                    help="also score with the model's own pipeline as the reference (dlib-bin, "
                         "or OpenCV + onnxruntime for SFace)")
    ev.add_argument("--report", action="store_true", help="also write the HTML report")
    ev.set_defaults(func=_cmd_evaluate)

    ex = sub.add_parser("explain", help="explain one pair of photos")
    ex.add_argument("image_a")
    ex.add_argument("image_b")
    ex.add_argument("--out", default="outputs/explain", help="output folder")
    ex.add_argument("--assume-aligned", action="store_true",
                    help="take the images as already aligned faces (no detection)")
    ex.add_argument("--attention", default=None, choices=[None, "uniform"],
                    help="replace the learned attention (ablation)")
    ex.set_defaults(func=_cmd_explain)

    cmp = sub.add_parser("compare", help="every pair explainer (xCos, Grad-CAM, IG, ...) on "
                                         "LFW pairs: faithfulness, localisation, cost")
    from .explainers.compare import add_compare_arguments

    add_compare_arguments(cmp)
    cmp.set_defaults(func=_cmd_compare)

    from .training.run import add_arguments

    tr = sub.add_parser("train", help="train an xCos model from a TOML/YAML configuration "
                                      "(torchrun-ready; see training/configs/)")
    add_arguments(tr)
    tr.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, TypeError, FloatingPointError) as err:
        # OSError: also FileNotFoundError; FloatingPointError: a diverging training loss
        message = " ".join(str(err).split())  # always one line
        print(f"xcos-xai {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
