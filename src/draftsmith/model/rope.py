"""Target-faithful rotary position embeddings.

The draft runs at the target's token positions, so it must rotate queries and keys
exactly as the target does. A draft trained with plain RoPE against a YaRN target
(gpt-oss) converges at short context and loses acceptance at long positions.

This module turns any Hugging Face config (transformers v5 ``rope_parameters`` or the
legacy ``rope_theta`` / ``rope_scaling`` spelling) into one normalized parameter dict
and a :class:`RotaryEmbedding` that reproduces the target's fp32 cos/sin bit for bit:
every inverse frequency is computed with the same fp32 operations, in the same order,
as the transformers rotary classes, and the attention scaling (YaRN concentration) is
multiplied onto both cos and sin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3", "yarn")

# Parameters each rope type may carry besides rope_type and rope_theta.
_ALLOWED_KEYS = {
    "default": set(),
    "linear": {"factor"},
    "llama3": {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"},
    "yarn": {
        "factor",
        "original_max_position_embeddings",
        "beta_fast",
        "beta_slow",
        "truncate",
        "attention_factor",
        "mscale",
        "mscale_all_dim",
    },
}
_REQUIRED_KEYS = {
    "default": set(),
    "linear": {"factor"},
    "llama3": {"factor", "low_freq_factor", "high_freq_factor"},
    "yarn": set(),
}


class RopeConfigError(ValueError):
    """A RoPE configuration draftsmith cannot reproduce exactly."""


def _get(config: Any, key: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def config_head_dim(config: Any) -> int:
    """``head_dim`` as the target uses it: explicit when present, else hidden // heads."""
    head_dim = _get(config, "head_dim")
    if head_dim:
        return int(head_dim)
    hidden, heads = _get(config, "hidden_size"), _get(config, "num_attention_heads")
    if not hidden or not heads:
        raise RopeConfigError("config has neither head_dim nor hidden_size/num_attention_heads")
    return int(hidden) // int(heads)


def rope_parameters_from_config(config: Any) -> dict[str, Any]:
    """Normalized RoPE parameters of a Hugging Face config (object or config.json dict).

    The result always holds ``rope_type`` and ``rope_theta`` plus every parameter of that
    type with transformers' defaults filled in (YaRN: ``beta_fast`` 32, ``beta_slow`` 1,
    ``truncate`` True, ``original_max_position_embeddings`` = max positions), so two
    configs that rotate identically normalize to equal dicts.
    """
    params = _get(config, "rope_parameters")
    if not params:
        params = _get(config, "rope_scaling")
    params = dict(params or {})
    layer_types = set(_get(config, "layer_types") or ())
    if params and layer_types and set(params) & layer_types:
        nested = {k: params[k] for k in params if k in layer_types}
        distinct = {repr(sorted((v or {}).items())) for v in nested.values()}
        if len(distinct) != 1:
            raise RopeConfigError(
                f"per-layer-type rope_parameters differ ({sorted(nested)}); a one-layer draft cannot follow them"
            )
        params = dict(next(iter(nested.values())))

    rope_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise RopeConfigError(
            f"unsupported rope_type {rope_type!r}; supported: {', '.join(SUPPORTED_ROPE_TYPES)}"
        )
    theta = params.pop("rope_theta", None) or _get(config, "rope_theta")
    if theta is None:
        theta = _get(config, "default_theta", 10000.0)
    partial = params.pop("partial_rotary_factor", None) or _get(config, "partial_rotary_factor")
    if partial is not None and float(partial) != 1.0:
        raise RopeConfigError(
            f"partial_rotary_factor={partial} is not supported: the EAGLE-3 draft rotates the whole head"
        )
    unknown = set(params) - _ALLOWED_KEYS[rope_type]
    if unknown:
        raise RopeConfigError(f"rope_type {rope_type!r} does not take {sorted(unknown)}")
    missing = _REQUIRED_KEYS[rope_type] - set(params)
    if missing:
        raise RopeConfigError(f"rope_type {rope_type!r} needs {sorted(missing)}")

    out: dict[str, Any] = {"rope_type": rope_type, "rope_theta": float(theta)}
    max_pos = _get(config, "max_position_embeddings")
    if rope_type in ("linear", "llama3"):
        out["factor"] = float(params["factor"])
    if rope_type == "llama3":
        out["low_freq_factor"] = float(params["low_freq_factor"])
        out["high_freq_factor"] = float(params["high_freq_factor"])
        out["original_max_position_embeddings"] = int(
            params.get("original_max_position_embeddings") or _get(config, "original_max_position_embeddings") or max_pos
        )
    if rope_type == "yarn":
        original = params.get("original_max_position_embeddings") or _get(config, "original_max_position_embeddings")
        original = int(original or max_pos)
        factor = params.get("factor")
        out["factor"] = float(factor) if factor is not None else float(max_pos / original)
        out["original_max_position_embeddings"] = original
        out["beta_fast"] = float(params.get("beta_fast") or 32.0)
        out["beta_slow"] = float(params.get("beta_slow") or 1.0)
        truncate = params.get("truncate", True)
        out["truncate"] = bool(True if truncate is None else truncate)
        for key in ("attention_factor", "mscale", "mscale_all_dim"):
            if params.get(key) is not None:
                out[key] = float(params[key])
    return out


