"""How SGLang and vLLM build and load an EAGLE-3 Llama draft, rule by rule.

Each function re-states one part of the engines' loading code (docs/engines.md names the
file, function and commit each rule was read from) and reports what it does with the
checkpoint: nothing when the engine runs the draft as trained, else a finding with the
engine's effect. Nothing here trusts draftsmith's own writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from draftsmith.checkpoint.engine_aux import NESTED, VARIANT_SUPPORT, nested_flag
from draftsmith.checkpoint.findings import LIMITED, REFUSES, SGLANG, VLLM, WRONG, Finding
from draftsmith.model.rope import RopeConfigError, rope_parameters_from_config

ENGINE, SPECULATORS = "engine", "speculators"
# SGLang's model_config.py renames a draft's LlamaForCausalLM to LlamaForCausalLMEagle3;
# its registry has the Eagle3 class under that name only.
SGLANG_ARCHITECTURES = ("LlamaForCausalLMEagle3", "LlamaForCausalLM")
# vLLM's EAGLEConfig prefixes "Eagle3" unless the name starts or ends with it; these
# resulting names map to llama_eagle3.Eagle3LlamaForCausalLM in its registry.
VLLM_ARCHITECTURES = ("Eagle3LlamaForCausalLM", "LlamaForCausalLMEagle3", "Eagle3Qwen2_5vlForCausalLM",
                      "Eagle3Qwen3vlForCausalLM")
_LAYER = ("input_layernorm", "hidden_norm", "post_attention_layernorm")


@dataclass(frozen=True)
class DraftView:
    """A checkpoint as the engines see it.

    ``config`` is the config the engine builds the model from: config.json itself for the
    engine layout; for the speculators layout, ``transformer_layer_config`` with the
    EAGLE-3 fields vLLM's adapter (``update_eagle3``) copies from the top level.
    """

    layout: str
    raw: Mapping[str, Any]
    config: Mapping[str, Any]
    weights: Mapping[str, torch.Tensor]

    @property
    def flags(self) -> dict[str, Any]:
        """Where the engines read variant flags: ``eagle_config`` first, then the config they build from."""
        return {**self.config, NESTED: self.raw.get(NESTED)}

    def flag(self, name: str) -> bool:
        """A variant flag as the engines read it (:func:`~draftsmith.checkpoint.engine_aux.nested_flag`)."""
        return nested_flag(self.flags, name)


def speculators_view(raw: Mapping[str, Any], weights: Mapping[str, torch.Tensor]) -> DraftView:
    """The config vLLM builds from a speculators checkpoint (configs/speculators/algos.py, ``update_eagle3``)."""
    config = dict(raw.get("transformer_layer_config") or {})
    config["draft_vocab_size"] = raw.get("draft_vocab_size")
    if raw.get("target_hidden_size") is not None:
        config["target_hidden_size"] = raw["target_hidden_size"]
    config["norm_before_residual"] = raw.get("norm_before_residual", True)
    for key in ("norm_before_fc", "fc_norm", "norm_output"):
        if key in raw:
            config[key] = raw[key]
    if raw.get("eagle_aux_hidden_state_layer_ids"):
        config["eagle_aux_hidden_state_layer_ids"] = raw["eagle_aux_hidden_state_layer_ids"]
    return DraftView(SPECULATORS, raw, config, weights)


def sizes(config: Mapping[str, Any]) -> dict[str, int]:
    """The sizes the engines build the draft with, with their fallbacks for absent fields."""
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    target_hidden = config.get("target_hidden_size", hidden)
    return {
        "hidden": hidden, "heads": heads, "kv": int(config.get("num_key_value_heads") or heads),
        "head_dim": int(config.get("head_dim") or hidden // heads), "inter": int(config["intermediate_size"]),
        "vocab": int(config["vocab_size"]), "draft_vocab": int(config.get("draft_vocab_size") or config["vocab_size"]),
        "target_hidden": int(target_hidden) if target_hidden is not None else hidden,
    }


def expected_shapes(config: Mapping[str, Any], n_aux: int = 3) -> dict[str, tuple[int, ...]]:
    """Every weight the engines' Llama draft has, by its checkpoint name (``midlayer.*``), with its shape."""
    s = sizes(config)
    H, q, kv = s["hidden"], s["heads"] * s["head_dim"], s["kv"] * s["head_dim"]
    shapes: dict[str, tuple[int, ...]] = {
        "embed_tokens.weight": (s["vocab"], H), "fc.weight": (H, n_aux * s["target_hidden"]),
        "norm.weight": (H,), "lm_head.weight": (s["draft_vocab"], H),
        "midlayer.self_attn.q_proj.weight": (q, 2 * H), "midlayer.self_attn.k_proj.weight": (kv, 2 * H),
        "midlayer.self_attn.v_proj.weight": (kv, 2 * H), "midlayer.self_attn.o_proj.weight": (H, q),
        "midlayer.mlp.gate_proj.weight": (s["inter"], H), "midlayer.mlp.up_proj.weight": (s["inter"], H),
        "midlayer.mlp.down_proj.weight": (H, s["inter"]),
    }
    shapes.update({f"midlayer.{norm}.weight": (H,) for norm in _LAYER})
    return shapes


