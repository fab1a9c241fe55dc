"""The frozen target: load it, capture its aux hidden states and its next-token supervision.

Training needs two things from the target per position t (unshifted; the trainer does
the EAGLE alignment): the outputs of three decoder layers, concatenated, and the target's
next-token distribution restricted to the draft vocabulary, plus whether the target's
full-vocabulary argmax lies inside that vocabulary.

Full-vocabulary fp32 logits are never held for a whole batch: gpt-oss has 201,088
columns, so 4,096 positions would take 3.3 GB. The base model (decoder stack + final
norm) runs once; ``lm_head`` is then applied over chunks of positions, and each chunk
keeps only its draft-vocabulary columns and its argmax.
"""

from __future__ import annotations

import importlib.util
import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel

from draftsmith.model.attention import document_mask, needs_document_mask
from draftsmith.model.config import DraftConfig, default_aux_layer_ids, validate_aux_layer_ids
from draftsmith.target.registry import TargetFamily, load_target_config, target_family
from draftsmith.vocab_mapping import VocabMappingError, check_target_ids, target_ids_from_d2t

DEFAULT_LOGITS_CHUNK = 512


class TargetMismatchError(ValueError):
    """The target disagrees with a draft, a vocabulary or a batch (both values are named)."""


@dataclass
class TargetLoadOptions:
    """How to load a target.

    ``dtype`` is a torch dtype, its name (``"bfloat16"``) or ``"auto"`` (the checkpoint's own).
    ``device_map`` (``"auto"``, ``"balanced"``, ``"sequential"``) spreads the layers over the
    visible GPUs through accelerate instead of putting the whole target on ``device``, for a
    target larger than one GPU.
    ``logits_chunk`` bounds how many positions go through ``lm_head`` at once.
    """

    dtype: torch.dtype | str = "auto"
    device: str | torch.device = "cpu"
    device_map: str | None = None
    trust_remote_code: bool = False
    logits_chunk: int = DEFAULT_LOGITS_CHUNK


@dataclass
class TargetOutputs:
    """What the target says about one batch, per position t (no shift applied).

    ``target_probs[..., j]`` is the probability of target token ``draft_token_ids[j]``
    (draft id j) after renormalizing over the draft vocabulary.
    """

    aux_hidden_states: torch.Tensor  # [B, T, 3 * H], model dtype, in ascending layer order
    target_probs: torch.Tensor  # [B, T, draft_vocab], fp32
    in_draft_vocab: torch.Tensor  # [B, T], bool
    target_argmax: torch.Tensor  # [B, T], int64 target ids


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype | str:
    """``"auto"`` stays as is (transformers then uses the checkpoint's dtype); names become dtypes."""
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32")
    return resolved


def draft_token_ids_from_d2t(d2t: torch.Tensor) -> torch.Tensor:
    """Target id of every draft id, in draft-id order (:func:`draftsmith.vocab_mapping.target_ids_from_d2t`)."""
    return target_ids_from_d2t(d2t)


