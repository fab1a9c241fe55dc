"""``draftsmith`` command line: a thin layer over the library.

Each sub-command lives in ``draftsmith.commands.<name>`` and exposes ``register(subparsers)``;
errors the user can fix are printed as one line, never as a stack trace. Command modules
import torch and transformers inside their ``run`` only, so ``draftsmith --help`` and
``draftsmith --version`` answer without loading them.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from draftsmith import commands
from draftsmith._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="draftsmith", description="Train EAGLE-3 draft models and ship them to SGLang and vLLM.")
    parser.add_argument("--version", action="version", version=f"draftsmith {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"draftsmith.commands.{module}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as error:
        print(f"draftsmith {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"draftsmith {args.command}: interrupted", file=sys.stderr)
        return 130
