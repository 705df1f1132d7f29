"""Datasets, registered under the names used in YAML (``data.name``); each builder returns ``DatasetSplits``.

``digits`` (bundled) and ``timing`` (generated: classes told apart by spike timing alone) work offline.

The event datasets read their files through tonic, imported only when one is built.

The builders are validated like the YAML options, so they can be called from Python with their defaults or with
names for their options (``encoder="poisson"`` becomes the encoder):

Example::

    >>> from snnlab.datasets import digits
    >>> splits = digits(time_steps=4)
    >>> x, label = splits.train[0]
    >>> x.shape, splits.num_classes
    (torch.Size([4, 64]), 10)
"""

from pydantic import ConfigDict, validate_call

from ..registry import Registry
from .base import DataOptions, DatasetSplits
from .cifar10_dvs import cifar10_dvs
from .digits import digits
from .dvs_gesture import dvs_gesture
from .encoders import ENCODERS, EncodedDataset, Encoder
from .ncars import ncars
from .nmnist import nmnist
from .poisson_trains import poisson_trains
from .shd import shd
from .ssc import ssc
from .temporal_order import temporal_order
from .timing import timing

_validated = validate_call(config=ConfigDict(validate_default=True, allow_inf_nan=False))
# A builder's defaults are YAML spellings (``encoder="direct"``): validating the call turns them, and names given
# from Python, into the objects the builder uses, as the schema does for YAML.
cifar10_dvs, digits, dvs_gesture, ncars, nmnist, poisson_trains, shd, ssc, temporal_order, timing = (
    _validated(b)
    for b in (cifar10_dvs, digits, dvs_gesture, ncars, nmnist, poisson_trains, shd, ssc, temporal_order, timing)
)

DATASETS: Registry[DatasetSplits] = Registry("dataset", key="name", base=DataOptions)
DATASETS.register("digits", digits)
DATASETS.register("timing", timing)
DATASETS.register("poisson_trains", poisson_trains)
DATASETS.register("nmnist", nmnist)
DATASETS.register("dvs_gesture", dvs_gesture)
DATASETS.register("cifar10_dvs", cifar10_dvs)
DATASETS.register("ncars", ncars)
DATASETS.register("shd", shd)
DATASETS.register("ssc", ssc)
DATASETS.register("temporal_order", temporal_order)

__all__ = [
    "DATASETS",
    "ENCODERS",
    "DataOptions",
    "DatasetSplits",
    "EncodedDataset",
    "Encoder",
    "cifar10_dvs",
    "digits",
    "dvs_gesture",
    "ncars",
    "nmnist",
    "poisson_trains",
    "shd",
    "ssc",
    "temporal_order",
    "timing",
]
