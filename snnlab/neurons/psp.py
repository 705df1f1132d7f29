r"""The tempotron's postsynaptic-potential kernel as a neuron: current-based, never firing (Gütig & Sompolinsky 2006).

Each input current decays with the synaptic time constant :math:`\tau_s` and the membrane integrates it with
:math:`\tau`; on the grid t = n dt this is exactly the difference of exponentials

.. math::

    V(t) = \sum_{t_i < t} x(t_i)\, K(t - t_i), \qquad K(t) = V_0 \left(e^{-t/\tau} - e^{-t/\tau_s}\right)

computed by the recursion (:math:`a = e^{-dt/\tau}`, :math:`b = e^{-dt/\tau_s}`)

.. math::

    v[t] = a\, v[t-1] + V_0 (a - b)\, i[t-1], \qquad i[t] = b\, i[t-1] + x[t]

where x[t] is the current the synapse delivers (``W s[t]``: each input spike of weight w adds w K(t - t_i)),
:math:`V_0 = 1 / (e^{-t_p/\tau} - e^{-t_p/\tau_s})` normalises the kernel's peak, at
:math:`t_p = \tau \tau_s \ln(\tau/\tau_s) / (\tau - \tau_s)`, to 1 (**choice** of METHODS.md; SpikingJelly's
``Tempotron`` scales it to the threshold, the same at threshold 1), and K(0) = 0: an input counts from the next
step. The output is v. Defaults are the paper's, tau = 15 and tau_s = tau/4, in units of ``dt``.

Example::

    >>> import torch
    >>> psp = PSP(tau=15.0)
    >>> x = torch.zeros(40, 1, 1); x[0] = 1.0          # one input spike of weight 1 at t = 0
    >>> v, _ = psp(x)
    >>> round(float(v.max()), 2), int(v.argmax())     # the peak of K, near t_p = 6.93
    (1.0, 7)
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, NamedTuple

import torch
from pydantic import Field
from torch import Tensor

from .base import Neuron, validated
from .leak import TimeConstant


class PSPState(NamedTuple):
    """The membrane ``v`` and the synaptic current ``i``, each ``[B, ...]``."""

    v: Tensor
    i: Tensor


def kernel_peak(tau: float, tau_s: float) -> float:
    """t_p = tau tau_s ln(tau / tau_s) / (tau - tau_s), where K is largest."""
    return tau * tau_s * math.log(tau / tau_s) / (tau - tau_s)


class PSP(Neuron):
    """Non-firing current-based neuron whose response to an input spike is the tempotron's kernel K.

    Args:
        tau: membrane time constant, in units of ``dt``.
        tau_s: synaptic time constant, below ``tau``; null: tau / 4.
        dt: the time step.
    """

    spiking: ClassVar[bool] = False

    @validated
    def __init__(
        self,
        tau: TimeConstant = 15.0,
        tau_s: Annotated[float, Field(gt=0)] | None = None,
        dt: Annotated[float, Field(gt=0)] = 1.0,
    ) -> None:
        super().__init__()
        tau_s = tau / 4 if tau_s is None else tau_s
        if not tau_s < tau or math.isinf(tau):
            raise ValueError(f"tau_s must be below tau, and tau finite; got tau={tau}, tau_s={tau_s}")
        self.tau, self.tau_s, self.dt = tau, tau_s, dt
        self.a, self.b = math.exp(-dt / tau), math.exp(-dt / tau_s)
        peak = kernel_peak(tau, tau_s)
        self.v0 = 1 / (math.exp(-peak / tau) - math.exp(-peak / tau_s))

    def kernel(self, t: Tensor) -> Tensor:
        """K(t) = V0 (exp(-t/tau) - exp(-t/tau_s)) for t >= 0, else 0 (t in the units of ``dt``)."""
        k = self.v0 * (torch.exp(-t / self.tau) - torch.exp(-t / self.tau_s))
        return torch.where(t >= 0, k, torch.zeros_like(k))

    def initial_state(self, like: Tensor) -> PSPState:
        return PSPState(torch.zeros_like(like), torch.zeros_like(like))

    def step(self, x_t: Tensor, state: PSPState) -> tuple[Tensor, PSPState]:
        v = self.a * state.v + self.v0 * (self.a - self.b) * state.i
        return v, PSPState(v, self.b * state.i + x_t)

    def readout_form(self) -> PSP:
        return self

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4g}, tau_s={self.tau_s:.4g}, dt={self.dt}, v0={self.v0:.4g}"
