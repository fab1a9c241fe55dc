"""``draftsmith demo``: train, export, inspect and evaluate a draft for the shipped tiny gpt-oss, on a CPU."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train and measure a draft for the shipped tiny gpt-oss target (minutes on a CPU)",
        description="Trains an EAGLE-3 draft for the shipped long-context tiny gpt-oss, exports it for SGLang and "
                    "vLLM, inspects it and measures its real acceptance length by speculative decoding, overall, "
                    "per depth and by context position (plot). An existing output directory is refused unless "
                    "--overwrite replaces it (only once the new run is complete).")
    parser.add_argument("--out", help="output directory (default ./draftsmith-demo, or ./draftsmith-rope-experiment "
                                      "with --rope-experiment)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier output in --out")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run of the same path")
    parser.add_argument("--rope-experiment", action="store_true",
                        help="train drafts with different rotaries at a short context and compare their real "
                             "acceptance by context position out to the target's full context")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed (draft initialization and data order); a second seed shows the noise")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from draftsmith.demo.rope_experiment import DEFAULT_OUT as ROPE_OUT
    from draftsmith.demo.rope_experiment import SETTINGS as ROPE_SETTINGS
    from draftsmith.demo.rope_experiment import run_rope_experiment
    from draftsmith.demo.run import DEFAULT_OUT, FULL, QUICK, run_demo, summary_text

    if args.rope_experiment:
        if args.quick:
            raise ValueError("--quick and --rope-experiment do not combine")
        table = run_rope_experiment(args.out or ROPE_OUT, settings=replace(ROPE_SETTINGS, seed=args.seed),
                                    overwrite=args.overwrite, progress=not args.no_progress)
        print(table)
        return 0
    result = run_demo(args.out or DEFAULT_OUT, settings=replace(QUICK if args.quick else FULL, seed=args.seed),
                      overwrite=args.overwrite, progress=not args.no_progress)
    print(summary_text(result))
    return 0
