"""Leaky integrator (LI): a LIF that never fires; its output is its membrane.

Used as the output layer under membrane readouts (SpikingJelly's threshold-1e9
trick, Norse's ``LICell``): h[t] = beta v[t-1] + (1 - beta) x[t] (or + x[t]), output h[t].
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torch import Tensor

from .base import MembraneState, Neuron, validated
from .leak import Discretization, Leak, TimeConstant, charge


class LI(Neuron):
    """Leaky integrator; ``tau: .inf`` makes it a pure integrator.

    Args:
        tau: membrane time constant in units of ``dt``; ``.inf``: no leak.
        dt: the time step.
        discretization: ``exp`` or ``euler``, as for LIF.
        decay_input: scale the input by (1 - beta).
        learn_tau: learn beta = sigmoid(w).
    """

    spiking: ClassVar[bool] = False

    @validated
    def __init__(
        self,
        tau: TimeConstant = 2.0,
        dt: Annotated[float, Field(gt=0)] = 1.0,
        discretization: Discretization = "exp",
        decay_input: bool = True,
        learn_tau: bool = False,
    ) -> None:
        super().__init__()
        self.leak = Leak(tau, dt, discretization, learnable=learn_tau)
        self.decay_input = decay_input

    def initial_state(self, like: Tensor) -> MembraneState:
        return MembraneState(torch.zeros_like(like))

    def charge(self, x_t: Tensor, state: MembraneState) -> Tensor:
        """The membrane after integrating ``x_t`` (before any reset a subclass applies)."""
        return charge(x_t, state.v, self.leak.beta, self.decay_input)

    def step(self, x_t: Tensor, state: MembraneState) -> tuple[Tensor, MembraneState]:
        h = self.charge(x_t, state)
        return h, MembraneState(h)

    def readout_form(self) -> LI:
        return self

    def extra_repr(self) -> str:
        return f"decay_input={self.decay_input}"
