"""The draft vocabulary: the most frequent supervised target tokens, as ``d2t`` / ``t2d``.

The draft predicts over ``N`` of the target's tokens (default 32000): the tokens the
assistant emits most often in the training data, plus every special token (end-of-turn
tokens are rare per token but ending a draft correctly matters). Draft ids follow target ids
in ascending order, so ``target_id = draft_id + d2t[draft_id]`` and ``t2d[target_id]`` marks
membership, the convention of EAGLE-3 checkpoints that SGLang and vLLM load.

Tokens are counted from the sample store (:mod:`draftsmith.data.store`), the same rendered
samples training reads, so the data is never rendered for counting alone. The result is
cached in a safetensors file whose metadata holds fingerprints of the tokenizer, the data and
the settings; :func:`load_or_build_vocab` reuses the file only when all of them match.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from draftsmith.atomic import atomic_file
from draftsmith.data.dataset import DataConfig
from draftsmith.data.fingerprint import data_fingerprint, tokenizer_fingerprint
from draftsmith.data.readers import Source
from draftsmith.data.render import tokenizer_name
from draftsmith.data.report import BadRecordError
from draftsmith.data.store import SampleStore, build_store
from draftsmith.vocab_mapping import VocabMappingError, capped_draft_vocab_size, check_mapping, mapping_from_target_ids, target_ids_from_d2t

log = logging.getLogger(__name__)

FORMAT = "draftsmith-vocab/1"
KEY_FIELDS = ("tokenizer_fingerprint", "data_fingerprint", "requested_draft_vocab_size", "target_vocab_size")


@dataclass(frozen=True)
class VocabMapping:
    """``d2t`` (int64 ``[draft_vocab]``) and ``t2d`` (bool ``[target_vocab]``), with provenance."""

    d2t: torch.Tensor
    t2d: torch.Tensor
    metadata: dict[str, str]

    @property
    def draft_vocab_size(self) -> int:
        return int(self.d2t.numel())

    @property
    def target_vocab_size(self) -> int:
        return int(self.t2d.numel())

    def target_ids(self) -> torch.Tensor:
        """Target id of each draft id."""
        return target_ids_from_d2t(self.d2t)


def select_draft_tokens(
    supervised: torch.Tensor, draft_vocab_size: int, always: Iterable[int] = (), seen: torch.Tensor | None = None
) -> list[int]:
    """The target ids of the draft vocabulary, ascending.

    ``always`` ids come first; then supervised tokens by count (ties: lower id first); if the
    data has fewer distinct supervised tokens than the size asks, tokens seen anywhere in the
    data follow by count, then the lowest remaining ids, so the size is always exact.
    """
    target_vocab_size = int(supervised.numel())
    size = capped_draft_vocab_size(draft_vocab_size, target_vocab_size)
    chosen = sorted(set(always))
    if any(not 0 <= t < target_vocab_size for t in chosen):
        bad = [t for t in chosen if not 0 <= t < target_vocab_size]
        raise ValueError(f"special token ids {bad} are outside the target vocabulary of {target_vocab_size}")
    if len(chosen) > size:
        raise ValueError(f"draft vocab size {size} is smaller than the {len(chosen)} special tokens it must hold")
    taken = torch.zeros(target_vocab_size, dtype=torch.bool)
    taken[chosen] = True
    ids = torch.arange(target_vocab_size)
    for counts in [supervised] + ([seen] if seen is not None else []):
        need = size - int(taken.sum())
        candidates = ids[~taken & (counts > 0)]
        # a stable sort on descending counts keeps ascending ids among ties
        order = torch.sort(-counts[candidates], stable=True).indices
        taken[candidates[order[:need]]] = True
    need = size - int(taken.sum())
    taken[ids[~taken][:need]] = True
    return torch.nonzero(taken).flatten().tolist()


def build_vocab_mapping(target_ids: list[int], target_vocab_size: int, metadata: Mapping[str, str] | None = None) -> VocabMapping:
    """``d2t`` / ``t2d`` for the given distinct target ids."""
    d2t, t2d = mapping_from_target_ids(target_ids, target_vocab_size)
    return VocabMapping(d2t, t2d, dict(metadata or {}))


def save_vocab_mapping(path: str | Path, mapping: VocabMapping, *, overwrite: bool = True) -> Path:
    """Write ``d2t``, ``t2d`` and the metadata to a safetensors file, atomically."""
    with atomic_file(path, overwrite=overwrite) as staging:
        save_file({"d2t": mapping.d2t.contiguous(), "t2d": mapping.t2d.contiguous()}, staging,
                  metadata={"format": FORMAT, **mapping.metadata})
    return Path(path)


def load_vocab_mapping(path: str | Path, target_vocab_size: int | None = None) -> VocabMapping:
    """Read a vocabulary file written by :func:`save_vocab_mapping`, checking it is consistent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocab file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            if metadata.get("format") != FORMAT or set(handle.keys()) != {"d2t", "t2d"}:
                raise ValueError(f"{path} is not a draftsmith vocab file (format {metadata.get('format')!r})")
            d2t, t2d = handle.get_tensor("d2t"), handle.get_tensor("t2d")
    except SafetensorError as error:
        raise ValueError(f"{path} is not a draftsmith vocab file (not readable as safetensors: {error})") from error
    if d2t.dtype != torch.long or t2d.dtype != torch.bool:
        raise ValueError(f"{path}: d2t must be int64 and t2d bool, got {d2t.dtype} and {t2d.dtype}")
    mapping = VocabMapping(*check_mapping(d2t, t2d, int(t2d.numel()), source=str(path)), metadata)
    if target_vocab_size is not None and mapping.target_vocab_size != target_vocab_size:
        raise ValueError(
            f"{path}: built for a target vocabulary of {mapping.target_vocab_size}, but the target has {target_vocab_size}"
        )
    return mapping


