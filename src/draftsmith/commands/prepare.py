"""``draftsmith prepare RECIPE.yaml OUT``: run the target once and store offline features."""

from __future__ import annotations

import argparse
import logging


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare", help="run the target over the recipe's data once and store aux states + supervision",
        description="Then train with `--set data.features=OUT` (no target needed at train time).")
    parser.add_argument("recipe", help="YAML recipe (its target, data and draft sections are used)")
    parser.add_argument("out", help="output directory for the feature shards and manifest")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe value (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from draftsmith.train.prepare import prepare
    from draftsmith.train.recipe import load_recipe

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = prepare(load_recipe(args.recipe, args.overrides), args.out, overwrite=args.overwrite)
    print(f"features written to {out}")
    return 0
