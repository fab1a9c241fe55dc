"""``draftsmith`` command line: a thin layer over the library.

Each sub-command lives in ``draftsmith.commands.<name>`` and exposes ``register(subparsers)``;
errors the user can fix are printed as one line, never as a stack trace.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("inspect",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="draftsmith", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"draftsmith.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as error:
        print(f"draftsmith {args.command}: error: {error}", file=sys.stderr)
        return 2
