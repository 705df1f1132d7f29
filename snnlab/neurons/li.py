"""Leaky integrator (LI): a LIF that never fires; its output is its membrane.

Used as the output layer under membrane readouts (SpikingJelly's threshold-1e9
trick, Norse's ``LICell``): h[t] = beta v[t-1] + (1 - beta) x[t] (or + x[t]), output h[t].

NIR: ``LI`` (``tau dv/dt = (v_leak - v) + r I``), ``I`` for no leak. Both discretisations of that equation give
v[t] = beta v[t-1] + (1 - beta)(v_leak + r I[t]) with beta = exp(-dt/tau) (``exp``, the exact solution for an input
held over the step) or 1 - dt/tau (``euler``), so for a step of dt seconds: tau = ``continuous_tau(beta, dt)``,
r = 1 with ``decay_input`` (else 1 / (1 - beta)) and v_leak = 0 (``leak_to_nir``, ``leak_from_nir``).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from ..export.registry import (
    ExportContext,
    ImportContext,
    NIRUnsupported,
    Part,
    close,
    nir_export,
    nir_import,
    options_from_metadata,
    tidy,
    uniform,
)
from .base import MembraneState, Neuron, validated
from .leak import Discretization, Leak, TimeConstant, charge, continuous_tau, decay_factor


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


def stage_to_nir(leak: Leak, decay_input: bool, dt: float) -> tuple[float, float]:
    """NIR's (tau, input factor) of one leaky stage for a step of ``dt`` seconds: the continuous time constant of
    its beta (``inf`` without leak) and the factor (NIR's ``r``, or ``w_in`` of a synaptic current) that gives its
    input gain (1 - beta, or 1 without ``decay_input``): (1 - beta) factor per step, or dt factor without leak."""
    beta = leak.beta
    beta = float(beta.detach()) if isinstance(beta, Tensor) else beta
    gain = 1 - beta if decay_input else 1.0
    tau = continuous_tau(beta, dt, leak.discretization)  # beta is per step, and a step lasts dt
    return tau, (gain / (1 - beta) if beta < 1 else gain / dt)


def leak_to_nir(neuron: LI, ctx: ExportContext) -> tuple[float, float]:
    """NIR's (tau, r) of a leaky neuron's membrane (``stage_to_nir``)."""
    return stage_to_nir(neuron.leak, neuron.decay_input, ctx.dt)


def decay_from_nir(tau: Any, name: str, ctx: ImportContext, discretization: Discretization) -> tuple[float, float]:
    """A NIR time constant (one per layer, in seconds) and the decay per step of ``ctx.dt`` it gives; refused when
    the step cannot be taken (tau below dt)."""
    tau_s = uniform(tau, name)
    beta = decay_factor(tau_s, ctx.dt, discretization)
    if not 0 <= beta < 1:
        raise NIRUnsupported(
            f"{name} = {tau_s:.6g} s is below the step dt = {ctx.dt:.6g} s, which {discretization} cannot step "
            f"(beta = {beta:.6g}); give the dt the file was written for"
        )
    return tau_s, beta


def leak_from_nir(
    node: Any, tau: Any, r: Any, v_leak: Any, ctx: ImportContext
) -> tuple[dict[str, Any], np.ndarray | float, np.ndarray | float]:
    """The options (``tau`` in steps, ``discretization``, ``decay_input``) of a leaky neuron read from NIR's tau,
    r and v_leak, and the affine map of its input current that no option gives (folded into the synapse before
    it): NIR adds (1 - beta)(v_leak + r I) per step, snnlab (1 - beta) x or x. ``decay_input`` is chosen so that
    the map is the identity whenever it can be (r = 1, or r = 1 / (1 - beta))."""
    discretization = node.metadata.get("discretization", ctx.discretization)
    tau_s, beta = decay_from_nir(tau, "tau", ctx, discretization)
    r = np.asarray(r, dtype=np.float64)
    decay_input = close(r, 1.0)
    gain = 1 - beta if decay_input else 1.0
    scale = (1 - beta) * r / gain
    shift = (1 - beta) * np.asarray(v_leak, dtype=np.float64) / gain
    options = {"tau": tidy(tau_s / ctx.dt), "discretization": discretization, "decay_input": decay_input}
    return options, (1.0 if close(scale, 1.0) else scale), (0.0 if not shift.any() else shift)


def neuron_metadata(neuron: Neuron, **options: Any) -> dict[str, str]:
    """What a NIR neuron node carries besides its equation: the discretisation it was exported with, and the
    snnlab options NIR has no field for (surrogate, learnable parameters), for an exact config on import."""
    leak = getattr(neuron, "leak", None)
    found = {"discretization": leak.discretization} if leak is not None else {}
    return {**found, "snnlab_options": json.dumps(options, sort_keys=True)}


@nir_export(LI)
def li_to_nir(neuron: LI, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """``nir.LI`` (``nir.I`` without leak)."""
    import nir

    tau, r = leak_to_nir(neuron, ctx)
    metadata = neuron_metadata(neuron, learn_tau=neuron.leak.learnable)
    if math.isinf(tau):
        return [nir.I(r=np.full(shape, r), metadata=metadata)]
    return [nir.LI(tau=np.full(shape, tau), r=np.full(shape, r), v_leak=np.zeros(shape), metadata=metadata)]


@nir_import("LI")
def li_from_nir(node: Any, ctx: ImportContext) -> Part:
    options, scale, shift = leak_from_nir(node, node.tau, node.r, node.v_leak, ctx)
    return Part("neuron", "li", {**options, **options_from_metadata(node)}, input_scale=scale, input_shift=shift)


@nir_import("I")
def integrator_from_nir(node: Any, ctx: ImportContext) -> Part:
    """A pure integrator, v += dt r I per step: ``li`` with ``tau: .inf`` and no input decay."""
    scale = ctx.dt * np.asarray(node.r, dtype=np.float64)
    options = {"tau": math.inf, "decay_input": False, **options_from_metadata(node)}
    return Part("neuron", "li", options, input_scale=1.0 if close(scale, 1.0) else scale)
