"""Triton kernels of ALIF: forward over all T in one launch, backward over all T in one launch, on the pieces every
model's Triton kernels share (``snnlab.kernels.triton_common``), laid out as LIF's (``snnlab.kernels.lif.triton``).

Each program owns BLOCK neurons and walks the time axis, membrane and adaptation in registers. Saved for backward:
references to the input and the initial states, plus both states at the start of every K-step segment (``[2
ceil(T/K), N]`` float32: the membranes, then the adaptations; 1 byte per neuron-step at K = 8). The backward walks
the segments from the last, recomputes a segment's K steps from its checkpoint into registers with the forward's
float operations (so its exact spikes), and then runs back through them with the formulas of
``snnlab.kernels.alif``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..triton_common import (
    charge,
    define_triton_op,
    initial,
    mul_rn,
    param,
    reset,
    reset_constants,
    surrogate_grad,
)
from ..triton_common import unsupported as unsupported  # what the dispatch asks this backend's module
from . import ALIF_MODEL


@triton.jit
def _threshold(a, beta_a, b0, EXACT: tl.constexpr):
    """B = b0 + beta_a a, rounded as ``ALIF.step`` rounds it: the product, then the sum."""
    if EXACT:
        threshold = b0 + mul_rn(beta_a, a)
    else:
        threshold = b0 + beta_a * a
    return threshold


@triton.jit
def _forward_kernel(
    x_ptr, v0_ptr, a0_ptr, beta_ptr, gain_ptr, rho_ptr, gain_a_ptr, beta_a_ptr, b0_ptr,
    beta_len, gain_len, rho_len, gain_a_len, beta_a_len, b0_len, s_ptr, v_ptr, a_ptr, ckpt_ptr, T, N, v_reset,
    SOFT: tl.constexpr, SAVE: tl.constexpr, HAS_V0: tl.constexpr, HAS_A0: tl.constexpr, EXACT: tl.constexpr,
    K: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    v_reset = tl.cast(v_reset, tl.float32)  # Inductor passes Python floats as fp64
    beta = param(beta_ptr, n, mask, beta_len)
    gain = param(gain_ptr, n, mask, gain_len)
    rho = param(rho_ptr, n, mask, rho_len)
    gain_a = param(gain_a_ptr, n, mask, gain_a_len)
    beta_a = param(beta_a_ptr, n, mask, beta_a_len)
    b0 = param(b0_ptr, n, mask, b0_len)
    v = initial(v0_ptr, n, mask, HAS_V0, BLOCK)  # 0 at rest
    a = initial(a0_ptr, n, mask, HAS_A0, BLOCK)
    zero = tl.zeros([BLOCK], tl.int32)  # `zero + t < T` is a step's liveness as a vector, as masks need it
    x_ptrs = x_ptr + n
    s_ptrs = s_ptr + n
    v_ckpt_ptrs = ckpt_ptr + n
    a_ckpt_ptrs = ckpt_ptr + tl.cdiv(T, K).to(tl.int64) * N + n
    for seg in range(0, tl.cdiv(T, K)):
        if SAVE:
            tl.store(v_ckpt_ptrs, v, mask=mask)
            tl.store(a_ckpt_ptrs, a, mask=mask)
            v_ckpt_ptrs += N
            a_ckpt_ptrs += N
        for k_ in tl.static_range(K):
            live = zero + (seg * K + k_) < T
            x = tl.load(x_ptrs, mask=mask & live, other=0.0).to(tl.float32)
            threshold = _threshold(a, beta_a, b0, EXACT)
            h = charge(v, x, beta, gain, EXACT)
            f = (h - threshold > 0).to(tl.float32)
            v = tl.where(live, reset(h, f, threshold, v_reset, SOFT), v)
            a = tl.where(live, charge(a, f, rho, gain_a, EXACT), a)
            tl.store(s_ptrs, f.to(s_ptr.dtype.element_ty), mask=mask & live)
            x_ptrs += N
            s_ptrs += N
    tl.store(v_ptr + n, v.to(v_ptr.dtype.element_ty), mask=mask)
    tl.store(a_ptr + n, a.to(a_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(
    gs_ptr, gs_t, gs_n, gv_ptr, ga_ptr, x_ptr, ckpt_ptr, beta_ptr, gain_ptr, rho_ptr, gain_a_ptr, beta_a_ptr, b0_ptr,
    beta_len, gain_len, rho_len, gain_a_len, beta_a_len, b0_len, gx_ptr, gv0_ptr, ga0_ptr, gp_ptr, T, N, v_reset,
    alpha,
    SOFT: tl.constexpr, DETACH: tl.constexpr, SURROGATE: tl.constexpr, HAS_GS: tl.constexpr, HAS_GV: tl.constexpr,
    HAS_GA: tl.constexpr, PARAM_GRADS: tl.constexpr, HAS_V0: tl.constexpr, HAS_A0: tl.constexpr,
    EXACT: tl.constexpr, K: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    v_reset = tl.cast(v_reset, tl.float32)
    alpha = tl.cast(alpha, tl.float32)
    beta = param(beta_ptr, n, mask, beta_len)
    gain = param(gain_ptr, n, mask, gain_len)
    rho = param(rho_ptr, n, mask, rho_len)
    gain_a = param(gain_a_ptr, n, mask, gain_a_len)
    beta_a = param(beta_a_ptr, n, mask, beta_a_len)
    b0 = param(b0_ptr, n, mask, b0_len)
    keep = 0.0 if DETACH else 1.0
    av = initial(gv_ptr, n, mask, HAS_GV, BLOCK)  # dL/dv[t] and dL/da[t], from the last step back
    aa = initial(ga_ptr, n, mask, HAS_GA, BLOCK)
    acc_beta = tl.zeros([BLOCK], tl.float32)
    acc_gain = tl.zeros([BLOCK], tl.float32)
    acc_rho = tl.zeros([BLOCK], tl.float32)
    acc_gain_a = tl.zeros([BLOCK], tl.float32)
    acc_beta_a = tl.zeros([BLOCK], tl.float32)
    acc_b0 = tl.zeros([BLOCK], tl.float32)
    zero = tl.zeros([BLOCK], tl.int32)
    segments = tl.cdiv(T, K)
    for j in range(0, segments):
        seg = segments - 1 - j
        start = (seg * K).to(tl.int64)
        v = tl.load(ckpt_ptr + seg.to(tl.int64) * N + n, mask=mask, other=0.0)
        a = tl.load(ckpt_ptr + (segments + seg).to(tl.int64) * N + n, mask=mask, other=0.0)
        hs = ()
        thresholds = ()
        v_prev = ()
        a_prev = ()
        xs = ()
        for k in tl.static_range(K):  # recompute the segment, keeping h, B, v[t-1], a[t-1] and x
            x = tl.load(x_ptr + (start + k) * N + n, mask=mask & (zero + (start + k) < T), other=0.0).to(tl.float32)
            threshold = _threshold(a, beta_a, b0, EXACT)
            h = charge(v, x, beta, gain, EXACT)
            hs = hs + (h,)
            thresholds = thresholds + (threshold,)
            v_prev = v_prev + (v,)
            a_prev = a_prev + (a,)
            xs = xs + (x,)
            f = (h - threshold > 0).to(tl.float32)
            v = reset(h, f, threshold, v_reset, SOFT)
            a = charge(a, f, rho, gain_a, EXACT)
        for k in tl.static_range(K - 1, -1, -1):
            t = start + k
            live = zero + t < T
            h = hs[k]
            threshold = thresholds[k]
            u = h - threshold
            f = (u > 0).to(tl.float32)
            sg = surrogate_grad(u, alpha, SURROGATE)
            if SOFT:
                dv_ds = -threshold
                dv_dh = 1.0
                dv_dthreshold = -f
            else:
                dv_ds = v_reset - h
                dv_dh = 1.0 - f
                dv_dthreshold = 0.0
            if HAS_GS:
                g = tl.load(gs_ptr + t * gs_t + n * gs_n, mask=mask & live, other=0.0).to(tl.float32)
            else:
                g = tl.zeros([BLOCK], tl.float32)
            gu = sg * (g + gain_a * aa + keep * av * dv_ds)
            gh = tl.where(live, gu + av * dv_dh, 0.0)
            gthreshold = tl.where(live, av * dv_dthreshold - gu, 0.0)
            tl.store(gx_ptr + t * N + n, (gain * gh).to(gx_ptr.dtype.element_ty), mask=mask & live)
            if PARAM_GRADS:
                acc_beta += gh * v_prev[k]
                acc_gain += gh * xs[k]
                acc_rho += tl.where(live, aa * a_prev[k], 0.0)
                acc_gain_a += tl.where(live, aa * f, 0.0)
                acc_beta_a += gthreshold * a_prev[k]
                acc_b0 += gthreshold
            aa = tl.where(live, rho * aa + beta_a * gthreshold, aa)
            av = tl.where(live, beta * gh, av)
    if HAS_V0:
        tl.store(gv0_ptr + n, av.to(gv0_ptr.dtype.element_ty), mask=mask)
    if HAS_A0:
        tl.store(ga0_ptr + n, aa.to(ga0_ptr.dtype.element_ty), mask=mask)
    if PARAM_GRADS:  # per neuron; scan_op sums them to each parameter's length
        tl.store(gp_ptr + n, acc_beta, mask=mask)
        tl.store(gp_ptr + N + n, acc_gain, mask=mask)
        tl.store(gp_ptr + 2 * N + n, acc_rho, mask=mask)
        tl.store(gp_ptr + 3 * N + n, acc_gain_a, mask=mask)
        tl.store(gp_ptr + 4 * N + n, acc_beta_a, mask=mask)
        tl.store(gp_ptr + 5 * N + n, acc_b0, mask=mask)


op = define_triton_op(ALIF_MODEL, _forward_kernel, _backward_kernel, constants=reset_constants)
"""``torch.ops.snnlab.alif_triton`` behind its ``ScanOp`` wrapper."""
