"""A non-spiking neuron: a memoryless activation, so that T = 1 runs an ordinary ANN on the same code path."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from ..export.registry import ExportContext, NIRUnsupported, nir_export
from .base import Neuron, NoState, validated

Activation = Literal["relu", "identity"]


class NonSpiking(Neuron):
    """out[t] = f(x[t]) with f = ReLU or identity; no state, no spikes.

    Example::

        >>> import torch
        >>> from snnlab.neurons import NonSpiking
        >>> NonSpiking("relu")(torch.tensor([[[-1.0, 2.0]]]))[0].tolist()
        [[[0.0, 2.0]]]
    """

    spiking: ClassVar[bool] = False

    @validated
    def __init__(self, activation: Activation = "relu") -> None:
        super().__init__()
        self.activation = activation

    def initial_state(self, like: Tensor) -> NoState:
        return NoState()

    def step(self, x_t: Tensor, state: NoState) -> tuple[Tensor, NoState]:
        return (torch.relu(x_t) if self.activation == "relu" else x_t), state

    def forward(self, x_seq: Tensor, state: NoState | None = None) -> tuple[Tensor, NoState]:
        return self.step(x_seq, NoState())

    forward_cut = forward  # no state, so nothing to cut

    def readout_form(self) -> NonSpiking:
        return NonSpiking("identity")

    def extra_repr(self) -> str:
        return self.activation


@nir_export(NonSpiking)
def nonspiking_to_nir(neuron: NonSpiking, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """The identity needs no node (the block's current is its output); NIR has no rectifier, so ReLU is refused."""
    if neuron.activation == "relu":
        raise NIRUnsupported("activation relu has no NIR node (NIR's nodes are linear maps, pools and neurons)")
    return []
