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
* NIR ``CubaLIF`` (``tau_syn dI/dt = -I + w_in S``, ``tau_mem dv/dt = (v_leak - v) + r I``, reset to v_reset),
  stepped as every NIR reader steps it, I[t] = alpha I[t-1] + (1 - alpha) w_in S[t] then
  v[t] = beta v[t-1] + (1 - beta)(v_leak + r I[t]) (the membrane reads the step's new current), is this neuron for
  a step of ``dt_s`` seconds with tau_syn = ``continuous_tau(alpha)``, tau_mem = ``continuous_tau(beta)`` (``exp``:
  dt_s / ln(1/beta), each stage's exact solution for an input held over the step; ``euler``: dt_s / (1 - beta)),
  w_in = r = 1 with ``decay_input``, else w_in = 1/(1 - alpha) and r = 1/(1 - beta) (snnTorch's export at dt_s =
  1e-4: tau_syn/dt, tau_mem/dt, METHODS.md 1.4), v_leak = 0. ``CubaLI`` is NIR's ``CubaLI``. A soft reset, and a
  membrane without leak (``tau: .inf``), have no NIR node and are refused. Import reads w_in r into the synapse
  before the neuron where no ``decay_input`` gives it, and refuses v_leak != 0 (it drives the membrane behind the
  current, where no snnlab weight or bias reaches).

Example::

    >>> import torch
    >>> from snnlab.neurons import CubaLIF
    >>> neuron = CubaLIF(tau=4.0, tau_syn=2.0, decay_input=False)
    >>> spikes, state = neuron(torch.rand(8, 4, 10))   # [T, B, N]
    >>> spikes.shape, state.i.shape
    (torch.Size([8, 4, 10]), torch.Size([4, 10]))
"""

from __future__ import annotations

import math
from typing import Annotated, Any, NamedTuple

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from ..export.registry import ExportContext, ImportContext, NIRUnsupported, Part, close, nir_export, nir_import, tidy
from ..kernels import Backend, choose
from ..kernels.cuba import cuba_fused
from ..surrogates import SurrogateSpec
from .base import Neuron, validated
from .leak import Discretization, Leak, TimeConstant, charge
from .li import LI, decay_from_nir, neuron_metadata, options_from_metadata, stage_to_nir
from .lif import (
    LIF,
    SOFT_RESET_REFUSED,
    Reset,
    fire_and_reset,
    firing_from_nir,
    firing_to_nir,
    trained_options,
)


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


def _stages_to_nir(neuron: CubaLI | CubaLIF, shape: tuple[int, ...], ctx: ExportContext) -> dict[str, np.ndarray]:
    """NIR's tau_syn, w_in, tau_mem, r and v_leak of both stages, one value per neuron."""
    tau_syn, w_in = stage_to_nir(neuron.synaptic, neuron.decay_input, ctx.dt)
    tau_mem, r = stage_to_nir(neuron.leak, neuron.decay_input, ctx.dt)
    if math.isinf(tau_mem):
        raise NIRUnsupported(
            "tau: .inf (a membrane without leak) has no NIR node: CubaLIF and CubaLI always leak "
            "(tau_mem dv/dt = (v_leak - v) + r I); give the membrane a finite tau to export"
        )
    values = {"tau_syn": tau_syn, "w_in": w_in, "tau_mem": tau_mem, "r": r, "v_leak": 0.0}
    return {key: np.full(shape, value) for key, value in values.items()}


def _learned(neuron: CubaLI | CubaLIF) -> dict[str, bool]:
    return {"learn_tau": neuron.leak.learnable, "learn_tau_syn": neuron.synaptic.learnable}


@nir_export(CubaLIF)
def cuba_lif_to_nir(neuron: CubaLIF, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """``nir.CubaLIF`` with a hard reset; a soft reset is refused (``SOFT_RESET_REFUSED``)."""
    import nir

    if neuron.reset == "soft":
        raise NIRUnsupported(SOFT_RESET_REFUSED)
    threshold, v_reset = firing_to_nir(neuron, shape)
    metadata = neuron_metadata(neuron, **trained_options(neuron), **_learned(neuron))
    return [
        nir.CubaLIF(**_stages_to_nir(neuron, shape, ctx), v_threshold=threshold, v_reset=v_reset, metadata=metadata)
    ]


@nir_export(CubaLI)
def cuba_li_to_nir(neuron: CubaLI, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """``nir.CubaLI``."""
    import nir

    return [nir.CubaLI(**_stages_to_nir(neuron, shape, ctx), metadata=neuron_metadata(neuron, **_learned(neuron)))]


def _stages_from_nir(node: Any, ctx: ImportContext) -> tuple[dict[str, Any], np.ndarray | float]:
    """The options (``tau``, ``tau_syn`` in steps, ``discretization``, ``decay_input``) of a NIR CubaLIF or CubaLI
    and the input factor no option gives (folded into the synapse before it). Per step NIR adds
    (1 - alpha)(1 - beta) w_in r S to the membrane through the current, snnlab (1 - alpha)(1 - beta) x or x:
    ``decay_input`` is chosen where it makes the factor 1 (w_in r = 1, or 1 / ((1 - alpha)(1 - beta)))."""
    if np.any(np.asarray(node.v_leak) != 0):
        raise NIRUnsupported(
            "v_leak != 0: it drives the membrane behind the synaptic current, where no snnlab weight or bias reaches "
            "(a bias on the input would pass through the current's rise); only v_leak = 0 imports"
        )
    discretization = node.metadata.get("discretization", ctx.discretization)
    tau_syn, alpha = decay_from_nir(node.tau_syn, "tau_syn", ctx, discretization)
    tau_mem, beta = decay_from_nir(node.tau_mem, "tau_mem", ctx, discretization)
    factor = np.asarray(node.w_in, dtype=np.float64) * np.asarray(node.r, dtype=np.float64)
    decay_input = close(factor, 1.0)
    scale = factor if decay_input else factor * (1 - alpha) * (1 - beta)
    options = {
        "tau": tidy(tau_mem / ctx.dt),
        "tau_syn": tidy(tau_syn / ctx.dt),
        "discretization": discretization,
        "decay_input": decay_input,
    }
    return options, (1.0 if close(scale, 1.0) else scale)


@nir_import("CubaLIF")
def cuba_lif_from_nir(node: Any, ctx: ImportContext) -> Part:
    options, scale = _stages_from_nir(node, ctx)
    options = {**options, **firing_from_nir(node), **options_from_metadata(node)}
    return Part("neuron", "cuba_lif", options, input_scale=scale)


@nir_import("CubaLI")
def cuba_li_from_nir(node: Any, ctx: ImportContext) -> Part:
    options, scale = _stages_from_nir(node, ctx)
    return Part("neuron", "cuba_li", {**options, **options_from_metadata(node)}, input_scale=scale)
