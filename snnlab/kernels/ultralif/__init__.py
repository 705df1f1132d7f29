"""UltraLIF's fused op (UltraLIF, UltraPLIF): its ``ScanModel`` and the call that ``UltraLIF.forward`` makes.

Per neuron and step, with a = v[t-1] + ln tau, d = a - x[t], e = exp(-|d| / eps) (no surrogate: the backward is the
derivative of this forward)::

    h[t] = max(a, x[t]) + eps ln(1 + e)            (= LSE_eps(a, x[t]))
    s[t] = sigmoid(u),  u = (h[t] - theta) / eps
    v[t] = h[t] (1 - s[t])

Its backward, with p = dh/da = sigmoid(d / eps) (1 - p = dh/dx), q = s (1 - s), gs[t] = dL/ds[t] and
b[t] = dL/dv[t] (b[T-1] = the gradient of the final state)::

    gh[t] = gs q / eps + b ((1 - s) - h q / eps)        c[t] = (b h - gs) q / eps
    dL/dx[t] = gh (1 - p)      b[t-1] = gh p      dL/dv0 = b[-1]
    dL/dln_tau = sum gh p      dL/dtheta = sum c      dL/deps = sum gh (ln(1 + e) + |d| e / ((1 + e) eps)) + c u

(sums over t, per neuron; dh/deps = (h - p a - (1 - p) x) / eps, written with the smaller term's weight
e / (1 + e)). The outputs are real-valued, so the kernels agree with the torch loop to float rounding (not bit for
bit as LIF's spikes). The backends are ``numba.py`` (CPU) and ``triton.py`` (GPU).
"""

from __future__ import annotations

from torch import Tensor

from .. import fused_op
from ..scan_op import ScanModel

ULTRALIF_MODEL = ScanModel(
    "ultralif", states=("v",), params=("ln_tau", "eps", "threshold"), options=(), surrogate=False
)


def ultralif_fused(
    backend: str,
    x_seq: Tensor,
    v: Tensor | None,
    ln_tau: Tensor | float,
    eps: Tensor | float,
    threshold: Tensor | float,
) -> tuple[Tensor, Tensor]:
    """An UltraLIF layer over ``x_seq`` ``[T, ...]`` from membrane ``v`` (None: at rest, 0) on a fused ``backend``:
    the outputs s and the final membrane. The parameters are floats, 0-d or per-neuron tensors broadcast against a
    sample."""
    s, (v_last,), _ = fused_op(ULTRALIF_MODEL.name, backend)(x_seq, (v,), (ln_tau, eps, threshold), ())
    return s, v_last
