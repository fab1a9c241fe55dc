"""``draftsmith eval --target T --draft D [--draft D2 ...] --data PROMPTS``: real speculative decoding, measured."""

from __future__ import annotations

import argparse
from pathlib import Path

from draftsmith.evaluate import EvalSettings, evaluate, format_table, write_json, write_plot
from draftsmith.evaluate.report import PLOT_HINT, plot_available


def _positions(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token positions, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="speculative decoding of a target with one or more drafts: τ, acceptance by depth and context",
        description="Decode prompts with the target alone and with each draft (chain drafting, the target's KV "
                    "cache), and report τ (tokens per target forward), acceptance by depth, τ by context position "
                    "and tokens/s. Greedy output is checked against plain greedy decoding.")
    parser.add_argument("--target", required=True, help="target model directory or hub id")
    parser.add_argument("--draft", action="append", required=True, help="draft checkpoint directory (repeatable)")
    parser.add_argument("--data", action="append", required=True,
                        help="prompt file: JSONL/JSON/Parquet conversations; the prompt is everything before the "
                             "last assistant turn (repeatable)")
    parser.add_argument("--tokenizer", help="tokenizer with the chat template (default: the target's)")
    parser.add_argument("--steps", type=int, help="drafted tokens per verification (default: the draft's trained "
                                                   "steps when recorded, else 7)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); >0 samples")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="tokens generated per prompt (default 128)")
    parser.add_argument("--max-prompts", type=int, help="prompt at most this many conversations (each at every context position)")
    parser.add_argument("--contexts", type=_positions, default=[],
                        help="comma-separated context positions, e.g. 0,1024,4096: every prompt is also run with "
                             "earlier conversations before it so that generation starts near each position")
    parser.add_argument("--max-context", type=int, help="context limit below the target's max_position_embeddings")
    parser.add_argument("--draft-window", type=int,
                        help="draft attends to its last N positions only (SGLang --speculative-draft-sliding-window)")
    parser.add_argument("--no-check", action="store_true", help="skip comparing greedy output with plain decoding")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    parser.add_argument("--dtype", default="auto", help="auto (the checkpoint's), bfloat16, float16 or float32")
    parser.add_argument("--json", dest="json_out", help="write the full report (per prompt ids included) here")
    parser.add_argument("--plot", help="write a PNG: τ vs context position and acceptance by depth")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --json / --plot files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for path in (args.json_out, args.plot):
        if path and not args.overwrite and Path(path).exists():
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    settings = EvalSettings(steps=args.steps, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                            contexts=args.contexts, max_context=args.max_context,
                            draft_window=args.draft_window, seed=args.seed, check_greedy=not args.no_check,
                            progress=not args.no_progress)
    report = evaluate(args.target, args.draft, args.data, settings, device=args.device, dtype=args.dtype,
                      tokenizer=args.tokenizer, max_prompts=args.max_prompts)
    print(format_table(report))
    if args.json_out:
        print(f"report written to {write_json(report, args.json_out, args.overwrite)}")
    if args.plot:
        if plot_available():
            print(f"plot written to {write_plot(report, args.plot, args.overwrite)}")
        else:
            print(PLOT_HINT)
    return 0
