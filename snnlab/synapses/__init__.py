"""Synapses (what turns input spikes into current) and the layers around them.

``SYNAPSES`` maps the block keys used in YAML (``- linear: 128``) to builders
``(in_shape, **options) -> module``; a synapse module also counts the synaptic
operations its input triggers (``synaptic_ops``).
"""

from ..registry import Registry
from .auxiliary import PoolOptions, batch_norm, dropout, flatten, pool
from .conv import Conv2d, conv
from .linear import Linear, linear

SYNAPSES: Registry = Registry("synapse", key="kind")
SYNAPSES.register("linear", linear, exclude=("in_shape",))
SYNAPSES.register("conv", conv, exclude=("in_shape",))

__all__ = ["SYNAPSES", "Conv2d", "Linear", "PoolOptions", "batch_norm", "conv", "dropout", "flatten", "linear", "pool"]
