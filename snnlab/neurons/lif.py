r"""Leaky integrate-and-fire (LIF), its learnable-tau form (PLIF) and integrate-and-fire (IF).

.. math::

    h[t] = \beta v[t-1] + (1 - \beta) x[t] \quad(\text{or } \beta v[t-1] + x[t] \text{ without decay\_input})

    s[t] = H(h[t] - \vartheta)

    v[t] = h[t] - \vartheta s[t] \;(\text{soft}) \quad\text{or}\quad h[t](1 - s[t]) + v_{reset} s[t] \;(\text{hard})

with :math:`\beta = e^{-dt/\tau}` (or :math:`1 - dt/\tau` for Euler) and H the
Heaviside step (spike when :math:`h > \vartheta`), differentiated through a surrogate.

Mapping to other libraries:

* snnTorch ``Leaky(beta, threshold, reset_mechanism="zero", reset_delay=False)``
  is ``LIF(tau=-1/ln(beta), decay_input=False, reset="hard", v_reset=0)``, spike
  for spike and gradient for gradient (``tests/test_snntorch_parity.py``);
  ``"subtract"`` is ``reset="soft"`` as long as the membrane after a reset stays
  below threshold: snnTorch subtracts the threshold again at the next step when
  it does not, so a neuron driven above 2 thresholds fires less there. snnTorch
  keeps the reset's gradient, i.e. ``detach_reset=False``. Its default
  ``reset_delay=True`` applies the reset one step late, which no snnlab setting
  reproduces.
* SpikingJelly ``LIFNode(tau=k, decay_input=d, v_reset=None)`` is
  ``LIF(tau=k, discretization="euler", decay_input=d, reset="soft")``, and
  ``v_reset=0.0`` is ``reset="hard"`` (``tests/test_spikingjelly_parity.py``); with a
  ``v_reset`` SpikingJelly leaks toward ``v_reset`` rather than 0, which matches
  here only for ``v_reset=0``. SpikingJelly fires on ``h >= threshold``.
* NIR ``LIF`` (continuous time, ``tau dv/dt = (v_leak - v) + r I``; NIR stores no dt)
  for an export step of ``dt_s`` seconds: ``tau = dt_s / ln(1/beta)`` (``exp``, the
  exact solution for an input held over the step) or ``dt_s / (1 - beta)`` (``euler``),
  ``r = 1`` with ``decay_input`` (else ``1 / (1 - beta)``), ``v_leak = 0``,
  ``v_threshold = threshold``, ``v_reset = v_reset``; IF is NIR ``IF`` with
  ``r = 1 / dt_s``. A soft reset has no NIR node (``lif_to_nir`` refuses it).

Example::

    >>> import torch
    >>> from snnlab.neurons import LIF
    >>> lif = LIF(tau=2.0, reset="soft")
    >>> spikes, state = lif(torch.rand(8, 4, 10) * 3)   # [T, B, N]
    >>> spikes.shape
    torch.Size([8, 4, 10])
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from ..export.registry import (
    ExportContext,
    ImportContext,
    NIRUnsupported,
    Part,
    close,
    nir_export,
    nir_import,
    tidy,
    uniform,
)
from ..kernels import Backend, choose
from ..kernels.lif import Firing, lif_fused
from ..kernels.rate import RateStatistics, parameter_slopes, rate_statistics_by_forward_ad
from ..surrogates import Surrogate, SurrogateSpec
from .base import MembraneState, validated
from .leak import Discretization, TimeConstant
from .li import LI, leak_from_nir, leak_to_nir, neuron_metadata, options_from_metadata

Reset = Literal["soft", "hard"]


def fire_and_reset(
    h: Tensor,
    threshold: Tensor | float,
    surrogate: Surrogate,
    reset: Reset,
    v_reset: float,
    detach_reset: bool,
) -> tuple[Tensor, Tensor]:
    """Spike where h exceeds the threshold, then reset: returns (s, v)."""
    s = surrogate.spike(h - threshold)
    s_r = s.detach() if detach_reset else s
    if reset == "soft":
        v = h - threshold * s_r
    else:
        v = h * (1 - s_r) + v_reset * s_r
    return s, v


def _describe(value: Tensor | float) -> str:
    """A scalar as a number, a per-neuron tensor by its shape."""
    if isinstance(value, Tensor) and value.dim() > 0:
        return f"per-neuron{list(value.shape)}"
    return f"{float(value.detach() if isinstance(value, Tensor) else value):.4g}"


class LIF(LI):
    """Leaky integrate-and-fire neuron: a leaky integrator that fires and resets.

    ``learn_tau=True`` gives PLIF, ``learn_threshold=True`` a learnable threshold.

    Args:
        tau: membrane time constant, in units of ``dt`` (time steps by default); ``.inf``: no leak (IF).
        dt: the time step.
        discretization: ``exp`` (beta = exp(-dt/tau)) or ``euler`` (beta = 1 - dt/tau, SpikingJelly's).
        threshold: firing threshold.
        reset: ``soft`` subtracts the threshold, ``hard`` sets the membrane to ``v_reset``.
        v_reset: membrane value after a hard reset.
        decay_input: scale the input by (1 - beta) (SpikingJelly's default) or not (snnTorch's ``Leaky``).
        detach_reset: let no gradient flow through the reset.
        surrogate: the pseudo-derivative of the spike; a name or ``{name, alpha}``.
        learn_tau: learn one decay per layer (PLIF), beta = sigmoid(w).
        learn_threshold: learn one threshold per layer.
        backend: what runs ``forward`` over a sequence (``snnlab.kernels``): ``auto`` (Triton on CUDA, Numba on
            the CPU, when installed), ``torch`` (the step in a Python loop), ``triton`` or ``numba``.
    """

    spiking: ClassVar[bool] = True

    @validated
    def __init__(
        self,
        tau: TimeConstant = 2.0,
        dt: Annotated[float, Field(gt=0)] = 1.0,
        discretization: Discretization = "exp",
        threshold: float = 1.0,
        reset: Reset = "soft",
        v_reset: float = 0.0,
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: SurrogateSpec = "atan",
        learn_tau: bool = False,
        learn_threshold: bool = False,
        backend: Backend = "auto",
    ) -> None:
        super().__init__(tau=tau, dt=dt, discretization=discretization, decay_input=decay_input, learn_tau=learn_tau)
        self.backend = backend
        self.reset = reset
        self.v_reset = v_reset
        self.detach_reset = detach_reset
        self.surrogate: Surrogate = surrogate
        if learn_threshold:
            self.threshold = nn.Parameter(torch.tensor(float(threshold)))
        else:
            self.threshold = float(threshold)

    def per_neuron_threshold(self, shape: tuple[int, ...]) -> Tensor:
        """Give each neuron of an output of ``shape`` (one sample's, e.g. ``(N,)``) its own threshold, starting at
        the current one, and return it: a buffer (a parameter under ``learn_threshold``), so it is saved with the
        network's weights. Rules that adapt thresholds (STDP's homeostasis) call it in ``setup``; every backend
        reads a per-neuron threshold."""
        value = torch.as_tensor(self.threshold).detach().float().expand(shape).clone()
        learnable = isinstance(self.threshold, nn.Parameter)
        del self.threshold
        if learnable:
            self.threshold = nn.Parameter(value)
        else:
            self.register_buffer("threshold", value)
        return self.threshold

    def step(self, x_t: Tensor, state: MembraneState) -> tuple[Tensor, MembraneState]:
        h = self.charge(x_t, state)
        s, v = fire_and_reset(h, self.threshold, self.surrogate, self.reset, self.v_reset, self.detach_reset)
        return s, MembraneState(v)

    def _fused(
        self, x_seq: Tensor, state: MembraneState | None, stats: bool, cut: bool = False
    ) -> tuple[Tensor, MembraneState, Tensor | None] | None:
        """The sequence on the fused backend that ``backend`` chooses for these inputs, or None for the torch loop."""
        v, beta = None if state is None else state.v, self.leak.beta
        backend = choose(self.backend, x_seq, self.surrogate, inputs=(v, beta, self.threshold))
        if backend == "torch":
            return None
        s, v, statistics = lif_fused(backend, x_seq, v, beta, self.threshold, self.firing(), stats, cut)
        return s, MembraneState(v), statistics

    def firing(self) -> Firing:
        """How this neuron charges, fires and resets, as its fused op takes it."""
        return Firing(self.decay_input, self.reset, self.v_reset, self.detach_reset, self.surrogate)

    def forward(self, x_seq: Tensor, state: MembraneState | None = None) -> tuple[Tensor, MembraneState]:
        """The whole sequence through the chosen backend: a fused kernel, or the loop of ``step`` (``torch``); the
        same spikes either way."""
        fused = self._fused(x_seq, state, stats=False)
        if fused is None:
            return super().forward(x_seq, state)
        return fused[0], fused[1]

    def forward_cut(self, x_seq: Tensor, state: MembraneState | None = None) -> tuple[Tensor, MembraneState]:
        """``forward`` with the membrane entering every step as a constant (SLTT): on a fused backend one kernel whose
        backward drops the step-to-step term, else the loop of ``step`` on detached states."""
        fused = self._fused(x_seq, state, stats=False, cut=True)
        if fused is None:
            return super().forward_cut(x_seq, state)
        return fused[0], fused[1]

    def rate_statistics(self, x_seq: Tensor, state: MembraneState | None = None) -> RateStatistics:
        r"""A forward without autograd that also returns, per neuron, the rate and the eligibility of rate-based
        backpropagation (Yu et al., NeurIPS 2024; ``snnlab.kernels.rate``):

        .. math::

            r = \frac{1}{T} \sum_t s[t], \qquad e = \frac{1}{T} \sum_t g(u[t])\, k[t], \qquad
            k[0] = \text{gain}, \; k[t] = \text{gain} + \beta\, k[t-1]\, \frac{\partial v}{\partial h}[t-1]

        with g the surrogate derivative at u = h - threshold and k[t] = dh[t]/dc the membrane's derivative along a
        constant input current c (dv/dh as in backward: 1 - theta g soft, (1 - s) + (v_reset - h) g hard, the g
        terms 0 with ``detach_reset``), and the slopes dr/dp of a learnable tau (``leak.w``) and threshold. A fused
        backend accumulates all of them in its forward pass (the tau's slope from those along beta and gain); the
        torch loop gets them by forward-mode AD."""
        with torch.no_grad():
            fused = self._fused(x_seq, state, stats=True)
            if fused is None:
                statistics = rate_statistics_by_forward_ad(functools.partial(super().forward, state=state), x_seq)
                return statistics._replace(slopes=parameter_slopes(self, x_seq, state))
            s, final, (rate, eligibility, along_beta, along_gain, along_theta) = fused
        slopes = {}
        if (
            self.leak.learnable and self.leak.w.requires_grad
        ):  # beta and gain = 1 - beta (or 1) as functions of w: their derivatives, per entry
            with torch.enable_grad():
                (d_beta,) = torch.autograd.grad(self.leak.beta.sum(), self.leak.w)
            slopes["leak.w"] = (along_beta - along_gain if self.decay_input else along_beta) * d_beta
        if isinstance(self.threshold, nn.Parameter) and self.threshold.requires_grad:
            slopes["threshold"] = along_theta
        return RateStatistics(s, final, rate, eligibility, slopes)

    def readout_form(self) -> LI:
        return LI(
            tau=self.leak.tau,
            dt=self.leak.dt,
            discretization=self.leak.discretization,
            decay_input=self.decay_input,
            learn_tau=self.leak.learnable,
        )

    def extra_repr(self) -> str:
        return (
            f"threshold={_describe(self.threshold)}, reset={self.reset}, decay_input={self.decay_input}, "
            f"detach_reset={self.detach_reset}, surrogate={self.surrogate.name}({self.surrogate.alpha}), "
            f"backend={self.backend}"
        )


class IF(LIF):
    """Integrate-and-fire: LIF without leak, h = v + x."""

    @validated
    def __init__(
        self,
        threshold: float = 1.0,
        reset: Reset = "soft",
        v_reset: float = 0.0,
        detach_reset: bool = False,
        surrogate: SurrogateSpec = "atan",
        learn_threshold: bool = False,
        backend: Backend = "auto",
    ) -> None:
        super().__init__(
            tau=math.inf,
            decay_input=False,
            threshold=threshold,
            reset=reset,
            v_reset=v_reset,
            detach_reset=detach_reset,
            surrogate=surrogate,
            learn_threshold=learn_threshold,
            backend=backend,
        )


SOFT_RESET_REFUSED = (
    "reset: soft (subtract the threshold) has no NIR node: NIR's LIF, IF and CubaLIF set the membrane to v_reset, "
    "and a file "
    "that meant subtraction would run with that reset in every other tool; train with reset: hard (v_reset 0) to "
    "export"
)


def firing_to_nir(neuron: LIF, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """NIR's v_threshold and v_reset of a hard-reset neuron, one per neuron (a per-neuron threshold as it is)."""
    threshold = neuron.threshold
    threshold = threshold.detach().cpu().double().numpy() if isinstance(threshold, Tensor) else threshold
    return np.broadcast_to(threshold, shape).copy(), np.full(shape, float(neuron.v_reset))


def trained_options(neuron: LIF) -> dict[str, Any]:
    """The options of a LIF or IF that NIR has no field for."""
    surrogate = neuron.surrogate
    options: dict[str, Any] = {"detach_reset": neuron.detach_reset, "backend": neuron.backend}
    options["learn_threshold"] = isinstance(neuron.threshold, torch.nn.Parameter)
    if surrogate.name != "function":
        options["surrogate"] = surrogate.model_dump()
    return options


@nir_export(LIF, IF)
def lif_to_nir(neuron: LIF, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """``nir.LIF`` with a hard reset (``nir.IF`` without leak); a soft reset is refused (``SOFT_RESET_REFUSED``)."""
    import nir

    if neuron.reset == "soft":
        raise NIRUnsupported(SOFT_RESET_REFUSED)
    tau, r = leak_to_nir(neuron, ctx)
    threshold, v_reset = firing_to_nir(neuron, shape)
    options = trained_options(neuron)
    if math.isinf(tau):
        metadata = neuron_metadata(neuron, **options)
        return [nir.IF(r=np.full(shape, r), v_threshold=threshold, v_reset=v_reset, metadata=metadata)]
    metadata = neuron_metadata(neuron, **options, learn_tau=neuron.leak.learnable)
    return [
        nir.LIF(
            tau=np.full(shape, tau), r=np.full(shape, r), v_leak=np.zeros(shape), v_threshold=threshold,
            v_reset=v_reset, metadata=metadata,
        )
    ]  # fmt: skip


def firing_from_nir(node: Any) -> dict[str, Any]:
    """Threshold and hard reset of a NIR LIF or IF (NIR has no other reset)."""
    threshold, v_reset = uniform(node.v_threshold, "v_threshold"), uniform(node.v_reset, "v_reset")
    return {"threshold": tidy(threshold), "reset": "hard", "v_reset": tidy(v_reset)}


@nir_import("LIF")
def lif_from_nir(node: Any, ctx: ImportContext) -> Part:
    options, scale, shift = leak_from_nir(node, node.tau, node.r, node.v_leak, ctx)
    options = {**options, **firing_from_nir(node), **options_from_metadata(node)}
    return Part("neuron", "lif", options, input_scale=scale, input_shift=shift)


@nir_import("IF")
def if_from_nir(node: Any, ctx: ImportContext) -> Part:
    """NIR's IF adds dt r I per step; snnlab's IF adds x: the factor dt r is folded into the synapse."""
    scale = ctx.dt * np.asarray(node.r, dtype=np.float64)
    options = {**firing_from_nir(node), **options_from_metadata(node)}
    return Part("neuron", "if", options, input_scale=1.0 if close(scale, 1.0) else scale)
