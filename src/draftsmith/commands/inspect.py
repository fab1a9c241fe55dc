"""``draftsmith inspect DIR [--target TARGET] [--json]``: how SGLang and vLLM load a draft, a verdict per engine."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="say how SGLang 0.5.23 and vLLM 0.32.0 load an EAGLE-3 draft checkpoint: ok, limited, wrong or refuses",
        description="Exit status: 0 when both engines run the draft as trained (ok or limited), 1 when an engine "
                    "runs it wrongly or refuses it, 2 unreadable input. Finding codes: docs/engines.md.",
    )
    parser.add_argument("directory", help="draft checkpoint directory (config.json + weights)")
    parser.add_argument("--target", help="target model directory or hub id, to judge RoPE, context, sizes and layers")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from draftsmith.inspect.findings import REFUSES, WRONG
    from draftsmith.inspect import inspect_checkpoint, report_lines

    report = inspect_checkpoint(args.directory, target=args.target)
    print(json.dumps(report.to_json(), indent=2) if args.json else "\n".join(report_lines(report)))
    return 1 if {WRONG, REFUSES} & set(report.verdicts().values()) else 0