def _canonical(name: str) -> str:
    name = name.removeprefix("model.")
    return "midlayer." + name.removeprefix("layers.0.") if name.startswith("layers.0.") else name


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
    if c.get("num_hidden_layers", 1) != 1:
        out.append(Finding("config.num_hidden_layers", f"num_hidden_layers is {c.get('num_hidden_layers')}: SGLang's "
                           "EAGLE-3 draft has one layer (newer versions raise, older ones add random layers); vLLM "
                           "builds layers.0..N-1", {SGLANG: REFUSES}))
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


def _rope_view(c: Mapping[str, Any], legacy: bool) -> dict[str, Any]:
    """The RoPE a reader takes: transformers 4 reads only rope_theta/rope_scaling; transformers 5's
    ``convert_rope_params_to_dict`` prefers a non-null rope_scaling, else rope_parameters, with
    rope_theta filled in from the top level."""
    theta = c.get("rope_theta", 10000.0)
    if legacy or c.get("rope_scaling"):
        params = dict(c.get("rope_scaling") or {})
    else:
        params = dict(c.get("rope_parameters") or {})
    params.setdefault("rope_theta", theta)
    return {"rope_parameters": params, "max_position_embeddings": c.get("max_position_embeddings")}


def engine_rope(c: Mapping[str, Any]) -> dict[str, Any]:
    """The rotary schedule the engines run the draft with (transformers 5 reading, vLLM's too)."""
    return rope_parameters_from_config(_rope_view(c, legacy=False))


def _rope_spelling_findings(c: Mapping[str, Any]) -> list[Finding]:
    try:
        new, old = engine_rope(c), rope_parameters_from_config(_rope_view(c, legacy=True))
    except RopeConfigError as error:
        return [Finding("rope.unsupported", f"RoPE fields: {error}", severity="warning")]
    if new != old:
        return [Finding("rope.spellings_disagree", f"rope_parameters {new} and rope_theta/rope_scaling {old} rotate "
                        "differently: readers on transformers 5 take the first, readers on transformers 4 (SGLang "
                        "pins 4.x) the second", severity="warning")]
    return []


def variant_weights(view: DraftView) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    """The weights of the architecture options the config turns on: their shapes, and the engines
    whose model has them as parameters (vLLM's for every option; SGLang's where it runs the option,
    per ``engine_aux.VARIANT_SUPPORT``). ``input_norm`` normalizes the 3 concatenated aux states,
    each ``fc_norm.i`` one of them."""
    target_hidden = sizes(view.config)["target_hidden"]
    options = {"norm_before_fc": {"input_norm.weight": (3 * target_hidden,)},
               "fc_norm": {f"fc_norm.{i}.weight": (target_hidden,) for i in range(3)}}
    out = {}
    for name, weights in options.items():
        if view.flag(name):
            engines = (SGLANG, VLLM) if VARIANT_SUPPORT[name].sglang_runs else (VLLM,)
            out.update({weight: (shape, engines) for weight, shape in weights.items()})
    return out


