"""draftsmith: train EAGLE-3 draft models and ship them to SGLang and vLLM.

The public API is imported lazily, so ``draftsmith --help`` does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from draftsmith._version import __version__

_PUBLIC = {
    "DraftConfig": "draftsmith.model.config",
    "Eagle3Draft": "draftsmith.model.draft",
    "rotary_from_config": "draftsmith.model.rope",
    "draft_config_from_target": "draftsmith.target.registry",
    "build_draft": "draftsmith.checkpoint.layout",
    "load_draft": "draftsmith.checkpoint.layout",
    "save_draft": "draftsmith.checkpoint.layout",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'draftsmith' has no attribute {name!r}")
