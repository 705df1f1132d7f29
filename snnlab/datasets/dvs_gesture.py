"""IBM DVS128 Gesture (Amir et al. 2017): 11 hand and arm gestures by 29 people under 5 lightings,
recorded by a DVS128; 128 x 128, 2 polarities.

Files as IBM distributes them: ``DvsGesture.tar.gz`` unpacked into ``<root>/DVSGesture/``, giving
``<root>/DVSGesture/DvsGesture/`` with ``userNN_<lighting>.aedat`` (AEDAT 3.1), their
``userNN_<lighting>_labels.csv`` (class 1-11, start and end in µs) and the split lists
``trials_to_train.txt`` / ``trials_to_test.txt`` (users 1-23 train, 24-29 test). Each labelled
window of a recording is one sample.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .augment import NO_AUGMENT, AugmentOptions
from .base import DatasetSplits
from .data_root import Expected
from .event_dataset import EventSource, Sample, event_splits, naming, regular_file, require_tonic
from .frames import DEFAULT_FRAMES, FrameOptions, Sensor

URL = "https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8/folder/50167556794"
PAGE = "https://research.ibm.com/interactive/dvsgesture/"
PACKET_HEADER = np.dtype(
    [
        ("type", "<i2"),
        ("source", "<i2"),
        ("size", "<i4"),
        ("ts_offset", "<i4"),
        ("ts_overflow", "<i4"),
        ("capacity", "<i4"),
        ("number", "<i4"),
        ("valid", "<i4"),
    ]
)
POLARITY_EVENT = 1


def read_aedat31(path: str) -> np.ndarray:
    """The valid polarity events of an AEDAT 3.1 file, as tonic's structured events (x, y, t in µs, p).

    The header is parsed by tonic; the packets are walked here because tonic 1.7's ``read_dvs_ibm``
    fails on its own header parser's return value and its packet reader neither skips non-polarity
    packets nor notices a truncated file. Bit layout as tonic's ``read_dvs_ibm``.
    """
    from tonic.io import events_struct, make_structured_array, read_aedat_header_from_file

    version, start, _ = read_aedat_header_from_file(path)
    if version != 3.1:
        raise ValueError(f"expected an AEDAT 3.1 file, found version {version}")
    data = np.fromfile(path, dtype=np.uint8, offset=start)
    addresses, times = [], []
    pos = 0
    while pos < len(data):
        if pos + PACKET_HEADER.itemsize > len(data):
            raise ValueError(f"the file ends inside a packet header at byte {start + pos}: it is truncated")
        header = np.frombuffer(data, PACKET_HEADER, 1, pos)[0]
        pos += PACKET_HEADER.itemsize
        size, count = int(header["size"]), int(header["capacity"])
        if size < 8 or size % 4 or count < 0:
            raise ValueError(f"packet header at byte {start + pos - PACKET_HEADER.itemsize} is damaged")
        end = pos + size * count
        if end > len(data):
            raise ValueError(f"the file ends inside a packet at byte {start + pos}: it is truncated")
        if header["type"] == POLARITY_EVENT:
            words = np.frombuffer(data[pos:end].tobytes(), "<u4").reshape(count, size // 4)
            valid = (words[:, 0] & 1).astype(bool)
            addresses.append(words[valid, 0])
            times.append(words[valid, 1].astype(np.int64) | (int(header["ts_overflow"]) << 31))
        pos = end
    address = np.concatenate(addresses) if addresses else np.zeros(0, np.uint32)
    t = np.concatenate(times) if times else np.zeros(0, np.int64)
    x, y, p = (address >> 17) & 0x1FFF, (address >> 2) & 0x1FFF, (address >> 1) & 1
    return make_structured_array(x, y, t, p, dtype=events_struct)


@lru_cache(maxsize=1)  # consecutive samples are windows of the same recording
def _recording(path: str) -> np.ndarray:
    return read_aedat31(path)


def _list(folder: Path, split: str) -> list[Sample]:
    base = folder / "DvsGesture"
    samples = []
    trials = base / f"trials_to_{split}.txt"
    regular_file(trials, "DVS128 Gesture trial list")
    for name in trials.read_text().split():
        recording = base / name
        labels = recording.with_name(f"{recording.stem}_labels.csv")
        for needed in (recording, labels):
            if not needed.is_file():
                raise FileNotFoundError(f"{needed} is listed in trials_to_{split}.txt but is not there")
        with naming(labels, "DVS128 Gesture labels"):
            rows = np.loadtxt(labels, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
            if rows.shape[1] != 3 or not ((rows[:, 0] >= 1) & (rows[:, 0] <= 11)).all():
                raise ValueError("expected rows of class (1-11), startTime_usec, endTime_usec")
        samples += [Sample(recording, int(c) - 1, (int(s), int(e))) for c, s, e in rows]
    return samples


def _read(sample: Sample) -> np.ndarray:
    start, end = sample.part
    events = _recording(str(sample.path))
    window = events[(events["t"] >= start) & (events["t"] < end)]
    window["t"] -= start
    return window


def dvs_gesture(
    root: str | None = None,
    frames: FrameOptions = DEFAULT_FRAMES,
    augment: AugmentOptions = NO_AUGMENT,
    cache: bool | str = True,
) -> DatasetSplits:
    """DVS128 Gesture's labelled gestures (users 1-23 train, 24-29 test) as frames ``[T, 2, 128, 128]``.

    Args:
        root: the data root (default: ``$SNNLAB_DATA``, else ``~/.cache/snnlab/data``).
        frames: how events become frames (``FrameOptions``).
        augment: random changes to the training recordings (``AugmentOptions``; don't flip
            left-right: several classes differ only by the hand).
        cache: keep converted frames on disk: true (under ``<root>/cache``), false, or a folder.
    """
    DVSGesture = require_tonic().datasets.DVSGesture
    source = EventSource(
        name="dvs_gesture",
        title="DVS128 Gesture",
        folder="DVSGesture",
        sensor=Sensor(*DVSGesture.sensor_size),
        kind="camera",
        num_classes=len(DVSGesture.classes),
        files={s: [Expected(f"DvsGesture/trials_to_{s}.txt", "DvsGesture.tar.gz", URL)] for s in ("train", "test")},
        list_samples=_list,
        read=_read,
        note=f"IBM's page {PAGE} describes the data and its license (CC BY 4.0).",
    )
    return event_splits(source, root, frames, augment, cache)
