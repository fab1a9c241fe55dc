"""The draft's configuration: one dataclass, validated once when it is built.

It also owns how draftsmith names the target states a draft reads. The public API names
an aux state by its decoder layer: **aux layer k is the output of decoder layer k**
(0-based), taken before the target's final norm. Checkpoints and the engines count
*hidden-state indices* instead, as Hugging Face's ``hidden_states`` tuple does: index 0 is
the embeddings and index k + 1 the output of decoder layer k. (For the last layer the
index is ``L`` and the state is taken *before* the final norm, where Hugging Face's
``hidden_states[L]`` is after it.) Every conversion goes through
:func:`to_hidden_state_indices` / :func:`from_hidden_state_indices`. Engines concatenate
the captured states in ascending layer order whatever order a config lists them in, so a
validated id list is always ascending.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any


class DraftConfigError(ValueError):
    """A draft configuration that cannot describe a working EAGLE-3 draft."""


@dataclass
class DraftConfig:
    """Sizes of the EAGLE-3 draft, its architecture options, and the facts about its target.

    ``aux_layer_ids``: aux layer k is the output of decoder layer k of the target (0-based,
    before the final norm; Hugging Face hidden-state index k + 1), always ascending.

    Architecture options, all off by default (plain EAGLE-3), named as the engines' config
    fields are:

    - ``norm_before_fc``: one RMSNorm over the concatenated aux states before ``fc``
      (weight ``input_norm.weight``, width 3 x target hidden size); used by NVIDIA's and
      RedHat's gpt-oss drafts against exploding hidden states.
    - ``fc_norm`` (EAGLE-3.1): one RMSNorm per aux state before the concatenation
      (weights ``fc_norm.{0,1,2}.weight``). Exclusive with ``norm_before_fc``.
    - ``norm_output`` (EAGLE-3.1): the next step receives the normed hidden state
      ``norm(h_next)`` (the same one the lm_head reads) instead of the raw sum.
    - ``norm_before_residual`` (speculators): the residual around attention is
      ``hidden_norm(h)`` instead of ``h``.
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
    norm_before_fc: bool = False
    fc_norm: bool = False
    norm_output: bool = False
    norm_before_residual: bool = False

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
        for name in ("norm_before_fc", "fc_norm", "norm_output", "norm_before_residual"):
            if not isinstance(getattr(self, name), bool):
                raise DraftConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.norm_before_fc and self.fc_norm:
            raise DraftConfigError("norm_before_fc and fc_norm are exclusive: both would norm the aux states twice")
        if self.aux_layer_ids is not None:
            self.aux_layer_ids = validate_aux_layer_ids(self.aux_layer_ids, self.target_num_hidden_layers)

    @property
    def aux_hidden_state_indices(self) -> tuple[int, ...] | None:
        """The aux states as hidden-state indices (what checkpoints record)."""
        return None if self.aux_layer_ids is None else to_hidden_state_indices(self.aux_layer_ids)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def to_hidden_state_indices(aux_layer_ids: Iterable[int]) -> tuple[int, ...]:
    """Hidden-state indices (0 = embeddings) of the outputs of decoder layers ``aux_layer_ids``."""
    return tuple(k + 1 for k in aux_layer_ids)


def from_hidden_state_indices(indices: Iterable[int]) -> tuple[int, ...]:
    """Decoder layers whose outputs are the hidden states ``indices`` (index 0, the embeddings, has none)."""
    indices = tuple(indices)
    if any(i < 1 for i in indices):
        raise DraftConfigError(f"hidden-state indices {list(indices)}: index 0 is the embeddings, not a layer's output")
    return tuple(i - 1 for i in indices)


def engine_default_hidden_state_indices(num_layers: int) -> tuple[int, int, int]:
    """What SGLang and vLLM capture when a draft names no ids: ``(2, L//2, L-3)``.

    These are the outputs of decoder layers ``1, L//2 - 1, L - 4``; every engine version
    we know uses them, so a draft trained on them needs no engine id field at all.
    """
    return (2, num_layers // 2, num_layers - 3)


def default_aux_layer_ids(num_layers: int) -> tuple[int, int, int]:
    """Outputs of layers ``[1, L//2 - 1, L - 4]`` (gpt-oss-20b: ``[1, 11, 20]``), the engines' default.

    Test-sized targets (fewer than 7 layers) cannot fit that pattern with three distinct
    layers; they get ``[0, (L-2)//2, L-2]``, spread over the layers every engine can capture.
    """
    if num_layers >= 7:
        return from_hidden_state_indices(engine_default_hidden_state_indices(num_layers))  # type: ignore[return-value]
    if num_layers < 4:
        raise DraftConfigError(f"a target with {num_layers} layers has fewer than three capturable layers")
    return (0, (num_layers - 2) // 2, num_layers - 2)


def validate_aux_layer_ids(ids: Any, num_layers: int | None, *, final_layer: bool = True) -> tuple[int, int, int]:
    """Three distinct decoder layers inside the target, returned in ascending order.

    ``final_layer`` says whether the output of the last decoder layer may be captured: the
    target family's engines decide (see :mod:`draftsmith.target.registry`). Without a layer
    count only the form is checked.
    """
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
        last = num_layers - 1 if final_layer else num_layers - 2
        bad = [i for i in ids if not 0 <= i <= last]
        if bad:
            why = ("" if final_layer else
                   f"; the output of the last layer ({num_layers - 1}) is not capturable for this target family")
            raise DraftConfigError(
                f"aux_layer_ids {list(ids)}: {bad} out of range for a target with {num_layers} layers "
                f"(valid: 0..{last}; aux layer k is the output of decoder layer k{why})"
            )
    return tuple(sorted(ids))  # type: ignore[return-value]
