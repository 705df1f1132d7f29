"""What every dataset builder returns, and the loader options every dataset shares."""

from __future__ import annotations

from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset


class DatasetSplits(NamedTuple):
    """Train and test sets of ``(x [T, ...], label)``, the per-step input shape and the class count."""

    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    loader_workers: int = 0  # DataLoader workers when data.num_workers is unset: 0 for in-memory data


class DataOptions(BaseModel):
    """Options of the ``data`` section shared by every dataset; each dataset adds its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    batch_size: int = Field(64, ge=1, description="per process when training on several")
    test_batch_size: int | None = Field(None, ge=1, description="default: batch_size")
    num_workers: int | None = Field(None, ge=0, description="default: the dataset's (2 for event data, 0 in memory)")
    drop_last: bool = Field(False, description="drop the last, incomplete training batch of each epoch")
