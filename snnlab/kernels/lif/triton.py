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

from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

from ..scan_op import define_scan_op
from ..triton_common import charge, exact, launch, param, reset, reset_grads, surrogate_grad
from ..triton_common import unsupported as unsupported  # what the dispatch asks this backend's module
from . import LIF_MODEL

K = 8
"""Steps per checkpointed segment."""
BLOCK = 256
"""Neurons per program at most; fewer when that leaves the GPU with too few programs."""
NUM_WARPS = 4


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
    if HAS_V0:
        v = tl.load(v0_ptr + n, mask=mask, other=0.0).to(tl.float32)
    else:  # at rest
        v = tl.zeros([BLOCK], tl.float32)
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
    if HAS_GV:
        a = tl.load(gv_ptr + n, mask=mask, other=0.0).to(tl.float32)  # dL/dv[t], from the last step back
    else:
        a = tl.zeros([BLOCK], tl.float32)
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


def _segments(T: int) -> int:
    return triton.cdiv(T, K)


def forward(
    x: Tensor, states: list[Tensor], params: list[Tensor], o: Any, save: bool, stats: bool
) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
    (v0,) = states
    T, N = x.shape
    spikes, v = torch.empty_like(x), x.new_empty(N, dtype=v0.dtype)
    ckpt = torch.empty((_segments(T) if save else 0, N), dtype=torch.float32, device=x.device)
    statistics = torch.empty((5 if stats else 0, N), dtype=torch.float32, device=x.device)
    block, warps = launch(N, x.device, BLOCK, NUM_WARPS)
    wrap_triton(_forward_kernel)[(triton.cdiv(N, block),)](
        x, v0, *params, *(p.shape[0] for p in params), spikes, v, ckpt, statistics, T, N, o.v_reset, o.alpha,
        SOFT=o.soft, SAVE=save, HAS_V0=v0.numel() > 0, STATS=stats, DETACH=o.detach_reset, SURROGATE=o.surrogate,
        EXACT=exact(), K=K, BLOCK=block, num_warps=warps, enable_fp_fusion=False,
    )  # fmt: skip
    return spikes, [v], ckpt, statistics


def backward(
    grad_out: Tensor | None,
    grad_states: list[Tensor | None],
    x: Tensor,
    states: list[Tensor],
    params: list[Tensor],
    saved: Tensor,
    o: Any,
    param_grads: bool,
) -> tuple[Tensor, list[Tensor], Tensor]:
    (grad_v,), (v0,) = grad_states, states
    T, N = x.shape
    block, warps = launch(N, x.device, BLOCK, NUM_WARPS)
    gs = x if grad_out is None else grad_out
    if gs.stride(1) > 1:  # any layout with (time, neuron) strides whose neuron stride is 0 or 1 is read in place
        gs = gs.contiguous()
    gx, gv0 = torch.empty_like(x), torch.empty_like(v0)
    gp = torch.empty((3 if param_grads else 0, N), dtype=torch.float32, device=x.device)
    wrap_triton(_backward_kernel)[(triton.cdiv(N, block),)](
        gs, gs.stride(0), gs.stride(1), x if grad_v is None else grad_v.contiguous(), x, saved, *params,
        *(p.shape[0] for p in params), gx, gv0, gp, T, N, o.v_reset, o.alpha,
        SOFT=o.soft, DETACH=o.detach_reset, CUT=o.cut, SURROGATE=o.surrogate, HAS_GS=grad_out is not None,
        HAS_GV=grad_v is not None, PARAM_GRADS=param_grads, HAS_V0=v0.numel() > 0, EXACT=exact(), K=K, BLOCK=block,
        num_warps=warps, enable_fp_fusion=False,
    )  # fmt: skip
    return gx, [gv0], gp


op = define_scan_op(LIF_MODEL, "triton", forward, backward, saved_rows=_segments, triton=True)
"""``torch.ops.snnlab.lif_triton`` behind its ``ScanOp`` wrapper."""
