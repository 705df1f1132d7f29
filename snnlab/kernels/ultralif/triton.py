"""Triton kernels of UltraLIF: forward over all T in one launch, backward over all T in one launch.

Laid out as the LIF kernels (``snnlab.kernels.lif.triton``, whose launch sizes, parameter reads and segment length
these share): each program owns BLOCK neurons and walks the time axis with the membrane in float32 registers.
Saved for backward: references to the input and the initial membrane, plus the membrane at the start of every
K-step segment (``[ceil(T/K), N]`` float32). The backward walks the segments from the last, recomputes a segment's
K membranes from its checkpoint into registers and runs back through them.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

from ..lif.triton import BLOCK, NUM_WARPS, K, _segments
from ..scan_op import define_scan_op
from ..triton_common import launch, param
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
    if HAS_V0:
        v = tl.load(v0_ptr + n, mask=mask, other=0.0).to(tl.float32)
    else:  # at rest
        v = tl.zeros([BLOCK], tl.float32)
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
    if HAS_GV:
        b = tl.load(gv_ptr + n, mask=mask, other=0.0).to(tl.float32)  # dL/dv[t], from the last step back
    else:
        b = tl.zeros([BLOCK], tl.float32)
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


def forward(
    x: Tensor, states: list[Tensor], params: list[Tensor], o: Any, save: bool, stats: bool
) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
    (v0,) = states
    T, N = x.shape
    out, v = torch.empty_like(x), x.new_empty(N, dtype=v0.dtype)
    ckpt = torch.empty((_segments(T) if save else 0, N), dtype=torch.float32, device=x.device)
    block, warps = launch(N, x.device, BLOCK, NUM_WARPS)
    wrap_triton(_forward_kernel)[(triton.cdiv(N, block),)](
        x, v0, *params, *(p.shape[0] for p in params), out, v, ckpt, T, N,
        SAVE=save, HAS_V0=v0.numel() > 0, K=K, BLOCK=block, num_warps=warps,
    )  # fmt: skip
    return out, [v], ckpt, torch.empty((0, N), dtype=torch.float32, device=x.device)


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
        *(p.shape[0] for p in params), gx, gv0, gp, T, N,
        HAS_GS=grad_out is not None, HAS_GV=grad_v is not None, PARAM_GRADS=param_grads, HAS_V0=v0.numel() > 0, K=K,
        BLOCK=block, num_warps=warps,
    )  # fmt: skip
    return gx, [gv0], gp


__all__ = ["op", "unsupported"]

op = define_scan_op(ULTRALIF_MODEL, "triton", forward, backward, saved_rows=_segments, triton=True)
"""``torch.ops.snnlab.ultralif_triton`` behind its ``ScanOp`` wrapper."""
