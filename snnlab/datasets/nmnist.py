"""N-MNIST (Orchard et al. 2015): MNIST digits shown to an ATIS camera moving in three saccades; 34 x 34, 2 polarities, 10 classes.

Files as tonic lays them out: ``<root>/NMNIST/Train/<digit>/*.bin`` and ``<root>/NMNIST/Test/<digit>/*.bin``,
read by tonic's ``read_mnist_file``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataFileError
from .augment import NO_AUGMENT, AugmentOptions
from .base import DatasetSplits
from .data_root import Expected
from .event_dataset import EventSource, Sample, event_splits, require_tonic
from .frames import DEFAULT_FRAMES, FrameOptions, Sensor

FIRST_SACCADE_US = 100_000  # the cut-off of tonic's NMNIST(first_saccade_only=True)


def _list(folder: Path, split: str) -> list[Sample]:
    """The ``.bin`` files of each class folder ``0`` to ``9``; any other folder there is an error naming it."""
    sub = folder / ("Train" if split == "train" else "Test")
    samples = []
    for digit in sorted(p for p in sub.iterdir() if p.is_dir()):
        if not (digit.name.isascii() and digit.name.isdigit()):
            raise DataFileError(
                f"{digit}: N-MNIST's {sub.name} folder holds one folder per class, named by its digit "
                f"({sub / '0'} to {sub / '9'}); found {digit.name!r}: rename or remove it"
            )
        samples += [Sample(p, int(digit.name)) for p in sorted(digit.glob("*.bin"))]
    return samples


def _read(sample: Sample, first_saccade_only: bool) -> np.ndarray:
    from tonic.io import events_struct, read_mnist_file

    size = os.path.getsize(sample.path)
    if size % 5:
        raise ValueError(f"{size} bytes is not a whole number of 5-byte events: the file is truncated")
    events = read_mnist_file(str(sample.path), dtype=events_struct)
    return events[events["t"] < FIRST_SACCADE_US] if first_saccade_only else events


def nmnist(
    root: str | None = None,
    frames: FrameOptions = DEFAULT_FRAMES,
    augment: AugmentOptions = NO_AUGMENT,
    cache: bool | str = True,
    first_saccade_only: bool = False,
) -> DatasetSplits:
    """N-MNIST's 60,000 training and 10,000 test recordings as frames ``[T, 2, 34, 34]``.

    Args:
        root: the data root (default: ``$SNNLAB_DATA``, else ``~/.cache/snnlab/data``).
        frames: how events become frames (``FrameOptions``).
        augment: random changes to the training recordings (``AugmentOptions``).
        cache: keep converted frames on disk: true (under ``<root>/cache``), false, or a folder.
        first_saccade_only: keep the first 100 ms (one of the three saccades), as tonic's option.
    """
    NMNIST = require_tonic().datasets.NMNIST
    source = EventSource(
        name="nmnist",
        title="N-MNIST",
        folder="NMNIST",
        sensor=Sensor(*NMNIST.sensor_size),
        kind="camera",
        num_classes=len(NMNIST.classes),
        files={
            "train": [Expected("Train", NMNIST.train_filename, NMNIST.train_url, "<digit>/*.bin")],
            "test": [Expected("Test", NMNIST.test_filename, NMNIST.test_url, "<digit>/*.bin")],
        },
        list_samples=_list,
        read=_read,
        options={"first_saccade_only": first_saccade_only},
    )
    return event_splits(source, root, frames, augment, cache)
