"""``draftsmith vocab``: build (or reuse) the draft vocabulary file ``d2t`` / ``t2d`` from chat data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path



def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "vocab",
        help="pick the draft vocabulary: the most frequent assistant tokens of the training data",
        description=(
            "Render the data with the tokenizer's chat template into the sample store (or reuse it), count the "
            "tokens the assistant emits, "
            "and save d2t/t2d for the N most frequent (special tokens always in) to a safetensors file. "
            "A rerun with the same tokenizer, data and settings reuses the file; any change rebuilds it."
        ),
    )
    parser.add_argument("--tokenizer", required=True, help="tokenizer directory or hub id (usually the target model)")
    parser.add_argument("--data", required=True, nargs="+", help="JSONL, JSON or Parquet conversation files")
    parser.add_argument("--out", required=True, help="vocabulary file to write (safetensors)")
    parser.add_argument("--size", type=int, default=32000, help="draft vocabulary size (default 32000, capped at the target's)")
    parser.add_argument(
        "--target-vocab-size", type=int,
        help="the target model's vocab_size (default: config.json next to the tokenizer, else the tokenizer's length)",
    )
    parser.add_argument("--max-length", type=int, help="tokens per sample (default: the data default, 4096)")
    parser.add_argument("--overlong", choices=("truncate", "drop"), default="truncate", help="over-long samples (default truncate)")
    parser.add_argument(
        "--channels", choices=("all", "final"), default="all",
        help="harmony (gpt-oss) only: supervise all assistant channels or the final answer only",
    )
    parser.add_argument("--max-bad-fraction", type=float, default=0.01, help="stop past this share of bad records (default 0.01)")
    parser.add_argument("--num-workers", type=int,
                        help="processes rendering the data (default: one per CPU core, at most 8)")
    parser.add_argument("--cache-dir",
                        help="where the rendered sample store is kept (default ~/.cache/draftsmith/data); "
                             "training with the same tokenizer, data and settings reuses it")
    parser.add_argument("--force", action="store_true", help="rebuild even if --out matches the tokenizer and data")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the tokenizer's own Python code")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from draftsmith.data import DataConfig, load_or_build_vocab

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer, trust_remote_code=args.trust_remote_code)
    target_vocab_size, origin = _target_vocab_size(args, len(tokenizer))
    config = DataConfig(
        max_length=args.max_length or DataConfig.max_length, overlong=args.overlong, channels=args.channels, max_bad_fraction=args.max_bad_fraction
    )
    mapping, reused = load_or_build_vocab(
        args.out, args.data, tokenizer, args.size, target_vocab_size, config, progress=True, force=args.force,
        cache_dir=args.cache_dir, num_workers=args.num_workers,
    )
    verb = "reused" if reused else "wrote"
    meta = mapping.metadata
    print(
        f"{verb} {args.out}: draft vocab {mapping.draft_vocab_size} of {target_vocab_size} target tokens ({origin}); "
        f"covers {float(meta.get('coverage', 'nan')):.2%} of {meta.get('supervised_tokens', '?')} supervised tokens "
        f"from {meta.get('records', '?')} records"
    )
    return 0


def _target_vocab_size(args: argparse.Namespace, tokenizer_size: int) -> tuple[int, str]:
    if args.target_vocab_size is not None:
        return args.target_vocab_size, "--target-vocab-size"
    config = Path(args.tokenizer) / "config.json"
    if config.is_file():
        values = json.loads(config.read_text())
        size = values.get("vocab_size") or (values.get("text_config") or {}).get("vocab_size")
        if isinstance(size, int):
            return size, f"vocab_size in {config}"
    return tokenizer_size, "the tokenizer's length"
