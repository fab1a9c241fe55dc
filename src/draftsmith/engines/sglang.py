"""SGLang 0.5.23: which target states it feeds an EAGLE-3 draft, and how it builds the draft.

Read from the released wheel (``pip download --no-deps sglang==0.5.23``). SGLang reads the aux
ids only from ``eagle_config`` and passes them to the target's ``set_eagle3_layers_to_capture``,
which turns them into ``layers_to_capture``: hidden-state indices, captured at the input of
each decoder layer and, for gpt-oss only, at the final norm (index ``L``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from draftsmith.engines.fields import IDS, AuxCapture, declared_aux_count, eagle_config
from draftsmith.model.config import engine_default_hidden_state_indices

VERSION = "0.5.23"
PACKAGE = f"sglang=={VERSION}"
GPT_OSS = "gpt_oss"


def rule(path: str, function: str) -> str:
    return f"{PACKAGE}:sglang/srt/{path}:{function}"


RESOLVE_RULE = rule("model_executor/model_runner_components/spec_aux_hidden_state.py",
                    "_resolve_eagle_aux_hidden_state")
GPT_OSS_RULE = rule("models/gpt_oss.py", "GptOssForCausalLM.set_eagle3_layers_to_capture")
LLAMA_RULE = rule("models/llama.py", "LlamaForCausalLM.set_eagle3_layers_to_capture")
DRAFT_RULE = rule("models/llama_eagle3.py", "LlamaModel.__init__")


def requested_ids(config: Mapping[str, Any]) -> tuple[bool, tuple[int, ...] | None]:
    """``(use_aux_hidden_state, ids)`` as SGLang resolves them from a draft config: the ids only
    from ``eagle_config``, ``use_aux_hidden_state`` from there too (default true). An empty list
    stays empty (it asks for no state at all); only an absent one means the default."""
    nested = eagle_config(config)
    ids = nested.get(IDS)
    return bool(nested.get("use_aux_hidden_state", True)), tuple(ids) if isinstance(ids, (list, tuple)) else None


def read_ids(ids: tuple[int, ...], num_layers: int | None, model_type: str | None) -> tuple[int, ...]:
    """Nested ids as hidden-state indices: for gpt-oss the ids as they are when the largest is ``L``,
    ids + 1 otherwise and for every other family (``num_layers`` None: ``L`` unknown, so ids + 1)."""
    if model_type == GPT_OSS and ids and num_layers is not None and max(ids) == num_layers:
        return tuple(ids)
    return tuple(i + 1 for i in ids)


def layers_to_capture(ids: tuple[int, ...] | None, num_layers: int, model_type: str | None) -> tuple[int, ...]:
    """The target's ``layers_to_capture`` for the draft's ids: the default without ids, else
    :func:`read_ids`."""
    if ids is None:
        return engine_default_hidden_state_indices(num_layers)
    return read_ids(ids, num_layers, model_type)


def capturable(num_layers: int, model_type: str | None) -> range:
    """The hidden-state indices the target's forward can capture: the input of each decoder layer,
    and for gpt-oss also the final norm's input (``GptOssModel.forward``; ``LlamaModel.forward``
    has no capture there)."""
    return range(num_layers + 1) if model_type == GPT_OSS else range(num_layers)


def aux_capture(config: Mapping[str, Any], num_layers: int, model_type: str | None) -> AuxCapture:
    """The states SGLang 0.5.23 feeds the draft of ``config`` for an ``L``-layer target of ``model_type``."""
    use_aux, ids = requested_ids(config)
    target_rule = GPT_OSS_RULE if model_type == GPT_OSS else LLAMA_RULE
    if not use_aux:
        return AuxCapture((), (), "eagle_config.use_aux_hidden_state false (EAGLE-1 mode)", RESOLVE_RULE)
    requested = layers_to_capture(ids, num_layers, model_type)
    reach = capturable(num_layers, model_type)
    if ids is None:
        source = "engine default"
    elif not ids:
        source = "empty eagle_config ids: no state requested"
    elif requested == ids:
        source = "eagle_config ids as hidden-state indices (the largest is the final layer)"
    else:
        source = "eagle_config ids + 1"
    return AuxCapture(tuple(sorted({i for i in requested if i in reach})), requested, source, target_rule)


def num_aux_hidden_states(config: Mapping[str, Any]) -> int:
    """How many states ``fc`` takes: ``num_aux_hidden_states``, else the nested id count, else 3."""
    return declared_aux_count(config)


INPUT_WIDTH_RULE = rule("speculative/eagle_utils.py", "get_draft_input_from_target_hidden_dim")


def input_aux_count(config: Mapping[str, Any]) -> int:
    """How many states the draft runner's buffers are sized for: like :func:`num_aux_hidden_states`,
    but an absent nested list falls back to the top-level ids, which ``fc`` never reads."""
    return declared_aux_count(config, top_level_fallback=True)


def variants(config: Mapping[str, Any]) -> dict[str, bool]:
    """The architecture options SGLang builds the draft with: ``norm_before_fc`` from ``eagle_config``
    first, then top level; ``fc_norm`` top level (or the legacy ``use_aux_norm``); ``norm_output``
    top level. It has no ``norm_before_residual``: its draft layer always keeps the un-normed residual."""
    nested = eagle_config(config)
    return {
        "norm_before_fc": bool(nested.get("norm_before_fc", config.get("norm_before_fc", False))),
        "fc_norm": bool(config.get("fc_norm") or config.get("use_aux_norm", False)),
        "norm_output": bool(config.get("norm_output", False)),
        "norm_before_residual": False,
    }


# Weight names SGLang's load_weights renames before loading (legacy spellings).
LEGACY_WEIGHT_NAMES = {"midlayer": "layers.0", "aux_norm_low": "fc_norm.0", "aux_norm_mid": "fc_norm.1",
                       "aux_norm_high": "fc_norm.2"}


DRAFT_CONTEXT_RULE = rule("configs/model_config.py", "ModelConfig._derive_context_length")
CONTEXT_KEYS = ("max_sequence_length", "seq_length", "max_seq_len", "model_max_length", "max_position_embeddings")


def context_length(config: Mapping[str, Any]) -> int:
    """The context SGLang derives from a config: the first length field, times the RoPE ``factor``
    unless the scaling names an ``original_max_position_embeddings`` or is llama3; 2048 without one."""
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or {}
    factor = scaling.get("factor", 1) if scaling else 1
    if "original_max_position_embeddings" in scaling or scaling.get("rope_type") == "llama3":
        factor = 1
    for key in CONTEXT_KEYS:
        if config.get(key) is not None:
            return int(factor * config[key])
    return 2048


def refuses_draft_context(draft_config: Mapping[str, Any], target_context: int) -> bool:
    """SGLang builds the draft with the target's context and raises when that exceeds the context it
    derives from the draft's own config (unless ``SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1``)."""
    return target_context > context_length(draft_config)
