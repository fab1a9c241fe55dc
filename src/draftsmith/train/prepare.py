"""``prepare``: the online setup of a recipe, run once, written as offline features."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from draftsmith.atomic import refuse_overwrite
from draftsmith.target.registry import load_target_config
from draftsmith.train.features import write_features
from draftsmith.train.recipe import Recipe, check_inputs
from draftsmith.train.setup import build_run_draft, build_samples, load_target, load_tokenizer, load_warm_start, vocab_mapping


def prepare(recipe: Recipe, out: str | os.PathLike, *, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the features ``draftsmith train`` reads when ``data.features`` points at ``out``."""
    if recipe.data.features is not None:
        raise ValueError(f"{recipe.source}: data.features is set; prepare reads the conversation files instead")
    refuse_overwrite(out, overwrite)
    check_inputs(recipe)
    device = torch.device(recipe.target.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = load_tokenizer(recipe)
    data = build_samples(recipe, tokenizer, progress)
    target_config = load_target_config(recipe.target.path)
    warm = load_warm_start(recipe)
    d2t, t2d = vocab_mapping(recipe, tokenizer, target_config.vocab_size, warm, progress, data.train_store)
    draft = build_run_draft(recipe, target_config, warm)
    target = load_target(recipe, draft, device)
    manifest = {
        "target_path": recipe.target.path,
        "target_config": target_config.to_dict(),
        "max_length": recipe.data.max_length,
        "pack": recipe.data.pack,
        "supervise": recipe.data.supervise,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
    }
    return write_features(out, {"train": data.train, "validation": data.validation}, target, d2t, t2d, manifest,
                          pad_token_id=manifest["pad_token_id"], micro_batch_size=recipe.training.micro_batch_size or 1,
                          overwrite=overwrite, progress=progress)
