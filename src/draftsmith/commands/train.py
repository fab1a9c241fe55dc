"""``draftsmith train RECIPE.yaml [--set key=value ...] [--resume]``.

Library imports happen inside ``run`` so that ``draftsmith --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train an EAGLE-3 draft from a YAML recipe (torchrun for several GPUs)",
        description="Train a draft. Paths in the recipe are relative to the recipe file. Under torchrun "
                    "(`torchrun --nproc-per-node N -m draftsmith train ...`) each rank trains on its slice of "
                    "every global batch.")
    parser.add_argument("recipe", help="YAML recipe with target, data, draft and training sections")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe value, e.g. --set training.learning_rate=3e-4 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in training.output_dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (metrics are logged instead)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from draftsmith.train.loop import TrainingInterrupted, train
    from draftsmith.train.recipe import load_recipe
    from draftsmith.train.summary import run_summary

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = load_recipe(args.recipe, args.overrides)
    try:
        final = train(recipe, resume=args.resume, progress=not args.no_progress)
    except TrainingInterrupted as stop:
        again = shlex.join(["draftsmith", "train", args.recipe, *(f"--set={o}" for o in args.overrides), "--resume"])
        since = "from step 0: no checkpoint yet" if stop.last_checkpoint is None else \
            f"from the checkpoint at step {stop.last_checkpoint}"
        print(f"interrupted at step {stop.step}; continue with `{again}` ({since})", file=sys.stderr)
        return 130
    print(run_summary(recipe, final))
    return 0
