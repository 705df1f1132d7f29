"""Datasets, registered under the names used in YAML (``data.name``); each builder returns ``DatasetSplits``."""

from ..registry import Registry
from .base import DataOptions, DatasetSplits
from .digits import digits
from .encoders import ENCODERS, EncodedDataset, Encoder

DATASETS: Registry[DatasetSplits] = Registry("dataset", key="name", base=DataOptions)
DATASETS.register("digits", digits)

__all__ = ["DATASETS", "ENCODERS", "DataOptions", "DatasetSplits", "EncodedDataset", "Encoder"]