def special_token_ids(tokenizer: Any, seen: torch.Tensor) -> set[int]:
    """Named special tokens, plus special added tokens that occur anywhere in the rendered data.

    Reserved specials that never occur (Llama-3 has 250) would only waste draft slots.
    """
    ids = set(getattr(tokenizer, "all_special_ids", []))
    for token_id, token in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(token, "special", False) and token_id < seen.numel() and seen[token_id] > 0:
            ids.add(token_id)
    return ids


class VocabFileMismatchError(ValueError):
    """A vocabulary file the user named that was built for other data, another tokenizer or size."""


_KEY_NAMES = {"tokenizer_fingerprint": "tokenizer", "data_fingerprint": "data files or data settings",
              "requested_draft_vocab_size": "draft vocab size", "target_vocab_size": "target vocab size"}


def load_or_build_vocab(
    path: str | Path,
    sources: Source | list[Source],
    tokenizer: Any,
    draft_vocab_size: int = 32000,
    target_vocab_size: int | None = None,
    config: DataConfig = DataConfig(),
    progress: bool = False,
    force: bool = False,
    *,
    rebuild_stale: bool = True,
    store: SampleStore | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = None,
) -> tuple[VocabMapping, bool]:
    """Reuse the vocabulary at ``path`` if it was built from this tokenizer, data and settings; else build it.

    ``target_vocab_size`` is the target model's ``vocab_size`` (often larger than the
    tokenizer); it defaults to ``len(tokenizer)``, and caps ``draft_vocab_size``. Returns
    the mapping and whether it was reused. A file at ``path`` that is not a draftsmith
    vocabulary is never overwritten; with ``rebuild_stale=False`` (a file the user named,
    not a cache) neither is a stale one: the error says what differs. ``store``: the sample
    store of ``sources`` when the caller already has it; otherwise it is built (or reused)
    under ``cache_dir`` with ``num_workers`` processes (see :func:`build_store`).
    """
    target_vocab_size = len(tokenizer) if target_vocab_size is None else target_vocab_size
    try:
        draft_vocab_size = capped_draft_vocab_size(draft_vocab_size, target_vocab_size)
    except VocabMappingError as error:
        raise ValueError(str(error)) from None
    if len(tokenizer) > target_vocab_size:
        raise ValueError(
            f"tokenizer {tokenizer_name(tokenizer)!r} has {len(tokenizer)} tokens, more than the target vocabulary "
            f"of {target_vocab_size}"
        )
    key = {
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "data_fingerprint": data_fingerprint(sources, config.fingerprint_fields()),
        "requested_draft_vocab_size": str(draft_vocab_size),
        "target_vocab_size": str(target_vocab_size),
    }
    path = Path(path)
    if path.exists() and not force:
        cached = load_vocab_mapping(path)
        changed = [k for k in KEY_FIELDS if cached.metadata.get(k) != key[k]]
        if not changed:
            _check_cached_bad_share(path, cached.metadata, config.max_bad_fraction)
            return cached, True
        if not rebuild_stale:
            raise VocabFileMismatchError(f"{path} does not fit: {_differences(cached.metadata, key, changed)}; "
                                         f"it is never overwritten (delete it, or name another file)")
        log.warning("%s is stale (%s changed); rebuilding the draft vocabulary", path, ", ".join(changed))
    elif path.exists():
        load_vocab_mapping(path)  # refuses to overwrite a file that is not a vocab file
    if store is None:
        store = build_store(sources, tokenizer, config, cache_dir, num_workers=num_workers, progress=progress)
    mapping = build_vocab(store, tokenizer, draft_vocab_size, target_vocab_size, config)
    mapping.metadata.update(key)
    save_vocab_mapping(path, mapping)
    return mapping, False


