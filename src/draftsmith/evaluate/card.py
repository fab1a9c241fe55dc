"""After training: a short real evaluation on held-out prompts, and the draft's model card.

The card (``draft/README.md``, Hugging Face convention: YAML metadata, then prose) names
the target, the data, the TTT steps it was trained with (``ttt_steps``, which
``draftsmith eval`` reads back as its default depth), τ measured by real speculative
decoding next to the teacher-forced τ_sim, and the commands that serve the draft.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from draftsmith.atomic import atomic_write
from draftsmith.checkpoint.layout import load_draft
from draftsmith.checkpoint.serve import serve_commands
from draftsmith.evaluate.run import (CARD_NAME, DraftUnderTest, EvalSettings, context_limit, evaluate_prompts,
                                     prompts_from_samples)


@dataclass
class TrainedDraftFacts:
    """What the card says about a training run."""

    target: str
    data: Sequence[str]
    ttt_steps: int
    tau_sim: float | None = None
    tau_real: float | None = None


def evaluate_after_training(model: PreTrainedModel, draft_dir: str | os.PathLike, samples: Sequence[Any],
                            prompts: int, max_new_tokens: int, steps: int, output: str | os.PathLike,
                            progress: bool = False) -> dict[str, Any]:
    """Greedy speculative decoding of up to ``prompts`` validation prompts; written to ``output`` (eval.json).

    The draft is read back from ``draft_dir``, so what is measured is what was exported.
    """
    settings = EvalSettings(steps=steps, max_new_tokens=max_new_tokens, progress=progress)
    found = prompts_from_samples(samples, prompts, context_limit(model, settings))
    report = evaluate_prompts(model, [DraftUnderTest(str(draft_dir), load_draft(draft_dir), steps)], found, settings)
    atomic_write(output, json.dumps(report, indent=2) + "\n", overwrite=True)
    return report


def _tau(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}"


def write_model_card(draft_dir: str | os.PathLike, facts: TrainedDraftFacts) -> Path:
    """Write ``draft_dir/README.md`` (replacing an earlier card of the same run)."""
    draft_dir = Path(draft_dir)
    commands = serve_commands(facts.target, str(draft_dir), facts.ttt_steps)
    data = ", ".join(str(d) for d in facts.data) or "offline features"
    text = f"""---
base_model: {facts.target}
library_name: draftsmith
pipeline_tag: text-generation
tags:
- eagle3
- speculative-decoding
ttt_steps: {facts.ttt_steps}
---

# EAGLE-3 draft for {facts.target}

A one-layer EAGLE-3 draft model trained with draftsmith for speculative decoding of
`{facts.target}`. It reads three hidden states of the target and proposes
{facts.ttt_steps} tokens per target forward.

| | |
|---|---|
| target | `{facts.target}` |
| training data | {data} |
| TTT steps | {facts.ttt_steps} |
| τ, real speculative decoding (greedy, held-out prompts) | {_tau(facts.tau_real)} |
| τ_sim, teacher-forced (validation) | {_tau(facts.tau_sim)} |

τ is the number of tokens committed per target forward, the target's own bonus token included
(1 means no draft token was ever accepted; {facts.ttt_steps + 1} is the most a chain of
{facts.ttt_steps} can give).

## Serve

SGLang:

```bash
{commands["SGLang"]}
```

vLLM:

```bash
{commands["vLLM"]}
```

Measure it on your own prompts with
`draftsmith eval --target {facts.target} --draft {draft_dir} --data PROMPTS.jsonl`.
"""
    return atomic_write(draft_dir / CARD_NAME, text, overwrite=True)
