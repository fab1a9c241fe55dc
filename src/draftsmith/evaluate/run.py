"""``evaluate``: real speculative decoding of a target with one or more drafts, side by side.

Every draft decodes the same prompts at the same context positions; the target's plain
decoding of each prompt runs once in the same process, as the speed baseline and, for
greedy runs, as the reference the speculative output must equal token for token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedModel

from draftsmith.checkpoint.layout import load_draft
from draftsmith.evaluate.decoding import plain_decode, speculative_decode
from draftsmith.evaluate.prompts import Prompt, PromptSet, build_prompts, read_prompt_conversations
from draftsmith.evaluate.proposer import DraftProposer
from draftsmith.evaluate.report import draft_report
from draftsmith.model.draft import Eagle3Draft
from draftsmith.model.rope import RopeConfigError, rope_parameters_from_config
from draftsmith.target.capture import TargetLoadOptions, TargetModel

DEFAULT_STEPS = 7
CARD_NAME = "README.md"


@dataclass
class EvalSettings:
    """How drafts are evaluated.

    ``steps``: drafted tokens per verification (None: each draft's trained steps when its
    directory records them, else 7). ``contexts``: grid of generation start positions
    (empty: the prompts as they are). ``max_context``: cap below the target's own context.
    ``draft_window``: the draft attends to its last ``draft_window`` positions only.
    """

    steps: int | None = None
    temperature: float = 0.0
    max_new_tokens: int = 128
    contexts: Sequence[int] = ()
    max_context: int | None = None
    draft_window: int | None = None
    seed: int = 0
    check_greedy: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "max_context", "draft_window"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if any(c < 0 for c in self.contexts):
            raise ValueError(f"contexts are token positions >= 0, got {list(self.contexts)}")
        self.contexts = sorted(set(int(c) for c in self.contexts))


@dataclass
class DraftUnderTest:
    """A draft to evaluate, its name in the report, and the steps it was trained with (if known)."""

    name: str
    draft: Eagle3Draft
    trained_steps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def trained_steps(directory: str | os.PathLike) -> int | None:
    """The TTT steps a draft directory records: our model card's ``ttt_steps``, or speculators' speculative_tokens."""
    directory = Path(directory)
    card = directory / CARD_NAME
    if card.is_file():
        text = card.read_text()
        if text.startswith("---\n"):
            for line in text.split("\n---", 1)[0].splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "ttt_steps" and value.strip().isdigit():
                    return int(value)
    try:
        methods = json.loads((directory / "config.json").read_text())["speculators_config"]["proposal_methods"]
        return int(methods[0]["speculative_tokens"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def fit_warnings(target: TargetModel, name: str, draft: Eagle3Draft) -> list[str]:
    """Refuse a draft built for another target (both values named); RoPE differences are only warnings."""
    target.check_draft(draft.config)
    try:
        own = rope_parameters_from_config(target.config)
    except RopeConfigError as error:
        return [f"{name}: cannot compare RoPE with the target ({error})"]
    if dict(draft.config.rope_parameters) != own:
        return [f"{name}: RoPE {draft.config.rope_parameters} differs from the target's {own}"]
    return []


def eos_ids(model: PreTrainedModel) -> set[int]:
    ids = getattr(model.generation_config, "eos_token_id", None) or model.config.eos_token_id
    if ids is None:
        return set()
    return {int(ids)} if isinstance(ids, int) else {int(i) for i in ids}


def context_limit(model: PreTrainedModel, settings: EvalSettings) -> int:
    """Positions a prompt plus its generation may use: the target's context, or ``max_context`` below it."""
    limit = int(model.config.max_position_embeddings)
    return min(limit, settings.max_context) if settings.max_context else limit