def _differences(stored: Mapping[str, str], wanted: Mapping[str, str], changed: list[str]) -> str:
    parts = []
    for key in changed:
        if key in ("requested_draft_vocab_size", "target_vocab_size"):
            parts.append(f"{_KEY_NAMES[key]} {stored.get(key)} in the file, {wanted[key]} now")
        else:
            parts.append(f"built from other {_KEY_NAMES[key]}")
    return "; ".join(parts)


def _check_cached_bad_share(path: Path, metadata: Mapping[str, str], max_bad_fraction: float) -> None:
    """A reused file must pass today's bad-record limit too, not only the one it was built under."""
    records = int(metadata.get("records", "0"))
    counts = json.loads(metadata.get("bad_records", "{}"))
    bad = sum(counts.values())
    if records and bad / records > max_bad_fraction:
        raise BadRecordError(
            f"{path} was built from data with {bad} bad records of {records} ({bad / records:.2%}), more than "
            f"the allowed {max_bad_fraction:.2%} (max_bad_fraction): {counts}"
        )


def build_vocab(
    store: SampleStore, tokenizer: Any, draft_vocab_size: int, target_vocab_size: int, config: DataConfig = DataConfig()
) -> VocabMapping:
    """Count supervised tokens over the stored samples and pick the draft vocabulary (no caching)."""
    store.report.check(config.max_bad_fraction)
    supervised, seen = (torch.from_numpy(c) for c in store.token_counts(target_vocab_size))
    total = int(supervised.sum())
    if total == 0:
        raise ValueError("no supervised tokens in the data: nothing to build a draft vocabulary from")
    always = special_token_ids(tokenizer, seen)
    ids = select_draft_tokens(supervised, draft_vocab_size, always, seen)
    covered = int(supervised[ids].sum())
    metadata = {
        "tokenizer": tokenizer_name(tokenizer),
        "supervised_tokens": str(total),
        "coverage": f"{covered / total:.6f}",
        "records": str(store.report.records),
        "bad_records": json.dumps(store.report.counts()),
    }
    return build_vocab_mapping(ids, target_vocab_size, metadata)
