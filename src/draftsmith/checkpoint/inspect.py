"""Find the format slips that make SGLang or vLLM load an EAGLE-3 draft wrongly without a word.

Each check reads the checkpoint as the engines do (``docs/checkpoint-format.md``) and
reports one line per problem: ``error`` where an engine would run a different draft
than was trained (or refuse it), ``warning`` where the checkpoint works but is fragile.
It works on checkpoints written by any tool; nothing here trusts our own writer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from draftsmith.checkpoint.engine import ARCHITECTURE, canonical_weight_name, read_config, read_weights
from draftsmith.checkpoint.engine_aux import RECORD, RECORD_FIELD, aux_verdicts
from draftsmith.model.rope import RopeConfigError, rope_parameters_from_config
from draftsmith.target.registry import load_target_config

_LEFTOVER_TARGET_FIELDS = (
    "layer_types", "sliding_window", "quantization_config", "num_local_experts", "num_experts",
    "num_experts_per_tok", "moe_intermediate_size", "router_aux_loss_coef",
)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" or "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper()}: {self.message}"


def _expected_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    H = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    hd = cfg.get("head_dim") or H // heads
    target_h = cfg.get("target_hidden_size") or H
    inter, vocab = cfg["intermediate_size"], cfg["vocab_size"]
    draft_vocab = cfg.get("draft_vocab_size") or vocab
    return {
        "embed_tokens.weight": (vocab, H),
        "fc.weight": (H, 3 * target_h),
        "midlayer.input_layernorm.weight": (H,),
        "midlayer.hidden_norm.weight": (H,),
        "midlayer.post_attention_layernorm.weight": (H,),
        "midlayer.self_attn.q_proj.weight": (heads * hd, 2 * H),
        "midlayer.self_attn.k_proj.weight": (kv * hd, 2 * H),
        "midlayer.self_attn.v_proj.weight": (kv * hd, 2 * H),
        "midlayer.self_attn.o_proj.weight": (H, heads * hd),
        "midlayer.mlp.gate_proj.weight": (inter, H),
        "midlayer.mlp.up_proj.weight": (inter, H),
        "midlayer.mlp.down_proj.weight": (H, inter),
        "norm.weight": (H,),
        "lm_head.weight": (draft_vocab, H),
        "d2t": (draft_vocab,),
        "t2d": (vocab,),
    }


def _config_findings(cfg: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []

    def err(message: str) -> None:
        out.append(Finding("error", message))

    if cfg.get("architectures") != [ARCHITECTURE]:
        err(f"architectures is {cfg.get('architectures')!r}; SGLang and vLLM load EAGLE-3 Llama drafts as "
            f"[{ARCHITECTURE!r}]")
    if cfg.get("num_hidden_layers") != 1:
        err(f"num_hidden_layers is {cfg.get('num_hidden_layers')!r}; SGLang refuses anything but 1")
    if "draft_vocab_size" not in cfg:
        err("draft_vocab_size missing; SGLang reads it unconditionally")
    if cfg.get("target_hidden_size") is None:
        err("target_hidden_size is null or missing; engines then size fc from the draft's hidden_size")
    if "head_dim" not in cfg:
        err("head_dim missing; engines derive hidden_size // num_attention_heads, which is wrong or fractional "
            "for targets like gpt-oss (2880 / 64)")
    for key in ("attention_bias", "mlp_bias", "tie_word_embeddings"):
        if cfg.get(key):
            err(f"{key} is true; SGLang builds the draft without it (biases dropped, lm_head tied to embeddings)")
    for key in _LEFTOVER_TARGET_FIELDS:
        if cfg.get(key) is not None:
            err(f"{key} is set ({cfg[key]!r}): a leftover from the target config; the one-layer draft must not "
                f"inherit it (a copied sliding_window makes the engine window the draft's attention)")
    out.extend(_rope_findings(cfg))
    out.extend(_aux_findings(cfg))
    return out


def _rope_findings(cfg: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    has_new = cfg.get("rope_parameters") is not None
    has_legacy = "rope_theta" in cfg
    if has_new != has_legacy:
        present, absent = ("rope_parameters", "rope_theta/rope_scaling") if has_new else (
            "rope_theta/rope_scaling", "rope_parameters")
        out.append(Finding("error", f"RoPE written only as {present}; readers of {absent} fall back to their "
                                    f"defaults (write both spellings with the same values)"))
    spellings = {}
    for name, keys in (("rope_parameters", ("rope_parameters",)), ("rope_scaling", ("rope_theta", "rope_scaling"))):
        view = {k: cfg[k] for k in keys if k in cfg}
        if not view:
            continue
        if name == "rope_parameters" and "rope_theta" not in (cfg["rope_parameters"] or {}):
            out.append(Finding("error", "rope_parameters has no rope_theta; newer SGLang reads it from there"))
        scaling = view.get("rope_parameters") or view.get("rope_scaling") or {}
        if (scaling.get("rope_type") or scaling.get("type")) == "yarn" and "truncate" not in scaling:
            out.append(Finding("error", f"YaRN {name} without 'truncate'; engines then default to true and "
                                        f"floor/ceil the correction range (gpt-oss uses false)"))
        try:
            spellings[name] = rope_parameters_from_config({**view, "max_position_embeddings":
                                                           cfg.get("max_position_embeddings")})
        except RopeConfigError as error:
            out.append(Finding("error", f"{name}: {error}"))
    if len(spellings) == 2 and spellings["rope_parameters"] != spellings["rope_scaling"]:
        out.append(Finding("error", f"rope_parameters {spellings['rope_parameters']} and rope_theta/rope_scaling "
                                    f"{spellings['rope_scaling']} disagree; SGLang and vLLM may read different ones"))
    return out


def _aux_findings(cfg: Mapping[str, Any]) -> list[Finding]:
    record = cfg.get(RECORD) or {}
    if record.get(RECORD_FIELD) and record.get("target_num_hidden_layers"):
        return [Finding(v.level, v.message) for v in aux_verdicts(cfg, record["target_num_hidden_layers"],
                                                                  record.get("target_model_type"))]
    out: list[Finding] = []
    sglang = (cfg.get("eagle_config") or {}).get("eagle_aux_hidden_state_layer_ids")
    vllm = cfg.get("eagle_aux_hidden_state_layer_ids")
    if sglang is None:
        out.append(Finding("error", "eagle_config.eagle_aux_hidden_state_layer_ids missing; SGLang silently "
                                    "captures its default layers"))
    if vllm is None:
        out.append(Finding("error", "top-level eagle_aux_hidden_state_layer_ids missing; vLLM silently captures "
                                    "its default layers (2, N//2, N-3)"))
    if sglang is not None and vllm is not None and [i + 1 for i in sglang] != list(vllm):
        out.append(Finding("error", f"aux layer ids disagree: SGLang {sglang} needs vLLM {[i + 1 for i in sglang]}, "
                                    f"found {vllm} (vLLM ids are SGLang ids + 1)"))
    return out


def _weight_findings(cfg: Mapping[str, Any], weights: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    try:
        expected = _expected_shapes(cfg)
    except (KeyError, TypeError, ZeroDivisionError) as error:
        return [Finding("error", f"config.json lacks the sizes needed to check weight shapes ({error})")]
    prefixed = sorted(k for k in weights if k.startswith("model."))
    if prefixed:
        out.append(Finding("error", f"{len(prefixed)} weight names carry a 'model.' prefix (e.g. {prefixed[0]}); "
                                    f"vLLM adds 'model.' itself and fails on model.model.*"))
    layers0 = sorted(k for k in weights if k.removeprefix("model.").startswith("layers.0."))
    if layers0:
        out.append(Finding("error", f"{len(layers0)} weights named layers.0.* (e.g. {layers0[0]}); SGLang silently "
                                    f"skips them and runs a randomly initialized layer (vLLM maps them)"))
    biases = sorted(k for k in weights if k.endswith(".bias"))
    if biases:
        out.append(Finding("error", f"bias weights {biases[:4]}; SGLang builds q/k/v without bias and silently "
                                    f"drops them"))
    canonical = {canonical_weight_name(k): v for k, v in weights.items()}
    unknown = sorted(k for k in canonical if k not in expected and not k.endswith(".bias"))
    if unknown:
        out.append(Finding("error", f"unrecognized weights {unknown[:6]}; SGLang silently skips them, vLLM refuses "
                                    f"to load"))
    if "d2t" not in canonical:
        vocab, draft_vocab = cfg.get("vocab_size"), cfg.get("draft_vocab_size") or cfg.get("vocab_size")
        level = "error" if draft_vocab != vocab else "warning"
        out.append(Finding(level, f"no d2t (draft vocab {draft_vocab}, target vocab {vocab}); vLLM maps a missing "
                                  f"d2t to the identity, so draft ids are read as target ids"))
    missing = sorted(set(expected) - set(canonical) - {"d2t", "t2d", "embed_tokens.weight"})
    if missing:
        out.append(Finding("error", f"missing weights {missing}"))
    for name, shape in expected.items():
        if name in canonical and tuple(canonical[name].shape) != shape:
            out.append(Finding("error", f"{name} has shape {tuple(canonical[name].shape)}, config.json implies "
                                        f"{shape}"))
    return out


def _target_findings(cfg: Mapping[str, Any], target: Any) -> list[Finding]:
    out: list[Finding] = []
    target_config = load_target_config(target)
    if cfg.get("target_hidden_size") not in (None, target_config.hidden_size):
        out.append(Finding("error", f"target_hidden_size {cfg['target_hidden_size']} but the target's hidden_size "
                                    f"is {target_config.hidden_size}"))
    if cfg.get("vocab_size") != target_config.vocab_size:
        out.append(Finding("error", f"vocab_size {cfg.get('vocab_size')} but the target's is "
                                    f"{target_config.vocab_size}"))
    target_rope = rope_parameters_from_config(target_config)
    for name, keys in (("rope_parameters", ("rope_parameters",)), ("rope_theta/rope_scaling",
                                                                    ("rope_theta", "rope_scaling"))):
        view = {k: cfg[k] for k in keys if k in cfg}
        if not view:
            continue
        try:
            draft_rope = rope_parameters_from_config({**view, "max_position_embeddings":
                                                      cfg.get("max_position_embeddings")})
        except RopeConfigError:
            continue
        if draft_rope != target_rope:
            differing = sorted(k for k in set(draft_rope) | set(target_rope)
                               if draft_rope.get(k) != target_rope.get(k))
            out.append(Finding("error", f"{name} differs from the target's RoPE in {differing}: draft "
                                        f"{draft_rope}, target {target_rope}"))
    layers = target_config.num_hidden_layers
    sglang = (cfg.get("eagle_config") or {}).get("eagle_aux_hidden_state_layer_ids") or []
    bad = [] if (cfg.get(RECORD) or {}).get(RECORD_FIELD) else [i for i in sglang if not 0 <= i <= layers - 2]
    if bad:
        out.append(Finding("error", f"aux layer ids {bad} cannot be captured from a {layers}-layer target "
                                    f"(valid 0..{layers - 2})"))
    if cfg.get("max_position_embeddings") != target_config.max_position_embeddings:
        out.append(Finding("warning", f"max_position_embeddings {cfg.get('max_position_embeddings')} differs from "
                                      f"the target's {target_config.max_position_embeddings}"))
    return out


def _speculators_findings(cfg: Mapping[str, Any]) -> list[Finding]:
    """The speculators layout (vLLM only): its own slips, and that SGLang cannot load it."""
    out = [Finding("warning", "speculators-format checkpoint: vLLM loads it, SGLang does not; export the engine "
                              "layout (draftsmith.checkpoint.save_draft) to serve with both")]
    if "model_type" in cfg:
        out.append(Finding("error", "top-level model_type set; vLLM then ignores speculators_config"))
    if "norm_before_residual" not in cfg:
        out.append(Finding("error", "norm_before_residual missing; vLLM's speculators adapter assumes true"))
    if not cfg.get("eagle_aux_hidden_state_layer_ids"):
        out.append(Finding("error", "eagle_aux_hidden_state_layer_ids missing; vLLM captures its default layers"))
    spec = cfg["speculators_config"] or {}
    if not (spec.get("verifier") or {}).get("name_or_path"):
        out.append(Finding("error", "speculators_config.verifier.name_or_path missing; vLLM refuses the config"))
    layer = cfg.get("transformer_layer_config") or {}
    if layer.get("model_type") not in ("llama", "qwen3"):
        out.append(Finding("error", f"transformer_layer_config.model_type {layer.get('model_type')!r}; vLLM knows "
                                    f"llama and qwen3"))
    out.extend(f for f in _rope_findings(layer) if f.level == "error")
    return out


def inspect_checkpoint(directory: str | os.PathLike, target: Any = None) -> list[Finding]:
    """All findings for the draft checkpoint in ``directory`` (optionally against its target)."""
    directory = Path(directory)
    cfg = read_config(directory)
    if "speculators_config" in cfg:
        return _speculators_findings(cfg)
    findings = _config_findings(cfg)
    findings += _weight_findings(cfg, read_weights(directory))
    if target is not None:
        findings += _target_findings(cfg, target)
    return findings
