"""Offline features: run the target once, train many times without loading it.

``draftsmith prepare`` stores, per sample, the tokens and masks, the aux hidden states,
the target's final normed hidden states and its full-vocabulary argmax, in safetensors
shards with a manifest. The target distribution over the draft vocabulary is recomputed
at train time from the final hidden states and the draft-vocabulary rows of the target's
``lm_head`` (stored once): that is 2 x H numbers per token instead of 32,000.

Training refuses features whose manifest does not match its recipe: another target,
other aux layers, another draft vocabulary or other data settings would otherwise
train a draft that silently does not fit its target.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from draftsmith.atomic import atomic_directory
from draftsmith.data import Sample
from draftsmith.target.capture import TargetModel, TargetOutputs, draft_token_ids_from_d2t
from draftsmith.train.objective import TokenBatch

FORMAT = "draftsmith-features/1"
MANIFEST = "manifest.json"
SHARD_SAMPLES = 256
_SAMPLE_FIELDS = ("input_ids", "loss_mask", "document_ids", "position_ids")


class FeatureMismatchError(ValueError):
    """Offline features prepared for a different target, draft or data setting than the recipe."""


def vocab_fingerprint(d2t: torch.Tensor) -> str:
    return hashlib.sha256(d2t.cpu().long().numpy().tobytes()).hexdigest()[:16]


def write_features(
    directory: str | os.PathLike,
    splits: dict[str, Sequence[Sample]],
    target: TargetModel,
    d2t: torch.Tensor,
    t2d: torch.Tensor,
    manifest: dict[str, Any],
    *,
    pad_token_id: int,
    micro_batch_size: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Run ``target`` over every sample of every split and write the feature directory atomically."""
    draft_ids = draft_token_ids_from_d2t(d2t)
    manifest = dict(manifest, format=FORMAT, vocab_fingerprint=vocab_fingerprint(d2t),
                    draft_vocab_size=int(d2t.numel()), splits={}, aux_layer_ids=list(target.aux_layer_ids),
                    target_hidden_size=target.hidden_size)
    with atomic_directory(directory, overwrite=overwrite) as staging:
        lm_head = target.model.get_output_embeddings().weight.detach()
        save_file({"embed_tokens.weight": target.model.get_input_embeddings().weight.detach().cpu().contiguous(),
                   "lm_head_draft.weight": lm_head[draft_ids].cpu().contiguous(),
                   "d2t": d2t.cpu().long(), "t2d": t2d.cpu().bool()}, staging / "target_heads.safetensors")
        for split, samples in splits.items():
            shards = []
            bar = tqdm(total=len(samples), desc=f"features ({split})", unit="sample", disable=not progress)
            for shard_start in range(0, len(samples), SHARD_SAMPLES):
                tensors: dict[str, torch.Tensor] = {}
                shard = [samples[i] for i in range(shard_start, min(shard_start + SHARD_SAMPLES, len(samples)))]
                for start in range(0, len(shard), micro_batch_size):
                    chunk = shard[start: start + micro_batch_size]
                    batch = TokenBatch.from_samples(chunk, pad_token_id, target.device)
                    mask = target.document_attention(batch.document_ids)
                    aux, final = target.capture_aux(batch.input_ids, mask, batch.position_ids)
                    argmax = target.supervision(final, draft_ids)[2]
                    for row, sample in enumerate(chunk):
                        key, n = shard_start + start + row, len(sample)
                        for name in _SAMPLE_FIELDS:
                            tensors[f"{key}.{name}"] = torch.tensor(getattr(sample, name), dtype=torch.long)
                        tensors[f"{key}.aux"] = aux[row, :n].cpu().contiguous()
                        tensors[f"{key}.final_hidden"] = final[row, :n].cpu().contiguous()
                        tensors[f"{key}.target_argmax"] = argmax[row, :n].cpu().contiguous()
                    bar.update(len(chunk))
                name = f"{split}-{len(shards):05d}.safetensors"
                save_file(tensors, staging / name)
                shards.append(name)
            bar.close()
            manifest["splits"][split] = {"num_samples": len(samples), "shards": shards}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return Path(directory)


class FeatureSet:
    """One split of a feature directory: samples, and supervision for a batch of them."""

    def __init__(self, directory: str | os.PathLike, split: str = "train", device: torch.device | str = "cpu"):
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        info = self.manifest["splits"].get(split, {"num_samples": 0, "shards": []})
        self.num_samples = info["num_samples"]
        self._shards = [self.directory / s for s in info["shards"]]
        heads = load_file(self.directory / "target_heads.safetensors")
        self.embed_tokens = heads["embed_tokens.weight"]
        self.d2t, self.t2d = heads["d2t"], heads["t2d"].to(device)
        self._lm_head = heads["lm_head_draft.weight"].to(device)
        self.device = torch.device(device)
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return self.num_samples

    def _get(self, index: int, name: str) -> torch.Tensor:
        shard = index // SHARD_SAMPLES
        if shard not in self._handles:
            self._handles[shard] = safe_open(self._shards[shard], framework="pt")
        return self._handles[shard].get_tensor(f"{index}.{name}")

    def sample(self, index: int) -> Sample:
        fields = {name: self._get(index, name).tolist() for name in _SAMPLE_FIELDS}
        return Sample(**fields, sources=(f"{self.directory}#{index}",))

    def samples(self) -> list[Sample]:
        return [self.sample(i) for i in range(self.num_samples)]

    def supervision(self, indices: list[int], length: int) -> TargetOutputs:
        """Stored states for ``indices``, right-padded to ``length``, and the draft-vocabulary distribution."""
        def stacked(name: str) -> torch.Tensor:
            rows = [self._get(i, name) for i in indices]
            pad = [(0, 0) * (r.dim() - 1) + (0, length - r.shape[0]) for r in rows]
            return torch.stack([F.pad(r, p) for r, p in zip(rows, pad)]).to(self.device)

        final = stacked("final_hidden")
        argmax = stacked("target_argmax")
        probs = torch.softmax(F.linear(final, self._lm_head).float(), dim=-1)
        return TargetOutputs(aux_hidden_states=stacked("aux"), target_probs=probs,
                             in_draft_vocab=self.t2d[argmax], target_argmax=argmax)


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; data.features must point at a `draftsmith prepare` output")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise FeatureMismatchError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def check_manifest(manifest: dict[str, Any], expected: dict[str, Any], source: str) -> None:
    """Every key the recipe determines must match what the features were prepared with."""
    for key, value in expected.items():
        if value is not None and manifest.get(key) != value:
            raise FeatureMismatchError(
                f"{source}: features were prepared with {key}={manifest.get(key)!r}, the recipe has {value!r}; "
                f"rerun `draftsmith prepare` for this recipe"
            )
