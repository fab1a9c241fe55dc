"""Draft checkpoints in the one layout SGLang and vLLM both load (``docs/checkpoint-format.md``).

``config.json`` is a clean Llama config with the EAGLE-3 fields; ``model.safetensors``
holds ``fc``, ``midlayer.*``, ``norm``, ``lm_head``, ``embed_tokens``, ``d2t`` and ``t2d``
without a ``model.`` prefix. Saving is atomic (a temporary directory renamed into place)
and never replaces an existing checkpoint unless asked. Loading also accepts the same
format written by other tools (SpecForge, NVIDIA's gpt-oss drafts with ``input_norm``,
EAGLE-3.1 ``fc_norm``, speculators' ``layers.0.*`` names, legacy ``pytorch_model.bin``),
and refuses what the draft cannot represent instead of silently dropping it, as the
engines would.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from draftsmith._version import __version__
from draftsmith.atomic import atomic_directory
from draftsmith.checkpoint.aux_ids import (RECORD, RECORD_FIELD, engine_id_fields, trained_hidden_state_indices,
                                           variant_flag)
from draftsmith.engines.fields import NESTED
from draftsmith.model.config import DraftConfig, from_hidden_state_indices
from draftsmith.model.draft import Eagle3Draft
from draftsmith.model.rope import config_head_dim, legacy_rope_fields, rope_parameters_from_config
from draftsmith.target.registry import FAMILIES, draft_config_from_target

if TYPE_CHECKING:
    from transformers import PretrainedConfig

ARCHITECTURE = "LlamaForCausalLMEagle3"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A draft checkpoint that is missing, unreadable or not an EAGLE-3 draft draftsmith can load."""


VARIANTS = ("norm_before_fc", "fc_norm", "norm_output", "norm_before_residual")


