"""``draftsmith demo DIR``: a tiny gpt-oss target, tokenizer and chat data to try training on a CPU."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="build a tiny gpt-oss target + harmony tokenizer + synthetic chats (seconds on a CPU)",
        description="Then: draftsmith train examples/tiny-gpt-oss.yaml (expects DIR=demo).")
    parser.add_argument("directory", help="where to write target/ and train.jsonl (e.g. demo)")
    parser.add_argument("--records", type=int, default=400, help="synthetic conversations (default 400)")
    parser.add_argument("--target-steps", type=int, default=200,
                        help="training steps that give the tiny target real predictions (default 200)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty directory")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from draftsmith.demo import make_demo

    out = make_demo(args.directory, records=args.records, target_steps=args.target_steps, overwrite=args.overwrite)
    print(f"demo target and data in {out}; next: draftsmith train examples/tiny-gpt-oss.yaml")
    return 0
