"""What ``snnlab datasets`` shows: each dataset's per-step input shape and classes (with default options),
and whether its files are under the data root."""

from __future__ import annotations

from typing import NamedTuple

from ..errors import SnnlabError
from . import DATASETS
from .event_dataset import EventDataset


class DatasetInfo(NamedTuple):
    name: str
    input_shape: tuple[int, ...] | None
    num_classes: int | None
    status: str  # "bundled", "present", or what is missing


def dataset_table(root: str | None = None) -> list[DatasetInfo]:
    """One row per registered dataset; event datasets are looked for under ``root`` (or the default root)."""
    rows = []
    for name in DATASETS.names():
        config = DATASETS.config(name)
        options = {"name": name, **({"root": root} if "root" in config.model_fields else {})}
        try:
            splits = DATASETS.build(config.model_validate(options))
        except SnnlabError as exc:
            rows.append(DatasetInfo(name, None, None, f"unavailable: {exc}"))
            continue
        parts = [splits.train, splits.test]
        if not all(isinstance(p, EventDataset) for p in parts):
            status = "bundled"
        else:
            absent = list(dict.fromkeys(str(p.folder / e.path) for p in parts for e in p.missing()))
            status = (
                "present" if not absent else f"missing {absent[0]}" + (f" (+{len(absent) - 1})" if absent[1:] else "")
            )
        rows.append(DatasetInfo(name, splits.input_shape, splits.num_classes, status))
    return rows
