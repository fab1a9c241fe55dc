"""Export to the speculators format, vLLM's native EAGLE-3 layout (a second option).

The engine layout of :mod:`draftsmith.checkpoint.layout` loads in both SGLang and vLLM; this
one loads in vLLM (and the speculators library) only. Its quirks, each of which vLLM
turns into a silent misconfiguration if wrong: no top-level ``model_type`` (that
disables vLLM's speculators adapter), ``norm_before_residual`` written explicitly (vLLM
assumes true when absent), aux ids at the top level as hidden-state indices, weights named
``layers.0.*``, and ``d2t``/``t2d`` only when the draft vocabulary is reduced.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from draftsmith.checkpoint.layout import VARIANTS, write_checkpoint
from draftsmith.model.draft import Eagle3Draft
from draftsmith.model.rope import legacy_rope_fields
from draftsmith.target.registry import FAMILIES


def speculators_config(
    draft: Eagle3Draft, verifier: str, *, verifier_architecture: str | None = None, speculative_tokens: int = 3
) -> dict[str, Any]:
    """The speculators config.json for a draft, pointing vLLM at ``verifier`` (the target)."""
    c = draft.config
    if isinstance(speculative_tokens, bool) or not isinstance(speculative_tokens, int) or speculative_tokens < 1:
        raise ValueError(f"speculative_tokens must be a positive integer, got {speculative_tokens!r}")
    if c.aux_layer_ids is None:
        raise ValueError("the draft has no aux_layer_ids; vLLM would guess which target layers to capture")
    if verifier_architecture is None:
        family = FAMILIES.get(c.target_model_type or "")
        if family is None:
            raise ValueError("unknown target architecture; pass verifier_architecture (e.g. 'LlamaForCausalLM')")
        verifier_architecture = family.architecture
    layer = {
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": 1,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": c.rms_norm_eps,
        "max_position_embeddings": c.max_position_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        **legacy_rope_fields(c.rope_parameters),
        "rope_parameters": dict(c.rope_parameters),
    }
    return {
        "architectures": ["Eagle3Speculator"],
        "speculators_model_type": "eagle3",
        "draft_vocab_size": c.draft_vocab_size,
        "target_hidden_size": c.target_hidden_size,
        **{name: getattr(c, name) for name in VARIANTS},
        "eagle_aux_hidden_state_layer_ids": list(c.aux_hidden_state_indices),
        "torch_dtype": str(draft.fc.weight.dtype).removeprefix("torch."),
        "speculators_config": {
            "algorithm": "eagle3",
            "proposal_methods": [
                {"proposal_type": "greedy", "speculative_tokens": speculative_tokens,
                 "verifier_accept_k": 1, "accept_tolerance": 0.0}
            ],
            "default_proposal_method": "greedy",
            "verifier": {"name_or_path": verifier, "architectures": [verifier_architecture]},
        },
        "transformer_layer_config": layer,
    }


def export_speculators(
    draft: Eagle3Draft,
    directory: str | os.PathLike,
    *,
    verifier: str,
    verifier_architecture: str | None = None,
    speculative_tokens: int = 3,
    overwrite: bool = False,
    include_embedding: bool = True,
) -> Path:
    """Write ``draft`` in the speculators format (atomic; refuses to replace unless ``overwrite``).

    ``include_embedding=False`` leaves out ``embed_tokens`` (a training checkpoint holds
    none; vLLM then uses the verifier's own input embedding, of which the draft's is a copy).
    """
    config = speculators_config(
        draft, verifier, verifier_architecture=verifier_architecture, speculative_tokens=speculative_tokens
    )
    reduced_vocab = draft.config.draft_vocab_size < draft.config.vocab_size
    state = {}
    for name, tensor in draft.state_dict().items():
        if (name in ("d2t", "t2d") and not reduced_vocab) or (name == "embed_tokens.weight" and not include_embedding):
            continue
        if name.startswith("midlayer."):
            name = "layers.0." + name.removeprefix("midlayer.")
        state[name] = tensor
    return write_checkpoint(directory, state, config, overwrite=overwrite)
