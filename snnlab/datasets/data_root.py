"""Where dataset files live on disk, and the error that says which files to fetch when they are not there.

snnlab never downloads. The root is ``data.root`` in YAML, else the environment variable
``SNNLAB_DATA``, else ``$XDG_CACHE_HOME/snnlab/data`` (``~/.cache/snnlab/data``). Each dataset sits
in the folder tonic uses for it (``<root>/NMNIST``, ``<root>/SHD``, ...), so a folder that tonic
downloaded into works as a root.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import MissingDataError

ENV_VAR = "SNNLAB_DATA"


class DataRoot(NamedTuple):
    """The root folder and what chose it (for messages)."""

    path: Path
    chosen_by: str


def data_root(root: str | None = None) -> DataRoot:
    """``root`` if given, else ``$SNNLAB_DATA``, else the default under the user's cache."""
    if root:
        return DataRoot(Path(root).expanduser(), "data.root")
    if os.environ.get(ENV_VAR):
        return DataRoot(Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return DataRoot(cache / "snnlab" / "data", f"the default (set data.root or ${ENV_VAR})")


class Expected(NamedTuple):
    """A file or folder a dataset needs (relative to its folder), the download it comes from, that download's
    URL, and (for a folder) what it holds."""

    path: str
    archive: str
    url: str
    holds: str = ""


def missing(folder: Path, expected: Sequence[Expected]) -> list[Expected]:
    """The entries of ``expected`` that are not under ``folder``."""
    return [e for e in expected if not (folder / e.path).exists()]


def missing_data_error(
    title: str, name: str, root: DataRoot, folder: Path, split: str, absent: Sequence[Expected], note: str = ""
) -> MissingDataError:
    """The offline error: which files are missing, where they go, and the URLs to fetch them from."""
    lines = [
        f"{name}: the {title} {split} files are not under the data root {root.path} (chosen by {root.chosen_by}).",
        "Expected:",
    ]
    for e in absent:
        lines.append(f"  {folder / e.path}" + (f"  (holding {e.holds})" if e.holds else ""))
        lines.append(f"      from {e.archive}: {e.url}")
    lines.append(
        f"snnlab never downloads: fetch these on a machine with internet, unpack them into {folder}/, "
        f"and point data.root (or ${ENV_VAR}) at {root.path} or wherever you put them."
    )
    if note:
        lines.append(note)
    return MissingDataError("\n".join(lines))
