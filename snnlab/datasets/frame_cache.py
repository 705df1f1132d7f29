"""A disk cache of converted samples (frames, or prepared events), keyed so that it never serves stale data.

Entries sit in a folder named by a digest of everything that made them (dataset, split, reader
options, the repr of every tonic transform with its parameters, tonic's version), so changing any
parameter uses a new folder. Each entry's name is a digest of the sample's identity and its source
file's size and modification time. Entries are written to a temporary file and renamed into place
(``storage.atomic_write``), so a killed process never leaves a half-written entry; an entry that
cannot be read is made again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SnnlabError
from ..storage import atomic_write

FORMAT = 1  # bump when the meaning of a cached array changes


def digest(parts: Mapping[str, Any], length: int = 16) -> str:
    """A short stable hash of a JSON-able mapping (non-JSON values by their repr)."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class DiskCache:
    """Arrays stored as HDF5 files under ``folder``: mostly-zero frames as their non-zero entries, others LZF-compressed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def check_writable(self) -> None:
        """Create the folder, or say which folder cannot be written and what to do."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SnnlabError(f"{self.folder}: cannot create the frame cache ({exc.strerror})") from None
        if not os.access(self.folder, os.W_OK):
            raise SnnlabError(
                f"{self.folder}: the frame cache folder is not writable; "
                "set data.cache to a writable folder, or data.cache: false"
            )

    def get(self, key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The array stored under ``key``, or ``make()``'s result, stored for next time."""
        import h5py

        path = self.folder / f"{digest({'key': key}, 32)}.h5"
        try:
            with h5py.File(path, "r") as f:
                return _load(f)
        except (OSError, KeyError, ValueError):  # not there yet, or unreadable: make it again
            pass
        value = make()
        atomic_write(path, lambda tmp: _save(tmp, value), sync=False)
        return value


def _save(path: Path, value: np.ndarray) -> None:
    """Mostly-zero frames as their non-zero entries (faster to read back than compressed zeros), else LZF."""
    import h5py

    with h5py.File(path, "w") as f:
        nonzero = np.flatnonzero(value) if value.dtype.names is None else None
        if nonzero is not None and 3 * len(nonzero) < value.size:
            f["index"] = nonzero.astype(np.uint32 if value.size < 2**32 else np.uint64)
            f["value"] = value.reshape(-1)[nonzero]
            f.attrs["shape"] = value.shape
        else:
            f.create_dataset("data", data=value, compression="lzf" if value.size else None)


def _load(f: Any) -> np.ndarray:
    if "data" in f:
        return f["data"][()]
    index, values = f["index"][()], f["value"][()]
    out = np.zeros(tuple(f.attrs["shape"]), dtype=values.dtype)
    out.reshape(-1)[index] = values
    return out
