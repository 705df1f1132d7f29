"""Spiking Speech Commands (Cramer et al. 2020): 35 spoken command words through the same cochlea model
as SHD; 700 input channels, and SHD's file layout: ``<root>/SSC/ssc_{train,valid,test}.h5``."""

from __future__ import annotations

from typing import Literal

from .augment import NO_AUGMENT, AugmentOptions
from .base import DatasetSplits
from .event_dataset import event_splits, require_tonic
from .frames import DEFAULT_FRAMES, FrameOptions
from .shd import heidelberg_source


def ssc(
    root: str | None = None,
    frames: FrameOptions = DEFAULT_FRAMES,
    augment: AugmentOptions = NO_AUGMENT,
    cache: bool | str = True,
    test_split: Literal["test", "valid"] = "test",
) -> DatasetSplits:
    """SSC as ``[T, 700]`` spike counts per channel and bin; trains on ``ssc_train.h5``.

    Args:
        root: the data root (default: ``$SNNLAB_DATA``, else ``~/.cache/snnlab/data``).
        frames: time binning (``FrameOptions``; ``downsample`` merges neighbouring channels).
        augment: random changes to the training recordings (time jitter, dropped spikes).
        cache: keep converted frames on disk: true (under ``<root>/cache``), false, or a folder.
        test_split: evaluate on the test file, or on the validation file while tuning.
    """
    tonic = require_tonic()
    source = heidelberg_source("ssc", "SSC", ("train", "valid", "test"), 35, tonic.datasets.SSC)
    return event_splits(source, root, frames, augment, cache, test_split=test_split)
