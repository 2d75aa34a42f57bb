"""Batches in-memory tensors by slicing: no Dataset, no per-sample ``__getitem__``, no collate.

For datasets that fit in memory this is several times faster than a DataLoader over a TensorDataset,
and the overhead benchmark (benchmarks/overhead.py) depends on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class TensorBatchLoader:
    """Iterates ``(x, y, ...)`` batches of equal-length tensors.

    Shuffling draws one permutation per epoch from its own generator (``seed + epoch``), so every DDP rank
    sees the same permutation and takes a disjoint shard of it: rank ``r`` of ``w`` takes positions
    ``r, r + w, ...``. Training shards are cut to equal length (DDP needs the same number of steps on every
    rank); evaluation shards are not padded, so torchmetrics sees every sample exactly once.

    Example::

        loader = TensorBatchLoader((x, y), batch_size=64, shuffle=True, seed=0)
        for xb, yb in loader: ...
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        equal_shards: bool = False,
        sampler_weights: torch.Tensor | None = None,
    ) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.equal_shards = equal_shards
        self.sampler_weights = sampler_weights
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        total = len(self.tensors[0])
        if self.world_size == 1:
            return total
        if self.equal_shards:
            return total // self.world_size
        return len(range(self.rank, total, self.world_size))

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def _indices(self) -> torch.Tensor | None:
        total = len(self.tensors[0])
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.sampler_weights is not None:
            # Class-balanced sampling: draw with replacement in proportion to the weights.
            order = torch.multinomial(self.sampler_weights, total, replacement=True, generator=generator)
        elif self.shuffle:
            order = torch.randperm(total, generator=generator)
        elif self.world_size == 1:
            return None
        else:
            order = torch.arange(total)
        if self.world_size > 1:
            order = order[self.rank :: self.world_size][: self.num_samples]
        return order.to(self.tensors[0].device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self._indices()
        self.epoch += 1
        # One gather per epoch, then every batch is a view: cheaper than a gather per batch.
        tensors = self.tensors if order is None else tuple(t[order] for t in self.tensors)
        for i in range(len(self)):
            start = i * self.batch_size
            yield tuple(t[start : start + self.batch_size] for t in tensors)
