"""Triton kernels of the fused block (batch norm's affine map, LIF over T, pooling): forward over all T in one launch,
backward over all T in one launch, on the LIF pieces every model's Triton kernels share (``triton_common``).

Each program owns BLOCK pooling windows of k x k neurons (a ``[BLOCK, KK]`` tile, KK = k * k rounded up to a power
of two; k = 1 without pooling) and walks the time axis, the membranes in registers. Windows are numbered with the
memory's fastest axis fastest (W in NCHW, C in channels_last), so a warp reads neighbouring addresses in either
layout; every tensor is addressed through its own strides, so no layout is copied. Windows cover the map rounded up
(``ceil(H / k)``): a partial window at an odd border runs its neurons (their membranes are state, and reach the final
membrane's gradient) but writes no output, as floor-mode pooling drops them.

Saved for backward: the membrane at the start of every K-step segment (``[ceil(T/K), windows * KK]`` float32). The
backward walks the segments from the last, recomputes a segment's K steps from its checkpoint and y (the current,
the spikes, the window's first maximum) and runs back through them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

from ..triton_common import charge, exact, launch, mul_rn, reset, reset_grads, surrogate_grad
from ..triton_common import unsupported as unsupported  # what the dispatch asks this backend's module
from . import define_block_op, next_power_of_2

K = 8
"""Steps per checkpointed segment."""
NEURONS = 256
"""Neurons per program at most (BLOCK windows of KK); fewer when that leaves the GPU with too few programs."""
NUM_WARPS = 4
ELEMENTWISE = 1024
"""Elements per program of the batch norm's elementwise backward."""


