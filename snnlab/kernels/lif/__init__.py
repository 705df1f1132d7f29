"""The LIF family's fused op (LIF, IF, PLIF): its ``ScanModel`` and the call that ``LIF.forward`` makes.

Per neuron and step, with a parameter read per neuron (a 0-d one is the same for all)::

    h[t] = beta v[t-1] + gain x[t]          (gain = 1 - beta with decay_input, else 1)
    s[t] = 1[h[t] - theta > 0]
    v[t] = h[t] - theta s[t]  (soft)   or   h[t] (1 - s[t]) + v_reset s[t]  (hard)

Its backward, with g the surrogate derivative at u[t] = h[t] - theta, r = g (0 with detach_reset) and
a[t] = dL/dv[t] (a[T-1] = the gradient of the final state, a[t-1] = beta gh[t])::

    dv/dh   = 1 - theta r  (soft)            (1 - s) + (v_reset - h) r  (hard)
    dv/dtheta = theta r - s  (soft)          (h - v_reset) r  (hard)
    gh[t]   = gs[t] g + a[t] dv/dh           dL/dx[t] = gain gh[t]      dL/dv0 = beta gh[0]
    dL/dbeta = sum gh[t] v[t-1]    dL/dgain = sum gh[t] x[t]    dL/dtheta = sum (a[t] dv/dtheta - gs[t] g)

(sums over t, per neuron). With ``cut`` the membrane enters each step as a constant (SLTT's cut temporal path,
``LIF.forward_cut``): a[t-1] = 0 instead of beta gh[t], so each step's gradient stays within the step. beta and gain are separate inputs so that autograd chains both through
beta = sigmoid(w) (PLIF) and gain = 1 - beta. With ``stats`` the forward also accumulates the rate
(1/T) sum s[t] and the eligibility (1/T) sum g(u[t]) k[t], where k[t] = dh[t]/dc is the membrane's derivative along
a constant input current c: k[0] = gain, k[t] = gain + beta k[t-1] dv/dh[t-1] (``snnlab.kernels.rate``); and the
same derivative of the rate along beta, gain and theta, (1/T) sum g(u[t]) du[t]/dq with dh[t]/dbeta = v[t-1] + beta
dv[t-1]/dbeta, dh[t]/dgain = x[t] + beta dv[t-1]/dgain, dh[t]/dtheta = beta dv[t-1]/dtheta (du/dtheta = that - 1),
and dv[t]/dq = dv/dh dh[t]/dq, plus dv/dtheta for theta (rate-based BP's slopes of learnable parameters).

The backends are ``numba.py`` (CPU) and ``triton.py`` (GPU); each registers ``torch.ops.snnlab.lif_<backend>``
when ``snnlab.kernels`` first loads it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from torch import Tensor

from ...surrogates import Surrogate
from .. import fused_op
from ..scan_op import ScanModel

LIF_MODEL = ScanModel(
    "lif",
    states=("v",),
    params=("beta", "gain", "threshold"),
    options=(("v_reset", float), ("soft", bool), ("detach_reset", bool), ("cut", bool)),
)


class Firing(NamedTuple):
    """How a neuron of the LIF family (LIF, IF, PLIF, ALIF, CUBA-LIF) charges, fires and resets: what its fused op
    takes besides tensors (``LIF.firing()``)."""

    decay_input: bool
    reset: Literal["soft", "hard"]
    v_reset: float
    detach_reset: bool
    surrogate: Surrogate

    def gain(self, decay: Tensor | float) -> Tensor | float:
        """The input's factor beside a leak ``decay``: 1 - decay with decay_input (computed as ``leak.charge``
        computes it, so the kernels' float32 products match), else 1."""
        return (1 - decay) if self.decay_input else 1.0

    def options(self) -> tuple[float, bool, bool]:
        """(v_reset, soft, detach_reset): the family's ops' first options (``ScanModel.options``)."""
        return float(self.v_reset), self.reset == "soft", self.detach_reset


def lif_fused(
    backend: str,
    x_seq: Tensor,
    v: Tensor | None,
    beta: Tensor | float,
    threshold: Tensor | float,
    firing: Firing,
    stats: bool = False,
    cut: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """A LIF layer over ``x_seq`` ``[T, ...]`` from membrane ``v`` (None: at rest, 0) on a fused ``backend``: spikes,
    the final membrane and, with ``stats``, ``[5, ...]``: the rate, the eligibility and the rate's derivatives along
    beta, gain and threshold; ``cut`` drops the gradient from one step's membrane to the next (the values are the
    same). ``beta`` and ``threshold`` are floats, 0-d or per-neuron tensors broadcast against a sample (``[F]``,
    ``[C, 1, 1]``); the same spikes as ``LIF.step``."""
    spikes, (v_last,), statistics = fused_op(LIF_MODEL.name, backend)(
        x_seq, (v,), (beta, firing.gain(beta), threshold), (*firing.options(), cut), firing.surrogate, stats
    )
    return spikes, v_last, statistics
