"""Targets: the registry of supported families (how a draft follows each) and the frozen
target model with aux-state capture."""

from draftsmith.target.capture import (TargetLoadOptions, TargetMismatchError, TargetModel, TargetOutputs,
                                       draft_token_ids_from_d2t)
from draftsmith.target.registry import (FAMILIES, TargetFamily, UnsupportedTargetError, draft_config_from_target,
                                        load_target_config, target_family)

__all__ = [
    "FAMILIES", "TargetFamily", "TargetLoadOptions", "TargetMismatchError", "TargetModel", "TargetOutputs",
    "UnsupportedTargetError", "draft_config_from_target", "draft_token_ids_from_d2t", "load_target_config",
    "target_family",
]
