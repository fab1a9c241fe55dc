"""Deterministic batch order, sharded across ranks, resumable at any optimizer step.

The order of an epoch depends only on (seed, epoch), so a resumed run replays it and
skips the micro-batches it already consumed. Each global micro-batch of
``micro_batch_size * world_size`` samples is cut into contiguous per-rank slices, so N
ranks see exactly the global batch one process would see with N times the batch size.
"""

from __future__ import annotations

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
