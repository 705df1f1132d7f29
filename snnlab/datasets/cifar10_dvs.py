"""CIFAR10-DVS (Li et al. 2017): 10,000 CIFAR-10 images (1,000 per class) moved on a monitor in front of a
DVS128; 128 x 128, 2 polarities, 10 classes. There is no official test split: the last
``1 - train_fraction`` of each class (by file number) is the test set, as SpikingJelly splits it.

Files: ``<root>/CIFAR10DVS/<class>/`` for the 10 classes (``airplane`` ... ``truck``), holding either the
original release's ``cifar10_<class>_<n>.aedat`` (jAER AEDAT 2.0; one zip per class) or tonic's
repackaged ``.aedat4`` files (read by tonic with the ``aedat`` package: ``pip install aedat``).
"""

from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from .augment import NO_AUGMENT, AugmentOptions
from .base import DatasetSplits
from .data_root import Expected
from .event_dataset import EventSource, Sample, event_splits, require_tonic
from .frames import DEFAULT_FRAMES, FrameOptions, Sensor

URL = "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671"
SUFFIXES = (".aedat", ".aedat4")


def _number(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def _list(folder: Path, split: str, classes: tuple[str, ...], train_fraction: float) -> list[Sample]:
    samples = []
    for label, name in enumerate(classes):
        files = sorted((p for p in (folder / name).iterdir() if p.suffix in SUFFIXES), key=_number)
        cut = round(len(files) * train_fraction)
        samples += [Sample(p, label) for p in (files[:cut] if split == "train" else files[cut:])]
    return samples


def read_aedat2_cifar10dvs(path: str) -> np.ndarray:
    """Events of an original CIFAR10-DVS file: jAER AEDAT 2.0, decoded by tonic, with the DVS128 address bits
    mapped as SpikingJelly's ``CIFAR10DVS`` does (x = 127 - bits 8-14, y = 127 - bits 1-7, p = 1 - bit 0)."""
    from tonic.io import events_struct, get_aer_events_from_file, make_structured_array, read_aedat_header_from_file

    version, start, _ = read_aedat_header_from_file(path)
    if not 2 <= version < 3:
        raise ValueError(f"expected an AEDAT 2.0 file, found version {version}")
    if (os.path.getsize(path) - start) % 8:
        raise ValueError("the events are not a whole number of 8-byte records: the file is truncated")
    raw = get_aer_events_from_file(path, version, start)
    a = raw["address"]
    x, y, p = 127 - ((a >> 8) & 0x7F), 127 - ((a >> 1) & 0x7F), 1 - (a & 1)
    t = raw["timeStamp"].astype(np.int64)
    return make_structured_array(x, y, t - (t[0] if len(t) else 0), p, dtype=events_struct)


def read_aedat4_events(path: str) -> np.ndarray:
    """Events of an AEDAT 4 file (tonic's ``read_aedat4``), with times from the first event."""
    from tonic.io import events_struct, make_structured_array, read_aedat4

    try:
        import aedat  # noqa: F401
    except ImportError:
        raise ImportError(".aedat4 files are read with the aedat package: pip install aedat") from None
    raw = read_aedat4(path)
    t = raw["t"].astype(np.int64)
    return make_structured_array(raw["x"], raw["y"], t - (t[0] if len(t) else 0), raw["on"], dtype=events_struct)


def _read(sample: Sample) -> np.ndarray:
    path = str(sample.path)
    return read_aedat4_events(path) if path.endswith(".aedat4") else read_aedat2_cifar10dvs(path)


def cifar10_dvs(
    root: str | None = None,
    frames: FrameOptions = DEFAULT_FRAMES,
    augment: AugmentOptions = NO_AUGMENT,
    cache: bool | str = True,
    train_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.9,
) -> DatasetSplits:
    """CIFAR10-DVS as frames ``[T, 2, 128, 128]``, split per class by file number.

    Args:
        root: the data root (default: ``$SNNLAB_DATA``, else ``~/.cache/snnlab/data``).
        frames: how events become frames (``FrameOptions``).
        augment: random changes to the training recordings (``AugmentOptions``).
        cache: keep converted frames on disk: true (under ``<root>/cache``), false, or a folder.
        train_fraction: share of each class used for training (0.9: 9,000 train, 1,000 test).
    """
    CIFAR10DVS = require_tonic().datasets.CIFAR10DVS
    classes = tuple(sorted(CIFAR10DVS.classes, key=CIFAR10DVS.classes.get))
    expected = [Expected(name, f"{name}.zip", URL, "*.aedat") for name in classes]
    source = EventSource(
        name="cifar10_dvs",
        title="CIFAR10-DVS",
        folder="CIFAR10DVS",
        sensor=Sensor(*CIFAR10DVS.sensor_size),
        kind="camera",
        num_classes=len(classes),
        files={"train": expected, "test": expected},
        list_samples=partial(_list, classes=classes, train_fraction=train_fraction),
        read=_read,
        note=f"tonic's repackaged .aedat4 files ({CIFAR10DVS.url}, unzipped, then each class zip) work too.",
    )
    return event_splits(source, root, frames, augment, cache)