def _vllm_params(view: DraftView) -> set[str]:
    """vLLM's Eagle3LlamaForCausalLM parameters by checkpoint name (``midlayer.*``)."""
    c = view.config
    names = set(expected_shapes(c)) | {"d2t"}
    if c.get("attention_bias") or c.get("bias"):
        names |= {f"midlayer.self_attn.{p}_proj.bias" for p in "qkvo"}
    if c.get("mlp_bias"):
        names |= {f"midlayer.mlp.{p}_proj.bias" for p in ("gate", "up", "down")}
    return names | {name for name, (_, engines) in variant_weights(view).items() if VLLM in engines}


def _sglang_params(view: DraftView) -> set[str]:
    """SGLang's LlamaForCausalLMEagle3 parameters by checkpoint name: no biases, ``midlayer.`` only."""
    names = set(expected_shapes(view.config)) | {"d2t"}
    if view.config.get("tie_word_embeddings"):
        names.discard("lm_head.weight")
    return names | {name for name, (_, engines) in variant_weights(view).items() if SGLANG in engines}


def weight_findings(view: DraftView) -> list[Finding]:
    """What each engine's ``load_weights`` does with each stored tensor name, and the shapes."""
    out: list[Finding] = []
    names = [n for n in view.weights if "t2d" not in n]
    prefixed = sorted(n for n in names if n.startswith("model."))
    if prefixed:
        out.append(Finding("weights.model_prefix", f"{len(prefixed)} weight names carry a 'model.' prefix (e.g. "
                           f"{prefixed[0]}): vLLM prefixes 'model.' itself and finds no model.model.* parameter; "
                           "SGLang accepts either spelling", {VLLM: REFUSES}))
    layers0 = sorted(n for n in names if n.removeprefix("model.").startswith("layers.0."))
    if layers0 and view.layout == ENGINE:
        out.append(Finding("weights.layers0", f"{len(layers0)} weights named layers.0.* (e.g. {layers0[0]}): SGLang "
                           "only knows midlayer.* and silently skips them, leaving a randomly initialized layer; "
                           "vLLM maps both spellings", {SGLANG: WRONG}))
    if "embed_tokens.weight" not in {_canonical(n) for n in names}:
        out.append(Finding("weights.no_embed_tokens", "no embed_tokens.weight: both engines use the target's input "
                           "embedding, which is what EAGLE-3 trainers freeze and train with"))
    canonical = {_canonical(n): n for n in names}
    vllm_known, sglang_known = _vllm_params(view), _sglang_params(view)
    vllm_unknown = sorted(canonical[k] for k in canonical if k not in vllm_known and not k.startswith("d2t"))
    if vllm_unknown and not prefixed:
        out.append(Finding("weights.unknown_vllm", f"weights vLLM's model does not have: {vllm_unknown[:6]}; its "
                           "AutoWeightsLoader raises on them", {VLLM: REFUSES}))
    sglang_skipped = sorted(canonical[k] for k in canonical
                            if k not in sglang_known and not k.startswith("d2t") and not k.startswith("lm_head"))
    owned = ("layers.0.", "fc_norm.") if view.flag("fc_norm") else ("layers.0.",)  # reported by their own rules
    sglang_skipped = [n for n in sglang_skipped if not n.removeprefix("model.").startswith(owned)]
    if sglang_skipped and view.layout == ENGINE:
        out.append(Finding("weights.skipped_sglang", f"weights SGLang's model does not have: {sglang_skipped[:6]}; "
                           "its load_weights silently skips them, so it runs a draft without them",
                           {SGLANG: WRONG}))
    if view.config.get("tie_word_embeddings") and "lm_head.weight" in canonical and view.layout == ENGINE:
        out.append(Finding("config.tie_word_embeddings", "tie_word_embeddings is true but the checkpoint has its own "
                           "lm_head.weight: SGLang ties lm_head to embed_tokens and skips the trained head; vLLM's "
                           "EAGLE-3 model keeps its own lm_head", {SGLANG: WRONG}))
    try:
        shapes = expected_shapes(view.config)
    except (KeyError, TypeError, ValueError):
        return out
    missing = sorted(set(shapes) - set(canonical) - {"embed_tokens.weight"})
    if missing:
        out.append(Finding("weights.missing", f"missing weights {missing}: the engines keep those parameters "
                           "randomly initialized", {SGLANG: WRONG, VLLM: WRONG}))
    variants = variant_weights(view)
    missing = sorted(set(variants) - set(canonical))
    if missing:
        engines = sorted({e for name in missing for e in variants[name][1]})
        out.append(Finding("weights.missing", f"missing weights {missing} of the architecture options the config "
                           f"turns on: {' and '.join(engines)} keep them at their initial value",
                           {e: WRONG for e in engines}))
    engines_of = {name: (SGLANG, VLLM) for name in shapes} | {name: e for name, (_, e) in variants.items()}
    for name, shape in {**shapes, **{name: shape for name, (shape, _) in variants.items()}}.items():
        if name in canonical and tuple(view.weights[canonical[name]].shape) != shape:
            out.append(Finding("weights.shape", f"{canonical[name]} has shape "
                               f"{tuple(view.weights[canonical[name]].shape)}, the engines build {shape} from the "
                               "config; their weight loaders refuse it", {e: REFUSES for e in engines_of[name]}))
    out.extend(_vocab_mapping_findings(view, canonical))
    return out


