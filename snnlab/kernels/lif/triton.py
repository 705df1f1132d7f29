"""Triton kernels of the LIF family: forward over all T in one launch, backward over all T in one launch, on the
pieces every model's Triton kernels share (``snnlab.kernels.triton_common``).

Each program owns BLOCK neurons and walks the time axis, the membrane in registers. Saved for backward: references
to the input ``x`` and the initial membrane, plus the membrane at the start of every K-step segment (``[ceil(T/K),
N]`` float32, 4/K bytes per neuron-step: 0.5 at K = 8, where SpikingJelly keeps the pre-spike membrane, 4 bytes).
The backward walks the segments from the last, recomputes a segment's K membranes forward from its checkpoint into
registers (a tuple unrolled at compile time) and then runs back through them; the recomputation uses the forward's
float operations (no fused multiply-add), so it yields the forward's exact spikes. This reads x once more instead of
reading a saved membrane: the same bytes moved, an eighth of the memory.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..triton_common import (
    charge,
    define_triton_op,
    initial,
    param,
    reset,
    reset_constants,
    reset_grads,
    surrogate_grad,
)
from ..triton_common import unsupported as unsupported  # what the dispatch asks this backend's module
from . import LIF_MODEL


@triton.jit
def _forward_kernel(
    x_ptr, v0_ptr, beta_ptr, gain_ptr, theta_ptr, beta_len, gain_len, theta_len, s_ptr, v_ptr, ckpt_ptr, stats_ptr,
    T, N, v_reset, alpha,
    SOFT: tl.constexpr, SAVE: tl.constexpr, HAS_V0: tl.constexpr, STATS: tl.constexpr, DETACH: tl.constexpr,
    SURROGATE: tl.constexpr, EXACT: tl.constexpr, K: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    v_reset = tl.cast(v_reset, tl.float32)  # Inductor passes Python floats as fp64
    alpha = tl.cast(alpha, tl.float32)
    beta = param(beta_ptr, n, mask, beta_len)
    gain = param(gain_ptr, n, mask, gain_len)
    theta = param(theta_ptr, n, mask, theta_len)
    v = initial(v0_ptr, n, mask, HAS_V0, BLOCK)  # 0 at rest
    k = tl.zeros([BLOCK], tl.float32)  # with STATS: dv[t-1]/dq along q = a constant input c, beta, gain, theta
    k_beta = tl.zeros([BLOCK], tl.float32)
    k_gain = tl.zeros([BLOCK], tl.float32)
    k_theta = tl.zeros([BLOCK], tl.float32)
    rate = tl.zeros([BLOCK], tl.float32)
    eligibility = tl.zeros([BLOCK], tl.float32)  # (1/T) sum g(u) du/dq for each q (numba.py's _statistics_rows)
    e_beta = tl.zeros([BLOCK], tl.float32)
    e_gain = tl.zeros([BLOCK], tl.float32)
    e_theta = tl.zeros([BLOCK], tl.float32)
    zero = tl.zeros([BLOCK], tl.int32)  # `zero + t < T` is a step's liveness as a vector, as masks need it
    x_ptrs = x_ptr + n
    s_ptrs = s_ptr + n
    ckpt_ptrs = ckpt_ptr + n
    for seg in range(0, tl.cdiv(T, K)):
        if SAVE:
            tl.store(ckpt_ptrs, v, mask=mask)
            ckpt_ptrs += N
        for k_ in tl.static_range(K):
            live = zero + (seg * K + k_) < T
            x = tl.load(x_ptrs, mask=mask & live, other=0.0).to(tl.float32)
            h = charge(v, x, beta, gain, EXACT)
            f = (h - theta > 0).to(tl.float32)
            if STATS:
                sg = tl.where(live, surrogate_grad(h - theta, alpha, SURROGATE), 0.0)
                dv_dh, dv_dtheta = reset_grads(h, f, sg, theta, v_reset, SOFT, DETACH)
                kc, kb, kg, kt = beta * k + gain, v + beta * k_beta, x + beta * k_gain, beta * k_theta
                rate += tl.where(live, f, 0.0)
                eligibility += sg * kc
                e_beta += sg * kb
                e_gain += sg * kg
                e_theta += sg * (kt - 1.0)
                k, k_beta, k_gain, k_theta = kc * dv_dh, kb * dv_dh, kg * dv_dh, kt * dv_dh + dv_dtheta
            v = tl.where(live, reset(h, f, theta, v_reset, SOFT), v)
            tl.store(s_ptrs, f.to(s_ptr.dtype.element_ty), mask=mask & live)
            x_ptrs += N
            s_ptrs += N
    tl.store(v_ptr + n, v.to(v_ptr.dtype.element_ty), mask=mask)
    if STATS:
        tl.store(stats_ptr + n, rate / T, mask=mask)
        tl.store(stats_ptr + N + n, eligibility / T, mask=mask)
        tl.store(stats_ptr + 2 * N + n, e_beta / T, mask=mask)
        tl.store(stats_ptr + 3 * N + n, e_gain / T, mask=mask)
        tl.store(stats_ptr + 4 * N + n, e_theta / T, mask=mask)


@triton.jit
def _backward_kernel(
    gs_ptr, gs_t, gs_n, gv_ptr, x_ptr, ckpt_ptr, beta_ptr, gain_ptr, theta_ptr, beta_len, gain_len, theta_len,
    gx_ptr, gv0_ptr, gp_ptr, T, N, v_reset, alpha,
    SOFT: tl.constexpr, DETACH: tl.constexpr, CUT: tl.constexpr, SURROGATE: tl.constexpr, HAS_GS: tl.constexpr,
    HAS_GV: tl.constexpr, PARAM_GRADS: tl.constexpr, HAS_V0: tl.constexpr, EXACT: tl.constexpr, K: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    v_reset = tl.cast(v_reset, tl.float32)  # Inductor passes Python floats as fp64
    alpha = tl.cast(alpha, tl.float32)
    beta = param(beta_ptr, n, mask, beta_len)
    gain = param(gain_ptr, n, mask, gain_len)
    theta = param(theta_ptr, n, mask, theta_len)
    a = initial(gv_ptr, n, mask, HAS_GV, BLOCK)  # dL/dv[t], from the last step back
    acc_beta = tl.zeros([BLOCK], tl.float32)
    acc_gain = tl.zeros([BLOCK], tl.float32)
    acc_theta = tl.zeros([BLOCK], tl.float32)
    zero = tl.zeros([BLOCK], tl.int32)
    segments = tl.cdiv(T, K)
    for j in range(0, segments):
        seg = segments - 1 - j
        start = (seg * K).to(tl.int64)
        v = tl.load(ckpt_ptr + seg.to(tl.int64) * N + n, mask=mask, other=0.0)
        hs = ()
        v_prev = ()
        xs = ()
        for k in tl.static_range(K):  # recompute the segment, keeping h (and v[t-1], x for the parameters)
            x = tl.load(x_ptr + (start + k) * N + n, mask=mask & (zero + (start + k) < T), other=0.0).to(tl.float32)
            h = charge(v, x, beta, gain, EXACT)
            hs = hs + (h,)
            v_prev = v_prev + (v,)
            xs = xs + (x,)
            v = reset(h, (h - theta > 0).to(tl.float32), theta, v_reset, SOFT)
        for k in tl.static_range(K - 1, -1, -1):
            t = start + k
            live = zero + t < T
            h = hs[k]
            u = h - theta
            sg = surrogate_grad(u, alpha, SURROGATE)
            dv_dh, dv_dtheta = reset_grads(h, (u > 0).to(tl.float32), sg, theta, v_reset, SOFT, DETACH)
            if HAS_GS:
                g = tl.load(gs_ptr + t * gs_t + n * gs_n, mask=mask & live, other=0.0).to(tl.float32)
            else:
                g = tl.zeros([BLOCK], tl.float32)
            gh = tl.where(live, g * sg + a * dv_dh, 0.0)
            tl.store(gx_ptr + t * N + n, (gain * gh).to(gx_ptr.dtype.element_ty), mask=mask & live)
            if PARAM_GRADS:
                acc_beta += gh * v_prev[k]
                acc_gain += gh * xs[k]
                acc_theta += tl.where(live, a * dv_dtheta - g * sg, 0.0)
            if CUT:  # the membrane entered step t as a constant: no gradient reaches step t - 1
                a = tl.where(live, 0.0, a)
            else:
                a = tl.where(live, beta * gh, a)
    if HAS_V0:
        tl.store(gv0_ptr + n, a.to(gv0_ptr.dtype.element_ty), mask=mask)
    if PARAM_GRADS:  # per neuron; scan_op sums them to each parameter's length
        tl.store(gp_ptr + n, acc_beta, mask=mask)
        tl.store(gp_ptr + N + n, acc_gain, mask=mask)
        tl.store(gp_ptr + 2 * N + n, acc_theta, mask=mask)


op = define_triton_op(
    LIF_MODEL,
    _forward_kernel,
    _backward_kernel,
    constants=lambda o: {**reset_constants(o), "CUT": o.cut},
    stats_rows=5,
)
"""``torch.ops.snnlab.lif_triton`` behind its ``ScanOp`` wrapper."""
