"""Building what a run needs from a recipe: tokenizer, sample store, vocabulary, draft, target.

Shared by ``draftsmith train`` and ``draftsmith prepare`` so that offline features and
online training see the same samples, vocabulary and aux layers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PretrainedConfig

from draftsmith.checkpoint.layout import PretrainedDraft, load_draft
from draftsmith.data import DataConfig, SampleStore, StoreView, build_store, load_or_build_vocab, load_vocab_mapping
from draftsmith.model.config import validate_aux_layer_ids
from draftsmith.model.draft import Eagle3Draft
from draftsmith.model.rope import RopeConfigError
from draftsmith.target.capture import TargetLoadOptions, TargetModel
from draftsmith.target.registry import draft_config_from_target
from draftsmith.train.distributed import DistContext
from draftsmith.train.recipe import Recipe, RecipeError
from draftsmith.vocab_mapping import capped_draft_vocab_size, same_mapping

log = logging.getLogger(__name__)


class VocabMismatchError(ValueError):
    """A data-derived draft vocabulary that differs from the warm-start draft's own."""


def data_config(recipe: Recipe) -> DataConfig:
    d = recipe.data
    return DataConfig(max_length=d.max_length, overlong=d.overlong, pack=d.pack, channels=d.supervise,
                      max_bad_fraction=d.max_bad_fraction)


def load_tokenizer(recipe: Recipe) -> Any:
    source = recipe.data.tokenizer or recipe.target.path
    return AutoTokenizer.from_pretrained(source, trust_remote_code=recipe.target.trust_remote_code)


@dataclass
class RenderedData:
    """The recipe's samples: the store of ``data.train`` (for the vocabulary), then the split views."""

    train_store: SampleStore
    train: StoreView
    validation: StoreView


def build_samples(recipe: Recipe, tokenizer: Any, progress: bool, context: DistContext = DistContext()) -> RenderedData:
    """Train and validation samples; without validation files, a seeded holdout of the train set.

    Each file set is rendered once into its sample store (rank 0 first; the other ranks wait at
    a barrier, then open the same store, or build their own when ``data.cache_dir`` is not shared
    with rank 0). The vocabulary is counted from the same store.
    """
    config = data_config(recipe)

    def stores() -> tuple[SampleStore, SampleStore | None]:
        def store(files: list[str]) -> SampleStore:
            return build_store(files, tokenizer, config, recipe.data.cache_dir,
                               num_workers=recipe.data.num_workers, progress=progress)
        return store(recipe.data.train), store(recipe.data.validation) if recipe.data.validation else None

    if context.is_main:
        try:
            train_store, validation_store = stores()
        finally:  # release the waiting ranks even when the data fails: they then meet the same error
            context.barrier()
    else:
        context.barrier()
        train_store, validation_store = stores()
    train = train_store.view(config.pack, config.max_length)
    if validation_store is not None:
        return RenderedData(train_store, train, validation_store.view(config.pack, config.max_length))
    held = int(len(train) * recipe.data.validation_fraction)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(recipe.training.seed)).tolist()
    return RenderedData(train_store, train.select(order[held:]) if held else train, train.select(order[:held]))


