"""A draft checkpoint as the engines see it: the config they build from, its sizes, the weights
they expect, the rotary schedule they run. Shared by the format checks and each engine's rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from draftsmith.checkpoint.aux_ids import variant_flag
from draftsmith.checkpoint.layout import canonical_weight_name
from draftsmith.engines.fields import NESTED
from draftsmith.model.rope import rope_parameters_from_config

ENGINE, SPECULATORS = "engine", "speculators"
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
        """An option as the draft was trained with it (:func:`~draftsmith.checkpoint.aux_ids.variant_flag`)."""
        return variant_flag(self.flags, name)

    @cached_property
    def canonical(self) -> dict[str, str]:
        """Our name for each stored weight (``midlayer.*``, no ``model.`` prefix) -> its stored name."""
        return {canonical_weight_name(name): name for name in self.weights}

    @property
    def trained_variants(self) -> dict[str, bool]:
        """The options the draft was trained with: ``norm_before_fc`` and ``fc_norm`` by their stored
        weights (the config may say otherwise, which is the slip the engine rules look for), the
        weightless ``norm_output`` and ``norm_before_residual`` by the config."""
        stored = set(self.canonical)
        return {"norm_before_fc": "input_norm.weight" in stored,
                "fc_norm": bool(stored & {"fc_norm.0.weight", "aux_norm_low.weight"}),
                "norm_output": self.flag("norm_output"),
                "norm_before_residual": self.flag("norm_before_residual")}

    @property
    def fc_inputs(self) -> int | None:
        """How many target states the stored ``fc`` takes (None: no fc or an unknown width)."""
        fc = self.canonical.get("fc.weight")
        target_hidden = sizes(self.config)["target_hidden"] if fc else 0
        if not fc or target_hidden <= 0 or self.weights[fc].shape[-1] % target_hidden:
            return None
        return self.weights[fc].shape[-1] // target_hidden


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


def option_shapes(config: Mapping[str, Any], options: Mapping[str, bool], n_aux: int) -> dict[str, tuple[int, ...]]:
    """The weights of the options an engine turns on: ``input_norm`` over the ``n_aux`` concatenated
    aux states, one ``fc_norm.i`` per aux state."""
    target_hidden = sizes(config)["target_hidden"]
    shapes = {"input_norm.weight": (n_aux * target_hidden,)} if options["norm_before_fc"] else {}
    if options["fc_norm"]:
        shapes.update({f"fc_norm.{i}.weight": (target_hidden,) for i in range(n_aux)})
    return shapes


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


def legacy_rope(c: Mapping[str, Any]) -> dict[str, Any]:
    """The rotary schedule a transformers 4 reader takes (``rope_theta`` / ``rope_scaling`` only)."""
    return rope_parameters_from_config(_rope_view(c, legacy=True))
