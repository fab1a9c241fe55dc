"""``draftsmith train RECIPE.yaml [--set key=value ...] [--resume]``."""

from __future__ import annotations

import argparse
import logging

from draftsmith.train.loop import train
from draftsmith.train.recipe import load_recipe


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train an EAGLE-3 draft from a YAML recipe (torchrun for several GPUs)",
        description="Train a draft. Under torchrun (`torchrun --nproc-per-node N -m draftsmith train ...`) "
                    "each rank trains on its slice of every global batch.")
    parser.add_argument("recipe", help="YAML recipe with target, data, draft and training sections")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe value, e.g. --set training.learning_rate=3e-4 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in training.output_dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = load_recipe(args.recipe, args.overrides)
    final = train(recipe, resume=args.resume, progress=not args.no_progress)
    print(f"draft written to {final}")
    return 0