def vocab_mapping(
    recipe: Recipe, tokenizer: Any, target_vocab_size: int, warm: Eagle3Draft | None, progress: bool,
    store: SampleStore | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d2t, t2d)``: the warm-start draft's own, else the most frequent supervised tokens of the data.

    With a warm start and an explicit ``draft.vocab_file`` the two must agree: training a
    public draft on a different vocabulary would silently scramble its output layer. An
    explicit ``draft.vocab_file`` is created when missing but never replaced: one that was
    built for other data or another size is an error saying what differs. Only the
    default cache file rebuilds itself.
    """
    path = recipe.draft.vocab_file
    if warm is not None:
        if path is not None:
            mapping = load_vocab_mapping(path, target_vocab_size)
            if not same_mapping((mapping.d2t, mapping.t2d), (warm.d2t, warm.t2d)):
                raise VocabMismatchError(
                    f"draft.vocab_file {path} maps {mapping.d2t.numel()} tokens differently from the warm-start "
                    f"draft {recipe.draft.init_from} ({warm.d2t.numel()} tokens); a warm start keeps its own "
                    f"vocabulary, so drop draft.vocab_file or start from scratch"
                )
        return warm.d2t.clone(), warm.t2d.clone()
    size = capped_draft_vocab_size(recipe.draft.draft_vocab_size, target_vocab_size)
    mapping, reused = load_or_build_vocab(path or default_vocab_path(recipe), recipe.data.train, tokenizer, size,
                                          target_vocab_size, data_config(recipe), progress=progress,
                                          rebuild_stale=path is None, store=store, cache_dir=recipe.data.cache_dir,
                                          num_workers=recipe.data.num_workers)
    log.info("draft vocabulary %s: %s", "reused" if reused else "built", path or default_vocab_path(recipe))
    return mapping.d2t, mapping.t2d


def default_vocab_path(recipe: Recipe) -> Path:
    """A per-user cache file for the recipe's tokenizer and data, so reruns and ``prepare`` share it.

    The name only spreads recipes over files; whether the cached vocabulary is still valid
    is decided by the tokenizer and data fingerprints stored inside it.
    """
    key = json.dumps([recipe.data.tokenizer or recipe.target.path, recipe.data.train, recipe.draft.draft_vocab_size])
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "draftsmith" / "vocab"
    return root / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.safetensors"


def build_run_draft(
    recipe: Recipe, target_config: PretrainedConfig | dict, warm: Eagle3Draft | None
) -> Eagle3Draft:
    """The draft to train: the warm start, or a fresh one derived from the target.

    Aux layer ids are checked against the target here, before any pass over the data, and
    kept in ascending order, the order every engine concatenates them in. A warm-start
    draft whose config names no aux layers (some tools omit them) adopts the recipe's or
    the target's default ones, so the exported draft names them for the engines; its
    architecture options (``norm_before_fc`` ...) are its own and the recipe's are ignored.
    """
    d = recipe.draft
    own = warm.config.aux_layer_ids if warm is not None else None
    if own is not None and d.aux_layer_ids is not None and validate_aux_layer_ids(d.aux_layer_ids, None) != own:
        raise ValueError(f"draft.aux_layer_ids {d.aux_layer_ids} differ from the warm-start draft's "
                         f"{list(own)} ({d.init_from})")
    options = {name: getattr(d, name) for name in ("norm_before_fc", "fc_norm", "norm_output") if getattr(d, name)}
    options.update({name: getattr(d, name) for name in ("intermediate_size", "rope_parameters",
                                                        "max_position_embeddings") if getattr(d, name) is not None})
    try:
        fresh = draft_config_from_target(  # checks the warm start's aux layers against this target too
            target_config, draft_vocab_size=d.draft_vocab_size, aux_layer_ids=own or d.aux_layer_ids, **options)
    except RopeConfigError as error:
        raise RecipeError(f"{recipe.source}: draft.rope_parameters: {error}") from error
    if warm is None:
        return PretrainedDraft(fresh)
    warm.config = dataclasses.replace(
        warm.config, aux_layer_ids=fresh.aux_layer_ids,
        target_num_hidden_layers=fresh.target_num_hidden_layers, target_model_type=fresh.target_model_type)
    return warm


def load_warm_start(recipe: Recipe) -> Eagle3Draft | None:
    return None if recipe.draft.init_from is None else load_draft(recipe.draft.init_from)


def load_target(recipe: Recipe, draft: Eagle3Draft, device: torch.device) -> TargetModel:
    options = TargetLoadOptions(dtype=recipe.target.dtype, device=device, device_map=recipe.target.device_map,
                                trust_remote_code=recipe.target.trust_remote_code,
                                logits_chunk=recipe.target.logits_chunk)
    target = TargetModel.from_pretrained(recipe.target.path, draft.config.aux_layer_ids, options)
    target.check_draft(draft.config)
    return target


def copy_target_embedding(draft: Eagle3Draft, embedding: torch.Tensor) -> None:
    """The draft's input embedding is a frozen copy of the target's."""
    if tuple(embedding.shape) != tuple(draft.embed_tokens.weight.shape):
        raise ValueError(f"target embedding {tuple(embedding.shape)} does not fit the draft's "
                         f"{tuple(draft.embed_tokens.weight.shape)}")
    with torch.no_grad():
        draft.embed_tokens.weight.copy_(embedding)
