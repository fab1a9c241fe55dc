"""draftsmith: train EAGLE-3 draft models and ship them to SGLang and vLLM."""

from .config import DraftConfig
from .draft import Eagle3Draft
from .rope import rotary_from_config
from .targets import build_draft, draft_config_from_target

__all__ = ["DraftConfig", "Eagle3Draft", "build_draft", "draft_config_from_target", "rotary_from_config"]
__version__ = "0.1.0"
