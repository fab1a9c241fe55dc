"""Speculative decoding with a draft, measured: τ, acceptance by depth and by context position.

Entry points: :func:`evaluate` (draft checkpoints, a target and prompt files in; a
JSON-ready report out), :func:`evaluate_prompts` for models already in memory, and
:func:`evaluate_after_training` + :func:`write_model_card` for the end of a training run.
The decoding itself (:func:`speculative_decode`, :class:`DraftProposer`) runs one prompt.
"""

from draftsmith.evaluate.card import TrainedDraftFacts, evaluate_after_training, serve_commands, write_model_card
from draftsmith.evaluate.decoding import CachedTarget, Generation, plain_decode, speculative_decode, verify
from draftsmith.evaluate.prompts import Prompt, PromptSet, build_prompts
from draftsmith.evaluate.proposer import DraftProposer, Proposer
from draftsmith.evaluate.report import format_table, plot_series, write_json, write_plot
from draftsmith.evaluate.run import DraftUnderTest, EvalSettings, evaluate, evaluate_prompts, trained_steps

__all__ = [
    "CachedTarget", "DraftProposer", "DraftUnderTest", "EvalSettings", "Generation", "Prompt", "PromptSet",
    "Proposer", "TrainedDraftFacts", "build_prompts", "evaluate", "evaluate_after_training", "evaluate_prompts",
    "format_table", "plain_decode", "plot_series", "serve_commands", "speculative_decode", "trained_steps",
    "verify", "write_json", "write_model_card", "write_plot",
]
