"""Draft checkpoints: building a draft for a target, saving and loading the engine layout,
the speculators export, and ``inspect``."""

from draftsmith.checkpoint.engine import (CheckpointError, PretrainedDraft, build_draft, engine_config, load_draft,
                                          save_draft)

__all__ = ["CheckpointError", "PretrainedDraft", "build_draft", "engine_config", "load_draft", "save_draft"]
