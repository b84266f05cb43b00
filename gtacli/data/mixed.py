"""Mixed-dataset sampling (docs/reproduction.md §6.5, "Product decisions" 4).

An epoch is `num_data` draws **with replacement** across all ranks: each draw picks a dataset with the
normalised partition (GTA 50 % in `gta-spin-ft`) and then a sample uniformly inside it. Unlike mmhuman3d
(which draws inside `__getitem__` from the worker's RNG), the draws here are a pure function of
(seed, epoch, global position):

* reproducible, independent of the number of data-loader workers;
* the *global* sequence does not depend on the number of ranks: global step k covers global positions
  [k·W·B, (k+1)·W·B) and rank r takes the r-th block of B. One process with batch W·B therefore sees exactly
  the samples that W processes with batch B see together (what the DDP test compares);
* resumable: `set_epoch(epoch, start=position)` skips the draws this rank already consumed.

Every draw also carries its own augmentation seed (so the pipeline's RNG draws of docs/reproduction.md §11 are replayable).
Per rank, an epoch has `ceil(num_data / world_size)` samples (mmhuman3d's DistributedSampler rounds up), in
batches of `batch_size` with a last partial batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import DataLoader

from gtacli.layout import TRAIN_DATASETS

# Independent streams of uniform doubles per (seed, epoch); each value at global position g is the g-th
# double of its stream, so prefixes agree whatever the total length generated.
_STREAM_DATASET, _STREAM_INDEX, _STREAM_AUGMENT = 0, 1, 2
_AUG_SEED_RANGE = 2**32


@dataclass(frozen=True)
class MixConfig:
    """Which datasets are mixed and how: the recipe's `data` part (names from `gtacli.layout.TRAIN_DATASETS`)."""

    datasets: Tuple[str, ...]
    partition: Tuple[float, ...]  # one weight per dataset, normalised by its sum at sampling time
    workers: int = 2  # data-loader workers per process (mmhuman3d workers_per_gpu)
    prefetch_factor: int = 2
    # datasets whose static fits are never read (every sample has GT SMPL, docs/reproduction.md decision 3)
    fits_missing_ok: Tuple[str, ...] = ()

    @property
    def normalized_partition(self) -> Tuple[float, ...]:
        total = float(sum(self.partition))
        return tuple(p / total for p in self.partition)

    def validate(self) -> None:
        """ValueError naming what is wrong."""
        if not self.datasets or len(self.datasets) != len(self.partition):
            raise ValueError(f"{len(self.datasets)} datasets but {len(self.partition)} partition values")
        unknown = [d for d in self.datasets if d not in TRAIN_DATASETS]
        if unknown:
            raise ValueError(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(TRAIN_DATASETS)}")
        if any(p < 0 for p in self.partition) or sum(self.partition) <= 0:
            raise ValueError("partition values must be >= 0 with a positive sum")
        if self.workers < 0 or self.prefetch_factor < 1:
            raise ValueError("workers must be >= 0 and prefetch_factor >= 1")


class Draw(NamedTuple):
    """One sample of an epoch: dataset number (recipe order), index within it, augmentation seed, position."""

    dataset: int
    index: int
    seed: int
    position: int  # global position in the epoch


def _uniform_stream(seed: int, epoch: int, stream: int, count: int) -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch), stream])))
    return rng.random(count)


def epoch_draws(
    lengths: Sequence[int], partition: Sequence[float], seed: int, epoch: int, count: int
) -> Dict[str, np.ndarray]:
    """The first `count` global draws of an epoch: {'dataset' (count,), 'index' (count,), 'seed' (count,)}."""
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    probs = np.asarray(partition, dtype=np.float64)
    if probs.ndim != 1 or len(probs) != len(lengths_arr) or probs.sum() <= 0 or (probs < 0).any():
        raise ValueError("partition must be non-negative, one value per dataset, with a positive sum")
    probs = probs / probs.sum()
    probs[lengths_arr == 0] = 0.0  # an empty dataset can never be drawn
    if probs.sum() <= 0:
        raise ValueError("every dataset with a positive partition is empty")
    probs = probs / probs.sum()
    cdf = np.cumsum(probs)
    cdf[-1] = 1.0
    u_ds = _uniform_stream(seed, epoch, _STREAM_DATASET, count)
    dataset = np.searchsorted(cdf, u_ds, side="right").astype(np.int64)
    dataset = np.minimum(dataset, len(cdf) - 1)
    # guard against landing on a zero-probability dataset at a cdf plateau
    while (probs[dataset] == 0).any():
        bad = probs[dataset] == 0
        dataset[bad] += 1
        dataset = np.minimum(dataset, len(cdf) - 1)
    u_idx = _uniform_stream(seed, epoch, _STREAM_INDEX, count)
    index = np.minimum((u_idx * lengths_arr[dataset]).astype(np.int64), lengths_arr[dataset] - 1)
    aug = (_uniform_stream(seed, epoch, _STREAM_AUGMENT, count) * _AUG_SEED_RANGE).astype(np.int64)
    return {"dataset": dataset, "index": index, "seed": aug}


