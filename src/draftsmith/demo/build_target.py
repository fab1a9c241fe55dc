"""Rebuild the shipped tiny gpt-oss target: ``python -m draftsmith.demo.build_target OUT``.

The target has the real gpt-oss architecture at toy size (MoE experts, attention sinks,
alternating sliding/full attention, YaRN x32 from 256 to 8,192 positions, harmony chat format,
a byte-level BPE with the harmony special tokens) and is trained here, with a fixed seed, on
harmony chats made from the King James Bible and generated counting chats (see ``corpus``).

It is trained on full 8,192-token windows cut at random offsets from a stream of chats, so every
position up to its context is trained, and it is reported by its loss per position bucket on
held-out chapters (``loss_by_position.json``): a long-context target's loss stays flat to the end.
``OUT`` receives ``target/`` (weights + tokenizer), the demo's chat data (``train.jsonl``,
``validation.jsonl``) and ``build.json`` (command, seed, timings, loss by position).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import GptOssConfig, GptOssForCausalLM, PreTrainedTokenizerFast

from draftsmith.atomic import atomic_directory
from draftsmith.demo import attention
from draftsmith.demo.builders import (HARMONY_NAMED_TOKENS, HARMONY_SPECIAL_TOKENS, HARMONY_TEMPLATE,
                                      byte_level_bpe, chat_tokenizer)
from draftsmith.demo.corpus import Verse, load_kjv, make_chats, template_messages

# Loss buckets [start, end) by position; the first 32 positions are left out (almost no context yet).
BUCKETS = [(32, 256), (256, 512), (512, 1024), (1024, 2048), (2048, 4096), (4096, 6144), (6144, 8192)]


def target_config(tokenizer: PreTrainedTokenizerFast, hidden: int, layers: int, context: int) -> GptOssConfig:
    """The shipped shape: 4 heads of 16 with 2 KV heads, window 128, 4 experts top-2, YaRN 256 -> ``context``."""
    return GptOssConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=128, num_local_experts=4,
        num_experts_per_tok=2, max_position_embeddings=context, tie_word_embeddings=False,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": context / 256, "beta_fast": 32.0,
                         "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 256},
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )


def build_tokenizer(verses: list[Verse], vocab_size: int) -> PreTrainedTokenizerFast:
    corpus = [v.text for v in verses] + [HARMONY_TEMPLATE] + [", ".join(str(n) for n in range(k, k + 50))
                                                              for k in range(0, 200, 10)]
    backend = byte_level_bpe(corpus, vocab_size - len(HARMONY_SPECIAL_TOKENS))
    return chat_tokenizer(backend, HARMONY_TEMPLATE, HARMONY_SPECIAL_TOKENS, HARMONY_NAMED_TOKENS)


def token_windows(tokenizer, verses: list[Verse], length: int, count: int, seed: int, validation: bool):
    """``count`` windows of ``length`` ids cut at a random offset from a stream of freshly drawn chats."""
    rng = random.Random(seed)
    for index in range(count):
        stream: list[int] = []
        offset = rng.randrange(512)
        while len(stream) < length + offset:
            chat = make_chats(verses, 1, rng.randrange(2**31), validation)[0]
            stream += tokenizer.apply_chat_template(template_messages(chat), tokenize=True, return_dict=False)
        yield torch.tensor(stream[offset:offset + length])


def loss_by_position(model, windows: list[torch.Tensor]) -> list[dict]:
    """Mean next-token loss per :data:`BUCKETS` bucket (position of the predicted token)."""
    sums = torch.zeros(len(BUCKETS), dtype=torch.float64)
    counts = torch.zeros(len(BUCKETS), dtype=torch.long)
    model.config._attn_implementation = attention.NAME
    with torch.no_grad():
        for ids in windows:
            logits = model(input_ids=ids[None, :-1]).logits[0]
            losses = torch.nn.functional.cross_entropy(logits.float(), ids[1:], reduction="none").double()
            for b, (start, end) in enumerate(BUCKETS):
                part = losses[max(start - 1, 0):end - 1]
                sums[b] += part.sum()
                counts[b] += part.numel()
    model.config._attn_implementation = "eager"
    return [{"start": s, "end": e, "tokens": int(n), "loss": float(total / n)}
            for (s, e), total, n in zip(BUCKETS, sums, counts) if n]


def train(model, tokenizer, verses, *, steps: int, length: int, lr: float, seed: int, progress: bool = True) -> list:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    model.config._attn_implementation = attention.NAME
    model.train()
    log = []
    bar = tqdm(token_windows(tokenizer, verses, length, steps, seed, validation=False), total=steps,
               desc="training the target", disable=not progress)
    for step, ids in enumerate(bar):
        loss = model(input_ids=ids[None], labels=ids[None]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        log.append(round(loss.item(), 4))
        bar.set_postfix(loss=f"{sum(log[-20:]) / len(log[-20:]):.3f}")
    model.eval()
    model.config._attn_implementation = "eager"
    return log


def write_chat_data(directory: Path, verses: list[Verse], seed: int, train_count: int, validation_count: int) -> None:
    """The draft's data: chats from training chapters, and validation chats from held-out chapters."""
    for name, chats in (("train.jsonl", make_chats(verses, train_count, seed + 1)),
                        ("validation.jsonl", make_chats(verses, validation_count, seed + 2, validation=True))):
        with open(directory / name, "w") as f:
            f.writelines(json.dumps(chat) + "\n" for chat in chats)


