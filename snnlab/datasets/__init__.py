"""Datasets, registered under the names used in YAML (``data.name``); each builder returns ``DatasetSplits``.

The event datasets read their files through tonic, imported only when one is built.
"""

from ..registry import Registry
from .base import DataOptions, DatasetSplits
from .cifar10_dvs import cifar10_dvs
from .digits import digits
from .dvs_gesture import dvs_gesture
from .encoders import ENCODERS, EncodedDataset, Encoder
from .ncars import ncars
from .nmnist import nmnist
from .shd import shd
from .ssc import ssc

DATASETS: Registry[DatasetSplits] = Registry("dataset", key="name", base=DataOptions)
DATASETS.register("digits", digits)
DATASETS.register("nmnist", nmnist)
DATASETS.register("dvs_gesture", dvs_gesture)
DATASETS.register("cifar10_dvs", cifar10_dvs)
DATASETS.register("ncars", ncars)
DATASETS.register("shd", shd)
DATASETS.register("ssc", ssc)

__all__ = ["DATASETS", "ENCODERS", "DataOptions", "DatasetSplits", "EncodedDataset", "Encoder"]
