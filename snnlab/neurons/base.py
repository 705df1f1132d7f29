"""The contract every neuron model meets: the stateful-layer contract (``snnlab.stateful``) plus what is particular
to neurons: whether the output is spikes, the membrane-only twin for membrane readouts, and optional
regularisation of their own output.

State is never kept in the module between calls: ``step`` takes it and returns it, and ``forward`` starts from
``initial_state`` unless given one.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from pydantic import ConfigDict, validate_call
from torch import Tensor

from ..stateful import NoState, State, StatefulModule, detach_state

validated = validate_call(config=ConfigDict(validate_default=True, allow_inf_nan=False))
"""Decorator for neuron constructors: Python arguments are checked like the YAML options
(``LIF(reset="Soft")`` and ``LIF(threshold=math.nan)`` are refused, ``surrogate="atan"`` becomes the surrogate
object); infinity only where the annotation allows it (``TimeConstant``)."""


class MembraneState(NamedTuple):
    """Membrane potential after reset, ``[B, ...]``."""

    v: Tensor


class Neuron(StatefulModule):
    """Base of all neuron models.

    Subclasses implement ``initial_state`` and ``step``; ``forward`` runs ``step``
    over the leading time axis and may be replaced by a fused kernel that gives
    the same result. A neuron whose membrane should be plotted names it ``v`` in its state.
    """

    spiking: ClassVar[bool] = True
    """Whether the output is binary spikes (counted as synaptic operations downstream)."""

    def readout_form(self) -> Neuron:
        """The non-spiking neuron whose output is this model's membrane, for membrane readouts."""
        raise NotImplementedError(f"{type(self).__name__} has no membrane readout form")

    def forward_cut(self, x_seq: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``forward`` with the temporal gradient path cut (SLTT, Meng et al. 2023): every step receives its state
        detached, so the gradient of out[t] reaches x[t] and the parameters only; the values are ``forward``'s.
        This loops ``step``; a fused kernel may replace it."""
        state = self.initial_state(x_seq[0]) if state is None else state
        outputs = []
        for x_t in x_seq:
            out, state = self.step(x_t, detach_state(state))
            outputs.append(out)
        return torch.stack(outputs), state


__all__ = ["MembraneState", "Neuron", "NoState", "State", "detach_state", "validated"]
