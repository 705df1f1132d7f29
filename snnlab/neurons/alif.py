r"""Adaptive LIF (ALIF): the adaptive-threshold neuron of the long short-term memory SNN (LSNN; Bellec et al.,
NeurIPS 2018, arXiv 1803.09574). Each spike raises the neuron's threshold, which relaxes back over tau_a, so the
layer keeps a trace of its recent activity for far longer than its membrane does.

.. math::

    B[t] = b_0 + \beta_a a[t-1]

    h[t] = \beta v[t-1] + (1 - \beta) x[t] \quad(\text{or } \beta v[t-1] + x[t] \text{ without decay\_input})

    s[t] = H(h[t] - B[t])

    v[t] = h[t] - B[t] s[t] \;(\text{soft}) \quad\text{or}\quad h[t](1 - s[t]) + v_{reset} s[t] \;(\text{hard})

    a[t] = \rho a[t-1] + (1 - \rho) s[t]

with :math:`\beta = e^{-dt/\tau}`, :math:`\rho = e^{-dt/\tau_a}` (or ``euler``: 1 - dt/tau), b0 the ``threshold``,
and H the Heaviside step differentiated through the surrogate (spike when h > B). ``beta_a = 0`` is a LIF.

Which spike enters where. METHODS.md 1.3 writes a[t] = rho a[t-1] + (1 - rho) s[t-1] and B[t] = b0 + beta_a a[t]:
the threshold a spike meets holds every earlier spike, not itself. Here a[t] is updated after step t's spike, so it
is METHODS' a[t+1], and the state after a step is (v, a) alone: the adaptation the next threshold reads, with no
s[t-1] to keep. The soft reset subtracts the threshold the spike crossed, B[t] (METHODS' choice). LSNN's code
(``lsnn/spiking_models.py``) decides s[t] on the membrane before step t's input and subtracts
``b0 + beta_a a`` including the spike's own increment one step later; snnlab keeps LIF's same-step form.
``detach_reset`` detaches the spike in the reset only: the gradient through the adaptation (a[t] from s[t]) is
what BPTT learns memory through, and always flows.

NIR: none of NIR's nodes (1.0: LIF, CubaLIF, IF, LI, CubaLI, I and the synaptic maps) moves its threshold, and no
chain of them gives one (an adaptation current subtracted from the membrane would be reset with it), so an ALIF is
refused by name; one that does not adapt (every beta_a 0: ``beta_a: 0`` or ``adaptive_fraction: 0``) is exactly a
LIF and exports as NIR's ``LIF``, which imports back as ``lif``.

Per neuron and adaptive fraction. When the layer's shape is known (``in_shape``, which the network builder passes),
``learn_threshold``, ``learn_tau_a`` and ``learn_beta_a`` learn one b0, tau_a and beta_a per neuron (else one per
layer), and ``adaptive_fraction`` < 1 makes the rest plain LIF units (beta_a 0) as an LSNN mixes them: exactly
``round(fraction N)`` adapting neurons, drawn once from torch's generator (so by the run's seed) and kept in the
buffer ``adaptive``.

Scale: LSNN's code uses b0 = 0.01 with beta_a = 1.8 (and tau_a = 700 for sequential MNIST); once the weights are
learned only their ratio matters, so LSNN's adaptation strength at ``threshold: 1`` is ``beta_a: 180``. One spike
raises the threshold by beta_a (1 - rho), about beta_a dt / tau_a.

Example::

    >>> import torch
    >>> from snnlab.neurons import ALIF
    >>> alif = ALIF(tau=5.0, tau_a=50.0, beta_a=10.0, adaptive_fraction=0.5, in_shape=(10,))
    >>> spikes, state = alif(torch.rand(8, 4, 10) * 3)   # [T, B, N]
    >>> spikes.shape, state.a.shape
    (torch.Size([8, 4, 10]), torch.Size([4, 10]))
"""

from __future__ import annotations

import math
from typing import Annotated, Any, NamedTuple

import torch
from pydantic import Field
from torch import Tensor, nn

from ..export.registry import ExportContext, NIRUnsupported, nir_export
from ..kernels import Backend, choose
from ..kernels.alif import alif_fused
from ..surrogates import SurrogateSpec
from .base import validated
from .leak import Discretization, Leak, TimeConstant, charge
from .lif import LIF, Reset, _describe, fire_and_reset, lif_to_nir


class ALIFState(NamedTuple):
    """Membrane after reset and adaptation after the step's spike (what the next threshold reads), ``[B, ...]``."""

    v: Tensor
    a: Tensor


def adaptive_mask(shape: tuple[int, ...], fraction: float) -> Tensor:
    """1.0 at exactly round(fraction N) of the N neurons of ``shape`` (drawn from torch's generator), 0.0 elsewhere."""
    n = math.prod(shape)
    mask = torch.zeros(n)
    mask[torch.randperm(n)[: round(fraction * n)]] = 1.0
    return mask.reshape(shape)