def engine_config(config: DraftConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The config.json both engines read, from a draft config.

    Aux states: our own record (``draftsmith.aux_hidden_state_indices``, hidden-state
    indices) always; engine id fields only where the engines' default would be wrong
    (:func:`draftsmith.checkpoint.aux_ids.engine_id_fields`). Architecture options are
    written top level, and ``norm_before_fc`` also in ``eagle_config`` where NVIDIA's
    gpt-oss drafts keep it and vLLM and SGLang look first.
    """
    out: dict[str, Any] = {
        "architectures": [ARCHITECTURE],
        "model_type": "llama",
        "num_hidden_layers": 1,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": config.rms_norm_eps,
        "vocab_size": config.vocab_size,
        "draft_vocab_size": config.draft_vocab_size,
        "target_hidden_size": config.target_hidden_size,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        **{name: getattr(config, name) for name in VARIANTS},
        "max_position_embeddings": config.max_position_embeddings,
        **legacy_rope_fields(config.rope_parameters),
        "rope_parameters": dict(config.rope_parameters),
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    indices = config.aux_hidden_state_indices
    if indices is not None:
        out.update(engine_id_fields(indices, config.target_num_hidden_layers, config.target_model_type))
    if config.norm_before_fc:
        out.setdefault(NESTED, {})["norm_before_fc"] = True
    out[RECORD] = {
        "version": __version__,
        "target_model_type": config.target_model_type,
        "target_num_hidden_layers": config.target_num_hidden_layers,
        RECORD_FIELD: None if indices is None else list(indices),
    }
    return out


def _target_model_type(raw: Mapping[str, Any]) -> str | None:
    """The target family a config names: our record, else a speculators verifier architecture."""
    meta = raw.get(RECORD) or {}
    if meta.get("target_model_type"):
        return meta["target_model_type"]
    verifier = ((raw.get("speculators_config") or {}).get("verifier") or {}).get("architectures") or []
    by_architecture = {family.architecture: family.model_type for family in FAMILIES.values()}
    return next((by_architecture[a] for a in verifier if a in by_architecture), None)


def draft_config_from_json(raw: Mapping[str, Any], source: str = CONFIG_NAME) -> DraftConfig:
    """Read our config.json, SpecForge's, NVIDIA's / ModelOpt's, or a speculators one.

    The aux layers come from :func:`~draftsmith.checkpoint.aux_ids.trained_hidden_state_indices`;
    architecture options from where the engines read them (speculators configs without
    ``norm_before_residual`` mean true, as vLLM reads them).
    """
    speculators = "speculators_config" in raw
    layer = raw.get("transformer_layer_config", {}) if speculators else raw
    if layer.get("num_hidden_layers", 1) != 1:
        raise CheckpointError(f"{source}: num_hidden_layers is {layer['num_hidden_layers']}; EAGLE-3 drafts have 1")
    if layer.get("attention_bias") or layer.get("mlp_bias"):
        raise CheckpointError(f"{source}: attention/mlp biases are set; SGLang drops them, draftsmith refuses them")
    for key in ("hidden_size", "num_attention_heads", "intermediate_size", "vocab_size", "max_position_embeddings"):
        if not layer.get(key):
            raise CheckpointError(f"{source}: missing {key}")
    meta = raw.get(RECORD) or {}
    model_type = _target_model_type(raw)
    try:
        indices = trained_hidden_state_indices(raw, model_type, meta.get("target_num_hidden_layers"))
        variants = {name: variant_flag(raw, name) for name in VARIANTS}
        if speculators and "norm_before_residual" not in raw:
            variants["norm_before_residual"] = True
        return DraftConfig(
            hidden_size=layer["hidden_size"],
            intermediate_size=layer["intermediate_size"],
            num_attention_heads=layer["num_attention_heads"],
            num_key_value_heads=layer.get("num_key_value_heads") or layer["num_attention_heads"],
            head_dim=config_head_dim(layer),
            vocab_size=layer["vocab_size"],
            draft_vocab_size=raw.get("draft_vocab_size") or layer.get("draft_vocab_size") or layer["vocab_size"],
            target_hidden_size=raw.get("target_hidden_size") or layer.get("target_hidden_size") or layer["hidden_size"],
            max_position_embeddings=layer["max_position_embeddings"],
            rope_parameters=rope_parameters_from_config(layer),
            rms_norm_eps=float(layer.get("rms_norm_eps", 1e-6)),
            aux_layer_ids=None if indices is None else from_hidden_state_indices(indices),
            target_num_hidden_layers=meta.get("target_num_hidden_layers"),
            target_model_type=model_type,
            **variants,
        )
    except ValueError as error:
        raise CheckpointError(f"{source}: {error}") from error


def write_checkpoint(
    directory: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict[str, Any], *, overwrite: bool = False
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` atomically; refuse to replace unless ``overwrite``."""
    with atomic_directory(directory, overwrite=overwrite) as staging:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, staging / WEIGHTS_NAME,
                  metadata={"format": "pt"})
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return Path(directory)


