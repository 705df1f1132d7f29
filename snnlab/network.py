"""A spiking network: an ordered list of blocks (synapse -> norm -> neuron -> pool/dropout) and a readout.

Shapes are time-major: a sequence is ``[T, B, ...]``, one step ``[B, ...]``.
Stateless layers run folded over time; only neurons carry state, and it is
passed in and returned, never kept on the module.

Example::

    >>> import torch
    >>> from snnlab.network import Block, Network
    >>> from snnlab.neurons import LIF, LI
    >>> from snnlab.readouts import MeanMembrane
    >>> from snnlab.synapses import Linear
    >>> net = Network([Block(Linear(64, 128), neuron=LIF()), Block(Linear(128, 10), neuron=LI())], MeanMembrane())
    >>> out, states = net(torch.rand(8, 32, 64))
    >>> net.readout(out).shape
    torch.Size([32, 10])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from torch import Tensor, nn

from .neurons import Neuron, State
from .readouts import Readout


def fold(module: nn.Module, x_seq: Tensor) -> Tensor:
    """Apply a per-step layer to every step of ``[T, B, ...]`` at once."""
    return module(x_seq.flatten(0, 1)).unflatten(0, x_seq.shape[:2])


class Block(nn.Module):
    """synapse -> norm -> neuron -> post (pooling, dropout); any part may be absent.

    A block without a neuron (flatten, pooling alone) is stateless and its state is ``None``.
    """

    def __init__(
        self,
        synapse: nn.Module | None = None,
        norm: nn.Module | None = None,
        neuron: Neuron | None = None,
        post: Sequence[nn.Module] = (),
    ) -> None:
        super().__init__()
        self.synapse = synapse
        self.norm = norm
        self.neuron = neuron
        self.post = nn.Sequential(*post)

    def current(self, x: Tensor) -> Tensor:
        """The input current to the neuron for one step ``[B, ...]`` (synapse then norm)."""
        if self.synapse is not None:
            x = self.synapse(x)
        if self.norm is not None:
            x = self.norm(x)
        return x

    def step(self, x_t: Tensor, state: State | None = None) -> tuple[Tensor, State | None]:
        """One time step; ``state=None`` starts the neuron from rest."""
        c = self.current(x_t)
        if self.neuron is not None:
            if state is None:
                state = self.neuron.initial_state(c)
            c, state = self.neuron.step(c, state)
        return self.post(c), state

    def forward(self, x_seq: Tensor, state: State | None = None) -> tuple[Tensor, State | None]:
        """The whole sequence; the neuron may run a fused kernel."""
        c = fold(self.current, x_seq)
        if self.neuron is not None:
            c, state = self.neuron(c, state)
        if len(self.post):
            c = fold(self.post, c)
        return c, state


class Trace(NamedTuple):
    """Every block's output sequence (the last is the network's output) and the final states."""

    outputs: list[Tensor]
    states: list[State | None]


class Network(nn.Module):
    """Blocks in order plus a readout that turns the output sequence into class scores."""

    def __init__(self, blocks: Sequence[Block], readout: Readout) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.readout = readout

    def trace(self, x_seq: Tensor, states: Sequence[State | None] | None = None) -> Trace:
        """Run the sequence and keep each block's output, for activity statistics and local rules."""
        states = list(states) if states is not None else [None] * len(self.blocks)
        outputs = []
        for i, block in enumerate(self.blocks):
            x_seq, states[i] = block(x_seq, states[i])
            outputs.append(x_seq)
        return Trace(outputs, states)

    def forward(self, x_seq: Tensor, states: Sequence[State | None] | None = None) -> tuple[Tensor, list[State | None]]:
        """The output sequence ``[T, B, C]`` and the final states."""
        outputs, states = self.trace(x_seq, states)
        return outputs[-1], states

    def step(self, x_t: Tensor, states: Sequence[State | None] | None = None) -> tuple[Tensor, list[State | None]]:
        """One time step through all blocks; ``states=None`` starts from rest."""
        states = list(states) if states is not None else [None] * len(self.blocks)
        for i, block in enumerate(self.blocks):
            x_t, states[i] = block.step(x_t, states[i])
        return x_t, states