class MixedBatchSampler:
    """Batches of `Draw`s for one rank; deterministic per (seed, epoch, rank), resumable by position."""

    def __init__(
        self,
        lengths: Sequence[int],
        partition: Sequence[float],
        *,
        num_data: int,
        batch_size: int,
        seed: int,
        world_size: int = 1,
        rank: int = 0,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.lengths = [int(n) for n in lengths]
        self.partition = [float(p) for p in partition]
        self.num_data = int(num_data)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.epoch = 0
        self.start = 0
        self.samples_per_rank = math.ceil(self.num_data / self.world_size)
        self.steps_per_epoch = math.ceil(self.samples_per_rank / self.batch_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and skip the first `start` samples this rank already consumed."""
        if not 0 <= start <= self.samples_per_rank:
            raise ValueError(f"start {start} outside 0..{self.samples_per_rank}")
        self.epoch = int(epoch)
        self.start = int(start)

    def global_position(self, local: np.ndarray) -> np.ndarray:
        """Global epoch position of this rank's local positions (rank r takes block r of every global step)."""
        local = np.asarray(local, dtype=np.int64)
        block, offset = np.divmod(local, self.batch_size)
        return block * (self.world_size * self.batch_size) + self.rank * self.batch_size + offset

    def local_draws(self) -> List[Draw]:
        """All of this rank's draws of the current epoch, in order (including those before `start`)."""
        local = np.arange(self.samples_per_rank)
        positions = self.global_position(local)
        count = int(positions.max()) + 1 if len(positions) else 0
        draws = epoch_draws(self.lengths, self.partition, self.seed, self.epoch, count)
        return [
            Draw(int(draws["dataset"][g]), int(draws["index"][g]), int(draws["seed"][g]), int(g))
            for g in positions
        ]

    def __iter__(self) -> Iterator[List[Draw]]:
        draws = self.local_draws()
        position = self.start
        while position < self.samples_per_rank:
            # batches stay on the epoch's batch grid, so a resumed epoch has the same batches as an unbroken one
            end = min((position // self.batch_size + 1) * self.batch_size, self.samples_per_rank)
            yield draws[position:end]
            position = end

    def __len__(self) -> int:
        first_full = math.ceil(self.start / self.batch_size) * self.batch_size
        partial = 1 if first_full > self.start and self.start < self.samples_per_rank else 0
        return partial + math.ceil(max(self.samples_per_rank - first_full, 0) / self.batch_size)


class MixedDataset:
    """Map-style dataset indexed by `Draw`: dataset `d`, sample `i`, augmented with RNG seed `s`.

    `datasets[d]` must offer `sample(index, rng) -> dict` (see `gtacli.data.train_dataset`).
    """

    def __init__(self, datasets: Sequence[Any], num_data: int):
        self.datasets = list(datasets)
        self.num_data = int(num_data)

    def __len__(self) -> int:
        return self.num_data

    def __getitem__(self, draw: Draw) -> Dict[str, Any]:
        # numpy's legacy RandomState: the pipeline's draw order and distributions follow docs/reproduction.md §11
        rng = np.random.RandomState(int(draw.seed) % _AUG_SEED_RANGE)
        return self.datasets[draw.dataset].sample(int(draw.index), rng)


def make_loader(
    dataset: MixedDataset,
    sampler: MixedBatchSampler,
    collate_fn: Callable[[List[Dict[str, Any]]], Dict[str, Any]],
    *,
    workers: int,
    prefetch_factor: int = 2,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    worker_init_fn: Optional[Callable[[int], None]] = None,
    generator: Any = None,
):
    """A torch DataLoader over the batch sampler (workers and prefetching; the order is fixed by the sampler)."""
    kwargs: Dict[str, Any] = {}
    if workers > 0:
        kwargs.update(prefetch_factor=prefetch_factor, persistent_workers=persistent_workers)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        worker_init_fn=worker_init_fn,
        generator=generator,
        **kwargs,
    )
