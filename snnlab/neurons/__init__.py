"""Neuron models, registered under the names used in YAML (``network.neuron.model``)."""

from ..registry import Registry
from .alif import ALIF, ALIFState
from .base import MembraneState, Neuron, NoState, State, detach_state
from .cuba import CubaLI, CubaLIF, CubaState
from .li import LI
from .lif import IF, LIF
from .meta import Meta
from .nonspiking import NonSpiking
from .psp import PSP
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
NEURONS.register("alif", ALIF, exclude=("in_shape",))
NEURONS.register("cuba_lif", CubaLIF)
NEURONS.register("cuba_li", CubaLI)
NEURONS.register("psp", PSP)

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
    "Meta",
    "Neuron",
    "NoState",
    "NonSpiking",
    "PSP",
    "State",
    "UltraDLIF",
    "UltraLIF",
    "detach_state",
]
