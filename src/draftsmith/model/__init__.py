"""The draft model and the math it shares with its target: config, rotary, TTT attention.

No file I/O and no data here; persistence lives in :mod:`draftsmith.checkpoint`.
"""

from draftsmith.model.config import DraftConfig, DraftConfigError
from draftsmith.model.draft import Eagle3Draft
from draftsmith.model.rope import rotary_from_config

__all__ = ["DraftConfig", "DraftConfigError", "Eagle3Draft", "rotary_from_config"]
