"""Which samples each process trains on, in which order, from which position, with which random draws.

``EpochSampler`` yields ``(epoch, index)``: a permutation fixed by ``(seed, epoch)``, the
share of this process (rank) of it, from any position, so a resumed run picks up at the
batch where it stopped. ``SeededSamples`` gives each sample a generator of its own,
seeded by ``(seed, epoch, index)`` (see ``snnlab.seeding``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import Dataset, Sampler

from .seeding import epoch_seed, sample_seed


@runtime_checkable
class RandomSamples(Protocol):
    """A dataset whose samples are random (encoding, augmentation) draws them from the generator it is given."""

    def sample(self, index: int, generator: torch.Generator) -> Any: ...


class SeededSamples(Dataset):
    """``dataset`` indexed by ``(epoch, index)``; random samples draw from a generator seeded by both and ``seed``."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if isinstance(self.dataset, RandomSamples):
            return self.dataset.sample(index, torch.Generator().manual_seed(sample_seed(self.seed, epoch, index)))
        return self.dataset[index]


class EpochSampler(Sampler[tuple[int, int]]):
    """This process's share of one epoch's order, as ``(epoch, index)`` pairs, starting at ``start``.

    Training (``shuffle``): every rank gets the same number of samples, the order padded
    by repeating its head (as ``DistributedSampler`` does) or cut with ``drop_last``; rank
    r takes positions r, r + world, ..., so world x batch b covers what one process with
    batch world x b would. Evaluation (no shuffle): the fixed order, split without padding.
    """

    def __init__(
        self, size: int, seed: int, *, shuffle: bool, rank: int = 0, world: int = 1, drop_last: bool = False
    ) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world, self.drop_last = rank, world, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Serve epoch ``epoch`` from this rank's ``start``-th sample on."""
        self.epoch, self.start = epoch, start

    @property
    def total(self) -> int:
        """Length of the whole epoch's order over all ranks (padded or cut to equal shares when training)."""
        if not self.shuffle or self.world == 1:
            return self.size
        shares = self.size // self.world if self.drop_last else -(-self.size // self.world)
        return shares * self.world

    def order(self) -> list[int]:
        """The whole epoch's order, before it is split between ranks."""
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return (torch.randperm(self.size, generator=generator).tolist() * 2)[: self.total]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        share = self.order()[self.rank :: self.world]
        return ((self.epoch, i) for i in share[self.start :])

    def __len__(self) -> int:
        return len(range(self.rank, self.total, self.world)) - self.start
