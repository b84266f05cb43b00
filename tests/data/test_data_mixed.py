"""Mixed sampling (docs/reproduction.md §6.5): proportions, reproducibility, rank split, resume."""

from __future__ import annotations

import numpy as np
import pytest

from gtacli.data.mixed import MixedBatchSampler, epoch_draws

LENGTHS = [300, 100, 10, 95, 148, 283, 1000]
PARTITION = [0.35, 0.15, 0.1, 0.1, 0.1, 0.2, 1.0]  # gta-spin-ft, sum 2.0


def _flat(sampler):
    return [d for batch in sampler for d in batch]


def test_dataset_proportions_follow_the_normalised_partition():
    draws = epoch_draws(LENGTHS, PARTITION, seed=0, epoch=0, count=200_000)
    counts = np.bincount(draws["dataset"], minlength=7) / 200_000
    np.testing.assert_allclose(counts, np.array(PARTITION) / 2.0, atol=0.004)
    # uniform within a dataset, indices in range
    for d, n in enumerate(LENGTHS):
        idx = draws["index"][draws["dataset"] == d]
        assert idx.min() >= 0 and idx.max() < n
    small = draws["index"][draws["dataset"] == 2]
    np.testing.assert_allclose(np.bincount(small, minlength=10) / len(small), 0.1, atol=0.01)


def test_draws_are_reproducible_and_change_with_seed_and_epoch():
    a = epoch_draws(LENGTHS, PARTITION, 3, 1, 500)
    b = epoch_draws(LENGTHS, PARTITION, 3, 1, 500)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["index"], epoch_draws(LENGTHS, PARTITION, 4, 1, 500)["index"])
    assert not np.array_equal(a["index"], epoch_draws(LENGTHS, PARTITION, 3, 2, 500)["index"])
    # a prefix does not depend on how many draws are generated
    longer = epoch_draws(LENGTHS, PARTITION, 3, 1, 2000)
    np.testing.assert_array_equal(longer["seed"][:500], a["seed"])


def test_epoch_size_and_rank_split():
    one = MixedBatchSampler(LENGTHS, PARTITION, num_data=10, batch_size=4, seed=0)
    assert [len(b) for b in one] == [4, 4, 2] and len(one) == 3
    ranks = [
        MixedBatchSampler(LENGTHS, PARTITION, num_data=10, batch_size=2, seed=0, world_size=2, rank=r)
        for r in (0, 1)
    ]
    assert all(r.samples_per_rank == 5 and len(r) == 3 for r in ranks)
    # ranks never share a global position, and together with a one-process run of the same global batch
    # they see the same samples step by step
    single = MixedBatchSampler(LENGTHS, PARTITION, num_data=12, batch_size=4, seed=0)
    pair = [
        MixedBatchSampler(LENGTHS, PARTITION, num_data=12, batch_size=2, seed=0, world_size=2, rank=r)
        for r in (0, 1)
    ]
    for step, (b0, b1, b) in enumerate(zip(*(list(s) for s in pair), single)):
        assert [d.position for d in b0 + b1] == list(range(4 * step, 4 * step + 4))
        assert b0 + b1 == b


def test_resume_position_continues_the_same_sequence():
    full = MixedBatchSampler(LENGTHS, PARTITION, num_data=20, batch_size=3, seed=5)
    full.set_epoch(2)
    everything = _flat(full)
    for start in (0, 3, 7, 20):
        part = MixedBatchSampler(LENGTHS, PARTITION, num_data=20, batch_size=3, seed=5)
        part.set_epoch(2, start=start)
        batches = list(part)
        assert len(batches) == len(part)
        assert [d for b in batches for d in b] == everything[start:]
    # a resumed epoch keeps the batch grid: after start 7 the first batch is the rest of batch 2
    part.set_epoch(2, start=7)
    assert [len(b) for b in part][:2] == [2, 3]


def test_bad_rank_and_start():
    with pytest.raises(ValueError):
        MixedBatchSampler(LENGTHS, PARTITION, num_data=4, batch_size=2, seed=0, world_size=2, rank=2)
    s = MixedBatchSampler(LENGTHS, PARTITION, num_data=4, batch_size=2, seed=0)
    with pytest.raises(ValueError):
        s.set_epoch(0, start=5)
