"""N-CARS (Sironi et al. 2018): 100 ms ATIS recordings of cars and of background scenes from a moving car;
crops of up to 120 x 100, 2 polarities, 2 classes.

Files as Prophesee distributes them, unpacked into ``<root>/NCARS/``: ``n-cars_train/{background,cars}/*.dat``
and ``n-cars_test/{background,cars}/*.dat`` (Prophesee DAT v2, one recording each).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .augment import NO_AUGMENT, AugmentOptions
from .base import DatasetSplits
from .data_root import Expected
from .event_dataset import EventSource, Sample, event_splits, require_tonic
from .frames import DEFAULT_FRAMES, FrameOptions, Sensor

URL = "https://www.prophesee.ai/2018/03/13/dataset-n-cars/"
CLASSES = ("background", "cars")
SENSOR = Sensor(120, 100, 2)  # the largest crop; tonic 1.7 has no N-CARS class to take it from
CD_EVENT = np.dtype([("t", "<u4"), ("word", "<u4")])


def read_dat(path: str) -> np.ndarray:
    """Change-detection events of a Prophesee DAT file: ``%`` header lines, event type and size bytes,
    then 8-byte records (t in µs; x = bits 0-13, y = bits 14-27, p = bits 28-31).

    Decoded here rather than with expelliarmus (tonic's dependency), which hangs on a file cut inside
    its header and silently drops a cut-off last record.
    """
    from tonic.io import events_struct, make_structured_array

    raw = np.fromfile(path, dtype=np.uint8)
    pos = 0
    while pos < len(raw) and raw[pos] == ord("%"):
        newline = np.flatnonzero(raw[pos:] == ord("\n"))
        if not len(newline):
            raise ValueError("the text header never ends: the file is truncated")
        pos += int(newline[0]) + 1
    if pos + 2 > len(raw):
        raise ValueError("the file ends after its text header: it is truncated")
    event_type, event_size = int(raw[pos]), int(raw[pos + 1])
    if event_size != CD_EVENT.itemsize:
        raise ValueError(
            f"events of {event_size} bytes (type {event_type}); expected {CD_EVENT.itemsize}-byte CD events"
        )
    body = raw[pos + 2 :]
    if len(body) % CD_EVENT.itemsize:
        raise ValueError(f"{len(body)} bytes of events is not a whole number of 8-byte events: the file is truncated")
    records = np.frombuffer(body.tobytes(), CD_EVENT)
    word = records["word"]
    x, y, p = word & 0x3FFF, (word >> 14) & 0x3FFF, word >> 28
    if (p > 1).any():
        raise ValueError(f"polarity values {sorted(set(p[p > 1].tolist()))[:3]} are not 0/1: not CD events")
    return make_structured_array(x, y, records["t"].astype(np.int64), p, dtype=events_struct)


def _list(folder: Path, split: str) -> list[Sample]:
    base = folder / f"n-cars_{split}"
    return [Sample(p, label) for label, name in enumerate(CLASSES) for p in sorted((base / name).glob("*.dat"))]


def _read(sample: Sample) -> np.ndarray:
    return read_dat(str(sample.path))


def ncars(
    root: str | None = None,
    frames: FrameOptions = DEFAULT_FRAMES,
    augment: AugmentOptions = NO_AUGMENT,
    cache: bool | str = True,
) -> DatasetSplits:
    """N-CARS's 15,422 training and 8,607 test recordings as frames ``[T, 2, 100, 120]``.

    Args:
        root: the data root (default: ``$SNNLAB_DATA``, else ``~/.cache/snnlab/data``).
        frames: how events become frames (``FrameOptions``).
        augment: random changes to the training recordings (``AugmentOptions``).
        cache: keep converted frames on disk: true (under ``<root>/cache``), false, or a folder.
    """
    require_tonic()
    source = EventSource(
        name="ncars",
        title="N-CARS",
        folder="NCARS",
        sensor=SENSOR,
        kind="camera",
        num_classes=len(CLASSES),
        files={
            s: [Expected(f"n-cars_{s}/{c}", f"n-cars_{s}.zip", URL, "*.dat") for c in CLASSES]
            for s in ("train", "test")
        },
        list_samples=_list,
        read=_read,
        note="Prophesee's page asks for a form before the download.",
    )
    return event_splits(source, root, frames, augment, cache)
