"""The contract every neuron model meets: a pure ``step`` and a sequence ``forward``.

State is never kept in the module between calls: ``step`` takes it and returns
it, and ``forward`` starts from ``initial_state`` unless given one. That is what
lets a rule keep the temporal gradient path (BPTT), cut it (SLTT) or run
without autograd (STDP) on the same module.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch
from pydantic import ConfigDict, validate_call
from torch import Tensor, nn

State = tuple  # a NamedTuple of tensors; models define their own

validated = validate_call(config=ConfigDict(validate_default=True))
"""Decorator for neuron constructors: Python arguments are checked like the YAML options
(``LIF(reset="Soft")`` is refused, ``surrogate="atan"`` becomes the surrogate object)."""


class MembraneState(NamedTuple):
    """Membrane potential after reset, ``[B, ...]``."""

    v: Tensor


class NoState(NamedTuple):
    """State of a neuron without memory."""


class Neuron(nn.Module):
    """Base of all neuron models.

    Subclasses implement ``initial_state`` and ``step``; ``forward`` runs ``step``
    over the leading time axis and may be replaced by a fused kernel that gives
    the same result.
    """

    spiking: ClassVar[bool] = True
    """Whether the output is binary spikes (counted as synaptic operations downstream)."""

    def initial_state(self, like: Tensor) -> State:
        """The state before the first step, for inputs shaped like ``like`` ``[B, ...]``."""
        raise NotImplementedError

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step: input current ``[B, ...]`` and state in, output and new state out."""
        raise NotImplementedError

    def forward(self, x_seq: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """The whole sequence ``[T, B, ...]``: outputs ``[T, B, ...]`` and the final state."""
        if state is None:
            state = self.initial_state(x_seq[0])
        outputs = []
        for x_t in x_seq:
            out, state = self.step(x_t, state)
            outputs.append(out)
        return torch.stack(outputs), state

    def readout_form(self) -> Neuron:
        """The non-spiking neuron whose output is this model's membrane, for membrane readouts."""
        raise NotImplementedError(f"{type(self).__name__} has no membrane readout form")


def detach_state(state: Any) -> Any:
    """The same (nested) state with every tensor detached: cuts the temporal gradient path."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(s) for s in state)
    return state
