"""Deterministic synthetic multi-turn chats for the data benchmark (no downloaded text, no license).

Each conversation has a system prompt half of the time, then 1-3 user/assistant turns; messages
are sentences drawn from a small built-in word list by a seeded generator, so the same
``--count`` and ``--seed`` always give the same bytes. Lengths are spread (assistant turns
20-120 words; about 540 tokens a conversation under the demo target's harmony template) so
that length-grouped batching has something to do.

    python benchmarks/synthetic_chats.py --count 100000 --out chats-100k.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

WORDS = (
    "the a an this that every some many few model draft token answer question value number list table river "
    "mountain city garden window letter story engine signal layer weight sample batch memory disk speed "
    "quiet bright early late small large simple careful quick slow open closed first last next other "
    "is was will can should could might must has have had does did makes takes gives finds keeps reads "
    "writes counts builds checks moves holds turns starts stops and or but so because while when if then "
    "than with without from into over under about after before between through during of to in on for"
).split()


def sentence(rng: random.Random, low: int, high: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + rng.choice(".?!")


def paragraph(rng: random.Random, words: int) -> str:
    parts, total = [], 0
    while total < words:
        text = sentence(rng, 5, 18)
        parts.append(text)
        total += text.count(" ") + 1
    return " ".join(parts)


def conversation(rng: random.Random) -> dict:
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": paragraph(rng, rng.randint(8, 30))})
    for _ in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": paragraph(rng, rng.randint(5, 40))})
        messages.append({"role": "assistant", "content": paragraph(rng, rng.randint(20, 120))})
    return {"messages": messages}


def write_chats(path: str | Path, count: int, seed: int = 0) -> Path:
    """Write ``count`` conversations as JSONL to ``path`` (same bytes for the same count and seed)."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for _ in range(count):
            handle.write(json.dumps(conversation(rng)) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_chats(args.out, args.count, args.seed))


if __name__ == "__main__":
    main()