@triton.jit
def _windows(pid, C, HWIN, WWIN, SIZE: tl.constexpr, KK: tl.constexpr, CL: tl.constexpr, BLOCK: tl.constexpr):
    """This program's windows: their (b, c) ``[BLOCK]``, each neuron's (h, w) ``[BLOCK, KK]``, the window's place
    (hw, ww), whether the window exists and which of its slots are neurons of the map."""
    m = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    if CL:  # channels fastest
        c = m % C
        r = m // C
        ww = r % WWIN
        r = r // WWIN
        hw = r % HWIN
        b = r // HWIN
    else:
        ww = m % WWIN
        r = m // WWIN
        hw = r % HWIN
        r = r // HWIN
        c = r % C
        b = r // C
    j = tl.arange(0, KK)
    h = hw[:, None] * SIZE + (j // SIZE)[None, :]
    w = ww[:, None] * SIZE + (j % SIZE)[None, :]
    return m, b, c, hw, ww, j, h, w


@triton.jit
def _affine(y, a, shift, FMA: tl.constexpr, EXACT: tl.constexpr):
    """y a + shift rounded as torch's batch norm rounds it: one fused multiply-add, or a product and a sum."""
    if FMA:
        z = tl.fma(y, a, shift)
    elif EXACT:
        z = mul_rn(y, a) + shift
    else:
        z = y * a + shift
    return z


@triton.jit
def _channel_map(mean_ptr, invstd_ptr, weight_ptr, bias_ptr, c, mask, FMA: tl.constexpr, EXACT: tl.constexpr):
    """Each channel's (a, shift) = (invstd gamma, bias - mean a), as ``[BLOCK, 1]``."""
    invstd = tl.load(invstd_ptr + c, mask=mask, other=0.0)
    gamma = tl.load(weight_ptr + c, mask=mask, other=0.0).to(tl.float32)
    if EXACT:
        a = mul_rn(invstd, gamma)
    else:
        a = invstd * gamma
    mean = tl.load(mean_ptr + c, mask=mask, other=0.0)
    bias = tl.load(bias_ptr + c, mask=mask, other=0.0).to(tl.float32)
    shift = _affine(-mean, a, bias, FMA, EXACT)
    return a[:, None], shift[:, None]


@triton.jit
def _forward_kernel(
    y_ptr, sy_t, sy_b, sy_c, sy_h, sy_w, mean_ptr, invstd_ptr, weight_ptr, bias_ptr, beta_ptr, gain_ptr, theta_ptr,
    v0_ptr, sv0_b, sv0_c, sv0_h, sv0_w, out_ptr, so_t, so_b, so_c, so_h, so_w, v_ptr, sv_b, sv_c, sv_h, sv_w, ckpt_ptr,
    T, C, H, W, HO, WO, HWIN, WWIN, M, v_reset,
    POOL: tl.constexpr, SIZE: tl.constexpr, DIVISOR: tl.constexpr, SOFT: tl.constexpr, SAVE: tl.constexpr,
    HAS_V0: tl.constexpr, FMA: tl.constexpr, EXACT: tl.constexpr, CL: tl.constexpr, KK: tl.constexpr, K: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    m, b, c, hw, ww, j, h, w = _windows(pid, C, HWIN, WWIN, SIZE, KK, CL, BLOCK)
    exists = m < M
    valid = exists[:, None] & (j < SIZE * SIZE)[None, :] & (h < H) & (w < W)
    pooled = exists & (hw < HO) & (ww < WO)  # the windows that floor-mode pooling keeps
    v_reset = tl.cast(v_reset, tl.float32)  # Inductor passes Python floats as fp64
    a, shift = _channel_map(mean_ptr, invstd_ptr, weight_ptr, bias_ptr, c, exists, FMA, EXACT)
    beta = tl.load(beta_ptr)
    gain = tl.load(gain_ptr)
    theta = tl.load(theta_ptr)
    if HAS_V0:
        v0_off = b[:, None] * sv0_b + c[:, None] * sv0_c + h * sv0_h + w * sv0_w
        v = tl.load(v0_ptr + v0_off, mask=valid, other=0.0).to(tl.float32)
    else:  # at rest
        v = tl.zeros([BLOCK, KK], tl.float32)
    zero = tl.zeros([BLOCK, KK], tl.int32)  # `zero + t < T` is a step's liveness as a tile, as masks need it
    row = tl.zeros([BLOCK], tl.int32)  # and as a row of windows
    y_ptrs = y_ptr + b[:, None] * sy_b + c[:, None] * sy_c + h * sy_h + w * sy_w
    out_ptrs = out_ptr + b * so_b + c * so_c + hw * so_h + ww * so_w
    ckpt_ptrs = ckpt_ptr + m[:, None] * KK + j[None, :]
    for seg in range(0, tl.cdiv(T, K)):
        if SAVE:
            tl.store(ckpt_ptrs, v, mask=valid)
            ckpt_ptrs += M * KK
        for k_ in tl.static_range(K):
            live = zero + (seg * K + k_) < T
            y = tl.load(y_ptrs, mask=valid & live, other=0.0)
            z = _affine(y.to(tl.float32), a, shift, FMA, EXACT).to(y.dtype).to(tl.float32)
            hm = charge(v, z, beta, gain, EXACT)
            f = tl.where(valid & (hm - theta > 0), 1.0, 0.0)
            v = tl.where(live, reset(hm, f, theta, v_reset, SOFT), v)
            if POOL == 1:
                o = tl.max(f, axis=1)
            else:
                o = tl.sum(f, axis=1) / DIVISOR
            tl.store(out_ptrs, o.to(out_ptr.dtype.element_ty), mask=pooled & (row + (seg * K + k_) < T))
            y_ptrs += sy_t
            out_ptrs += so_t
    v_off = b[:, None] * sv_b + c[:, None] * sv_c + h * sv_h + w * sv_w
    tl.store(v_ptr + v_off, v.to(v_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _backward_kernel(
    go_ptr, sg_t, sg_b, sg_c, sg_h, sg_w, gv_ptr, sgv_b, sgv_c, sgv_h, sgv_w, y_ptr, sy_t, sy_b, sy_c, sy_h, sy_w,
    ckpt_ptr, mean_ptr, invstd_ptr, weight_ptr, bias_ptr, beta_ptr, gain_ptr, theta_ptr,
    gz_ptr, sz_t, sz_b, sz_c, sz_h, sz_w, gv0_ptr, sv0_b, sv0_c, sv0_h, sv0_w, gp_ptr, part_ptr,
    T, C, H, W, HO, WO, HWIN, WWIN, M, P, v_reset, alpha,
    POOL: tl.constexpr, SIZE: tl.constexpr, DIVISOR: tl.constexpr, SOFT: tl.constexpr, DETACH: tl.constexpr,
    SURROGATE: tl.constexpr, HAS_GO: tl.constexpr, HAS_GV: tl.constexpr, HAS_V0: tl.constexpr,
    PARAM_GRADS: tl.constexpr, AFFINE_GRAD: tl.constexpr, FMA: tl.constexpr, EXACT: tl.constexpr,
    CL: tl.constexpr, KK: tl.constexpr, K: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """dL/dz (dL/dy = dL/dz a with ``AFFINE_GRAD``: running statistics), dL/dv0, the parameters' gradients per
    program, and per window the batch norm's sums over its neurons and steps: of dL/dz and of dL/dz (y - mean)."""
    pid = tl.program_id(0)
    m, b, c, hw, ww, j, h, w = _windows(pid, C, HWIN, WWIN, SIZE, KK, CL, BLOCK)
    exists = m < M
    valid = exists[:, None] & (j < SIZE * SIZE)[None, :] & (h < H) & (w < W)
    pooled = exists & (hw < HO) & (ww < WO)
    v_reset = tl.cast(v_reset, tl.float32)  # Inductor passes Python floats as fp64
    alpha = tl.cast(alpha, tl.float32)
    a, shift = _channel_map(mean_ptr, invstd_ptr, weight_ptr, bias_ptr, c, exists, FMA, EXACT)
    beta = tl.load(beta_ptr)
    gain = tl.load(gain_ptr)
    theta = tl.load(theta_ptr)
    if HAS_GV:  # dL/dv[t], from the last step back
        gv_off = b[:, None] * sgv_b + c[:, None] * sgv_c + h * sgv_h + w * sgv_w
        g_v = tl.load(gv_ptr + gv_off, mask=valid, other=0.0).to(tl.float32)
    else:
        g_v = tl.zeros([BLOCK, KK], tl.float32)
    acc_beta = tl.zeros([BLOCK, KK], tl.float32)
    acc_gain = tl.zeros([BLOCK, KK], tl.float32)
    acc_theta = tl.zeros([BLOCK, KK], tl.float32)
    sum_dz = tl.zeros([BLOCK, KK], tl.float32)
    sum_dz_xmu = tl.zeros([BLOCK, KK], tl.float32)
    mean = tl.load(mean_ptr + c, mask=exists, other=0.0)[:, None]
    zero = tl.zeros([BLOCK, KK], tl.int32)
    row = tl.zeros([BLOCK], tl.int32)
    y_base = y_ptr + b[:, None] * sy_b + c[:, None] * sy_c + h * sy_h + w * sy_w
    gz_base = gz_ptr + b[:, None] * sz_b + c[:, None] * sz_c + h * sz_h + w * sz_w
    go_base = go_ptr + b * sg_b + c * sg_c + hw * sg_h + ww * sg_w
    segments = tl.cdiv(T, K)
    for i in range(0, segments):
        seg = segments - 1 - i
        start = (seg * K).to(tl.int64)
        v = tl.load(ckpt_ptr + seg.to(tl.int64) * M * KK + m[:, None] * KK + j[None, :], mask=valid, other=0.0)
        hs = ()
        v_prev = ()
        zs = ()
        xmu = ()
        for k in tl.static_range(K):  # recompute the segment, keeping h, v[t-1], z and y - mean
            live = zero + (start + k) < T
            y = tl.load(y_base + (start + k) * sy_t, mask=valid & live, other=0.0)
            z = _affine(y.to(tl.float32), a, shift, FMA, EXACT).to(y.dtype).to(tl.float32)
            hm = charge(v, z, beta, gain, EXACT)
            hs = hs + (hm,)
            v_prev = v_prev + (v,)
            zs = zs + (z,)
            xmu = xmu + (y.to(tl.float32) - mean,)
            v = reset(hm, tl.where(hm - theta > 0, 1.0, 0.0), theta, v_reset, SOFT)
        for k in tl.static_range(K - 1, -1, -1):
            t = start + k
            live = zero + t < T
            hm = hs[k]
            u = hm - theta
            f = tl.where(valid & (u > 0), 1.0, 0.0)
            if HAS_GO:
                g_o = tl.load(go_base + t * sg_t, mask=pooled & (row + t < T), other=0.0).to(tl.float32)
            else:
                g_o = tl.zeros([BLOCK], tl.float32)
            if POOL == 1:  # to the window's first maximum, as torch's max pooling picks it
                f_max = tl.max(tl.where(valid, f, -1.0), axis=1)
                first = tl.min(tl.where(valid & (f == f_max[:, None]), j[None, :], KK), axis=1)
                g_s = tl.where(j[None, :] == first[:, None], g_o[:, None], 0.0)
            else:
                g_s = tl.where(valid, g_o[:, None] / DIVISOR, 0.0)
            sg = surrogate_grad(u, alpha, SURROGATE)
            dv_dh, dv_dtheta = reset_grads(hm, f, sg, theta, v_reset, SOFT, DETACH)
            gh = tl.where(live & valid, g_s * sg + g_v * dv_dh, 0.0)
            dz = (gain * gh).to(gz_ptr.dtype.element_ty).to(tl.float32)  # as the unfused path stores it
            sum_dz += dz
            sum_dz_xmu += dz * xmu[k]
            if AFFINE_GRAD:
                dz = dz * a
            tl.store(gz_base + t * sz_t, dz.to(gz_ptr.dtype.element_ty), mask=valid & live)
            if PARAM_GRADS:
                acc_beta += gh * v_prev[k]
                acc_gain += gh * zs[k]
                acc_theta += tl.where(live & valid, g_v * dv_dtheta - g_s * sg, 0.0)
            g_v = tl.where(live, beta * gh, g_v)
    if HAS_V0:
        v0_off = b[:, None] * sv0_b + c[:, None] * sv0_c + h * sv0_h + w * sv0_w
        tl.store(gv0_ptr + v0_off, g_v.to(gv0_ptr.dtype.element_ty), mask=valid)
    if PARAM_GRADS:  # per program; the autograd formula sums them
        tl.store(gp_ptr + pid, tl.sum(tl.sum(acc_beta, axis=1), axis=0))
        tl.store(gp_ptr + P + pid, tl.sum(tl.sum(acc_gain, axis=1), axis=0))
        tl.store(gp_ptr + 2 * P + pid, tl.sum(tl.sum(acc_theta, axis=1), axis=0))
    tl.store(part_ptr + m, tl.sum(sum_dz, axis=1), mask=exists)
    tl.store(part_ptr + M + m, tl.sum(sum_dz_xmu, axis=1), mask=exists)


@triton.jit
def _norm_backward_kernel(g_ptr, y_ptr, mean_ptr, grad_mean_ptr, k_ptr, scale_ptr, N, C, stride_c, BLOCK: tl.constexpr):
    """dL/dy = (dL/dz - mean of dL/dz - (y - mean) k) invstd gamma over dense g and y of the same strides, in place
    (k = mean of dL/dz (y - mean) invstd^2): the batch norm's backward through its batch statistics."""
    n = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    c = (n // stride_c) % C
    g = tl.load(g_ptr + n, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + n, mask=mask, other=0.0).to(tl.float32)
    mean = tl.load(mean_ptr + c, mask=mask, other=0.0)
    grad_mean = tl.load(grad_mean_ptr + c, mask=mask, other=0.0)
    k = tl.load(k_ptr + c, mask=mask, other=0.0)
    scale = tl.load(scale_ptr + c, mask=mask, other=0.0)
    tl.store(g_ptr + n, ((g - grad_mean - (y - mean) * k) * scale).to(g_ptr.dtype.element_ty), mask=mask)


def _like(shape: tuple[int, ...], T: int | None, channels_last: bool, like: Tensor) -> Tensor:
    """An empty ``[T, B, C, H, W]`` (or ``[B, C, H, W]`` for T None) in ``like``'s dtype, channels fastest or W."""
    B, C, H, W = shape
    lead = (T * B,) if T is not None else (B,)
    if channels_last:
        out = like.new_empty((*lead, H, W, C)).permute(0, 3, 1, 2)
    else:
        out = like.new_empty((*lead, C, H, W))
    return out.unflatten(0, (T, B)) if T is not None else out


class _Launch:
    """The sizes of one call: windows, tile, grid; and the layout (channels fastest or not) of y."""

    def __init__(self, y: Tensor, size: int) -> None:
        self.T, self.B, self.C, self.H, self.W = y.shape
        self.HO, self.WO = self.H // size, self.W // size
        self.HWIN, self.WWIN = triton.cdiv(self.H, size), triton.cdiv(self.W, size)
        self.M = self.B * self.C * self.HWIN * self.WWIN
        self.KK = next_power_of_2(size * size)
        neurons, self.warps = launch(self.M * self.KK, y.device, NEURONS, NUM_WARPS)
        self.block = max(1, neurons // self.KK)
        self.grid = (triton.cdiv(self.M, self.block),)
        self.channels_last = y.stride(2) == 1 and self.C > 1
        self.segments = triton.cdiv(self.T, K)

    def sizes(self) -> tuple[int, ...]:
        return (self.T, self.C, self.H, self.W, self.HO, self.WO, self.HWIN, self.WWIN, self.M)


def forward(
    y: Tensor, mean: Tensor, invstd: Tensor, weight: Tensor, bias: Tensor, beta: Tensor, gain: Tensor,
    threshold: Tensor, v0: Tensor, pool: int, size: int, divisor: int, soft: bool, v_reset: float,
    detach_reset: bool, surrogate: int, alpha: float, fma: bool, save: bool,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    s = _Launch(y, size)
    out = _like((s.B, s.C, s.HO, s.WO), s.T, s.channels_last, y)
    v = _like((s.B, s.C, s.H, s.W), None, s.channels_last, y)
    ckpt = torch.empty((s.segments if save else 0, s.M * s.KK), dtype=torch.float32, device=y.device)
    has_v0 = v0.numel() > 0
    v0_strides = v0.stride() if has_v0 else (0,) * 4
    wrap_triton(_forward_kernel)[s.grid](
        y, *y.stride(), mean, invstd, weight, bias, beta, gain, threshold, v0, *v0_strides, out, *out.stride(), v,
        *v.stride(), ckpt, *s.sizes(), v_reset,
        POOL=pool, SIZE=size, DIVISOR=divisor, SOFT=soft, SAVE=save, HAS_V0=has_v0, FMA=fma, EXACT=exact(),
        CL=s.channels_last, KK=s.KK, K=K, BLOCK=s.block, num_warps=s.warps, enable_fp_fusion=False,
    )  # fmt: skip
    return out, v, ckpt


def backward(
    grad_out: Tensor | None, grad_v: Tensor | None, y: Tensor, saved: Tensor, mean: Tensor, invstd: Tensor,
    weight: Tensor, bias: Tensor, beta: Tensor, gain: Tensor, threshold: Tensor, v0: Tensor, pool: int, size: int,
    divisor: int, soft: bool, v_reset: float, detach_reset: bool, surrogate: int, alpha: float, fma: bool,
    batch_stats: bool, param_grads: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    s = _Launch(y, size)
    grad = torch.empty_like(y)  # dL/dz, then dL/dy in place (y is dense: the same strides)
    grad_v0 = torch.empty_like(v0)
    gp = torch.empty((3, s.grid[0] if param_grads else 0), dtype=torch.float32, device=y.device)
    part = torch.empty((2, s.M), dtype=torch.float32, device=y.device)
    go = y if grad_out is None else grad_out  # any strides, an expanded view's 0 included
    gv = y[0] if grad_v is None else grad_v
    has_v0 = v0.numel() > 0
    wrap_triton(_backward_kernel)[s.grid](
        go, *go.stride(), gv, *gv.stride(), y, *y.stride(), saved, mean, invstd, weight, bias, beta, gain, threshold,
        grad, *grad.stride(), grad_v0, *(grad_v0.stride() if has_v0 else (0,) * 4), gp, part, *s.sizes(),
        gp.shape[1], v_reset, alpha,
        POOL=pool, SIZE=size, DIVISOR=divisor, SOFT=soft, DETACH=detach_reset, SURROGATE=surrogate,
        HAS_GO=grad_out is not None, HAS_GV=grad_v is not None, HAS_V0=has_v0, PARAM_GRADS=param_grads,
        AFFINE_GRAD=not batch_stats, FMA=fma, EXACT=exact(), CL=s.channels_last, KK=s.KK, K=K, BLOCK=s.block,
        num_warps=s.warps, enable_fp_fusion=False,
    )  # fmt: skip
    # the windows' sums to the channels': windows are numbered (b, hw, ww, c) or (b, c, hw, ww)
    sums = part.view(2, -1, s.C).sum(1) if s.channels_last else part.view(2, s.B, s.C, -1).sum((1, 3))
    sum_dz, sum_dz_xmu = sums
    if batch_stats:
        count = y.numel() // s.C
        grad_mean, k = sum_dz / count, sum_dz_xmu * invstd * invstd / count
        n = y.numel()
        wrap_triton(_norm_backward_kernel)[(triton.cdiv(n, ELEMENTWISE),)](
            grad, y, mean, grad_mean, k, invstd * weight, n, s.C, y.stride(2), BLOCK=ELEMENTWISE
        )
    return grad, grad_v0, gp, sum_dz_xmu * invstd, sum_dz


op = define_block_op("triton", forward, backward)
"""``torch.ops.snnlab.block_triton`` with its autograd formula."""
