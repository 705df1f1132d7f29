"""Neuron models, registered under the names used in YAML (``network.neuron.model``)."""

from ..registry import Registry
from .alif import ALIF, ALIFState
from .base import MembraneState, Neuron, NoState, State, detach_state
from .cuba import CubaLI, CubaLIF, CubaState
from .li import LI
from .lif import IF, LIF
from .nonspiking import NonSpiking

NEURONS: Registry[Neuron] = Registry("neuron", key="model")
NEURONS.register("lif", LIF)
NEURONS.register("if", IF)
NEURONS.register("li", LI)
NEURONS.register("nonspiking", NonSpiking)
NEURONS.register("alif", ALIF, exclude=("in_shape",))
NEURONS.register("cuba_lif", CubaLIF)
NEURONS.register("cuba_li", CubaLI)

__all__ = [
    "NEURONS",
    "ALIF",
    "ALIFState",
    "CubaLI",
    "CubaLIF",
    "CubaState",
    "IF",
    "LI",
    "LIF",
    "MembraneState",
    "Neuron",
    "NoState",
    "NonSpiking",
    "State",
    "detach_state",
]