class ALIF(LIF):
    """Adaptive LIF neuron (LSNN): a LIF whose threshold b0 + beta_a a rises with each spike and decays over tau_a.

    Args:
        tau: membrane time constant, in units of ``dt``.
        tau_a: adaptation time constant, in units of ``dt``.
        beta_a: how far the adaptation raises the threshold (per unit of a, the spike trace).
        threshold: the baseline threshold b0.
        adaptive_fraction: the share of neurons that adapt; the others are LIF (beta_a 0). Below 1 it needs
            ``in_shape``.
        dt: the time step.
        discretization: ``exp`` (beta = exp(-dt/tau), rho likewise) or ``euler`` (1 - dt/tau).
        reset: ``soft`` subtracts the threshold B the spike crossed, ``hard`` sets the membrane to ``v_reset``.
        v_reset: membrane value after a hard reset.
        decay_input: scale the input by (1 - beta) (LSNN's form) or not.
        detach_reset: let no gradient flow through the reset (it still flows through the adaptation).
        surrogate: the pseudo-derivative of the spike; a name or ``{name, alpha}``.
        learn_tau: learn one membrane decay per layer (as PLIF).
        learn_threshold: learn b0, per neuron where ``in_shape`` is given.
        learn_tau_a: learn tau_a (rho = sigmoid(w)), per neuron where ``in_shape`` is given.
        learn_beta_a: learn beta_a, per neuron where ``in_shape`` is given (non-adapting neurons stay at 0).
        backend: what runs ``forward`` over a sequence: ``auto``, ``torch``, ``triton`` or ``numba`` (as for LIF).
        in_shape: the shape of the layer's neurons (one sample), for per-neuron parameters; the builder gives it.
    """

    @validated
    def __init__(
        self,
        tau: TimeConstant = 20.0,
        tau_a: Annotated[float, Field(gt=0)] = 200.0,
        beta_a: Annotated[float, Field(ge=0)] = 1.8,
        threshold: float = 1.0,
        adaptive_fraction: Annotated[float, Field(ge=0, le=1)] = 1.0,
        dt: Annotated[float, Field(gt=0)] = 1.0,
        discretization: Discretization = "exp",
        reset: Reset = "soft",
        v_reset: float = 0.0,
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: SurrogateSpec = "atan",
        learn_tau: bool = False,
        learn_threshold: bool = False,
        learn_tau_a: bool = False,
        learn_beta_a: bool = False,
        backend: Backend = "auto",
        in_shape: tuple[Annotated[int, Field(ge=1)], ...] | None = None,
    ) -> None:
        super().__init__(
            tau=tau, dt=dt, discretization=discretization, threshold=threshold, reset=reset, v_reset=v_reset,
            decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate, learn_tau=learn_tau,
            backend=backend,
        )  # fmt: skip
        shape = () if in_shape is None else tuple(in_shape)
        if in_shape is None and 0 < adaptive_fraction < 1:
            raise ValueError(
                f"adaptive_fraction={adaptive_fraction} chooses neurons, which needs the layer's shape: give "
                "in_shape (the network builder does)"
            )
        self.adaptation = Leak(tau_a, dt, discretization, learnable=learn_tau_a, shape=shape)
        if learn_threshold:
            self.threshold = nn.Parameter(torch.full(shape, float(threshold)))
        self.beta_a: Tensor | float = nn.Parameter(torch.full(shape, float(beta_a))) if learn_beta_a else beta_a
        mask = adaptive_mask(shape, adaptive_fraction) if adaptive_fraction < 1 else None
        self.register_buffer("adaptive", mask)  # None: every neuron adapts

    def adaptation_strength(self) -> Tensor | float:
        """beta_a of each neuron: 0 for the neurons that do not adapt."""
        return self.beta_a if self.adaptive is None else self.beta_a * self.adaptive

    def initial_state(self, like: Tensor) -> ALIFState:
        return ALIFState(torch.zeros_like(like), torch.zeros_like(like))

    def step(self, x_t: Tensor, state: ALIFState) -> tuple[Tensor, ALIFState]:  # type: ignore[override]
        threshold = self.threshold + self.adaptation_strength() * state.a
        h = self.charge(x_t, state)
        s, v = fire_and_reset(h, threshold, self.surrogate, self.reset, self.v_reset, self.detach_reset)
        return s, ALIFState(v, charge(s, state.a, self.adaptation.beta, decay_input=True))

    def _fused(  # type: ignore[override]
        self, x_seq: Tensor, state: ALIFState | None, stats: bool
    ) -> tuple[Tensor, ALIFState, None] | None:
        """The sequence on the fused backend that ``backend`` chooses, or None for the torch loop (always with
        ``stats``: these kernels keep no rate statistics, which the loop gives by forward-mode AD)."""
        if stats:
            return None
        v, a = (None, None) if state is None else state
        beta, rho, beta_a = self.leak.beta, self.adaptation.beta, self.adaptation_strength()
        inputs = (v, a, beta, rho, beta_a, self.threshold)
        backend = choose(self.backend, x_seq, self.surrogate, model="alif", inputs=inputs)
        if backend == "torch":
            return None
        s, (v, a) = alif_fused(backend, x_seq, (v, a), beta, rho, beta_a, self.threshold, self.firing())
        return s, ALIFState(v, a), None

    def extra_repr(self) -> str:
        fraction = 1.0 if self.adaptive is None else float(self.adaptive.mean())
        return (
            f"tau_a={self.adaptation.tau:.4g}, beta_a={_describe(self.beta_a)}, adaptive_fraction={fraction:.3g}, "
            + super().extra_repr()
        )


ADAPTATION_REFUSED = (
    "its threshold b0 + beta_a a rises with each spike and decays over tau_a, and NIR has no adaptive neuron: no "
    "node's state moves its threshold, and no chain of nodes gives one (an adaptation current subtracted from the "
    "membrane would be reset with it); with every beta_a 0 (beta_a: 0 or adaptive_fraction: 0) it is a LIF and "
    "exports as NIR's LIF"
)


@nir_export(ALIF)
def alif_to_nir(neuron: ALIF, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """NIR's ``LIF`` when no neuron adapts (``lif_to_nir``, its soft reset refused likewise); otherwise refused
    (``ADAPTATION_REFUSED``)."""
    strength = torch.as_tensor(neuron.adaptation_strength())
    if bool((strength != 0).any()):
        raise NIRUnsupported(ADAPTATION_REFUSED)
    return lif_to_nir(neuron, shape, ctx)
