"""Micro-batches through a ``torch.utils.data.DataLoader``: samples read and padded off the training loop.

The batch order is decided by :mod:`draftsmith.train.batches` (deterministic and resumable);
the loader only reads those batches from the sample store and pads them, in
``training.dataloader_workers`` processes when asked. The samples are a store view that
pickles as its directory, so workers map the store instead of copying it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial

from torch.utils.data import DataLoader, Dataset

from draftsmith.data import Sample
from draftsmith.train.objective import TokenBatch


class IndexedSamples(Dataset):
    """``dataset[i] -> (i, sample)``: the index travels with the sample, for offline features."""

    def __init__(self, samples: Sequence[Sample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, Sample]:
        return index, self.samples[index]


def collate(items: list[tuple[int, Sample]], pad_token_id: int) -> tuple[list[int], TokenBatch]:
    return [i for i, _ in items], TokenBatch.from_samples([s for _, s in items], pad_token_id)


def load_batches(
    samples: Sequence[Sample], batches: list[list[int]], pad_token_id: int, workers: int = 0
) -> Iterator[tuple[list[int], TokenBatch]]:
    """``(indices, padded CPU batch)`` for each of ``batches``, in order."""
    if not batches:
        return iter(())
    return iter(DataLoader(IndexedSamples(samples), batch_sampler=batches, num_workers=workers,
                           collate_fn=partial(collate, pad_token_id=pad_token_id)))