class TargetModel:
    """A frozen Hugging Face causal LM with forward hooks on its aux layers.

    Aux layer k is the output of decoder layer k (hidden-state index k + 1), before the
    final norm, as the engines capture it (see :mod:`draftsmith.model.config`). The states
    are concatenated in ascending layer order, as the engines concatenate them, whatever
    order the ids are given in. The last layer's output is accepted only for families whose
    engines can all capture it (:attr:`TargetFamily.final_layer_capturable`).
    """

    def __init__(self, model: PreTrainedModel, aux_layer_ids: Sequence[int] | None = None,
                 logits_chunk: int = DEFAULT_LOGITS_CHUNK):
        self.family: TargetFamily = target_family(model.config)
        self.model = model.eval().requires_grad_(False)
        self.layers = self._layer_list()
        num_layers = int(model.config.num_hidden_layers)
        if len(self.layers) != num_layers:
            raise TargetMismatchError(
                f"{self.family.layers_path} holds {len(self.layers)} layers but the config says "
                f"num_hidden_layers={num_layers}"
            )
        ids = default_aux_layer_ids(num_layers) if aux_layer_ids is None else aux_layer_ids
        self.aux_layer_ids: tuple[int, int, int] = validate_aux_layer_ids(
            ids, num_layers, final_layer=self.family.final_layer_capturable)
        if logits_chunk < 1:
            raise ValueError(f"logits_chunk must be a positive number of positions, got {logits_chunk}")
        self.logits_chunk = logits_chunk

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, aux_layer_ids: Sequence[int] | None = None,
                        options: TargetLoadOptions | None = None) -> TargetModel:
        """Load a supported target from a local directory or hub id, frozen and in eval mode.

        The architecture is checked from the config before any weight is read, so an
        unsupported model fails fast with the registry's list of supported families.
        Weights go straight to ``options.device`` when ``accelerate`` is installed
        (a device map); otherwise they are loaded on the CPU and moved. With
        ``options.device_map`` accelerate places the layers itself.
        """
        options = options or TargetLoadOptions()
        target_family(load_target_config(path))
        kwargs: dict = dict(dtype=resolve_dtype(options.dtype), trust_remote_code=options.trust_remote_code)
        accelerate = importlib.util.find_spec("accelerate") is not None
        if options.device_map is not None and not accelerate:
            raise ImportError("a target device_map needs accelerate: pip install 'draftsmith[sharded]'")
        device = torch.device(options.device)
        direct = options.device_map is not None or (device.type != "cpu" and accelerate)
        if direct:
            kwargs["device_map"] = options.device_map or {"": device}
        model = AutoModelForCausalLM.from_pretrained(os.fspath(path), **kwargs)
        if not direct:
            model = model.to(device)
        return cls(model, aux_layer_ids, options.logits_chunk)

    def _layer_list(self) -> nn.ModuleList:
        try:
            layers = operator.attrgetter(self.family.layers_path)(self.model)
        except AttributeError:
            raise TargetMismatchError(
                f"{type(self.model).__name__} has no decoder layer list at {self.family.layers_path!r}"
            ) from None
        if not isinstance(layers, nn.ModuleList):
            raise TargetMismatchError(f"{self.family.layers_path!r} is a {type(layers).__name__}, not a layer list")
        return layers

    @property
    def config(self):
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        """Columns of ``lm_head`` (what argmax runs over), which is the config's vocab_size."""
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def device(self) -> torch.device:
        """Where inputs go and aux states are gathered: the first layer's device under a device map."""
        return self.model.device

    @property
    def output_device(self) -> torch.device:
        """Where ``lm_head`` lives, so supervision runs there (the last GPU under a device map)."""
        return self.model.get_output_embeddings().weight.device

    def check_draft(self, draft: DraftConfig) -> None:
        """Refuse a draft config built for another target (sizes, vocab, aux layers)."""
        pairs = [
            ("target_hidden_size", draft.target_hidden_size, "hidden_size", self.hidden_size),
            ("vocab_size", draft.vocab_size, "vocab_size", self.vocab_size),
        ]
        if draft.target_num_hidden_layers is not None:
            pairs.append(("target_num_hidden_layers", draft.target_num_hidden_layers,
                          "num_hidden_layers", len(self.layers)))
        if draft.aux_layer_ids is not None:
            pairs.append(("aux_layer_ids", tuple(draft.aux_layer_ids), "capture layers", self.aux_layer_ids))
        for draft_name, draft_value, target_name, target_value in pairs:
            if draft_value != target_value:
                raise TargetMismatchError(
                    f"draft {draft_name}={draft_value} does not match the target's {target_name}={target_value}"
                )

    def validate_draft_token_ids(self, draft_token_ids: torch.Tensor) -> torch.Tensor:
        """A 1-D int64 tensor of distinct target ids, on the target's device."""
        try:
            return check_target_ids(draft_token_ids, self.vocab_size).to(self.device)
        except VocabMappingError as error:
            raise TargetMismatchError(str(error)) from None

    def document_attention(self, document_ids: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor] | None:
        """The attention mask for a batch in document-id form (0 = padding, 1, 2, ... per document).

        None when every row is one right-padded document: causal attention already keeps real
        tokens off the padding after them. For packed rows, additive 4-D masks (causal, same
        document, and the sliding window on sliding layers), one per layer type where the
        architecture has layer types: transformers does not isolate packed documents for
        every architecture (gpt-oss ignores ``position_ids`` when it builds its masks).
        """
        ids = torch.as_tensor(document_ids).to(self.device)
        if not needs_document_mask(ids):
            return None
        T = ids.shape[-1]
        position = torch.arange(T, device=self.device)
        visible = document_mask(ids)[:, 0]
        dtype = self.model.dtype

        def additive(v: torch.Tensor) -> torch.Tensor:
            return torch.zeros(v.shape, dtype=dtype, device=self.device).masked_fill_(~v, torch.finfo(dtype).min)[:, None]

        window = getattr(self.config, "sliding_window", None)
        sliding = visible & (position[:, None] - position[None, :] < window) if window else visible
        layer_types = getattr(self.config, "layer_types", None)
        if layer_types is None:
            return additive(sliding)
        return {"full_attention": additive(visible), "sliding_attention": additive(sliding)}

    @torch.no_grad()
    def capture_aux(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    position_ids: torch.Tensor | None = None, cache=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the decoder stack once: ``(aux_hidden_states [B, T, 3H], final normed states [B, T, H])``.

        ``cache`` (a transformers ``Cache``) makes this an incremental forward after the tokens
        already in it, as speculative decoding's verification runs.
        """
        input_ids = self._check_inputs(input_ids, attention_mask)
        captured: dict[int, torch.Tensor] = {}

        def hook_for(index: int):
            def hook(module, args, output):
                captured[index] = output[0] if isinstance(output, tuple) else output
            return hook

        handles = [self.layers[k].register_forward_hook(hook_for(k)) for k in self.aux_layer_ids]
        try:
            outputs = self.model.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask.to(self.device) if isinstance(attention_mask, torch.Tensor)
                else attention_mask,
                position_ids=None if position_ids is None else position_ids.to(self.device),
                cache=cache,
                use_cache=cache is not None,
            )
        finally:
            for handle in handles:
                handle.remove()
        missing = [k for k in self.aux_layer_ids if k not in captured]
        if missing:
            raise RuntimeError(f"aux layers {missing} did not run in {type(self.model).__name__}'s forward")
        aux = torch.cat([captured[k].to(self.device) for k in self.aux_layer_ids], dim=-1)
        return aux, outputs.last_hidden_state

    @torch.no_grad()
    def supervision(self, final_hidden: torch.Tensor, draft_token_ids: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(target_probs, in_draft_vocab, target_argmax)`` from final normed states, chunked over positions.

        Each chunk's logits are ``lm_head`` in the model's dtype (as the target computes
        them), upcast to fp32, so one chunk of full-vocabulary fp32 logits is alive at a time.
        """
        device = self.output_device
        ids = self.validate_draft_token_ids(draft_token_ids).to(device)
        in_vocab_table = torch.zeros(self.vocab_size, dtype=torch.bool, device=device)
        in_vocab_table[ids] = True
        lm_head = self.model.get_output_embeddings()
        batch, length, hidden = final_hidden.shape
        flat = final_hidden.reshape(batch * length, hidden).to(device)
        probs = torch.empty(batch * length, ids.numel(), dtype=torch.float32, device=device)
        argmax = torch.empty(batch * length, dtype=torch.long, device=device)
        for start in range(0, flat.shape[0], self.logits_chunk):
            stop = start + self.logits_chunk
            logits = lm_head(flat[start:stop]).float()
            argmax[start:stop] = logits.argmax(dim=-1)
            probs[start:stop] = torch.softmax(logits.index_select(-1, ids), dim=-1)
            del logits
        argmax = argmax.view(batch, length)
        return probs.view(batch, length, -1), in_vocab_table[argmax], argmax

    def __call__(self, input_ids: torch.Tensor, draft_token_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None = None,
                 position_ids: torch.Tensor | None = None) -> TargetOutputs:
        """Aux hidden states and draft-vocabulary supervision for a batch of token ids ``[B, T]``."""
        aux, final_hidden = self.capture_aux(input_ids, attention_mask, position_ids)
        probs, in_vocab, argmax = self.supervision(final_hidden, draft_token_ids)
        return TargetOutputs(aux_hidden_states=aux, target_probs=probs, in_draft_vocab=in_vocab,
                             target_argmax=argmax)

    def _check_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        input_ids = torch.as_tensor(input_ids)
        if input_ids.dim() != 2:
            raise TargetMismatchError(f"input_ids must be [batch, length], got shape {tuple(input_ids.shape)}")
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2 and tuple(
                attention_mask.shape) != tuple(input_ids.shape):
            raise TargetMismatchError(
                f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids shape "
                f"{tuple(input_ids.shape)}"
            )
        if input_ids.numel() and (int(input_ids.max()) >= self.vocab_size or int(input_ids.min()) < 0):
            bad = int(input_ids.max()) if int(input_ids.max()) >= self.vocab_size else int(input_ids.min())
            raise TargetMismatchError(
                f"input_ids hold token id {bad}, outside the target vocab_size={self.vocab_size} "
                f"(was the data tokenized with another tokenizer?)"
            )
        return input_ids.to(self.device)
