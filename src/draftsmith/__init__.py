"""draftsmith: train EAGLE-3 draft models and ship them to SGLang and vLLM."""

__version__ = "0.1.0"

from .checkpoint import load_draft
from .config import DraftConfig
from .draft import Eagle3Draft
from .rope import rotary_from_config
from .targets import build_draft, draft_config_from_target

__all__ = [
    "DraftConfig",
    "Eagle3Draft",
    "build_draft",
    "draft_config_from_target",
    "load_draft",
    "rotary_from_config",
]
