"""What the event datasets share: a dataset's description (``EventSource``), the torch ``Dataset`` that
serves its frames, and ``event_splits``, which each dataset's builder calls.

A dataset file only says where its files are, how to list its samples and how to read one
recording into tonic's structured events; everything else (framing, caching, augmentation,
offline errors, naming a damaged file) happens here, the same way for all.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataFileError, MissingDataError, SnnlabError
from .augment import AugmentOptions
from .base import DatasetSplits, check_sample_size
from .data_root import DataRoot, Expected, data_root, missing, missing_data_error
from .frame_cache import DiskCache, digest
from .frames import (
    FrameOptions,
    Kind,
    Sensor,
    apply,
    frame_shape,
    frame_transform,
    geometry,
    input_shape,
    prepare_transforms,
    to_frames,
)


class Sample(NamedTuple):
    """One sample: its file, its class, and which part of the file it is (a row, a time window), if not all."""

    path: Path
    label: int
    part: tuple[int, ...] = ()


@dataclass(frozen=True)
class EventSource:
    """An event dataset as its files on disk.

    ``folder`` is the dataset's folder under the data root (tonic's name for it); ``files`` maps each
    split to what must exist there; ``list_samples(folder, split)`` lists the samples of a split;
    ``read(sample, **options)`` returns its events with ``t`` in µs from the sample's start.
    ``options`` are reader options that change the events (part of the cache key); ``note`` is
    added to the missing-data message.
    """

    name: str
    title: str
    folder: str
    sensor: Sensor
    kind: Kind
    num_classes: int
    files: Mapping[str, Sequence[Expected]]
    list_samples: Callable[[Path, str], list[Sample]]
    read: Callable[..., np.ndarray]
    options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


def require_tonic() -> ModuleType:
    """tonic, or an error saying how to install it (snnlab imports it only when event data is used)."""
    try:
        import tonic
    except ImportError:
        raise SnnlabError(
            "the event datasets read their files through tonic, which is not installed: pip install tonic"
        ) from None
    return tonic


@contextlib.contextmanager
def naming(path: Path, title: str) -> Iterator[None]:
    """Turn any failure while reading ``path`` into a ``DataFileError`` that names it."""
    try:
        yield
    except SnnlabError:
        raise
    except Exception as exc:
        raise DataFileError(
            f"{path}: cannot read this {title} file ({type(exc).__name__}: {exc}); "
            "it may be truncated or damaged: fetch it again"
        ) from exc


def regular_file(path: Path, title: str) -> None:
    """Refuse anything but a regular file before it is opened (``stat`` opens nothing): reading a FIFO would block
    the run forever, a device would never end, a directory is no recording."""
    if path.is_file():
        return
    if path.is_fifo():
        what = "a named pipe (FIFO)"
    elif path.is_dir():
        what = "a folder"
    elif path.exists():
        what = "a device or socket"
    else:
        what = "missing (or a link to nothing)"
    raise DataFileError(f"{path}: is {what}; expected a regular {title} file, as the download holds")


class EventDataset(Dataset):
    """One split of an event dataset, serving ``(frames, label)``: frames ``[T, C, H, W]`` or ``[T, N]``, float32.

    The files are listed on first use, not when built, so that a network can be checked without the data.
    """

    def __init__(
        self,
        source: EventSource,
        split: str,
        root: DataRoot,
        frames: FrameOptions,
        augment: AugmentOptions | None = None,
        cache: Path | None = None,
    ) -> None:
        import tonic

        self.source, self.split, self.root, self.binary = source, split, root, frames.binary
        geo = geometry(source.sensor, source.kind, frames)
        random_crop = augment is not None and augment.random_crop
        self.prepare = prepare_transforms(geo, frames, centre_crop=not random_crop)
        self.augment = augment.transforms(geo, frames) if augment is not None and augment.active() else []
        self.to_frame = frame_transform(geo.framed, frames)
        self.shape = frame_shape(geo.framed, source.kind, frames.time_steps)
        self.cache = None
        if cache is not None:
            # with augmentation the cache holds the prepared events, else the frames
            steps = [*map(repr, self.prepare), *([] if self.augment else [repr(self.to_frame)])]
            parts = {
                "dataset": source.name,
                "options": dict(source.options),
                "steps": steps,
                "tonic": tonic.__version__,
            }
            self.cache = DiskCache(cache / source.name / f"{split}-{digest(parts)}")
        self._samples: list[Sample] | None = None

    @property
    def folder(self) -> Path:
        """The dataset's folder under the data root."""
        return self.root.path / self.source.folder

    def missing(self) -> list[Expected]:
        """The expected files of this split that are not under the data root."""
        return missing(self.folder, self.source.files[self.split])

    @property
    def samples(self) -> list[Sample]:
        """The split's samples, listed on first use; raises the offline error when the files are not there."""
        if self._samples is None:
            absent = self.missing()
            if absent:
                s = self.source
                raise missing_data_error(s.title, s.name, self.root, self.folder, self.split, absent, s.note)
            with naming(self.folder, self.source.title):
                samples = self.source.list_samples(self.folder, self.split)
            self._check(samples)
            if not samples:
                raise MissingDataError(
                    f"{self.source.name}: no {self.source.title} {self.split} recordings under {self.folder}; "
                    f"expected {', '.join(str(self.folder / e.path) for e in self.source.files[self.split])} "
                    "to hold them"
                )
            if self.cache is not None:
                self.cache.check_writable()
            self._samples = samples
        return self._samples

    def _check(self, samples: list[Sample]) -> None:
        """Refuse, naming the file, a listed sample that is not a regular file or whose label is not a class
        (cross-entropy would fail later with an ``IndexError`` that names nothing)."""
        title, n = self.source.title, self.source.num_classes
        for path in dict.fromkeys(s.path for s in samples):
            regular_file(path, title)
        bad = next((s for s in samples if not 0 <= s.label < n), None)
        if bad is not None:
            where = f" (part {', '.join(map(str, bad.part))})" if bad.part else ""
            raise DataFileError(
                f"{bad.path}{where}: label {bad.label} is not a class of {title}: expected 0 to {n - 1}; "
                "the file is damaged or not from this dataset"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        sample = self.samples[index]
        if self.augment:  # random each epoch: cache the prepared events, frame them anew
            frames = self._to_frames(sample, self._cached(sample, lambda: self._events(sample)))
        else:
            frames = self._cached(sample, lambda: self._to_frames(sample, self._events(sample)))
        x = torch.from_numpy(frames).float()
        if self.binary:
            x = x.clamp_(max=1.0)
        if self.source.kind == "channels":
            x = x.flatten(1)
        return x, sample.label

    def sample(self, index: int, generator: torch.Generator | None) -> tuple[Tensor, int]:
        """Sample ``index``, its augmentation drawn from ``generator`` (``snnlab.sampling.SeededSamples``).

        tonic's transforms draw from NumPy's global generator, so it is seeded from ``generator``
        for this sample and put back afterwards.
        """
        if not self.augment or generator is None:
            return self[index]
        state = np.random.get_state()
        np.random.seed(int(torch.randint(2**32, (1,), generator=generator)))
        try:
            return self[index]
        finally:
            np.random.set_state(state)

    def _events(self, sample: Sample) -> np.ndarray:
        """The sample's events after the deterministic transforms."""
        with naming(sample.path, self.source.title):
            if sample.path.stat().st_size == 0:
                raise ValueError("the file is empty (0 bytes)")
            return apply(self.prepare, self.source.read(sample, **self.source.options))

    def _to_frames(self, sample: Sample, events: np.ndarray) -> np.ndarray:
        with naming(sample.path, self.source.title):
            return to_frames(apply(self.augment, events), self.to_frame, self.shape)

    def _cached(self, sample: Sample, make: Callable[[], np.ndarray]) -> np.ndarray:
        if self.cache is None:
            return make()
        with naming(sample.path, self.source.title):
            stat = sample.path.stat()
        key = f"{sample.path.relative_to(self.folder)}|{sample.part}|{stat.st_size}|{stat.st_mtime_ns}"
        return self.cache.get(key, make)


def event_splits(
    source: EventSource,
    root: str | None,
    frames: FrameOptions,
    augment: AugmentOptions,
    cache: bool | str,
    test_split: str = "test",
) -> DatasetSplits:
    """Train (augmented) and test splits of ``source``, with shapes known from the options alone."""
    require_tonic()
    augment.check(source.kind, frames)
    located = data_root(root)
    cache_dir = None if cache is False else (located.path / "cache" if cache is True else Path(cache).expanduser())
    train = EventDataset(source, "train", located, frames, augment, cache_dir)
    test = EventDataset(source, test_split, located, frames, None, cache_dir)
    shape = input_shape(geometry(source.sensor, source.kind, frames).framed, source.kind)
    check_sample_size("data.frames.time_steps", frames.time_steps, shape)
    return DatasetSplits(train, test, shape, source.num_classes, loader_workers=min(2, os.cpu_count() or 1))
