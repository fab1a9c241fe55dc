"""``draftsmith inspect DIR [--target TARGET]``: report the silent-failure slips of a draft checkpoint."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="check an EAGLE-3 draft checkpoint for the slips SGLang and vLLM fail on silently",
        description="Exit status: 0 clean (warnings allowed), 1 errors found, 2 unreadable input.",
    )
    parser.add_argument("directory", help="draft checkpoint directory (config.json + weights)")
    parser.add_argument("--target", help="target model directory or hub id, to compare RoPE, sizes and layers")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from draftsmith.checkpoint.inspect import inspect_checkpoint

    findings = inspect_checkpoint(args.directory, target=args.target)
    for finding in findings:
        print(finding)
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    verdict = "an engine would load it wrongly or refuse it" if errors else "no silent-failure slips found"
    print(f"{args.directory}: {errors} error(s), {warnings} warning(s); {verdict}")
    return 1 if errors else 0
