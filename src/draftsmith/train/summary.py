"""What a finished run tells its user: how good the draft is, where everything is, what to run next."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

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


def serve_commands(target: str, draft: str | Path, speculative_tokens: int = 3) -> dict[str, str]:
    """Command lines that serve ``target`` with this draft in SGLang and in vLLM (EAGLE-3, chain drafting)."""
    draft = str(draft)
    vllm_config = json.dumps({"method": "eagle3", "model": draft, "num_speculative_tokens": speculative_tokens})
    return {
        "SGLang": (f"python -m sglang.launch_server --model-path {shlex.quote(target)} --speculative-algorithm EAGLE3 "
                   f"--speculative-draft-model-path {shlex.quote(draft)} --speculative-num-steps {speculative_tokens} "
                   f"--speculative-eagle-topk 1 --speculative-num-draft-tokens {speculative_tokens + 1}"),
        "vLLM": f"vllm serve {shlex.quote(target)} --speculative-config {shlex.quote(vllm_config)}",
    }


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
    checkpoints = list_checkpoints(output_dir)
    lines += [f"draft:       {draft_dir}",
              f"metrics:     {output_dir / 'metrics.jsonl'}",
              f"checkpoints: {output_dir / 'checkpoints'} ({len(checkpoints)} kept)"]
    target = recipe.target.path or "TARGET"
    lines.append("next:")
    lines.append(f"  draftsmith inspect {shlex.quote(str(draft_dir))} --target {shlex.quote(target)}")
    for engine, command in serve_commands(target, draft_dir).items():
        lines.append(f"  {engine + ':':8} {command}")
    return "\n".join(lines)
