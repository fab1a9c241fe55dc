"""``draftsmith regenerate IN -o OUT (--target DIR | --endpoint URL --model NAME)``: answer a prompt set with the target.

Library imports happen inside ``run`` so that ``draftsmith --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "regenerate",
        help="replace the assistant turns of a conversation set with the target's own responses",
        description="Every assistant turn is regenerated in order given the regenerated history; a conversation "
                    "ending on a user turn gets a new answer; an assistant turn that calls tools ends the "
                    "conversation. Output lines are appended as conversations finish; --resume continues a run.",
    )
    parser.add_argument("input", type=Path,
                        help="conversations as JSONL, JSON or Parquet (OpenAI messages or ShareGPT conversations)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output JSONL of regenerated conversations")
    backend = parser.add_mutually_exclusive_group(required=True)
    backend.add_argument("--target", help="local target directory or hub id: generate with Hugging Face")
    backend.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    parser.add_argument("--model", help="model name to request from --endpoint")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the --target directory)")
    parser.add_argument("--dtype", default="auto", help="target dtype: auto, bfloat16, float16, float32")
    parser.add_argument("--device", default="cpu", help="target device, e.g. cuda:0 (default cpu)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow model code from the target repo")
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed for the local backend")
    parser.add_argument("--batch-size", type=int, help="conversations per batch (default 8 local, 4 x concurrency HTTP)")
    parser.add_argument("--concurrency", type=int, default=16, help="parallel HTTP requests (default 16)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per HTTP request (default 600)")
    parser.add_argument("--retries", type=int, default=3, help="retries of a failed HTTP request (default 3)")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY",
                        help="environment variable holding the endpoint's API key (default OPENAI_API_KEY)")
    parser.add_argument("--max-bad-fraction", type=float, default=0.01,
                        help="stop before generating if more than this share of records is bad (default 0.01)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue an existing output, skipping finished records")
    existing.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from draftsmith.regenerate import GenerationOptions, HttpBackend, LocalBackend, RegenerateOptions, check_output, regenerate
    from draftsmith.target.capture import TargetLoadOptions

    if not args.input.is_file():
        raise FileNotFoundError(f"input {args.input} does not exist")
    if args.endpoint and not args.model:
        raise ValueError("--endpoint needs --model, the model name the server serves")
    batch_size = args.batch_size or (8 if args.target else 4 * args.concurrency)
    generation = GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                   top_p=args.top_p, batch_size=batch_size)
    options = RegenerateOptions(input=args.input, output=args.output, resume=args.resume, overwrite=args.overwrite,
                                max_bad_fraction=args.max_bad_fraction, progress=not args.no_progress)
    check_output(options)
    if args.target:
        torch.manual_seed(args.seed)
        load = TargetLoadOptions(dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code)
        backend = LocalBackend.from_pretrained(args.target, generation, load, tokenizer=args.tokenizer)
        report = regenerate(options, backend)
    else:
        backend = HttpBackend(args.endpoint, args.model, generation, concurrency=args.concurrency,
                              timeout=args.timeout, retries=args.retries, api_key=os.environ.get(args.api_key_env))
        try:
            report = regenerate(options, backend)
        finally:
            backend.close()
    print(report.summary(), file=sys.stderr)
    print(f"wrote {args.output}")
    return 1 if report.failed else 0
