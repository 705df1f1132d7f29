"""Writers of small synthetic event files in each dataset's exact on-disk layout (see shared/data/events/FORMATS.md)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "events"


def samples_dir() -> Path | None:
    """The real sample recordings: shared/data/events beside the repository (or under /work/shared), if there."""
    for candidate in (SAMPLES, Path("/work/shared/data/events")):
        if (candidate / "FORMATS.md").is_file():
            return candidate
    return None


def write_heidelberg(path: Path, samples: Sequence[tuple[np.ndarray, np.ndarray, int]], n_classes: int) -> None:
    """An SHD/SSC file: ragged ``spikes/times`` (s, float16) and ``spikes/units`` (uint16), ``labels``, ``extra``."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u, _) in enumerate(samples):
            times[i] = np.asarray(t, np.float16)
            units[i] = np.asarray(u, np.uint16)
        f["labels"] = np.array([label for _, _, label in samples], np.uint16)
        f["extra/speaker"] = np.zeros(len(samples), np.uint16)
        f["extra/keys"] = np.array([f"class-{k}".encode() for k in range(n_classes)])
        f["extra/meta_info/gender"] = np.array([b"f"])
        f["extra/meta_info/age"] = np.array([30])
        f["extra/meta_info/body_height"] = np.array([170])


def aedat31_packet(event_type: int, records: Sequence[tuple[int, int]], ts_overflow: int = 0) -> bytes:
    """One AEDAT 3.1 packet: the 28-byte header, then (data word, timestamp) records of 8 bytes."""
    n = len(records)
    header = struct.pack("<hhiiiiii", event_type, 1, 8, 4, ts_overflow, n, n, n)
    return header + b"".join(struct.pack("<Ii", word, ts) for word, ts in records)


def polarity_word(x: int, y: int, on: int) -> int:
    """A valid polarity event's data word: valid bit 0, polarity bit 1, y bits 2-16, x bits 17-31."""
    return (x << 17) | (y << 2) | (on << 1) | 1


def write_aedat31(path: Path, packets: Sequence[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#Start-Time: 2017-01-01\r\n#!END-HEADER\r\n"
    path.write_bytes(header + b"".join(packets))


def write_gesture_trial(
    base: Path, name: str, packets: Sequence[bytes], windows: Sequence[tuple[int, int, int]]
) -> None:
    """``name``.aedat and ``name``_labels.csv (class 1-11, start, end in µs) in the DvsGesture folder ``base``."""
    write_aedat31(base / f"{name}.aedat", packets)
    rows = "".join(f"{c},{s},{e}\n" for c, s, e in windows)
    (base / f"{name}_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + rows)


def cifar10dvs_address(x: int, y: int, p: int) -> int:
    """The jAER DVS128 address that CIFAR10-DVS's mapping (x = 127 - bits 8-14, y = 127 - bits 1-7, p = 1 - bit 0) reads as (x, y, p)."""
    return ((127 - x) << 8) | ((127 - y) << 1) | (1 - p)


def write_aedat2(path: Path, events: Sequence[tuple[int, int]]) -> None:
    """A jAER AEDAT 2.0 file: ``#`` header lines, then big-endian (address, timestamp) records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n# Timestamps tick is 1 us\r\n"
    path.write_bytes(header + b"".join(struct.pack(">II", a, t) for a, t in events))


def nmnist_records(events: Sequence[tuple[int, int, int, int]]) -> bytes:
    """N-MNIST 5-byte records from (x, y, t, p)."""
    return b"".join(bytes([x, y, (p << 7) | (t >> 16) & 0x7F, (t >> 8) & 0xFF, t & 0xFF]) for x, y, t, p in events)