def legacy_rope_fields(rope_parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The same schedule in the pre-v5 spelling: ``rope_theta`` plus ``rope_scaling``."""
    scaling = {k: v for k, v in rope_parameters.items() if k != "rope_theta"}
    return {
        "rope_theta": rope_parameters["rope_theta"],
        "rope_scaling": None if scaling.get("rope_type") == "default" else scaling,
    }


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def inverse_frequencies(head_dim: int, rope_parameters: Mapping[str, Any]) -> tuple[torch.Tensor, float]:
    """fp32 inverse frequencies ``[head_dim // 2]`` and the attention scaling.

    The fp32 operation order follows transformers' rotary initializers so the result is
    bitwise identical to the target's own ``inv_freq``.
    """
    if head_dim % 2:
        raise RopeConfigError(f"head_dim must be even for rotary embeddings, got {head_dim}")
    rope_type = rope_parameters["rope_type"]
    base = rope_parameters["rope_theta"]
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).to(dtype=torch.float) / head_dim
    inv_freq = 1.0 / (base**exponents)
    scaling = 1.0
    if rope_type == "linear":
        inv_freq = inv_freq / rope_parameters["factor"]
    elif rope_type == "llama3":
        factor = rope_parameters["factor"]
        low_ff, high_ff = rope_parameters["low_freq_factor"], rope_parameters["high_freq_factor"]
        old_context = rope_parameters["original_max_position_embeddings"]
        low_freq_wavelen, high_freq_wavelen = old_context / low_ff, old_context / high_ff
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_context / wavelen - low_ff) / (high_ff - low_ff)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv_freq = torch.where(medium, smoothed, scaled)
    elif rope_type == "yarn":
        inv_freq, scaling = _yarn_inverse_frequencies(head_dim, rope_parameters)
    return inv_freq, float(scaling)


def _yarn_inverse_frequencies(head_dim: int, p: Mapping[str, Any]) -> tuple[torch.Tensor, float]:
    """YaRN (NTK-by-parts) frequencies; the formula is in ``docs/rope.md``.

    With ``truncate`` false the correction range keeps its fractional bounds; flooring
    them (the old default) moves some gpt-oss frequencies by up to 76%.
    """
    base, factor = p["rope_theta"], p["factor"]
    original = p["original_max_position_embeddings"]
    attention_factor = p.get("attention_factor")
    if attention_factor is None:
        if p.get("mscale") and p.get("mscale_all_dim"):
            attention_factor = _yarn_mscale(factor, p["mscale"]) / _yarn_mscale(factor, p["mscale_all_dim"])
        else:
            attention_factor = _yarn_mscale(factor)

    def correction_dim(rotations: float) -> float:
        return (head_dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(p["beta_fast"]), correction_dim(p["beta_slow"])
    if p["truncate"]:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, head_dim, 2).to(dtype=torch.float) / head_dim)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    extrapolation_weight = 1 - ramp
    inv_freq = interpolation * (1 - extrapolation_weight) + extrapolation * extrapolation_weight
    return inv_freq, attention_factor


class RotaryEmbedding(nn.Module):
    """``forward(position_ids) -> (cos, sin)``, each ``[*position_ids.shape, head_dim]`` fp32.

    Duplicated-halves layout (use with :func:`rotate_half`); attention scaling folded in.
    """

    def __init__(self, head_dim: int, rope_parameters: Mapping[str, Any], max_position_embeddings: int):
        super().__init__()
        self.head_dim = head_dim
        self.rope_parameters = dict(rope_parameters)
        self.max_position_embeddings = max_position_embeddings
        # A plain attribute, not a buffer: casting the draft to bf16 must not round the frequencies.
        self.inv_freq, self.attention_scaling = inverse_frequencies(head_dim, rope_parameters)

    @torch.autocast("cuda", enabled=False)
    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.inv_freq.device != position_ids.device:
            self.inv_freq = self.inv_freq.to(position_ids.device)
        freqs = position_ids[..., None].float() * self.inv_freq
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling


def rotary_from_config(config: Any) -> RotaryEmbedding:
    """The target's rotary embedding, from a Hugging Face config object or config.json dict."""
    max_pos = _get(config, "max_position_embeddings")
    if not max_pos:
        raise RopeConfigError("config has no max_position_embeddings")
    return RotaryEmbedding(config_head_dim(config), rope_parameters_from_config(config), int(max_pos))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, heads, T, D]`` by ``cos``/``sin`` ``[B, T, D]`` in (at least) fp32, back to x's dtype."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    wide = x.to(torch.promote_types(x.dtype, torch.float32))
    return (wide * cos + rotate_half(wide) * sin).to(x.dtype)