def remeasure(directory: Path, windows: int, seed: int, kjv: str | None = None) -> list[dict]:
    """Recompute the loss by position of a built target on ``windows`` held-out windows, into its build.json."""
    model = GptOssForCausalLM.from_pretrained(directory / "target")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory / "target")
    length = int(model.config.max_position_embeddings)
    buckets = loss_by_position(model, list(token_windows(tokenizer, load_kjv(kjv), length, windows, seed + 100,
                                                         validation=True)))
    report = json.loads((directory / "build.json").read_text())
    report.update(loss_by_position=buckets, eval_windows=windows)
    staged = directory / "build.json.tmp"
    staged.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(staged, directory / "build.json")
    return buckets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m draftsmith.demo.build_target", description=__doc__.split("\n")[0])
    parser.add_argument("out", help="output directory (refused if it exists and is not empty, unless --overwrite)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kjv", help="KJV text in `bible -f` format (default: run the installed `bible` program)")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps, one window each")
    parser.add_argument("--length", type=int, default=8192, help="training window = the target's context")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-windows", type=int, default=16, help="held-out windows for the loss by position")
    parser.add_argument("--train-chats", type=int, default=1200, help="chats in the draft's train.jsonl")
    parser.add_argument("--validation-chats", type=int, default=200, help="chats in validation.jsonl")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--remeasure", action="store_true",
                        help="only recompute the loss by position of the target already in OUT (--eval-windows)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.remeasure:
        for bucket in remeasure(Path(args.out), args.eval_windows, args.seed, args.kjv):
            print(f"positions {bucket['start']:>5}-{bucket['end']:<5} loss {bucket['loss']:.3f}")
        return 0
    started, cpu_started = time.time(), time.process_time()
    torch.manual_seed(args.seed)
    verses = load_kjv(args.kjv)
    tokenizer = build_tokenizer(verses, args.vocab)
    model = GptOssForCausalLM(target_config(tokenizer, args.hidden, args.layers, args.length))
    log = train(model, tokenizer, verses, steps=args.steps, length=args.length, lr=args.lr, seed=args.seed)
    train_seconds, train_cpu = time.time() - started, time.process_time() - cpu_started
    windows = list(token_windows(tokenizer, verses, args.length, args.eval_windows, args.seed + 100, validation=True))
    buckets = loss_by_position(model, windows)
    report = {"command": "python -m draftsmith.demo.build_target " + " ".join(sys.argv[1:] if argv is None else argv),
              "seed": args.seed, "torch": torch.__version__, "train_wall_seconds": round(train_seconds, 1),
              "train_cpu_seconds": round(train_cpu, 1), "threads": torch.get_num_threads(),
              "parameters": sum(p.numel() for p in model.parameters()), "train_loss": log,
              "loss_by_position": buckets, "eval_windows": args.eval_windows}
    with atomic_directory(args.out, overwrite=args.overwrite) as staging:
        model.save_pretrained(staging / "target")
        tokenizer.save_pretrained(staging / "target")
        write_chat_data(staging, verses, args.seed, args.train_chats, args.validation_chats)
        (staging / "build.json").write_text(json.dumps(report, indent=1) + "\n")
    for bucket in buckets:
        print(f"positions {bucket['start']:>5}-{bucket['end']:<5} loss {bucket['loss']:.3f}")
    print(f"target trained in {train_seconds:.0f} s ({train_cpu:.0f} s CPU); written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
