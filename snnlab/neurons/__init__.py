"""Neuron models, registered under the names used in YAML (``network.neuron.model``)."""

from ..registry import Registry
from .base import MembraneState, Neuron, NoState, State, detach_state
from .li import LI
from .lif import IF, LIF
from .meta import Meta
from .nonspiking import NonSpiking
from .ultradlif import UltraDLIF
from .ultralif import UltraLIF

NEURONS: Registry[Neuron] = Registry("neuron", key="model")
NEURONS.register("lif", LIF)
NEURONS.register("if", IF)
NEURONS.register("li", LI)
NEURONS.register("nonspiking", NonSpiking)
NEURONS.register("meta", Meta)
NEURONS.register("ultralif", UltraLIF)
NEURONS.register("ultradlif", UltraDLIF)

__all__ = [
    "NEURONS",
    "IF",
    "LI",
    "LIF",
    "MembraneState",
    "Meta",
    "Neuron",
    "NoState",
    "NonSpiking",
    "State",
    "UltraDLIF",
    "UltraLIF",
    "detach_state",
]
