"""Spiking Heidelberg Digits (Cramer et al. 2020): spoken digits 0-9 in English and German through a
cochlea model; 700 input channels, 20 classes.

Files as tonic lays them out: ``<root>/SHD/shd_train.h5`` and ``shd_test.h5`` (unzipped). The HDF5
layout (``spikes/times`` in seconds and ``spikes/units``, one ragged row per sample; ``labels``) is
shared with SSC, whose builder reuses the reader here.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from .augment import NO_AUGMENT, AugmentOptions
from .base import DatasetSplits
from .data_root import Expected
from .event_dataset import EventSource, Sample, event_splits, naming, regular_file, require_tonic
from .frames import DEFAULT_FRAMES, FrameOptions, Sensor

CHANNEL_EVENTS = np.dtype([("x", np.int16), ("t", np.int64), ("p", bool)])

PROBE_ROWS = 16
"""Rows, spread over a file, read when it is listed: all of them empty means the file's spike data is gone (a
single empty row may be a silent recording, so it is served as one)."""


def heidelberg_samples(path: Path) -> list[Sample]:
    """One sample per row of an SHD/SSC file, labelled from its ``labels``; a file whose rows hold no spikes (probed
    at ``PROBE_ROWS`` rows) is refused."""
    import h5py

    regular_file(path, "Heidelberg spike")
    with naming(path, "Heidelberg spike"), h5py.File(path, "r") as f:
        labels = f["labels"][()]
        if len(f["spikes/times"]) != len(labels) or len(f["spikes/units"]) != len(labels):
            raise ValueError("spikes/times, spikes/units and labels differ in length")
        probe = np.unique(np.linspace(0, len(labels) - 1, min(len(labels), PROBE_ROWS)).astype(int))
        if len(probe) and not any(len(f["spikes/times"][i]) for i in probe):
            raise ValueError(f"none of {len(probe)} rows probed across the file holds a spike: its spike data is empty")
    return [Sample(path, int(label), (i,)) for i, label in enumerate(labels)]


def read_heidelberg(sample: Sample) -> np.ndarray:
    """Row ``sample.part[0]`` as channel events: x = unit, t = time in µs (as tonic's HSD reader), p = 1."""
    import h5py
    from tonic.io import make_structured_array

    (row,) = sample.part
    with h5py.File(sample.path, "r") as f:
        times, units = f["spikes/times"][row], f["spikes/units"][row]
    if len(times) != len(units):
        raise ValueError(f"row {row} has {len(times)} spike times but {len(units)} units")
    if not np.isfinite(times).all() or (times < 0).any():
        bad = times[~(np.isfinite(times) & (times >= 0))][:3].tolist()
        raise ValueError(f"row {row} has spike times {bad}; expected finite times >= 0 (seconds)")
    return make_structured_array(units, times.astype(np.float64) * 1e6, True, dtype=CHANNEL_EVENTS)


def _list(folder: Path, split: str, prefix: str) -> list[Sample]:
    return heidelberg_samples(folder / f"{prefix}_{split}.h5")


def heidelberg_source(name: str, title: str, splits: tuple[str, ...], num_classes: int, cls: type) -> EventSource:
    """SHD or SSC, described from tonic's class ``cls`` (its folder name, sensor and download constants)."""

    def expected(split: str) -> Expected:
        archive = f"{name}_{split}.h5.zip"
        return Expected(f"{name}_{split}.h5", archive, cls.base_url + archive)

    return EventSource(
        name=name,
        title=title,
        folder=cls.__name__,
        sensor=Sensor(*cls.sensor_size),
        kind="channels",
        num_classes=num_classes,
        files={split: [expected(split)] for split in splits},
        list_samples=partial(_list, prefix=name),
        read=read_heidelberg,
    )


def shd(
    root: str | None = None,
    frames: FrameOptions = DEFAULT_FRAMES,
    augment: AugmentOptions = NO_AUGMENT,
    cache: bool | str = True,
) -> DatasetSplits:
    """SHD's 8,156 training and 2,264 test recordings as ``[T, 700]`` spike counts per channel and bin.

    Args:
        root: the data root (default: ``$SNNLAB_DATA``, else ``~/.cache/snnlab/data``).
        frames: time binning (``FrameOptions``; ``downsample`` merges neighbouring channels).
        augment: random changes to the training recordings (time jitter, dropped spikes).
        cache: keep converted frames on disk: true (under ``<root>/cache``), false, or a folder.
    """
    tonic = require_tonic()
    source = heidelberg_source("shd", "SHD", ("train", "test"), 20, tonic.datasets.SHD)
    return event_splits(source, root, frames, augment, cache)
