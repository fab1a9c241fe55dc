"""The draft's configuration: one dataclass, validated once when it is built."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


class DraftConfigError(ValueError):
    """A draft configuration that cannot describe a working EAGLE-3 draft."""


@dataclass
class DraftConfig:
    """Sizes of the EAGLE-3 draft and the facts about its target it must agree with.

    ``aux_layer_ids`` are in SGLang's convention: indices of the target decoder layers
    whose *outputs* are captured (Hugging Face ``hidden_states[k + 1]``). vLLM's ids are
    these plus one; the checkpoint writes both.
    """

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    draft_vocab_size: int
    target_hidden_size: int
    max_position_embeddings: int
    rope_parameters: dict[str, Any] = field(default_factory=lambda: {"rope_type": "default", "rope_theta": 10000.0})
    rms_norm_eps: float = 1e-5
    aux_layer_ids: tuple[int, int, int] | None = None
    target_num_hidden_layers: int | None = None
    target_model_type: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "vocab_size",
            "draft_vocab_size",
            "target_hidden_size",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise DraftConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise DraftConfigError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise DraftConfigError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.draft_vocab_size > self.vocab_size:
            raise DraftConfigError(
                f"draft_vocab_size ({self.draft_vocab_size}) exceeds the target vocab_size ({self.vocab_size})"
            )
        if not self.rms_norm_eps > 0:
            raise DraftConfigError(f"rms_norm_eps must be positive, got {self.rms_norm_eps!r}")
        if self.aux_layer_ids is not None:
            self.aux_layer_ids = validate_aux_layer_ids(self.aux_layer_ids, self.target_num_hidden_layers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def validate_aux_layer_ids(ids: Any, num_layers: int | None) -> tuple[int, int, int]:
    """Three distinct decoder-layer indices (SGLang convention), inside the target."""
    try:
        ids = tuple(ids)
    except TypeError:
        raise DraftConfigError(f"aux_layer_ids must be a list of three layer indices, got {ids!r}") from None
    if len(ids) != 3:
        raise DraftConfigError(f"aux_layer_ids must name exactly three target layers, got {len(ids)}: {list(ids)}")
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise DraftConfigError(f"aux_layer_ids must be integers, got {list(ids)}")
    if len(set(ids)) != 3:
        raise DraftConfigError(f"aux_layer_ids must be distinct, got {list(ids)}")
    if num_layers is not None:
        bad = [i for i in ids if not 0 <= i <= num_layers - 2]
        if bad:
            raise DraftConfigError(
                f"aux_layer_ids {list(ids)}: {bad} out of range for a target with {num_layers} layers "
                f"(valid: 0..{num_layers - 2}; id k captures the output of decoder layer k, which the engines "
                f"read as the input of layer k + 1, so the last layer's output cannot be captured)"
            )
    return ids  # type: ignore[return-value]


def default_aux_layer_ids(num_layers: int) -> tuple[int, int, int]:
    """Outputs of layers ``[1, L//2 - 1, L - 4]`` (gpt-oss-20b: ``[1, 11, 20]``).

    Test-sized targets (fewer than 7 layers) cannot fit that pattern with three distinct
    layers; they get ``[0, (L-2)//2, L-2]``, spread over the capturable layers 0..L-2.
    """
    if num_layers >= 7:
        return (1, num_layers // 2 - 1, num_layers - 4)
    if num_layers < 4:
        raise DraftConfigError(f"a target with {num_layers} layers has fewer than three capturable layers")
    return (0, (num_layers - 2) // 2, num_layers - 2)
