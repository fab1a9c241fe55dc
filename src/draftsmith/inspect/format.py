"""The checks of a draft checkpoint that hold for both engines: which model class each builds, the
config fields it sizes the draft from, the stored weights against the parameters each engine
builds (:mod:`draftsmith.inspect.sglang` and :mod:`draftsmith.inspect.vllm` say which), and the
vocabulary mapping. Each finding names the engine function it restates in docs/engines.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from draftsmith.checkpoint.aux_ids import GPT_OSS
from draftsmith.inspect.findings import REFUSES, SGLANG, VLLM, WRONG, Finding
from draftsmith.inspect.view import ENGINE, SPECULATORS, DraftView, engine_rope, legacy_rope, sizes
from draftsmith.model.rope import RopeConfigError

# SGLang's model_config.py renames a draft's LlamaForCausalLM to LlamaForCausalLMEagle3;
# its registry has the Eagle3 class under that name only.
SGLANG_ARCHITECTURES = ("LlamaForCausalLMEagle3", "LlamaForCausalLM")
# vLLM's EAGLEConfig prefixes "Eagle3" unless the name starts or ends with it; these
# resulting names map to llama_eagle3.Eagle3LlamaForCausalLM in its registry.
VLLM_ARCHITECTURES = ("Eagle3LlamaForCausalLM", "LlamaForCausalLMEagle3", "Eagle3Qwen2_5vlForCausalLM",
                      "Eagle3Qwen3vlForCausalLM")
# Names neither engine loads as a parameter: d2t becomes the id mapping, t2d is dropped.
MAPPING = ("d2t", "t2d")


def architecture_findings(view: DraftView) -> list[Finding]:
    """Which model class each engine builds (SGLang model_config.py / registry; vLLM EAGLEConfig / registry)."""
    if view.layout == SPECULATORS:
        return [Finding("layout.speculators", "speculators-format checkpoint: vLLM reads it through its speculators "
                        "adapter; SGLang has no loader for it (export the engine layout to serve with both)",
                        {SGLANG: REFUSES})]
    arch = (view.raw.get("architectures") or [None])[0]
    out = []
    if arch not in SGLANG_ARCHITECTURES:
        out.append((SGLANG, f"SGLang builds a draft from architectures[0] {arch!r}: it runs EAGLE-3 Llama drafts as "
                            f"{SGLANG_ARCHITECTURES[0]} (or LlamaForCausalLM, which it renames)"))
    vllm_name = arch if arch and (arch.startswith("Eagle3") or arch.endswith("Eagle3")) else f"Eagle3{arch}"
    if vllm_name not in VLLM_ARCHITECTURES:
        out.append((VLLM, f"vLLM looks up {vllm_name!r} (architectures[0] {arch!r}) and has no EAGLE-3 model "
                          f"under that name"))
    return [Finding("config.architecture", message, {engine: REFUSES}) for engine, message in out]


def config_findings(view: DraftView) -> list[Finding]:
    """Config fields the engines read while building the draft."""
    c, out = view.config, []
    for key in ("hidden_size", "num_attention_heads", "intermediate_size", "vocab_size"):
        if not c.get(key):
            out.append(Finding("config.missing_size", f"{key} missing; neither engine can build the draft",
                               {SGLANG: REFUSES, VLLM: REFUSES}))
    if out:
        return out
    if "draft_vocab_size" not in c and view.layout == ENGINE:
        out.append(Finding("config.draft_vocab_size", "draft_vocab_size missing: SGLang's LlamaForCausalLMEagle3 reads "
                           "config.draft_vocab_size unguarded (AttributeError); vLLM defaults it to vocab_size",
                           {SGLANG: REFUSES}))
    if "target_hidden_size" in c and c["target_hidden_size"] is None:
        out.append(Finding("config.target_hidden_size_null", "target_hidden_size is null: both engines take it "
                           "because the key exists and fail on None * 3 while sizing fc (absent, they would use "
                           "hidden_size)", {SGLANG: REFUSES, VLLM: REFUSES}))
    if c.get("hidden_size") % c.get("num_attention_heads") and not c.get("head_dim"):
        out.append(Finding("config.head_dim", f"no head_dim and hidden_size {c['hidden_size']} is not a multiple of "
                           f"{c['num_attention_heads']} heads: the engines floor hidden_size // heads",
                           severity="warning"))
    if view.layout == ENGINE and c.get("model_type", "llama") != "llama":
        out.append(Finding("config.model_type", f"model_type is {c['model_type']!r}: the engines build the draft's "
                           "config with that family's transformers class, whose defaults fill absent fields (gpt_oss, "
                           "for one, defaults to YaRN RoPE and sliding-window layer types); inspect judges the fields "
                           "as written", severity="warning"))
    layer_types = c.get("layer_types") or []
    if layer_types and len(layer_types) != c.get("num_hidden_layers", 1):
        out.append(Finding("config.layer_types", f"{len(layer_types)} layer_types for {c.get('num_hidden_layers', 1)} "
                           "layer (copied from the target): the transformers both engines pin (5.19; "
                           "transformers/configuration_utils.py:PreTrainedConfig.validate_layer_type) rejects the "
                           "config, so neither loads the draft", {SGLANG: REFUSES, VLLM: REFUSES}))
    if layer_types and layer_types[0] == "sliding_attention" and c.get("sliding_window"):
        out.append(Finding("config.sliding_window", f"layer_types[0] is sliding_attention with sliding_window "
                           f"{c['sliding_window']} (copied from the target): vLLM's LlamaAttention windows the "
                           "draft's attention, SGLang's does not; EAGLE-3 trainers train full attention",
                           {VLLM: WRONG}))
    if c.get("quantization_config") is not None:
        out.append(Finding("config.quantization", "quantization_config set: both engines load the draft with that "
                           "quantization method, which must match how its weights were stored", severity="warning"))
    out.extend(_rope_spelling_findings(c))
    return out


def _rope_spelling_findings(c: Mapping[str, Any]) -> list[Finding]:
    try:
        new, old = engine_rope(c), legacy_rope(c)
    except RopeConfigError as error:
        return [Finding("rope.unsupported", f"RoPE fields: {error}", severity="warning")]
    if new != old:
        return [Finding("rope.spellings_disagree", f"rope_parameters {new} and rope_theta/rope_scaling {old} rotate "
                        "differently: readers on transformers 5 take the first, readers on transformers 4 (SGLang "
                        "pins 4.x) the second", severity="warning")]
    return []


def layer_count_findings(view: DraftView, family: str | None) -> list[Finding]:
    """Both engines build ``num_hidden_layers`` draft layers (``llama_eagle3.py``, ``LlamaModel.__init__``),
    the first fed the embedding and the aux states. Layers after it that the checkpoint does not store
    keep their initial values; vLLM 0.32.0 refuses a second layer outright on a gpt-oss target, whose
    sliding and full attention put the draft layers in different KV cache groups
    (``llm_base_proposer.py``, ``validate_same_kv_cache_group``; seen in tests/engines)."""
    layers = view.config.get("num_hidden_layers", 1)
    if layers == 1:
        return []
    stored = {name.split(".")[1] for name in view.canonical if name.startswith("layers.")}
    if stored >= {str(i) for i in range(1, layers)}:
        return [Finding("config.num_hidden_layers", f"num_hidden_layers is {layers}, with weights for every layer: "
                        "both engines build them all; draftsmith's drafts have one layer and it cannot check these",
                        severity="warning")]
    return [Finding("config.num_hidden_layers", f"num_hidden_layers is {layers} but the checkpoint has one layer's "
                    "weights: both engines build the others and keep them at their initial values"
                    + (", and vLLM refuses a second layer on a gpt-oss target" if family == GPT_OSS else ""),
                    {SGLANG: WRONG, VLLM: REFUSES if family == GPT_OSS else WRONG})]


def weight_findings(view: DraftView, params: Mapping[str, Mapping[str, tuple[int, ...]]],
                    skips_silently: Mapping[str, Any]) -> list[Finding]:
    """The stored weights against the parameters each engine builds (``params[engine]``: checkpoint
    name -> shape). A stored weight an engine has no parameter for is skipped without a word where
    ``skips_silently[engine](name)`` is true (the engine runs a draft without it: wrong) and refused
    otherwise; a parameter nothing is stored for keeps its initial value (wrong); a shape that differs
    is refused by the weight loader."""
    out: list[Finding] = []
    stored = {name: stored for name, stored in view.canonical.items() if name not in MAPPING}
    prefixed = sorted(n for n in view.weights if n.startswith("model."))
    if prefixed:
        out.append(Finding("weights.model_prefix", f"{len(prefixed)} weight names carry a 'model.' prefix (e.g. "
                           f"{prefixed[0]}): vLLM prefixes 'model.' itself and finds no model.model.* parameter; "
                           "SGLang accepts either spelling", {VLLM: REFUSES}))
    if "embed_tokens.weight" not in stored:
        out.append(Finding("weights.no_embed_tokens", "no embed_tokens.weight: both engines use the target's input "
                           "embedding, which is what EAGLE-3 trainers freeze and train with"))
    tied = bool(view.config.get("tie_word_embeddings")) and view.layout == ENGINE
    for engine, built in params.items():
        unknown = sorted(stored[name] for name in stored if name not in built
                         and not (tied and name == "lm_head.weight"))  # the tie rule below says what happens
        skipped = [name for name in unknown if skips_silently[engine](name)]
        raised = [name for name in unknown if name not in skipped]
        if skipped:
            out.append(Finding(f"weights.skipped_{engine}", f"{engine} builds no parameter for {skipped[:6]}: its "
                               "load_weights skips them without a word and runs the draft without them",
                               {engine: WRONG}))
        if raised and not (engine == VLLM and prefixed):
            out.append(Finding(f"weights.unknown_{engine}", f"{engine} builds no parameter for {raised[:6]}: its "
                               "weight loader raises on them", {engine: REFUSES}))
        missing = sorted(set(built) - set(stored) - {"embed_tokens.weight"})
        if missing:
            out.append(Finding("weights.missing", f"missing weights {missing}: {engine} keeps those parameters at "
                               "their initial value", {engine: WRONG}))
        for name, shape in built.items():
            if name in stored and tuple(view.weights[stored[name]].shape) != tuple(shape):
                out.append(Finding("weights.shape", f"{stored[name]} has shape "
                                   f"{tuple(view.weights[stored[name]].shape)}, {engine} builds {tuple(shape)} from "
                                   "the config; its weight loader refuses it", {engine: REFUSES}))
    if tied and "lm_head.weight" in stored:
        out.append(Finding("config.tie_word_embeddings", "tie_word_embeddings is true but the checkpoint has its own "
                           "lm_head.weight: SGLang ties lm_head to embed_tokens and skips the trained head; vLLM's "
                           "EAGLE-3 model keeps its own lm_head", {SGLANG: WRONG}))
    out.extend(_vocab_mapping_findings(view))
    return out


def _vocab_mapping_findings(view: DraftView) -> list[Finding]:
    """d2t (target id = draft id + d2t[draft id]) as both engines apply it; t2d neither reads."""
    canonical = view.canonical
    s = sizes(view.config)
    if "d2t" not in canonical:
        if s["draft_vocab"] < s["vocab"]:
            return [Finding("vocab.d2t_missing", f"no d2t although draft_vocab_size {s['draft_vocab']} < vocab_size "
                            f"{s['vocab']}: vLLM's draft_id_to_target_id stays zeros (the identity) and SGLang has no "
                            "hot_token_id, so draft ids are read as target ids", {SGLANG: WRONG, VLLM: WRONG})]
        return []
    d2t = view.weights[canonical["d2t"]]
    if tuple(d2t.shape) != (s["draft_vocab"],):
        return [Finding("vocab.d2t_shape", f"d2t has shape {tuple(d2t.shape)}, draft_vocab_size is "
                        f"{s['draft_vocab']}", {SGLANG: REFUSES, VLLM: REFUSES})]
    targets = d2t.long() + torch.arange(d2t.numel())
    if bool(((targets < 0) | (targets >= s["vocab"])).any()):
        return [Finding("vocab.d2t_range", f"d2t maps draft ids outside the target vocabulary [0, {s['vocab']}): "
                        "the engines index out of range", {SGLANG: REFUSES, VLLM: REFUSES})]
    if targets.unique().numel() != targets.numel():
        return [Finding("vocab.d2t_duplicates", "d2t maps several draft ids to one target id: not a vocabulary "
                        "mapping any trainer writes", {SGLANG: WRONG, VLLM: WRONG})]
    out = []
    if d2t.dtype.is_floating_point or d2t.dtype == torch.bool:
        out.append(Finding("vocab.d2t_dtype", f"d2t is {str(d2t.dtype).removeprefix('torch.')}, not an integer tensor: "
                           "SGLang adds it to arange as it is and indexes with the result (hot_token_id), which fails; "
                           "vLLM copies it into its int64 draft_id_to_target_id", {SGLANG: REFUSES}))
    if "t2d" in canonical:
        t2d = view.weights[canonical["t2d"]].bool()
        expected = torch.zeros(s["vocab"], dtype=torch.bool)
        expected[targets] = True
        if tuple(t2d.shape) != (s["vocab"],) or not torch.equal(t2d, expected):
            out.append(Finding("vocab.t2d_inconsistent", "t2d does not mark exactly the target ids d2t maps to; the "
                               "engines ignore t2d, but tools that read it disagree with them", severity="warning"))
    return out


def speculators_findings(view: DraftView) -> list[Finding]:
    """Fields vLLM's speculators adapter needs (configs/speculators/base.py)."""
    out = []
    verifier = (view.raw.get("speculators_config") or {}).get("verifier") or {}
    if not verifier.get("name_or_path"):
        out.append(Finding("speculators.verifier", "speculators_config.verifier.name_or_path missing: vLLM's adapter "
                           "reads it to build the speculative config", {VLLM: REFUSES}))
    if not view.raw.get("transformer_layer_config"):
        out.append(Finding("speculators.layer_config", "transformer_layer_config missing: vLLM builds the draft "
                           "from it", {VLLM: REFUSES}))
    if "norm_before_residual" not in view.raw:
        out.append(Finding("speculators.norm_before_residual", "norm_before_residual absent: vLLM's adapter assumes "
                           "true, the speculators trainer's default; a draft trained without it runs wrongly",
                           severity="warning"))
    return out
