"""Draft checkpoints: building a draft for a target, saving and loading the one layout SGLang and
vLLM both load (``layout``, with its aux-id fields in ``aux_ids``), the speculators export, and
the serving command lines. Judging a checkpoint is ``draftsmith.inspect``'s job."""

from draftsmith.checkpoint.layout import (CheckpointError, PretrainedDraft, build_draft, engine_config, load_draft,
                                          save_draft)

__all__ = ["CheckpointError", "PretrainedDraft", "build_draft", "engine_config", "load_draft", "save_draft"]
