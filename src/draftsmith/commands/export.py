"""``draftsmith export DRAFT OUT --verifier TARGET``: write a draft in the speculators format (vLLM)."""

from __future__ import annotations

import argparse

from draftsmith.checkpoint.engine import load_draft
from draftsmith.checkpoint.speculators import export_speculators


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="convert a draft checkpoint to the speculators format (vLLM's native EAGLE-3 layout)"
    )
    parser.add_argument("draft", help="draft checkpoint directory in the engine layout")
    parser.add_argument("out", help="output directory (must not exist or be empty unless --overwrite)")
    parser.add_argument("--verifier", required=True, help="the target model vLLM should serve (path or hub id)")
    parser.add_argument("--speculative-tokens", type=int, default=3, help="draft tokens per step (default 3)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    draft = load_draft(args.draft)
    export_speculators(draft, args.out, verifier=args.verifier, speculative_tokens=args.speculative_tokens,
                       overwrite=args.overwrite)
    print(f"wrote {args.out} (speculators format, verifier {args.verifier})")
    return 0
