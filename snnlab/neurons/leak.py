"""The membrane leak shared by LIF and the leaky integrator: a decay factor beta, fixed or learnable."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

Discretization = Literal["exp", "euler"]

TimeConstant = Annotated[float, Field(gt=0, allow_inf_nan=True)]
"""A membrane time constant: positive, and ``.inf`` for no leak (beta = 1, a pure integrator: IF is LIF with it);
the one option where infinity is meaningful, so it is exempt from the finite-numbers rule (NaN stays refused)."""


def decay_factor(tau: float, dt: float, discretization: Discretization) -> float:
    """beta from a time constant: exp(-dt/tau) (exact zero-order hold) or 1 - dt/tau (Euler)."""
    if discretization == "exp":
        return math.exp(-dt / tau)
    return 1.0 - dt / tau


def continuous_tau(beta: float, dt: float, discretization: Discretization) -> float:
    """The continuous time constant (in the units of ``dt``) whose ``discretization`` gives the decay ``beta`` per
    step of ``dt``: dt / ln(1/beta) (``exp``, the exact zero-order hold of tau dv/dt = -v) or dt / (1 - beta)
    (``euler``); the inverse of ``decay_factor``. NIR's ``tau`` for a step of ``dt`` seconds."""
    if beta >= 1:
        return math.inf
    if discretization == "exp":
        return dt / -math.log(beta) if beta > 0 else 0.0
    return dt / (1 - beta)


def charge(x: Tensor, v: Tensor, beta: Tensor | float, decay_input: bool) -> Tensor:
    """Pre-reset membrane h = beta v + (1 - beta) x, or beta v + x when ``decay_input`` is false."""
    if decay_input:
        return beta * v + (1 - beta) * x
    return beta * v + x


class Leak(nn.Module):
    """Holds beta; with ``learnable`` it is a parameter, beta = sigmoid(w) (PLIF, Fang et al. 2021): one per layer, or
    one per neuron with a ``shape`` (ALIF's adaptation).

    The sigmoid keeps beta in (0, 1) whatever the optimiser does, for either
    discretisation, and is initialised so that beta starts at the value ``tau`` gives.
    """

    def __init__(
        self, tau: float, dt: float, discretization: Discretization, learnable: bool, shape: tuple[int, ...] = ()
    ) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.dt = dt
        self.discretization = discretization
        beta = decay_factor(tau, dt, discretization)
        if discretization == "exp" and beta == 0:  # its time constant is 0, which no neuron (nor readout) accepts
            raise ValueError(
                f"tau={tau}, dt={dt}: beta = exp(-dt/tau) underflows to 0; keep dt/tau below 700 "
                "(euler with tau = dt gives beta = 0 exactly)"
            )
        if not 0 <= beta <= 1:
            raise ValueError(
                f"tau={tau}, dt={dt} with {discretization} discretisation gives beta={beta}, outside [0, 1]"
            )
        self.learnable = learnable
        if learnable:
            if not 0 < beta < 1:
                raise ValueError(f"a learnable tau needs 0 < beta < 1, got beta={beta}")
            self.w = nn.Parameter(torch.full(shape, math.log(beta / (1 - beta))))
        else:
            self._beta = beta

    @property
    def beta(self) -> Tensor | float:
        return torch.sigmoid(self.w) if self.learnable else self._beta

    @property
    def tau(self) -> float:
        """The time constant that the current beta corresponds to (of their mean, for one per neuron), in the units of
        ``dt``."""
        beta = float(torch.sigmoid(self.w.detach()).mean()) if self.learnable else self._beta
        return continuous_tau(beta, self.dt, self.discretization)

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4g}, dt={self.dt}, discretization={self.discretization}, learnable={self.learnable}"
