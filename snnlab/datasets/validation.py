"""The validation split: a seeded hold-out from the training split, for datasets that have none of their own.

Model selection (the best epoch) is made on it, never on the test split, which is only reported. The hold-out
depends on ``data.validation_seed`` alone (not on the run's seed), so runs that differ in anything else are
validated on the same samples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from ..sampling import RandomSamples
from .base import DatasetSplits


class HeldOut:
    """The seeded split of a dataset's indices into (train, validation), made on first use: an event dataset lists
    its files lazily, so that ``snnlab check`` works without the data."""

    def __init__(self, dataset: Dataset, fraction: float, seed: int) -> None:
        self.dataset, self.fraction, self.seed = dataset, fraction, seed
        self._parts: tuple[list[int], list[int]] | None = None

    def indices(self, part: int) -> list[int]:
        """Part 0 (train) or 1 (validation), in the dataset's order."""
        if self._parts is None:
            size = len(self.dataset)  # type: ignore[arg-type]
            held = max(1, round(self.fraction * size))
            order = torch.randperm(size, generator=torch.Generator().manual_seed(self.seed)).tolist()
            self._parts = sorted(order[held:]), sorted(order[:held])
        return self._parts[part]


class Part(Dataset):
    """One part of a ``HeldOut`` split; random samples still draw from the generator they are given."""

    def __init__(self, split: HeldOut, part: int) -> None:
        self.split, self.part = split, part

    def __len__(self) -> int:
        return len(self.split.indices(self.part))

    def __getitem__(self, index: int) -> Any:
        return self.split.dataset[self.split.indices(self.part)[index]]

    def sample(self, index: int, generator: torch.Generator) -> Any:
        dataset, i = self.split.dataset, self.split.indices(self.part)[index]
        return dataset.sample(i, generator) if isinstance(dataset, RandomSamples) else dataset[i]


def with_validation(splits: DatasetSplits, fraction: float, seed: int) -> DatasetSplits:
    """``splits`` with ``fraction`` of its training samples (at least one, a seeded random choice) moved to a
    validation split; with ``fraction`` 0 or a split of its own, unchanged."""
    if splits.validation is not None or fraction == 0:
        return splits
    split = HeldOut(splits.train, fraction, seed)
    return splits._replace(train=Part(split, 0), validation=Part(split, 1))