def _vocab_mapping_findings(view: DraftView, canonical: Mapping[str, str]) -> list[Finding]:
    """d2t (target id = draft id + d2t[draft id]) as both engines apply it; t2d neither reads."""
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
    if "t2d" in {_canonical(n) for n in view.weights}:
        t2d = view.weights[next(n for n in view.weights if _canonical(n) == "t2d")].bool()
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


def vllm_max_len(rope: Mapping[str, Any], max_position_embeddings: int) -> int:
    """The context vLLM derives from a config (``_get_and_verify_max_len``): YaRN scales its original
    length by ``factor``, linear scaling scales max_position_embeddings, llama3 and plain RoPE keep it."""
    if rope.get("rope_type") == "yarn":
        return int(rope["original_max_position_embeddings"] * rope["factor"])
    if rope.get("rope_type") == "linear":
        return int(max_position_embeddings * rope["factor"])
    return int(max_position_embeddings)


def context_findings(view: DraftView, target_max_len: int | None) -> list[Finding]:
    """vLLM caps the draft at the context it derives from the draft's own config
    (``SpeculativeConfig._maybe_override_draft_max_model_len`` takes the smaller of draft and
    target): past it the proposer drafts nothing. SGLang has no such cap."""
    positions = view.config.get("max_position_embeddings")
    if not positions:
        return []
    try:
        rope = engine_rope(view.config)
    except RopeConfigError:
        return []
    limit = vllm_max_len(rope, positions)
    if target_max_len is not None:
        if limit < target_max_len:
            return [Finding("target.max_positions", f"vLLM derives a {limit}-token context from the draft's config "
                            f"(max_position_embeddings {positions}, {rope['rope_type']} RoPE) and the target's is "
                            f"{target_max_len}: it drafts nothing once a sequence passes {limit} tokens; SGLang keeps "
                            "drafting", {VLLM: LIMITED}, kind="fidelity")]
        return []
    designed = int(rope.get("factor", 1.0) * rope.get("original_max_position_embeddings", positions))
    if rope["rope_type"] == "llama3" and designed > limit:
        return [Finding("context.draft_max_positions", f"max_position_embeddings is {limit} while the draft's own "
                        f"llama3 RoPE is built for {designed} positions: vLLM drafts nothing past {limit} tokens; "
                        "SGLang keeps drafting", {VLLM: LIMITED})]
    return [Finding("context.draft_max_positions", f"vLLM drafts nothing past {limit} tokens (the context it derives "
                    "from the draft's config); pass --target to compare with the target's context")]
