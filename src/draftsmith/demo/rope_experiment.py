"""``draftsmith demo --rope-experiment``: does a draft that rotates unlike its target lose τ far out?

Drafts for the shipped tiny gpt-oss (YaRN x32, 256 -> 8,192 positions) are trained on the same
data with the same budget (optimizer steps and tokens per step) at a short training context,
then measured by real speculative decoding with generation starting at context positions out
to the target's full context, on identical prompts:

- ``a-yarn``: the target's exact YaRN (draftsmith's default);
- ``b-plain``: plain RoPE, theta 10,000, with a short ``max_position_embeddings`` (as SpecForge's
  shipped gpt-oss draft configs);
- ``c-llama3``: ``llama3`` scaling, theta 500,000, factor 32 (as NVIDIA ModelOpt exports write);
- ``d-plain-window``: the ``b-plain`` draft served with a draft attention window of the training
  context (SGLang's ``--speculative-draft-sliding-window``);
- ``e-yarn-long``: the target's YaRN trained at 4x the context (same tokens per step), which
  separates the effect of the rotary from the effect of the training length.

The training chats are the shipped ones joined four at a time into long multi-turn chats, so
the short arms truncate them and the long arm sees them whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from draftsmith.atomic import atomic_directory
from draftsmith.demo.run import DemoSettings, assets, demo_recipe, eval_settings
from draftsmith.evaluate import evaluate, write_json, write_plot
from draftsmith.evaluate.report import plot_available
from draftsmith.train.loop import train

DEFAULT_OUT = "draftsmith-rope-experiment"
SHORT = 512  # the short training context: 1/16 of the target's 8,192
PLAIN = {"rope_type": "default", "rope_theta": 10000.0}
LLAMA3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 256}


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    overrides: dict[str, Any]
    trained_as: str | None = None  # evaluate another arm's draft (with this arm's serving options)
    draft_window: int | None = None
    length_factor: int = 1  # training context = SHORT x this, micro-batch / this


ARMS = [
    Arm("a-yarn", "target's YaRN (default)", {}),
    Arm("b-plain", "plain RoPE theta 1e4, max_pos 512",
        {"draft.rope_parameters": PLAIN, "draft.max_position_embeddings": SHORT}),
    Arm("c-llama3", "llama3 theta 5e5 x32", {"draft.rope_parameters": LLAMA3}),
    Arm("d-plain-window", "b served with a 512 draft window", {}, trained_as="b-plain", draft_window=SHORT),
    Arm("e-yarn-long", "target's YaRN, trained at 2048", {}, length_factor=4),
]

SETTINGS = DemoSettings(train_steps=100, micro_batch_size=8, max_length=SHORT, prompts=4, max_new_tokens=48,
                        contexts=(0, 1024, 4096, 7936))


def long_chats(source: Path, destination: Path, group: int = 4) -> Path:
    """Join every ``group`` consecutive chats of ``source`` into one multi-turn chat."""
    chats = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    with open(destination, "w") as f:
        for start in range(0, len(chats) - group + 1, group):
            messages = [m for chat in chats[start:start + group] for m in chat["messages"]]
            f.write(json.dumps({"messages": messages}) + "\n")
    return destination


def arm_settings(arm: Arm, settings: DemoSettings, train_file: Path) -> DemoSettings:
    overrides = {**arm.overrides, "data.train": [str(train_file)]}
    return replace(settings, max_length=settings.max_length * arm.length_factor,
                   micro_batch_size=max(1, settings.micro_batch_size // arm.length_factor), overrides=overrides)


def train_arms(directory: Path, settings: DemoSettings, progress: bool) -> dict[str, Path]:
    """Train every arm that has its own draft; returns arm name -> exported draft directory."""
    train_file = long_chats(assets() / "train.jsonl", directory / "train-long.jsonl")
    drafts = {}
    for arm in ARMS:
        if arm.trained_as is None:
            recipe = demo_recipe(directory / arm.name, arm_settings(arm, settings, train_file))
            drafts[arm.name] = train(recipe, progress=progress)
    return drafts


def run_rope_experiment(out: str | os.PathLike, *, settings: DemoSettings = SETTINGS, overwrite: bool = False,
                        progress: bool = True) -> str:
    """Train the arms, evaluate them side by side by context position; writes rope.json, rope.png, rope.md.

    Returns the markdown table (``rope.md``)."""
    with atomic_directory(out, overwrite=overwrite) as staging:
        drafts = train_arms(staging, settings, progress)
        report = evaluate_arms(staging, drafts, settings, progress)
    return rope_table(report)


def evaluate_arms(directory: Path, drafts: dict[str, Path], settings: DemoSettings, progress: bool) -> dict[str, Any]:
    """All arms on identical prompts and contexts; an arm served differently gets its own pass."""
    validation = [str(assets() / "validation.jsonl")]
    own = [arm for arm in ARMS if arm.trained_as is None]
    report = evaluate(assets() / "target", [drafts[arm.name] for arm in own], validation,
                      eval_settings(settings, progress), max_prompts=settings.prompts)
    for arm, section in zip(own, report["drafts"]):
        section["name"] = arm.name
    for arm in ARMS:
        if arm.trained_as is not None:
            served = evaluate(assets() / "target", [drafts[arm.trained_as]], validation,
                              eval_settings(settings, progress, draft_window=arm.draft_window),
                              max_prompts=settings.prompts)
            report["drafts"].append({**served["drafts"][0], "name": arm.name})
    order = {arm.name: i for i, arm in enumerate(ARMS)}
    report["drafts"].sort(key=lambda section: order[section["name"]])
    for arm, section in zip(ARMS, report["drafts"]):
        section["label"] = arm.label
    write_json(report, directory / "rope.json")
    if plot_available():
        write_plot(report, directory / "rope.png")
    (directory / "rope.md").write_text(rope_table(report) + "\n")
    return report


def rope_table(report: dict[str, Any]) -> str:
    """Markdown: one row per arm, τ overall and at each context position (mean generation start)."""
    drafts = report["drafts"]
    starts = [f"{c['mean_start']:.0f}" for c in drafts[0]["by_context"]]
    lines = ["| arm | draft rotary | τ overall | " + " | ".join(f"τ @ {s}" for s in starts) + " |",
             "|---|---|---:|" + "---:|" * len(starts)]
    for d in drafts:
        taus = " | ".join("-" if c["tau"] is None else f"{c['tau']:.2f}" for c in d["by_context"])
        lines.append(f"| {d['name']} | {d['label']} | {d['overall']['tau']:.2f} | {taus} |")
    return "\n".join(lines)
