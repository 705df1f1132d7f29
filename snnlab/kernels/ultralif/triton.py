"""Triton kernels of UltraLIF: forward over all T in one launch, backward over all T in one launch.

Laid out as the LIF kernels (``snnlab.kernels.lif.triton``), on the launch sizes, parameter reads and segment length
of ``snnlab.kernels.triton_common``: each program owns BLOCK neurons and walks the time axis with the membrane in float32 registers.
Saved for backward: references to the input and the initial membrane, plus the membrane at the start of every
K-step segment (``[ceil(T/K), N]`` float32). The backward walks the segments from the last, recomputes a segment's
K membranes from its checkpoint into registers and runs back through them.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..triton_common import define_triton_op, initial, param
from ..triton_common import unsupported as unsupported  # what the dispatch asks this backend's module
from . import ULTRALIF_MODEL


@triton.jit
def _charge(v, x, ln_tau, eps):
    """(h, e, d): h = LSE_eps(v + ln tau, x) = max + eps ln(1 + e), e = exp(-|d| / eps), d = v + ln tau - x."""
    a = v + ln_tau
    d = a - x
    e = tl.exp(-tl.abs(d) / eps)
    return tl.maximum(a, x) + eps * tl.log(1.0 + e), e, d


@triton.jit
def _forward_kernel(
    x_ptr, v0_ptr, ln_tau_ptr, eps_ptr, theta_ptr, ln_tau_len, eps_len, theta_len, s_ptr, v_ptr, ckpt_ptr, T, N,
    SAVE: tl.constexpr, HAS_V0: tl.constexpr, K: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    ln_tau = param(ln_tau_ptr, n, mask, ln_tau_len)
    eps = tl.where(mask, param(eps_ptr, n, mask, eps_len), 1.0)  # no 0 / 0 in the lanes past N
    theta = param(theta_ptr, n, mask, theta_len)
    v = initial(v0_ptr, n, mask, HAS_V0, BLOCK)  # 0 at rest
    zero = tl.zeros([BLOCK], tl.int32)  # `zero + t < T` is a step's liveness as a vector, as masks need it
    x_ptrs = x_ptr + n
    s_ptrs = s_ptr + n
    ckpt_ptrs = ckpt_ptr + n
    for seg in range(0, tl.cdiv(T, K)):
        if SAVE:
            tl.store(ckpt_ptrs, v, mask=mask)
            ckpt_ptrs += N
        for k in tl.static_range(K):
            live = zero + (seg * K + k) < T
            x = tl.load(x_ptrs, mask=mask & live, other=0.0).to(tl.float32)
            h = _charge(v, x, ln_tau, eps)[0]
            s = tl.sigmoid((h - theta) / eps)
            v = tl.where(live, h * (1.0 - s), v)
            tl.store(s_ptrs, s.to(s_ptr.dtype.element_ty), mask=mask & live)
            x_ptrs += N
            s_ptrs += N
    tl.store(v_ptr + n, v.to(v_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(
    gs_ptr, gs_t, gs_n, gv_ptr, x_ptr, ckpt_ptr, ln_tau_ptr, eps_ptr, theta_ptr, ln_tau_len, eps_len, theta_len,
    gx_ptr, gv0_ptr, gp_ptr, T, N,
    HAS_GS: tl.constexpr, HAS_GV: tl.constexpr, PARAM_GRADS: tl.constexpr, HAS_V0: tl.constexpr, K: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    ln_tau = param(ln_tau_ptr, n, mask, ln_tau_len)
    eps = tl.where(mask, param(eps_ptr, n, mask, eps_len), 1.0)  # no 0 / 0 in the lanes past N
    theta = param(theta_ptr, n, mask, theta_len)
    b = initial(gv_ptr, n, mask, HAS_GV, BLOCK)  # dL/dv[t], from the last step back
    acc_ln_tau = tl.zeros([BLOCK], tl.float32)
    acc_eps = tl.zeros([BLOCK], tl.float32)
    acc_theta = tl.zeros([BLOCK], tl.float32)
    zero = tl.zeros([BLOCK], tl.int32)
    segments = tl.cdiv(T, K)
    for j in range(0, segments):
        seg = segments - 1 - j
        start = (seg * K).to(tl.int64)
        v = tl.load(ckpt_ptr + seg.to(tl.int64) * N + n, mask=mask, other=0.0)
        v_prev = ()
        xs = ()
        for k in tl.static_range(K):  # recompute the segment, keeping v[t-1] and x[t]
            x = tl.load(x_ptr + (start + k) * N + n, mask=mask & (zero + (start + k) < T), other=0.0).to(tl.float32)
            v_prev = v_prev + (v,)
            xs = xs + (x,)
            h = _charge(v, x, ln_tau, eps)[0]
            v = h * (1.0 - tl.sigmoid((h - theta) / eps))
        for k in tl.static_range(K - 1, -1, -1):
            t = start + k
            live = zero + t < T
            h, e, d = _charge(v_prev[k], xs[k], ln_tau, eps)
            u = (h - theta) / eps
            s = tl.sigmoid(u)
            if HAS_GS:
                g = tl.load(gs_ptr + t * gs_t + n * gs_n, mask=mask & live, other=0.0).to(tl.float32)
            else:
                g = tl.zeros([BLOCK], tl.float32)
            small = e / (1.0 + e)  # the weight of the smaller term
            p = tl.where(d >= 0, 1.0 - small, small)
            c_theta = tl.where(live, (b * h - g) * (s * (1.0 - s)) / eps, 0.0)
            gh = tl.where(live, b * (1.0 - s) - c_theta, 0.0)
            tl.store(gx_ptr + t * N + n, (gh * (1.0 - p)).to(gx_ptr.dtype.element_ty), mask=mask & live)
            if PARAM_GRADS:
                acc_ln_tau += gh * p
                acc_eps += gh * (tl.log(1.0 + e) + tl.abs(d) * small / eps) + c_theta * u
                acc_theta += c_theta
            b = tl.where(live, gh * p, b)
    if HAS_V0:
        tl.store(gv0_ptr + n, b.to(gv0_ptr.dtype.element_ty), mask=mask)
    if PARAM_GRADS:  # per neuron; scan_op sums them to each parameter's length
        tl.store(gp_ptr + n, acc_ln_tau, mask=mask)
        tl.store(gp_ptr + N + n, acc_eps, mask=mask)
        tl.store(gp_ptr + 2 * N + n, acc_theta, mask=mask)


op = define_triton_op(ULTRALIF_MODEL, _forward_kernel, _backward_kernel, exact_products=False)
"""``torch.ops.snnlab.ultralif_triton`` behind its ``ScanOp`` wrapper."""
