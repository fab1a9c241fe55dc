"""The draft↔target vocabulary mapping, in one place: ``d2t``, ``t2d``, their checks and the size cap.

An EAGLE-3 draft predicts over ``N`` of the target's ``V`` tokens. Checkpoints that SGLang
and vLLM load store the mapping as two tensors:

- ``d2t`` (int64 ``[N]``): an *offset* per draft id, ``target_id = draft_id + d2t[draft_id]``;
- ``t2d`` (bool ``[V]``): ``True`` for the target ids the draft can emit.

Draft ids follow target ids in ascending order. This module sits at the bottom of the
package (layer 0, beside :mod:`draftsmith.atomic`) so that the model, the data, the target
capture and the trainer all use the same rules instead of each spelling them out again.
See ``docs/checkpoint-format.md``.
"""

from __future__ import annotations

import torch

DEFAULT_DRAFT_VOCAB_SIZE = 32000


class VocabMappingError(ValueError):
    """A ``d2t`` / ``t2d`` pair or a list of draft token ids that cannot be a draft vocabulary."""


def capped_draft_vocab_size(requested: int | None, target_vocab_size: int) -> int:
    """The draft vocabulary size to use: ``requested`` (default 32000), never more than the target's.

    A recipe written for gpt-oss (32000) must still run against a tiny target of 512 tokens:
    a draft vocabulary as large as the target's is the whole vocabulary, not an error.
    """
    size = DEFAULT_DRAFT_VOCAB_SIZE if requested is None else requested
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise VocabMappingError(f"draft vocab size must be a positive integer, got {size!r}")
    return min(size, int(target_vocab_size))


def target_ids_from_d2t(d2t: torch.Tensor) -> torch.Tensor:
    """Target id of every draft id, in draft-id order (on ``d2t``'s device)."""
    d2t = torch.as_tensor(d2t).long().view(-1)
    return torch.arange(d2t.numel(), device=d2t.device) + d2t


def draft_to_target(draft_ids: torch.Tensor, d2t: torch.Tensor) -> torch.Tensor:
    """Target ids of a tensor of draft ids (any shape)."""
    return draft_ids + d2t[draft_ids]


def mapping_from_target_ids(target_ids: list[int] | torch.Tensor, target_vocab_size: int
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d2t, t2d)`` for a set of distinct target ids (sorted here: draft ids ascend with target ids)."""
    ids = torch.as_tensor(target_ids, dtype=torch.long).view(-1)
    ids = check_target_ids(ids, target_vocab_size).sort().values
    t2d = torch.zeros(target_vocab_size, dtype=torch.bool)
    t2d[ids] = True
    return ids - torch.arange(ids.numel()), t2d


def t2d_from_d2t(d2t: torch.Tensor, target_vocab_size: int) -> torch.Tensor:
    """The membership mask ``t2d`` implied by ``d2t``."""
    t2d = torch.zeros(target_vocab_size, dtype=torch.bool)
    t2d[check_target_ids(target_ids_from_d2t(d2t).cpu(), target_vocab_size)] = True
    return t2d


def check_target_ids(ids: torch.Tensor, target_vocab_size: int) -> torch.Tensor:
    """A non-empty 1-D integer tensor of distinct ids inside ``[0, target_vocab_size)``, as int64."""
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or ids.numel() == 0 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise VocabMappingError(
            f"draft token ids must be a non-empty 1-D integer tensor, got {tuple(ids.shape)} {ids.dtype}")
    ids = ids.long()
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= target_vocab_size:
        bad = high if high >= target_vocab_size else low
        raise VocabMappingError(
            f"draft vocabulary holds target id {bad}, outside the target vocab_size={target_vocab_size}")
    if ids.unique().numel() != ids.numel():
        raise VocabMappingError("the draft vocabulary repeats a target id; each draft id needs its own target id")
    return ids


def check_mapping(d2t: torch.Tensor, t2d: torch.Tensor | None, target_vocab_size: int,
                  draft_vocab_size: int | None = None, source: str = "vocab mapping"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a mapping and return it as ``(int64 d2t, bool t2d)`` on the CPU; a missing ``t2d`` is derived.

    ``d2t`` must map every draft id to a distinct target id inside the target vocabulary,
    and ``t2d`` (checkpoints store both) must mark exactly those ids.
    """
    d2t = torch.as_tensor(d2t).cpu()
    if d2t.dim() != 1 or d2t.dtype.is_floating_point or d2t.dtype == torch.bool:
        raise VocabMappingError(f"{source}: d2t must be a 1-D integer tensor, got {tuple(d2t.shape)} {d2t.dtype}")
    if draft_vocab_size is not None and d2t.numel() != draft_vocab_size:
        raise VocabMappingError(f"{source}: d2t has {d2t.numel()} entries, draft_vocab_size is {draft_vocab_size}")
    try:
        ids = check_target_ids(target_ids_from_d2t(d2t), target_vocab_size)
    except VocabMappingError as error:
        raise VocabMappingError(f"{source}: {error}") from None
    if t2d is None:
        return d2t.long(), t2d_from_d2t(d2t, target_vocab_size)
    t2d = torch.as_tensor(t2d).cpu()
    if t2d.shape != (target_vocab_size,):
        raise VocabMappingError(f"{source}: t2d has shape {tuple(t2d.shape)}, the target vocab_size is "
                                f"{target_vocab_size}")
    if not torch.equal(ids.sort().values, torch.nonzero(t2d.bool()).flatten()):
        raise VocabMappingError(f"{source}: d2t and t2d disagree about which target ids are in the draft vocabulary")
    return d2t.long(), t2d.bool()


def same_mapping(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> bool:
    """Whether two ``(d2t, t2d)`` pairs are the same vocabulary."""
    return all(torch.equal(x.cpu().long(), y.cpu().long()) for x, y in zip(a, b))
