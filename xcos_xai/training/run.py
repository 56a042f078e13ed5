"""``xcos-xai train`` / ``training/train.py``: train an xCos model from a configuration file.

    xcos-xai train training/configs/casia_r50.toml --set optim.lr=0.01 --set run.out=runs/a
    torchrun --nproc_per_node 8 training/train.py training/configs/casia_r50.toml
    xcos-xai train CONFIG --resume            # continue run.out/checkpoints/last.pt exactly
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .config import ConfigError, load_config
from .engine import train


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("config", nargs="?", default=None,
                        help="a .toml or .yaml configuration (default: built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override one setting (TOML value), e.g. --set optim.lr=0.01; "
                             "repeatable")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        metavar="CHECKPOINT",
                        help="continue from run.out/checkpoints/last.pt (or the given file)")
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="MODULE",
                        help="import this module first, e.g. one that registers your own "
                             "backbone with @register_backbone (the smoke test's: "
                             "xcos_xai.testing); repeatable")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved configuration and exit")
    return parser


def run(args: argparse.Namespace) -> int:
    for module in args.imports:  # e.g. one that registers the backbone the config names
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"--import {module}: {err}; give the dotted name of an "
                              "installed module (e.g. xcos_xai.testing)") from None
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(cfg.to_toml())
        return 0
    summary = train(cfg, resume=args.resume)
    val = (summary or {}).get("val") or {}
    for name, res in val.items():
        accs = {k: v["acc"] for k, v in res.items() if isinstance(v, dict) and "acc" in v}
        print(f"{name}: " + ", ".join(f"{k} {100 * a:.2f}%" for k, a in accs.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="train", description=__doc__,
                                                   formatter_class=argparse
                                                   .RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ConfigError, OSError, ValueError, FloatingPointError) as err:
        # ValueError: also CheckpointError; FloatingPointError: a diverging loss
        message = " ".join(str(err).split())  # always one line
        print(f"train: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
