"""``draftsmith export DRAFT OUT --verifier TARGET``: write a draft in the speculators format (vLLM).

``DRAFT`` may be a finished draft or a mid-run checkpoint (``OUTPUT/checkpoints/step-N``).
Library imports happen inside ``run`` so that ``draftsmith --help`` stays fast.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="convert a draft checkpoint to the speculators format (vLLM's native EAGLE-3 layout)",
        description="DRAFT is a draft in the engine layout: a run's draft/ or one of its checkpoints/step-N. "
                    "When --verifier is a local directory the draft is checked against that target first.")
    parser.add_argument("draft", help="draft directory in the engine layout, or OUTPUT/checkpoints/step-N")
    parser.add_argument("out", help="output directory (must not exist or be empty unless --overwrite)")
    parser.add_argument("--verifier", required=True, help="the target model vLLM should serve (path or hub id)")
    parser.add_argument("--speculative-tokens", type=int, default=3, help="draft tokens per step (default 3)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from draftsmith.atomic import refuse_overwrite
    from draftsmith.checkpoint.layout import load_draft, stored_weight_names
    from draftsmith.inspect import inspect_checkpoint
    from draftsmith.checkpoint.speculators import export_speculators

    refuse_overwrite(args.out, args.overwrite)
    if Path(args.verifier).is_dir():
        errors = [f for f in inspect_checkpoint(args.draft, target=args.verifier).findings if f.severity == "error"]
        if errors:
            more = f" (and {len(errors) - 1} more: draftsmith inspect {args.draft} --target {args.verifier})" \
                if len(errors) > 1 else ""
            raise ValueError(f"{args.draft} does not fit the verifier {args.verifier}: {errors[0].message}{more}")
    has_embedding = "embed_tokens.weight" in stored_weight_names(args.draft)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a training checkpoint has no embedding; it is left out below
        draft = load_draft(args.draft)
    export_speculators(draft, args.out, verifier=args.verifier, speculative_tokens=args.speculative_tokens,
                       overwrite=args.overwrite, include_embedding=has_embedding)
    note = "" if has_embedding else "; no embed_tokens: vLLM uses the verifier's"
    print(f"wrote {args.out} (speculators format, verifier {args.verifier}{note})")
    return 0
