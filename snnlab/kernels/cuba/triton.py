"""Triton kernels of CUBA-LIF: forward over all T in one launch, backward over all T in one launch, on the pieces
every model's Triton kernels share (``snnlab.kernels.triton_common``), laid out as LIF's
(``snnlab.kernels.lif.triton``).

Each program owns BLOCK neurons and walks the time axis, membrane and current in registers. Saved for backward:
references to the input and the initial states, plus both states at the start of every K-step segment (``[2
ceil(T/K), N]`` float32: the membranes, then the currents; 1 byte per neuron-step at K = 8). The backward walks the
segments from the last, recomputes a segment's K steps from its checkpoint into registers with the forward's float
operations (so its exact spikes), and then runs back through them with the formulas of ``snnlab.kernels.cuba``.
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
from . import CUBA_MODEL


@triton.jit
def _forward_kernel(
    x_ptr, v0_ptr, i0_ptr, beta_ptr, gain_ptr, alpha_syn_ptr, gain_syn_ptr, theta_ptr,
    beta_len, gain_len, alpha_syn_len, gain_syn_len, theta_len, s_ptr, v_ptr, i_ptr, ckpt_ptr, T, N, v_reset,
    SOFT: tl.constexpr, SAVE: tl.constexpr, HAS_V0: tl.constexpr, HAS_I0: tl.constexpr, EXACT: tl.constexpr,
    K: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    v_reset = tl.cast(v_reset, tl.float32)  # Inductor passes Python floats as fp64
    beta = param(beta_ptr, n, mask, beta_len)
    gain = param(gain_ptr, n, mask, gain_len)
    alpha_syn = param(alpha_syn_ptr, n, mask, alpha_syn_len)
    gain_syn = param(gain_syn_ptr, n, mask, gain_syn_len)
    theta = param(theta_ptr, n, mask, theta_len)
    v = initial(v0_ptr, n, mask, HAS_V0, BLOCK)  # 0 at rest
    cur = initial(i0_ptr, n, mask, HAS_I0, BLOCK)
    zero = tl.zeros([BLOCK], tl.int32)  # `zero + t < T` is a step's liveness as a vector, as masks need it
    x_ptrs = x_ptr + n
    s_ptrs = s_ptr + n
    v_ckpt_ptrs = ckpt_ptr + n
    i_ckpt_ptrs = ckpt_ptr + tl.cdiv(T, K).to(tl.int64) * N + n
    for seg in range(0, tl.cdiv(T, K)):
        if SAVE:
            tl.store(v_ckpt_ptrs, v, mask=mask)
            tl.store(i_ckpt_ptrs, cur, mask=mask)
            v_ckpt_ptrs += N
            i_ckpt_ptrs += N
        for k_ in tl.static_range(K):
            live = zero + (seg * K + k_) < T
            x = tl.load(x_ptrs, mask=mask & live, other=0.0).to(tl.float32)
            cur = tl.where(live, charge(cur, x, alpha_syn, gain_syn, EXACT), cur)
            h = charge(v, cur, beta, gain, EXACT)
            f = (h - theta > 0).to(tl.float32)
            v = tl.where(live, reset(h, f, theta, v_reset, SOFT), v)
            tl.store(s_ptrs, f.to(s_ptr.dtype.element_ty), mask=mask & live)
            x_ptrs += N
            s_ptrs += N
    tl.store(v_ptr + n, v.to(v_ptr.dtype.element_ty), mask=mask)
    tl.store(i_ptr + n, cur.to(i_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(
    gs_ptr, gs_t, gs_n, gv_ptr, gi_ptr, x_ptr, ckpt_ptr, beta_ptr, gain_ptr, alpha_syn_ptr, gain_syn_ptr, theta_ptr,
    beta_len, gain_len, alpha_syn_len, gain_syn_len, theta_len, gx_ptr, gv0_ptr, gi0_ptr, gp_ptr, T, N, v_reset,
    alpha,
    SOFT: tl.constexpr, DETACH: tl.constexpr, SURROGATE: tl.constexpr, HAS_GS: tl.constexpr, HAS_GV: tl.constexpr,
    HAS_GI: tl.constexpr, PARAM_GRADS: tl.constexpr, HAS_V0: tl.constexpr, HAS_I0: tl.constexpr,
    EXACT: tl.constexpr, K: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    v_reset = tl.cast(v_reset, tl.float32)
    alpha = tl.cast(alpha, tl.float32)
    beta = param(beta_ptr, n, mask, beta_len)
    gain = param(gain_ptr, n, mask, gain_len)
    alpha_syn = param(alpha_syn_ptr, n, mask, alpha_syn_len)
    gain_syn = param(gain_syn_ptr, n, mask, gain_syn_len)
    theta = param(theta_ptr, n, mask, theta_len)
    av = initial(gv_ptr, n, mask, HAS_GV, BLOCK)  # dL/dv[t] and dL/di[t], from the last step back
    ai = initial(gi_ptr, n, mask, HAS_GI, BLOCK)
    acc_beta = tl.zeros([BLOCK], tl.float32)
    acc_gain = tl.zeros([BLOCK], tl.float32)
    acc_alpha = tl.zeros([BLOCK], tl.float32)
    acc_gain_syn = tl.zeros([BLOCK], tl.float32)
    acc_theta = tl.zeros([BLOCK], tl.float32)
    zero = tl.zeros([BLOCK], tl.int32)
    segments = tl.cdiv(T, K)
    for j in range(0, segments):
        seg = segments - 1 - j
        start = (seg * K).to(tl.int64)
        v = tl.load(ckpt_ptr + seg.to(tl.int64) * N + n, mask=mask, other=0.0)
        cur = tl.load(ckpt_ptr + (segments + seg).to(tl.int64) * N + n, mask=mask, other=0.0)
        hs = ()
        currents = ()
        v_prev = ()
        i_prev = ()
        xs = ()
        for k in tl.static_range(K):  # recompute the segment, keeping h, i, v[t-1], i[t-1] and x
            x = tl.load(x_ptr + (start + k) * N + n, mask=mask & (zero + (start + k) < T), other=0.0).to(tl.float32)
            v_prev = v_prev + (v,)
            i_prev = i_prev + (cur,)
            xs = xs + (x,)
            cur = charge(cur, x, alpha_syn, gain_syn, EXACT)
            h = charge(v, cur, beta, gain, EXACT)
            hs = hs + (h,)
            currents = currents + (cur,)
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
            gh = tl.where(live, g * sg + av * dv_dh, 0.0)
            gc = tl.where(live, ai + gain * gh, 0.0)
            tl.store(gx_ptr + t * N + n, (gain_syn * gc).to(gx_ptr.dtype.element_ty), mask=mask & live)
            if PARAM_GRADS:
                acc_beta += gh * v_prev[k]
                acc_gain += gh * currents[k]
                acc_alpha += gc * i_prev[k]
                acc_gain_syn += gc * xs[k]
                acc_theta += tl.where(live, av * dv_dtheta - g * sg, 0.0)
            ai = tl.where(live, alpha_syn * gc, ai)
            av = tl.where(live, beta * gh, av)
    if HAS_V0:
        tl.store(gv0_ptr + n, av.to(gv0_ptr.dtype.element_ty), mask=mask)
    if HAS_I0:
        tl.store(gi0_ptr + n, ai.to(gi0_ptr.dtype.element_ty), mask=mask)
    if PARAM_GRADS:  # per neuron; scan_op sums them to each parameter's length
        tl.store(gp_ptr + n, acc_beta, mask=mask)
        tl.store(gp_ptr + N + n, acc_gain, mask=mask)
        tl.store(gp_ptr + 2 * N + n, acc_alpha, mask=mask)
        tl.store(gp_ptr + 3 * N + n, acc_gain_syn, mask=mask)
        tl.store(gp_ptr + 4 * N + n, acc_theta, mask=mask)


op = define_triton_op(CUBA_MODEL, _forward_kernel, _backward_kernel, constants=reset_constants)
"""``torch.ops.snnlab.cuba_triton`` behind its ``ScanOp`` wrapper."""
