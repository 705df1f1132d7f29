"""ALIF's fused op (``snnlab.neurons.ALIF``): its ``ScanModel`` and the call that ``ALIF.forward`` makes.

Per neuron and step, with a parameter read per neuron (a 0-d one is the same for all)::

    B[t] = b0 + beta_a a[t-1]
    h[t] = beta v[t-1] + gain x[t]          (gain = 1 - beta with decay_input, else 1)
    s[t] = 1[h[t] - B[t] > 0]
    v[t] = h[t] - B[t] s[t]  (soft)   or   h[t] (1 - s[t]) + v_reset s[t]  (hard)
    a[t] = rho a[t-1] + gain_a s[t]         (gain_a = 1 - rho)

Its backward, with g the surrogate derivative at u[t] = h[t] - B[t], keep = 0 with detach_reset (else 1), gs[t]
the output's gradient and A_v[t] = dL/dv[t], A_a[t] = dL/da[t] (at T-1 the final states' gradients)::

    dv/ds = -B[t]  (soft)          v_reset - h[t]  (hard)         the reset's dependence on the spike
    dv/dh = 1      (soft)          1 - s[t]        (hard)         ... and on h and B directly
    dv/dB = -s[t]  (soft)          0               (hard)
    gu[t] = g (gs[t] + gain_a A_a[t] + keep A_v[t] dv/ds)        dL/du[t]
    gh[t] = gu[t] + A_v[t] dv/dh          gB[t] = A_v[t] dv/dB - gu[t]
    dL/dx[t] = gain gh[t]    A_v[t-1] = beta gh[t]    A_a[t-1] = rho A_a[t] + beta_a gB[t]
    dL/dbeta = sum gh[t] v[t-1]    dL/dgain = sum gh[t] x[t]      dL/drho = sum A_a[t] a[t-1]
    dL/dgain_a = sum A_a[t] s[t]   dL/dbeta_a = sum gB[t] a[t-1]  dL/db0 = sum gB[t]

(sums over t, per neuron; dL/dv0 = A_v[-1], dL/da0 = A_a[-1]). rho and gain_a, like beta and gain, are separate
inputs so that autograd chains a learned tau_a through both. The backends are ``numba.py`` (CPU) and ``triton.py``
(GPU); each registers ``torch.ops.snnlab.alif_<backend>`` when ``snnlab.kernels`` first loads it. They keep no rate
statistics (``stats``): ``ALIF.rate_statistics`` runs the torch loop for those.
"""

from __future__ import annotations

from torch import Tensor

from .. import fused_op
from ..lif import Firing
from ..scan_op import ScanModel

ALIF_MODEL = ScanModel(
    "alif",
    states=("v", "a"),
    params=("beta", "gain", "rho", "gain_a", "beta_a", "b0"),
    options=(("v_reset", float), ("soft", bool), ("detach_reset", bool)),
)


def alif_fused(
    backend: str,
    x_seq: Tensor,
    state: tuple[Tensor | None, Tensor | None],
    beta: Tensor | float,
    rho: Tensor | float,
    beta_a: Tensor | float,
    b0: Tensor | float,
    firing: Firing,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """An ALIF layer over ``x_seq`` ``[T, ...]`` from ``state`` (v, a; None: at rest, 0) on a fused ``backend``:
    spikes and the final (v, a). Parameters are floats, 0-d or per-neuron tensors broadcast against a sample; the
    same spikes as ``ALIF.step``."""
    params = (beta, firing.gain(beta), rho, 1 - rho, beta_a, b0)
    spikes, (v, a), _ = fused_op(ALIF_MODEL.name, backend)(x_seq, state, params, firing.options(), firing.surrogate)
    return spikes, (v, a)