def save_draft(draft: Eagle3Draft, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save ``draft`` in the engine layout (see module doc)."""
    return write_checkpoint(
        directory, draft.state_dict(), engine_config(draft.config, draft.fc.weight.dtype), overwrite=overwrite
    )


class PretrainedDraft(Eagle3Draft):
    """An :class:`Eagle3Draft` that knows its file format.

    The model package holds only the math; persistence lives here, one layer up, so the
    draft can be saved as ``draft.save_pretrained(dir)`` without the model importing
    the checkpoint code. :func:`build_draft` and :func:`load_draft` return this class.
    """

    def save_pretrained(self, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the checkpoint SGLang and vLLM load (:func:`save_draft`)."""
        return save_draft(self, directory, overwrite=overwrite)


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise FileNotFoundError(f"{directory}: no such checkpoint directory")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; a draft checkpoint needs config.json")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def read_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint: single or sharded safetensors, or a legacy ``pytorch_model.bin``."""
    directory = Path(directory)
    index = directory / f"{WEIGHTS_NAME}.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (directory / WEIGHTS_NAME).is_file():
        files = [WEIGHTS_NAME]
    elif (directory / "pytorch_model.bin").is_file():
        return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{directory}: no {WEIGHTS_NAME} (or pytorch_model.bin) with the draft weights")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        path = directory / name
        try:
            with safe_open(path, framework="pt") as handle:
                tensors.update({key: handle.get_tensor(key) for key in handle.keys()})
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{path}: unreadable safetensors file ({error})") from error
    return tensors


def stored_weight_names(directory: str | os.PathLike) -> set[str]:
    """The canonical names of the weights a checkpoint stores, read from file headers only."""
    directory = Path(directory)
    index = directory / f"{WEIGHTS_NAME}.index.json"
    if index.is_file():
        names = json.loads(index.read_text())["weight_map"]
    elif (directory / WEIGHTS_NAME).is_file():
        with safe_open(directory / WEIGHTS_NAME, framework="pt") as handle:
            names = list(handle.keys())
    else:
        names = read_weights(directory)
    return {canonical_weight_name(name) for name in names}


def canonical_weight_name(name: str) -> str:
    """Our key for a weight name as other tools write it (``model.`` prefix, ``layers.0.``)."""
    name = name.removeprefix("model.")
    if name.startswith("layers.0."):
        name = "midlayer." + name.removeprefix("layers.0.")
    return name


def build_draft(
    target_config: PretrainedConfig | Mapping[str, Any] | str | os.PathLike,
    *,
    draft_vocab_size: int | None = None,
    aux_layer_ids: list[int] | tuple[int, ...] | None = None,
    **overrides: Any,
) -> PretrainedDraft:
    """A freshly initialized EAGLE-3 draft for a target.

    Args:
        target_config: the target's config object, its config.json as a dict, or its directory.
        draft_vocab_size: draft vocabulary size (default ``min(32000, target vocab)``).
        aux_layer_ids: aux layers k = outputs of target decoder layers k (0-based, before the
            final norm), any order (default ``[1, L//2 - 1, L - 4]``, the engines' own).
        **overrides: other :class:`DraftConfig` fields, e.g. ``intermediate_size`` or ``norm_before_fc=True``.
    """
    return PretrainedDraft(draft_config_from_target(
        target_config, draft_vocab_size=draft_vocab_size, aux_layer_ids=aux_layer_ids, **overrides
    ))


def load_draft(
    directory: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> PretrainedDraft:
    """Load an EAGLE-3 draft checkpoint (ours or another tool's in the SGLang/vLLM layout), in eval mode.

    A training checkpoint (``OUTPUT/checkpoints/step-N``) loads too; it holds no input
    embedding (a frozen copy of the target's), which is warned about.
    """
    directory = Path(directory)
    config = draft_config_from_json(read_config(directory), str(directory / CONFIG_NAME))
    weights = {canonical_weight_name(k): v for k, v in read_weights(directory).items()}
    draft = PretrainedDraft(config)
    expected = draft.state_dict()
    unknown = sorted(set(weights) - set(expected))
    if unknown:
        raise CheckpointError(f"{directory}: weights the draft does not have: {', '.join(unknown[:8])}")
    for name, tensor in weights.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{directory}: {name} has shape {tuple(tensor.shape)}, config.json implies {tuple(expected[name].shape)}"
            )
    missing = set(expected) - set(weights)
    if "d2t" in missing and config.draft_vocab_size < config.vocab_size:
        raise CheckpointError(
            f"{directory}: no d2t although draft_vocab_size {config.draft_vocab_size} < vocab_size "
            f"{config.vocab_size}; the draft-to-target vocabulary mapping is unknown"
        )
    if "embed_tokens.weight" in missing:
        warnings.warn(
            f"{directory}: no embed_tokens.weight; copy the target's input embedding into the draft before use",
            stacklevel=2,
        )
        missing.discard("embed_tokens.weight")
    missing -= {"d2t", "t2d"}
    if missing:
        raise CheckpointError(f"{directory}: missing weights: {', '.join(sorted(missing))}")
    mapping = {name: weights.pop(name) for name in ("d2t", "t2d") if name in weights}
    with torch.no_grad():
        for name, tensor in weights.items():
            expected[name].copy_(tensor)
    if "d2t" in mapping:  # a missing t2d is derived from d2t
        draft.set_vocab_mapping(mapping["d2t"], mapping.get("t2d"))
    draft = draft.to(device=device, dtype=dtype) if dtype is not None else draft.to(device)
    return draft.eval()  # for drafting and evaluation; a trainer calls .train() itself
