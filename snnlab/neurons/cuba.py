r"""Current-based LIF (CUBA-LIF): a synaptic current that decays with its own time constant feeds the membrane, so an
input spike's effect rises and falls over tau_syn instead of arriving at once. ``cuba_li`` is its non-firing form,
the readout under membrane objectives.

.. math::

    i[t] = \alpha i[t-1] + (1 - \alpha) x[t] \qquad h[t] = \beta v[t-1] + (1 - \beta) i[t]

    (\text{without decay\_input: } i[t] = \alpha i[t-1] + x[t], \; h[t] = \beta v[t-1] + i[t])

    s[t] = H(h[t] - \vartheta), \quad v[t] = h[t] - \vartheta s[t] \;(\text{soft})
    \;\text{or}\; h[t](1 - s[t]) + v_{reset} s[t] \;(\text{hard})

with :math:`\alpha = e^{-dt/\tau_{syn}}`, :math:`\beta = e^{-dt/\tau}` (or ``euler``: 1 - dt/tau). ``decay_input``
scales the input of both stages, so each is a leaky integrator of unit gain and a constant x settles at v = x (LIF's
meaning, applied twice); without it (METHODS.md 1.4, snnTorch, SpikingJelly, NIR) the gain is
1 / ((1 - alpha)(1 - beta)).

Mapping to other libraries (``decay_input: false``):

* snnTorch ``Synaptic(alpha, beta, threshold, reset_mechanism="zero" | "subtract", reset_delay=False)`` is
  ``CubaLIF(tau_syn=-1/ln(alpha), tau=-1/ln(beta), decay_input=False, reset="hard" | "soft")``, with the same
  limits as ``Leaky`` (``snnlab.neurons.lif``; ``tests/test_alif_cuba.py`` checks spikes, membranes and input
  gradients).
* SpikingJelly's ``CUBALIFNode(c_decay, v_decay, v_threshold, v_reset)`` is the same step with alpha = c_decay, beta
  = v_decay; it fires on h >= threshold.
* NIR ``CubaLIF`` (continuous time; snnTorch exports dt = 1e-4): tau_syn = dt/(1 - alpha), tau_mem = dt/(1 - beta),
  r = tau_mem/dt, w_in = tau_syn/dt, v_leak = 0 (METHODS.md 1.4).

Example::

    >>> import torch
    >>> from snnlab.neurons import CubaLIF
    >>> neuron = CubaLIF(tau=4.0, tau_syn=2.0, decay_input=False)
    >>> spikes, state = neuron(torch.rand(8, 4, 10))   # [T, B, N]
    >>> spikes.shape, state.i.shape
    (torch.Size([8, 4, 10]), torch.Size([4, 10]))
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

import torch
from pydantic import Field
from torch import Tensor

from ..kernels import Backend, choose
from ..kernels.cuba import cuba_fused
from ..surrogates import SurrogateSpec
from .base import Neuron, validated
from .leak import Discretization, Leak, TimeConstant, charge
from .li import LI
from .lif import LIF, Reset, fire_and_reset


class CubaState(NamedTuple):
    """Membrane after reset and synaptic current, ``[B, ...]``."""

    v: Tensor
    i: Tensor


def cuba_charge(
    x: Tensor, state: CubaState, alpha: Tensor | float, beta: Tensor | float, decay_input: bool
) -> tuple[Tensor, Tensor]:
    """The synaptic current i and the pre-reset membrane h after input ``x``: two leaky integrators in a row."""
    i = charge(x, state.i, alpha, decay_input)
    return i, charge(i, state.v, beta, decay_input)


class CubaLI(LI):
    """CUBA-LIF without firing: its output is the membrane h (``CubaLIF.readout_form``).

    Args:
        tau: membrane time constant, in units of ``dt``.
        tau_syn: synaptic time constant, in units of ``dt``.
        dt: the time step.
        discretization: ``exp`` (beta = exp(-dt/tau), alpha likewise) or ``euler`` (1 - dt/tau).
        decay_input: scale the input of both stages, by (1 - alpha) and (1 - beta).
        learn_tau: learn beta = sigmoid(w), one per layer.
        learn_tau_syn: learn alpha = sigmoid(w), one per layer.
    """

    @validated
    def __init__(
        self,
        tau: TimeConstant = 2.0,
        tau_syn: Annotated[float, Field(gt=0)] = 2.0,
        dt: Annotated[float, Field(gt=0)] = 1.0,
        discretization: Discretization = "exp",
        decay_input: bool = True,
        learn_tau: bool = False,
        learn_tau_syn: bool = False,
    ) -> None:
        super().__init__(tau=tau, dt=dt, discretization=discretization, decay_input=decay_input, learn_tau=learn_tau)
        self.synaptic = Leak(tau_syn, dt, discretization, learnable=learn_tau_syn)

    def initial_state(self, like: Tensor) -> CubaState:
        return CubaState(torch.zeros_like(like), torch.zeros_like(like))

    def step(self, x_t: Tensor, state: CubaState) -> tuple[Tensor, CubaState]:  # type: ignore[override]
        i, h = cuba_charge(x_t, state, self.synaptic.beta, self.leak.beta, self.decay_input)
        return h, CubaState(h, i)

    def extra_repr(self) -> str:
        return f"tau_syn={self.synaptic.tau:.4g}, " + super().extra_repr()


class CubaLIF(LIF):
    """Current-based LIF: a synaptic current of time constant ``tau_syn`` drives a LIF membrane.

    Args:
        tau: membrane time constant, in units of ``dt``.
        tau_syn: synaptic time constant, in units of ``dt``.
        dt: the time step.
        discretization: ``exp`` (beta = exp(-dt/tau), alpha likewise) or ``euler`` (1 - dt/tau).
        threshold: firing threshold.
        reset: ``soft`` subtracts the threshold, ``hard`` sets the membrane to ``v_reset``.
        v_reset: membrane value after a hard reset.
        decay_input: scale the input of both stages, by (1 - alpha) and (1 - beta); false is snnTorch's
            ``Synaptic``.
        detach_reset: let no gradient flow through the reset.
        surrogate: the pseudo-derivative of the spike; a name or ``{name, alpha}``.
        learn_tau: learn beta = sigmoid(w), one per layer.
        learn_tau_syn: learn alpha = sigmoid(w), one per layer.
        learn_threshold: learn one threshold per layer.
        backend: what runs ``forward`` over a sequence: ``auto``, ``torch``, ``triton`` or ``numba`` (as for LIF).
    """

    @validated
    def __init__(
        self,
        tau: TimeConstant = 2.0,
        tau_syn: Annotated[float, Field(gt=0)] = 2.0,
        dt: Annotated[float, Field(gt=0)] = 1.0,
        discretization: Discretization = "exp",
        threshold: float = 1.0,
        reset: Reset = "soft",
        v_reset: float = 0.0,
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: SurrogateSpec = "atan",
        learn_tau: bool = False,
        learn_tau_syn: bool = False,
        learn_threshold: bool = False,
        backend: Backend = "auto",
    ) -> None:
        super().__init__(
            tau=tau, dt=dt, discretization=discretization, threshold=threshold, reset=reset, v_reset=v_reset,
            decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate, learn_tau=learn_tau,
            learn_threshold=learn_threshold, backend=backend,
        )  # fmt: skip
        self.synaptic = Leak(tau_syn, dt, discretization, learnable=learn_tau_syn)

    def initial_state(self, like: Tensor) -> CubaState:
        return CubaState(torch.zeros_like(like), torch.zeros_like(like))

    def step(self, x_t: Tensor, state: CubaState) -> tuple[Tensor, CubaState]:  # type: ignore[override]
        i, h = cuba_charge(x_t, state, self.synaptic.beta, self.leak.beta, self.decay_input)
        s, v = fire_and_reset(h, self.threshold, self.surrogate, self.reset, self.v_reset, self.detach_reset)
        return s, CubaState(v, i)

    def _fused(  # type: ignore[override]
        self, x_seq: Tensor, state: CubaState | None, stats: bool
    ) -> tuple[Tensor, CubaState, None] | None:
        """The sequence on the fused backend that ``backend`` chooses, or None for the torch loop (always with
        ``stats``: these kernels keep no rate statistics, which the loop gives by forward-mode AD)."""
        if stats:
            return None
        v, i = (None, None) if state is None else state
        alpha, beta = self.synaptic.beta, self.leak.beta
        backend = choose(self.backend, x_seq, self.surrogate, model="cuba", inputs=(v, i, alpha, beta, self.threshold))
        if backend == "torch":
            return None
        s, (v, i) = cuba_fused(backend, x_seq, (v, i), alpha, beta, self.threshold, self.firing())
        return s, CubaState(v, i), None

    def readout_form(self) -> Neuron:
        return CubaLI(
            tau=self.leak.tau,
            tau_syn=self.synaptic.tau,
            dt=self.leak.dt,
            discretization=self.leak.discretization,
            decay_input=self.decay_input,
            learn_tau=self.leak.learnable,
            learn_tau_syn=self.synaptic.learnable,
        )

    def extra_repr(self) -> str:
        return f"tau_syn={self.synaptic.tau:.4g}, " + super().extra_repr()
