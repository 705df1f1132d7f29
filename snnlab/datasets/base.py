"""What every dataset builder returns, and the loader options every dataset shares."""

from __future__ import annotations

import math
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

from ..errors import ConfigError

SAMPLE_BYTES_LIMIT = 2**30
"""The most one sample ``[T, ...]`` may take as float32: more is a typo (``time_steps: 1e8``) that would otherwise
end in the allocator, inside a loader worker, after the run has started."""

LOADER_TIMEOUT_S = 600.0
"""Seconds a DataLoader waits for a worker's batch before giving up (event data on a stalled disk or network
mount), rather than hanging the run forever."""


class DatasetSplits(NamedTuple):
    """Train and test sets of ``(x [T, ...], label)``, the per-step input shape and the class count; a validation
    set when the source has one (else the runner holds one out of train: ``validation.with_validation``)."""

    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    loader_workers: int = 0  # DataLoader workers when data.num_workers is unset: 0 for in-memory data
    loader_timeout_s: float = LOADER_TIMEOUT_S  # DataLoader(timeout=...) whenever it has workers
    validation: Dataset | None = None


def check_sample_size(key: str, time_steps: int, step_shape: tuple[int, ...]) -> None:
    """Refuse a ``time_steps`` (the option at ``key``) whose sample ``[T, *step_shape]`` exceeds
    ``SAMPLE_BYTES_LIMIT``, before anything is allocated."""
    per_step = 4 * math.prod(step_shape)
    if time_steps * per_step > SAMPLE_BYTES_LIMIT:
        raise ConfigError(
            [
                (
                    key,
                    f"{time_steps} steps of {list(step_shape)} make one sample {time_steps * per_step / 2**30:.3g} GiB; "
                    f"a sample may take 1 GiB, which is at most {SAMPLE_BYTES_LIMIT // per_step} steps here",
                )
            ]
        )


class DataOptions(BaseModel):
    """Options of the ``data`` section shared by every dataset; each dataset adds its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)
    batch_size: int = Field(64, ge=1, description="per process when training on several")
    test_batch_size: int | None = Field(None, ge=1, description="default: batch_size")
    num_workers: int | None = Field(None, ge=0, description="default: the dataset's (2 for event data, 0 in memory)")
    drop_last: bool = Field(False, description="drop the last, incomplete training batch of each epoch")
    validation_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of the training split held out to choose the best epoch; 0: none"
    )
    validation_seed: int = Field(
        0, ge=0, lt=2**63, description="seed of that hold-out (fixed: every run validates alike)"
    )