def evaluate_prompts(model: PreTrainedModel, drafts: Sequence[DraftUnderTest], prompts: PromptSet,
                     settings: EvalSettings) -> dict[str, Any]:
    """Decode every prompt plainly and with every draft; the report as a JSON-ready dict.

    The drafts are moved to the target's device and dtype, as an engine serves them.
    """
    targets, warnings = [], []
    for d in drafts:
        target = TargetModel(model, d.draft.config.aux_layer_ids)
        warnings += fit_warnings(target, d.name, d.draft)
        d.draft.to(device=target.device, dtype=model.dtype)
        targets.append(target)
    max_length = context_limit(model, settings)
    eos = eos_ids(model)
    chosen = prompts.prompts
    device = model.device
    greedy = settings.temperature == 0
    bar = tqdm(total=len(chosen) * (1 + len(drafts)), desc="evaluating", unit="run", disable=not settings.progress)

    def generator(index: int) -> torch.Generator | None:
        return torch.Generator(device).manual_seed(settings.seed + index) if not greedy else None

    if chosen:  # the first forwards of a process are slow; keep them out of the timings
        plain_decode(TargetModel(model), torch.tensor(chosen[0].input_ids), 2, max_length, eos=eos)
    plain = []
    for i, prompt in enumerate(chosen):
        plain.append(plain_decode(TargetModel(model), torch.tensor(prompt.input_ids), settings.max_new_tokens,
                                  max_length, settings.temperature, generator(i), eos))
        bar.update(1)
    sections = []
    for d, target in zip(drafts, targets):
        steps = settings.steps or d.trained_steps or DEFAULT_STEPS
        runs = []
        for i, prompt in enumerate(chosen):
            proposer = DraftProposer(d.draft, target.vocab_size, settings.draft_window)
            runs.append((prompt, speculative_decode(target, proposer, torch.tensor(prompt.input_ids), steps,
                                                    settings.max_new_tokens, max_length, settings.temperature,
                                                    generator(i), eos)))
            bar.update(1)
        sections.append(draft_report(d.name, steps, runs, plain, greedy and settings.check_greedy,
                                     {"trained_steps": d.trained_steps, "draft_window": settings.draft_window, **d.extra}))
    bar.close()
    return {
        "settings": {**asdict(settings), "max_length": max_length, "dtype": str(model.dtype).removeprefix("torch.")},
        "prompts": {"evaluated": len(chosen), "skipped": dict(prompts.skipped)},
        "warnings": warnings,
        "drafts": sections,
    }


def evaluate(target: str | os.PathLike, drafts: Sequence[str | os.PathLike], data: Any, settings: EvalSettings,
             *, device: str = "cpu", dtype: str = "auto", tokenizer: str | None = None,
             max_prompts: int | None = None) -> dict[str, Any]:
    """Evaluate draft checkpoints against a target on the prompts of ``data`` (conversation files).

    ``max_prompts`` caps the conversations prompted (each at every context position).

    Drafts are loaded and checked against the target before any prompt is read, so a
    draft for another target fails in seconds with both values named.
    """
    if not drafts:
        raise ValueError("no draft to evaluate: pass at least one draft directory")
    loaded = TargetModel.from_pretrained(target, options=TargetLoadOptions(dtype=dtype, device=device))
    under_test = []
    for path in drafts:
        draft = load_draft(path)
        fit_warnings(TargetModel(loaded.model, draft.config.aux_layer_ids), str(path), draft)
        under_test.append(DraftUnderTest(str(path), draft, trained_steps(path)))
    tok = AutoTokenizer.from_pretrained(tokenizer or target)
    found = PromptSet([])
    conversations = read_prompt_conversations(data, found)
    build_prompts(conversations, tok, settings.contexts, context_limit(loaded.model, settings), found, max_prompts)
    report = evaluate_prompts(loaded.model, under_test, found, settings)
    return {"target": str(target), "data": [str(s) for s in (data if isinstance(data, (list, tuple)) else [data])],
            **report}


def prompts_from_samples(samples: Sequence[Any], count: int, max_length: int) -> PromptSet:
    """Prompts from tokenized samples: the tokens before the last assistant turn's first supervised token."""
    found = PromptSet([])
    for sample in samples:
        if len(found.prompts) >= count:
            break
        mask = list(sample.loss_mask)
        if 1 not in mask:
            found.skip("empty")
            continue
        end = len(mask)
        while end > 0 and mask[end - 1] == 0:
            end -= 1
        start = end
        while start > 0 and mask[start - 1] == 1:
            start -= 1
        prompt = list(sample.input_ids[:start])
        if not prompt:
            found.skip("empty")
        elif len(prompt) + 1 >= max_length:
            found.skip("too_long")
        else:
            found.prompts.append(Prompt(prompt, ",".join(sample.sources)))
    return found
