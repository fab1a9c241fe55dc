"""A tiny training workspace for trainer tests: a sharpened tiny gpt-oss target, its harmony
tokenizer, a few dozen chat records and a recipe writer."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
import yaml
from transformers import GptOssForCausalLM

from tiny_models import tiny_gpt_oss_config
from tiny_tokenizers import save_tiny_tokenizer


def make_workspace(root: Path, records: int = 48) -> Path:
    """Target + tokenizer in ``root/target``, chat data in ``root/train.jsonl``.

    The random target's lm_head is scaled up so its next-token distributions are peaked,
    as a trained model's are; with flat distributions there is nothing for a draft to learn.
    """
    torch.manual_seed(0)
    model = GptOssForCausalLM(tiny_gpt_oss_config())
    with torch.no_grad():
        model.lm_head.weight.mul_(25.0)
    model.save_pretrained(root / "target")
    save_tiny_tokenizer("harmony", root / "target")
    rng = random.Random(0)
    with open(root / "train.jsonl", "w") as f:
        for _ in range(records):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            f.write(json.dumps({"messages": [
                {"role": "user", "content": f"What is {a} plus {b}?"},
                {"role": "assistant", "content": f"The answer is {a + b}. Have a nice day.",
                 "reasoning_content": "The user wants a number."},
            ]}) + "\n")
    return root


def write_recipe(root: Path, name: str, **sections) -> Path:
    """A small recipe in ``root``; keyword arguments update its sections."""
    recipe = {
        "target": {"path": str(root / "target"), "dtype": "float32", "device": "cpu"},
        "data": {"train": [str(root / "train.jsonl")], "max_length": 192},
        "draft": {"draft_vocab_size": 200, "vocab_file": str(root / "vocab.safetensors")},
        "training": {"output_dir": str(root / name), "ttt_steps": 3, "micro_batch_size": 4, "learning_rate": 3e-3,
                     "warmup_steps": 2, "max_steps": 12, "log_every": 1, "save_every": 4, "seed": 0},
        # One short held-out decode keeps the end-of-run evaluation under test without costing minutes.
        "evaluation": {"prompts": 1, "max_new_tokens": 8},
    }
    for section, values in sections.items():
        recipe[section].update(values)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def read_metrics(run_dir: Path, split: str = "train") -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [m for m in map(json.loads, lines) if m["split"] == split]
