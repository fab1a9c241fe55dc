"""Batch order: the token budget (``training.max_tokens``) and its rank sharding."""

from __future__ import annotations

import random

import pytest

from draftsmith.train.batches import budget_batches, rank_token_batches

LENGTHS = [random.Random(7).randint(5, 120) for _ in range(2000)]


@pytest.mark.parametrize("budget", [120, 500, 4096])
def test_budget_batches_fit_and_cover_each_sample_once(budget):
    for epoch in (0, 1):
        batches = rank_token_batches(LENGTHS, seed=3, epoch=epoch, max_tokens=budget, world_size=1, rank=0,
                                     accumulation=1)
        assert all(len(b) * max(LENGTHS[i] for i in b) <= budget for b in batches)
        assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))


def test_batches_are_length_grouped_and_deterministic():
    batches = rank_token_batches(LENGTHS, 3, 0, 1024, 1, 0, 1)
    assert batches == rank_token_batches(LENGTHS, 3, 0, 1024, 1, 0, 1)
    assert batches != rank_token_batches(LENGTHS, 3, 1, 1024, 1, 0, 1)
    padded = sum(len(b) * max(LENGTHS[i] for i in b) for b in batches)
    assert padded < 1.1 * sum(LENGTHS)  # grouping by length wastes under 10% on padding (random order: ~40%)


def test_ranks_split_whole_optimizer_steps():
    ranks = [rank_token_batches(LENGTHS, 3, 0, 1024, 3, rank, 2) for rank in range(3)]
    assert len({len(r) for r in ranks}) == 1 and len(ranks[0]) % 2 == 0  # the same number of micro-batches
    seen = [i for r in ranks for b in r for i in b]
    assert len(seen) == len(set(seen))  # no sample twice
    everything = rank_token_batches(LENGTHS, 3, 0, 1024, 1, 0, 1)
    assert len(seen) > len(LENGTHS) - 6 * max(len(b) for b in everything)  # at most one partial step dropped


def test_too_little_data_for_one_step_is_an_error():
    with pytest.raises(ValueError, match="fewer than one optimizer step"):
        rank_token_batches([10, 10], 0, 0, 100, 2, 0, 1)


def test_budget_batches_keep_order_and_refuse_oversized_samples():
    assert budget_batches([2, 0, 1], [30, 40, 50], 100) == [[2, 0], [1]]  # 2 x 50 fits, 3 x 50 does not
    with pytest.raises(ValueError, match="sample 1 has 60 tokens, more than max_tokens 50"):
        budget_batches([0, 1], [10, 60], 50)
