"""CUBA-LIF's fused op (``snnlab.neurons.CubaLIF``): its ``ScanModel`` and the call that ``CubaLIF.forward`` makes.

Per neuron and step, with a parameter read per neuron (a 0-d one is the same for all)::

    i[t] = alpha i[t-1] + gain_syn x[t]    (gain_syn = 1 - alpha with decay_input, else 1)
    h[t] = beta v[t-1] + gain i[t]         (gain = 1 - beta with decay_input, else 1)
    s[t] = 1[h[t] - theta > 0]
    v[t] = h[t] - theta s[t]  (soft)   or   h[t] (1 - s[t]) + v_reset s[t]  (hard)

Its backward is LIF's (``snnlab.kernels.lif``) on the membrane, with i[t] as its input, and a leaky integrator's on
the current: with g the surrogate derivative at h[t] - theta, gs[t] the output's gradient, A_v[t] = dL/dv[t] and
A_i[t] = dL/di[t] from the later steps (at T-1 the final states' gradients)::

    gh[t] = gs[t] g + A_v[t] dv/dh          gi[t] = A_i[t] + gain gh[t]
    dL/dx[t] = gain_syn gi[t]    A_v[t-1] = beta gh[t]    A_i[t-1] = alpha gi[t]
    dL/dbeta = sum gh[t] v[t-1]    dL/dgain = sum gh[t] i[t]    dL/dalpha = sum gi[t] i[t-1]
    dL/dgain_syn = sum gi[t] x[t]  dL/dtheta = sum (A_v[t] dv/dtheta - gs[t] g)

with dv/dh and dv/dtheta those of LIF's reset. alpha is the op's ``alpha_syn`` (``alpha`` names the surrogate's
sharpness). The backends are ``numba.py`` (CPU) and ``triton.py`` (GPU); each
registers ``torch.ops.snnlab.cuba_<backend>`` when ``snnlab.kernels`` first loads it. They keep no rate statistics
(``stats``): ``CubaLIF.rate_statistics`` runs the torch loop for those.
"""

from __future__ import annotations

from torch import Tensor

from .. import fused_op
from ..lif import Firing
from ..scan_op import ScanModel

CUBA_MODEL = ScanModel(
    "cuba",
    states=("v", "i"),
    params=("beta", "gain", "alpha_syn", "gain_syn", "threshold"),
    options=(("v_reset", float), ("soft", bool), ("detach_reset", bool)),
)


def cuba_fused(
    backend: str,
    x_seq: Tensor,
    state: tuple[Tensor | None, Tensor | None],
    alpha: Tensor | float,
    beta: Tensor | float,
    threshold: Tensor | float,
    firing: Firing,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """A CUBA-LIF layer over ``x_seq`` ``[T, ...]`` from ``state`` (v, i; None: at rest, 0) on a fused ``backend``:
    spikes and the final (v, i). Parameters are floats, 0-d or per-neuron tensors broadcast against a sample; the
    same spikes as ``CubaLIF.step``."""
    params = (beta, firing.gain(beta), alpha, firing.gain(alpha), threshold)
    spikes, (v, i), _ = fused_op(CUBA_MODEL.name, backend)(x_seq, state, params, firing.options(), firing.surrogate)
    return spikes, (v, i)
