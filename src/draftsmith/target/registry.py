"""Target registry: which architectures draftsmith serves and how a draft follows each.

A draft config is *derived* from the target config, never copied from it: hidden size,
heads, KV heads, head_dim, RoPE and max positions come from the target; everything
target-only (experts, sliding windows, layer types, biases, quantization) stays behind.
The rotary schedule can be overridden (``rope_parameters``, ``max_position_embeddings``)
only to study drafts that rotate differently from their target, as some published ones do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from draftsmith.model.config import DraftConfig, DraftConfigError, default_aux_layer_ids, validate_aux_layer_ids
from draftsmith.model.rope import config_head_dim, rope_parameters_from_config
from draftsmith.vocab_mapping import capped_draft_vocab_size


class UnsupportedTargetError(ValueError):
    """A target architecture draftsmith has no registry entry for."""


def _dense_mlp_width(config: PretrainedConfig) -> int:
    return int(config.intermediate_size)


def _moe_mlp_width(config: PretrainedConfig) -> int:
    """gpt-oss's ``intermediate_size`` is one expert's; public drafts use 6 x H (17,280)."""
    return 6 * int(config.hidden_size)


@dataclass(frozen=True)
class TargetFamily:
    """How draftsmith treats one Hugging Face ``model_type``.

    ``final_layer_capturable``: whether both engines can feed the draft the output of the
    target's last decoder layer. vLLM 0.32.0 can for every family; SGLang 0.5.23 captures at
    each layer's input, and after the last layer only for gpt-oss (``draftsmith.engines.sglang``).
    """

    model_type: str
    architecture: str
    mlp_width: Callable[[PretrainedConfig], int]
    layers_path: str = "model.layers"
    final_layer_capturable: bool = False


FAMILIES: dict[str, TargetFamily] = {
    family.model_type: family
    for family in (
        TargetFamily("gpt_oss", "GptOssForCausalLM", _moe_mlp_width, final_layer_capturable=True),
        TargetFamily("llama", "LlamaForCausalLM", _dense_mlp_width),
        TargetFamily("mistral", "MistralForCausalLM", _dense_mlp_width),
        TargetFamily("qwen2", "Qwen2ForCausalLM", _dense_mlp_width),
        TargetFamily("qwen3", "Qwen3ForCausalLM", _dense_mlp_width),
        # Qwen3-MoE's intermediate_size is its dense FFN width, not one expert's.
        TargetFamily("qwen3_moe", "Qwen3MoeForCausalLM", _dense_mlp_width),
    )
}


def load_target_config(target: PretrainedConfig | Mapping[str, Any] | str | os.PathLike) -> PretrainedConfig:
    """A transformers config from a config object, a config.json dict, or a model directory / hub id.

    Going through transformers' own config class fills in the defaults the target itself
    runs with (gpt-oss's rope_theta 150000 and YaRN, for instance).
    """
    if isinstance(target, PretrainedConfig):
        return target
    if isinstance(target, Mapping):
        config = dict(target)
        model_type = config.pop("model_type", None)
        if model_type is None:
            raise UnsupportedTargetError("target config has no model_type")
        _family(model_type)
        return AutoConfig.for_model(model_type, **config)
    return AutoConfig.from_pretrained(os.fspath(target), trust_remote_code=False)


def _family(model_type: str | None) -> TargetFamily:
    if model_type not in FAMILIES:
        raise UnsupportedTargetError(
            f"unsupported target architecture {model_type!r}; supported model_type values: {', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[model_type]


def target_family(config: PretrainedConfig) -> TargetFamily:
    return _family(getattr(config, "model_type", None))


def draft_config_from_target(
    target_config: PretrainedConfig | Mapping[str, Any] | str | os.PathLike,
    *,
    draft_vocab_size: int | None = None,
    aux_layer_ids: list[int] | tuple[int, ...] | None = None,
    **overrides: Any,
) -> DraftConfig:
    """The clean draft config for a target (see :func:`build_draft`)."""
    config = load_target_config(target_config)
    family = target_family(config)
    num_layers = int(config.num_hidden_layers)
    vocab = int(config.vocab_size)
    values: dict[str, Any] = dict(
        hidden_size=int(config.hidden_size),
        intermediate_size=family.mlp_width(config),
        num_attention_heads=int(config.num_attention_heads),
        num_key_value_heads=int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads),
        head_dim=config_head_dim(config),
        vocab_size=vocab,
        draft_vocab_size=capped_draft_vocab_size(draft_vocab_size, vocab),
        target_hidden_size=int(config.hidden_size),
        max_position_embeddings=int(config.max_position_embeddings),
        rope_parameters=rope_parameters_from_config(config),
        rms_norm_eps=float(config.rms_norm_eps),
        aux_layer_ids=default_aux_layer_ids(num_layers) if aux_layer_ids is None else validate_aux_layer_ids(
            aux_layer_ids, num_layers, final_layer=family.final_layer_capturable),
        target_num_hidden_layers=num_layers,
        target_model_type=config.model_type,
    )
    fixed = {"vocab_size", "target_hidden_size", "target_num_hidden_layers", "target_model_type"}
    allowed = set(DraftConfig.field_names()) - fixed - {"draft_vocab_size", "aux_layer_ids"}
    unknown = set(overrides) - allowed
    if unknown:
        follows = sorted(unknown & fixed)
        hint = f" ({', '.join(follows)} must follow the target)" if follows else ""
        raise DraftConfigError(
            f"unknown draft override(s) {sorted(unknown)}{hint}; allowed: {', '.join(sorted(allowed))}"
        )
    rope = overrides.pop("rope_parameters", None)
    values.update(overrides)
    if rope is not None:  # normalized like the target's, so equal schedules compare equal
        values["rope_parameters"] = rope_parameters_from_config(
            {"rope_parameters": dict(rope), "max_position_embeddings": values["max_position_embeddings"]})
    return DraftConfig(**values)

