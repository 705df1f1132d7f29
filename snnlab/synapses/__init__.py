"""Synapses (what turns input spikes into current) and the layers around them, each registered by its YAML name.

* ``SYNAPSES``: the block keys ``linear``, ``conv``, ``ei_linear``, ``ei_conv`` (E-I circuits), ``delay`` (learnable
  delays), ``meta_linear`` (the meta neuron's quantal synapses), ... (``- linear: 128``); builders ``(in_shape, **options)``. A synapse module may count the synaptic operations its input
  triggers (``synaptic_ops``); a synapse that follows the stateful contract (``snnlab.stateful``) receives the
  sequence with its time axis; one with ``readout_form()`` is replaced by what that returns in the network's output
  block under a membrane readout (as the neuron is by its membrane form).
* ``NORMS``: ``norm: batch | layer | l2``, applied to the current.
* ``RECURRENT``: ``recurrent: dense | one_to_one | lateral_inhibition``, from the neuron's previous output to its
  current.
* ``POST``: the block keys ``pool``, ``dropout``, ``flatten``, after the neuron (in that order).
"""

from ..registry import Registry
from .conv import Conv2d, conv
from .delay import DelaySynapse, delay
from .ei import EIConv2d, EILinear, ei_conv, ei_linear
from .lateral_inhibition import LateralInhibition, lateral_inhibition
from .linear import Linear, linear
from .meta_linear import MetaLinear, meta_linear
from .norms import L2Normalize, batch_norm, l2_norm, layer_norm
from .post import dropout, flatten, pool
from .recurrent import dense, one_to_one

SYNAPSES: Registry = Registry("synapse", key="kind")
SYNAPSES.register("linear", linear, exclude=("in_shape",))
SYNAPSES.register("conv", conv, exclude=("in_shape",))
SYNAPSES.register("ei_linear", ei_linear, exclude=("in_shape",))
SYNAPSES.register("ei_conv", ei_conv, exclude=("in_shape",))
SYNAPSES.register("delay", delay, exclude=("in_shape",))
SYNAPSES.register("meta_linear", meta_linear, exclude=("in_shape",))

NORMS: Registry = Registry("norm", key="name")
NORMS.register("batch", batch_norm, exclude=("in_shape",))
NORMS.register("layer", layer_norm, exclude=("in_shape",))
NORMS.register("l2", l2_norm, exclude=("in_shape",))

RECURRENT: Registry = Registry("recurrent connection", key="kind")
RECURRENT.register("dense", dense, exclude=("in_shape",))
RECURRENT.register("one_to_one", one_to_one, exclude=("in_shape",))
RECURRENT.register("lateral_inhibition", lateral_inhibition, exclude=("in_shape",))

POST: Registry = Registry("post layer", key="layer")
POST.register("pool", pool, exclude=("in_shape",))
POST.register("dropout", dropout, exclude=("in_shape",))
POST.register("flatten", flatten, exclude=("in_shape",))

__all__ = [
    "NORMS",
    "POST",
    "RECURRENT",
    "SYNAPSES",
    "Conv2d",
    "DelaySynapse",
    "EIConv2d",
    "EILinear",
    "L2Normalize",
    "LateralInhibition",
    "Linear",
    "MetaLinear",
    "conv",
    "delay",
    "ei_conv",
    "ei_linear",
    "linear",
    "meta_linear",
]
