"""Deterministic batch order, sharded across ranks, resumable at any optimizer step.

The order of an epoch depends only on (seed, epoch), so a resumed run replays it and
skips the micro-batches it already consumed. Each global micro-batch of
``micro_batch_size * world_size`` samples is cut into contiguous per-rank slices, so N
ranks see exactly the global batch one process would see with N times the batch size.
With a token budget (``max_tokens``) micro-batches hold as many samples of like length as
fit instead (:func:`rank_token_batches`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def epoch_order(num_samples: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_samples, generator=generator).tolist()


def rank_micro_batches(
    order: list[int], micro_batch_size: int, world_size: int, rank: int, accumulation: int
) -> list[list[int]]:
    """This rank's micro-batches for one epoch; a trailing partial optimizer step is dropped."""
    global_micro = micro_batch_size * world_size
    per_step = global_micro * accumulation
    if len(order) < per_step:
        raise ValueError(
            f"{len(order)} training samples cannot fill one optimizer step of {per_step} "
            f"(micro_batch_size {micro_batch_size} x {world_size} ranks x gradient_accumulation {accumulation})"
        )
    groups = len(order) // per_step * accumulation
    start = rank * micro_batch_size
    return [order[g * global_micro + start: g * global_micro + start + micro_batch_size] for g in range(groups)]


def evaluation_batches(num_samples: int, micro_batch_size: int, world_size: int, rank: int) -> list[list[int]]:
    """Every validation sample exactly once across ranks, in order."""
    mine = list(range(rank, num_samples, world_size))
    return [mine[i: i + micro_batch_size] for i in range(0, len(mine), micro_batch_size)]


LENGTH_GROUP = 1024  # samples sorted by length together: batches of like lengths, order still shuffled


def budget_batches(indices: Sequence[int], lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Cut ``indices`` in order into batches whose padded size (count x longest) fits ``max_tokens``."""
    batches: list[list[int]] = []
    longest = 0
    for i in indices:
        length = int(lengths[i])
        if length > max_tokens:
            raise ValueError(f"sample {i} has {length} tokens, more than max_tokens {max_tokens}")
        if batches and (len(batches[-1]) + 1) * max(longest, length) <= max_tokens:
            batches[-1].append(i)
            longest = max(longest, length)
        else:
            batches.append([i])
            longest = length
    return batches


def rank_token_batches(
    lengths: Sequence[int], seed: int, epoch: int, max_tokens: int, world_size: int, rank: int, accumulation: int
) -> list[list[int]]:
    """This rank's micro-batches for one epoch under a token budget, length-grouped.

    The epoch's shuffled order is cut into groups of ``LENGTH_GROUP`` samples, each sorted
    longest first and cut into budget batches (little padding); the batches are shuffled
    again, so long and short ones alternate through the epoch. Global micro-batch ``g`` is
    batches ``g * world_size ...``, one per rank; a trailing partial optimizer step is dropped.
    Depends only on (seed, epoch), so a resumed run replays it.
    """
    order = epoch_order(len(lengths), seed, epoch)
    batches: list[list[int]] = []
    for start in range(0, len(order), LENGTH_GROUP):
        group = sorted(order[start:start + LENGTH_GROUP], key=lambda i: -int(lengths[i]))
        batches += budget_batches(group, lengths, max_tokens)
    shuffle = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed * 100_003 + epoch + 1))
    batches = [batches[k] for k in shuffle.tolist()]
    per_step = world_size * accumulation
    if len(batches) < per_step:
        raise ValueError(f"{len(lengths)} training samples make {len(batches)} micro-batches of max_tokens {max_tokens}, "
                         f"fewer than one optimizer step needs ({world_size} ranks x gradient_accumulation {accumulation})")
    used = len(batches) // per_step * per_step
    return batches[rank:used:world_size]
