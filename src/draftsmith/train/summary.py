"""What a finished run tells its user: how good the draft is, where everything is, what to run next."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from draftsmith.checkpoint.serve import serve_commands
from draftsmith.train.recipe import Recipe
from draftsmith.train.state import list_checkpoints


def final_metrics(output_dir: str | Path, split: str) -> dict | None:
    """The last ``metrics.jsonl`` line of a split, or None."""
    path = Path(output_dir) / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    matching = [line for line in lines if line.get("split") == split]
    return matching[-1] if matching else None


def run_summary(recipe: Recipe, draft_dir: str | Path) -> str:
    """A few lines for the end of ``draftsmith train``."""
    output_dir = Path(recipe.training.output_dir)
    lines = []
    validation = final_metrics(output_dir, "validation")
    train = final_metrics(output_dir, "train")
    if validation:
        lines.append(f"final validation: tau_sim {validation['tau_sim']:.2f} (simulated acceptance length, "
                     f"{recipe.training.ttt_steps} draft steps)")
    elif train:
        lines.append(f"final training window: tau_sim {train['tau_sim']:.2f} (no validation data; set "
                     f"data.validation_fraction to hold some out)")
    real = output_dir / "eval.json"
    if real.is_file():
        overall = json.loads(real.read_text())["drafts"][0]["overall"]
        lines.append(f"real speculative decoding: tau {overall['tau']:.2f} on held-out prompts "
                     f"({real}; measure more with draftsmith eval)")
    checkpoints = list_checkpoints(output_dir)
    lines += [f"draft:       {draft_dir}",
              f"metrics:     {output_dir / 'metrics.jsonl'}",
              f"checkpoints: {output_dir / 'checkpoints'} ({len(checkpoints)} kept)"]
    target = recipe.target.path or "TARGET"
    lines.append("next:")
    lines.append(f"  draftsmith inspect {shlex.quote(str(draft_dir))} --target {shlex.quote(target)}")
    for engine, command in serve_commands(target, draft_dir, recipe.training.ttt_steps).items():
        lines.append(f"  {engine + ':':8} {command}")
    return "\n".join(lines)
