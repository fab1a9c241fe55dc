"""The aux-id fields of a draft's ``config.json``: which ones draftsmith writes, and what a config
says its draft was trained on.

Internally and in our own record (``draftsmith.aux_hidden_state_indices``) aux states are
Hugging Face hidden-state indices (0 = embeddings, ``k + 1`` = output of decoder layer ``k``).
The engines read other fields in other conventions; :mod:`draftsmith.engines` models each
released engine, and every field written here is chosen so that those models, and the
engines' own functions (``tests/test_engine_rules.py``), capture exactly the trained states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from draftsmith.engines import sglang
from draftsmith.engines.fields import IDS, NESTED, eagle_config, int_list, nested_ids, top_level_ids
from draftsmith.model.config import engine_default_hidden_state_indices

RECORD = "draftsmith"
RECORD_FIELD = "aux_hidden_state_indices"
GPT_OSS = sglang.GPT_OSS


def sglang_nested_ids(indices: Sequence[int], num_layers: int | None, model_type: str | None) -> tuple[int, ...]:
    """The ``eagle_config`` ids SGLang 0.5.23 reads as ``indices``.

    SGLang adds 1 to the nested ids (output-of-layer ids), except for a gpt-oss target when the
    largest id is the target's depth ``L``: then it takes them as hidden-state indices, which is
    how it reaches the final layer's output. So: the indices themselves for gpt-oss when the final
    layer is among them, else output-of-layer ids (``index - 1``).
    """
    indices = tuple(sorted(indices))
    if model_type == GPT_OSS and num_layers is not None and max(indices) == num_layers:
        return indices
    return tuple(i - 1 for i in indices)


def engine_id_fields(indices: Sequence[int], num_layers: int | None, model_type: str | None) -> dict[str, Any]:
    """The engine id fields of ``config.json`` for a draft trained on hidden states ``indices``.

    None at all for the engines' default three: every SGLang and vLLM version then captures
    exactly those. Otherwise the top-level ids vLLM's V1 and V2 runners read (hidden-state
    indices) and the nested ids SGLang reads (:func:`sglang_nested_ids`); the nested list also
    sizes ``fc`` in both engines whenever there are not three states. With the target's depth
    unknown the default cannot be recognized, so the ids are always written.
    """
    indices = tuple(sorted(indices))
    if num_layers is not None and indices == engine_default_hidden_state_indices(num_layers):
        return {}
    return {NESTED: {IDS: list(sglang_nested_ids(indices, num_layers, model_type))}, IDS: list(indices)}


def trained_hidden_state_source(config: Mapping[str, Any], model_type: str | None,
                                num_layers: int | None = None) -> tuple[tuple[int, ...] | None, str]:
    """What a checkpoint's draft was trained on, as hidden-state indices, and the field it says so in
    (None: no ids anywhere, so the engines' default).

    Our own record first; then the top-level ids (vLLM's reading, shared by the speculators format
    and ModelOpt); then the nested ids as SGLang 0.5.23 reads them (for an unknown depth, as if the
    final layer were not among them: ids + 1).
    """
    record = config.get(RECORD)
    if isinstance(record, Mapping) and int_list(record.get(RECORD_FIELD)):
        return tuple(sorted(record[RECORD_FIELD])), "recorded by draftsmith"
    top = top_level_ids(config)
    if top:
        return tuple(sorted(top)), "top-level ids"
    nested = nested_ids(config)
    if not nested:
        return None, "no ids: the engines' default"
    read = sglang.read_ids(nested, num_layers, model_type)
    return tuple(sorted(read)), "eagle_config ids" + ("" if read == nested else " + 1")


def trained_hidden_state_indices(config: Mapping[str, Any], model_type: str | None,
                                 num_layers: int | None = None) -> tuple[int, ...] | None:
    """:func:`trained_hidden_state_source` without the field name."""
    return trained_hidden_state_source(config, model_type, num_layers)[0]


def variant_flag(config: Mapping[str, Any], name: str) -> bool:
    """An architecture option as the draft was trained with it: ``eagle_config`` first, then top level
    (where NVIDIA's gpt-oss drafts keep ``norm_before_fc``, and where both engines look first)."""
    nested = eagle_config(config)
    return bool(nested[name]) if name in nested else bool(config.get(name, False))
