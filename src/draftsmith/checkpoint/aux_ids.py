"""Which target states SGLang and vLLM feed a draft, per engine version, and which ids to write.

One owner for the engines' aux-id rules, read from their code (docs/aux-layers.md cites
file, function and PR for each). All indices here are Hugging Face hidden-state indices
(0 = embeddings, k + 1 = output of decoder layer k, before the final norm); ``n`` are the
ids in ``eagle_config.eagle_aux_hidden_state_layer_ids`` (the nested ids), ``t`` the
top-level ``eagle_aux_hidden_state_layer_ids``, ``D = (2, L//2, L-3)`` the engines' default
for an ``L``-layer target:

=======  =====================================  ==========================  ============
engine   versions                               ids read                    reachable
=======  =====================================  ==========================  ============
vLLM     before #36063                          t, else D                   0..L-1
vLLM     #36063 until #42764                    t, else D                   0..L
vLLM     since #42764 (2026-05)                 t, else n, else D           0..L
SGLang   Llama family (+1 paths)                n + 1, else D               1..L-1
SGLang   paths changed by #25454 (2026-05)      n + 1 if n[0] == 1 else n   1..L-1
SGLang   gpt-oss before #32334                  n + 1, else D               1..L-1
SGLang   gpt-oss since #32334 (2026-07-31)      n, else D                   1..L
=======  =====================================  ==========================  ============

Every version captures in ascending layer order. A state outside an engine's reachable
range is simply not captured, so the draft gets fewer states than it has ``fc`` columns
for and the engine fails at its first forward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from draftsmith.model.config import engine_default_hidden_state_indices, from_hidden_state_indices

RECORD = "draftsmith"
RECORD_FIELD = "aux_hidden_state_indices"
IDS = "eagle_aux_hidden_state_layer_ids"
NESTED = "eagle_config"
GPT_OSS = "gpt_oss"


@dataclass(frozen=True)
class EngineCapture:
    """What one engine version feeds the draft for one config.

    ``indices`` are the hidden-state indices it captures, ascending, or None when some
    requested state is out of its reach (the engine then fails at its first forward).
    ``current``: this rule is in the engine's main branch today (as far as the stored
    code and the cited PRs show); older rules matter for pinned deployments.
    """

    engine: str
    versions: str
    current: bool
    indices: tuple[int, ...] | None
    source: str


@dataclass(frozen=True)
class AuxVerdict:
    """An engine version that runs the draft otherwise than it was trained.

    ``level``: "error" where a current engine does, "warning" where only older versions do.
    ``capture`` is that version's capture (None for a variant), ``trained`` the states the
    draft was trained on.
    """

    level: str
    message: str
    capture: EngineCapture | None = None
    trained: tuple[int, ...] | None = None


def _ids(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, (list, tuple)) and value and all(isinstance(i, int) and not isinstance(i, bool)
                                                          for i in value):
        return tuple(value)
    return None


def nested_ids(config: Mapping[str, Any]) -> tuple[int, ...] | None:
    nested = config.get(NESTED)
    return _ids(nested.get(IDS)) if isinstance(nested, Mapping) else None


def top_level_ids(config: Mapping[str, Any]) -> tuple[int, ...] | None:
    return _ids(config.get(IDS))


def _reach(indices: Sequence[int], low: int, high: int) -> tuple[int, ...] | None:
    return tuple(sorted(indices)) if all(low <= i <= high for i in indices) else None


def engine_captures(config: Mapping[str, Any], num_layers: int, model_type: str | None) -> list[EngineCapture]:
    """Per engine and version range, the hidden-state indices it captures for ``config``.

    ``model_type`` is the target's Hugging Face ``model_type`` (SGLang's rules differ for
    gpt-oss); ``num_layers`` its decoder layer count.
    """
    L = num_layers
    default = engine_default_hidden_state_indices(L)
    n, t = nested_ids(config), top_level_ids(config)

    def vllm(versions: str, current: bool, fallback: bool, high: int) -> EngineCapture:
        ids, source = (t, "top-level ids") if t else (n, "eagle_config ids") if fallback and n else (
            default, "engine default")
        return EngineCapture("vLLM", versions, current, _reach(ids, 0, high), source)

    def sglang(versions: str, current: bool, plus_one: bool | None, high: int) -> EngineCapture:
        if not n:
            return EngineCapture("SGLang", versions, current, _reach(default, 1, high), "engine default")
        shift = (n[0] == 1) if plus_one is None else plus_one
        return EngineCapture("SGLang", versions, current, _reach([i + shift for i in n], 1, high),
                             "eagle_config ids" + (" + 1" if shift else ""))

    captures = [
        vllm("before #36063", False, False, L - 1),
        vllm("#36063 until #42764", False, False, L),
        vllm("since #42764 (2026-05)", True, True, L),
    ]
    if model_type == GPT_OSS:
        captures += [sglang("gpt-oss before #32334", False, True, L - 1),
                     sglang("gpt-oss since #32334 (2026-07-31)", True, False, L)]
    else:
        captures += [sglang("Llama-family paths that add 1", True, True, L - 1),
                     sglang("model paths changed by #25454 (2026-05)", False, None, L - 1)]
    return captures


def engine_id_fields(indices: Sequence[int], num_layers: int | None, model_type: str | None) -> dict[str, Any]:
    """The engine id fields of ``config.json`` for a draft trained on hidden states ``indices``.

    None at all for the engines' default: every SGLang and vLLM version then captures
    exactly those states. Otherwise the top-level ids vLLM reads, and the nested ids
    current SGLang reads (for gpt-oss the same hidden-state indices, since #32334; for
    other families the output-of-layer ids SGLang adds 1 to). With the target's depth
    unknown the default cannot be recognized, so the ids are always written.
    """
    indices = tuple(sorted(indices))
    if num_layers is not None and indices == engine_default_hidden_state_indices(num_layers):
        return {}
    nested = indices if model_type == GPT_OSS else from_hidden_state_indices(indices)
    return {NESTED: {IDS: list(nested)}, IDS: list(indices)}


def trained_hidden_state_indices(config: Mapping[str, Any], model_type: str | None) -> tuple[int, ...] | None:
    """What a checkpoint's draft was trained on, as hidden-state indices (None: no ids anywhere).

    Our own record first; then the top-level ids (vLLM's reading, which the speculators
    format and ModelOpt share); then the nested ids as current SGLang reads them for the
    target family, or, the family unknown, by #25454's rule (a list starting at 1 counts
    outputs of layers, which is how NVIDIA's ``[1, 17, 32]`` and ``[24, 30, 36]`` gpt-oss
    drafts both read right).
    """
    return trained_hidden_state_source(config, model_type)[0]


def trained_hidden_state_source(config: Mapping[str, Any],
                                model_type: str | None) -> tuple[tuple[int, ...] | None, str]:
    """:func:`trained_hidden_state_indices` and the field it read them from, for messages."""
    record = config.get(RECORD)
    if isinstance(record, Mapping) and _ids(record.get(RECORD_FIELD)):
        return tuple(sorted(record[RECORD_FIELD])), "recorded by draftsmith"
    top = top_level_ids(config)
    if top:
        return tuple(sorted(top)), "top-level ids"
    n = nested_ids(config)
    if not n:
        return None, "no ids: the engines' default"
    shift = 0 if model_type == GPT_OSS else 1 if model_type is not None else int(n[0] == 1)
    return tuple(sorted(i + shift for i in n)), "eagle_config ids" + (" + 1" if shift else "")


def aux_verdicts(config: Mapping[str, Any], num_layers: int, model_type: str | None) -> list[AuxVerdict]:
    """One line per engine version that feeds the draft other states than it was trained on.

    An error where a current engine does; a warning where only older versions do, which no
    single config can fix when old and new versions read the ids differently.
    """
    trained = trained_hidden_state_indices(config, model_type)
    if trained is None:
        trained = tuple(sorted(engine_default_hidden_state_indices(num_layers)))
    out = []
    for capture in engine_captures(config, num_layers, model_type):
        if capture.indices == trained:
            continue
        got = ("fails: some requested states are out of its reach" if capture.indices is None
               else f"captures hidden states {list(capture.indices)} ({capture.source})")
        out.append(AuxVerdict("error" if capture.current else "warning",
                              f"{capture.engine} {capture.versions} {got}; the draft was trained on hidden states "
                              f"{list(trained)}", capture, trained))
    return out


def nested_flag(config: Mapping[str, Any], name: str) -> bool:
    """A variant flag as the engines read it: nested ``eagle_config`` first, then top level (vLLM #42143)."""
    nested = config.get(NESTED)
    if isinstance(nested, Mapping) and name in nested:
        return bool(nested[name])
    return bool(config.get(name, False))


@dataclass(frozen=True)
class VariantSupport:
    """Where one architecture option runs as trained.

    vLLM's current code runs all four. ``sglang_runs``: current SGLang runs it as trained;
    where it does not, it loads the draft without a word and runs another one (unknown
    weights are skipped, unknown fields ignored).
    """

    vllm: str
    sglang: str
    sglang_runs: bool


# The one table of which engine versions run each architecture option, from their code and
# PRs (docs/aux-layers.md and docs/engines.md cite them). Where a PR or trainer says more
# than the engine code we read, the verdict follows the code and the message says so.
VARIANT_SUPPORT: dict[str, VariantSupport] = {
    "norm_before_fc": VariantSupport(
        "vLLM reads it top level (speculators adapter since #38111) and in eagle_config (#42143)",
        "SGLang honors it since #32334 (2026-07-31); older SGLang silently skips input_norm.weight", True),
    "fc_norm": VariantSupport(
        "vLLM applies it since #42764 (2026-05)",
        "SGLang's llama_eagle3.py has no fc_norm: it silently skips the fc_norm.* weights and runs another draft",
        False),
    "norm_output": VariantSupport(
        "vLLM's model code reads it since #42764; its speculators adapter passes it on since #46488",
        "SGLang's llama_eagle3.py feeds the un-normed residual sum to the next step (SpecForge #879 says newer "
        "SGLang reads the flag; sgl-project's code we read does not)", False),
    "norm_before_residual": VariantSupport(
        "vLLM applies it (llama_eagle3.py, LlamaDecoderLayer._norm_before_residual)",
        "SGLang ignores it and keeps the un-normed residual", False),
}


def variant_verdicts(config: Mapping[str, Any]) -> list[AuxVerdict]:
    """For each architecture option the config turns on, where it runs: an error where current
    SGLang runs another draft, a warning where only older engine versions do."""
    out = []
    for name, support in VARIANT_SUPPORT.items():
        if nested_flag(config, name):
            out.append(AuxVerdict("warning" if support.sglang_runs else "error",
                                  f"{name}: {support.vllm}; {support.sglang}"))
    return out
