"""Numba kernels of the LIF family for the CPU (float32): parallel over chunks of neurons, a loop over T inside, and a
contiguous inner loop over the chunk that LLVM vectorises.

Saved for backward: nothing but references to the input ``x`` and the initial membrane. The backward recomputes its
chunk's membrane over all T into a T x chunk buffer that stays in cache (the same float operations as the forward, so
the same spikes) and then runs back in time through it; this is cheaper than writing and re-reading the membrane.
The arithmetic that decides spikes is written like the reference (no fused multiply-add, float32 constants), so
spikes and membranes are bit for bit those of ``reference.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

from .ops import define_lif_op

BUFFER = 131072
"""Floats of recomputed membrane per work item in backward (T x chunk, 512 KB): it stays in the core's L2."""


def _chunk(T: int) -> int:
    """Neurons per parallel work item: BUFFER / T, a multiple of 16 between 64 and 1024 (measured at N = 65,536,
    T = 8..128: 1024 was as fast as or faster than 64..512, and 4096 slower)."""
    return max(64, min(1024, BUFFER // T // 16 * 16))


F32 = np.float32


@numba.njit(cache=True, inline="always")
def _surrogate(u, alpha, kind):  # pragma: no cover - compiled
    """g(u) for surrogate ``kind`` (ops.SURROGATE_IDS), in float32."""
    if kind == 0:  # sigmoid: alpha e / (1 + e)^2 with e = exp(-|alpha u|)
        e = np.exp(-abs(alpha * u))
        return alpha * e / ((F32(1) + e) * (F32(1) + e))
    if kind == 1:  # atan
        z = (F32(math.pi / 2) * alpha) * u
        return (alpha / F32(2)) / (F32(1) + z * z)
    if kind == 2:  # fast_sigmoid
        d = F32(1) + alpha * abs(u)
        return F32(1) / (d * d)
    if kind == 3:  # triangle
        return max(F32(0), alpha - alpha * alpha * abs(u))
    return alpha if abs(u) < F32(0.5) / alpha else F32(0)  # rectangle


@numba.njit(cache=True, inline="always")
def _reset(h, theta, hard, jump):  # pragma: no cover - compiled
    """The membrane after h's spike f: h (1 - f hard) + f jump, with (hard, jump) = (0, -theta) for a soft reset,
    (1, v_reset) for a hard one. Every product with f or hard is exact, so this rounds exactly as the reference's
    h - theta f and h (1 - f) + v_reset f, and one branch-free loop serves both resets."""
    f = F32(h - theta > F32(0))
    return h * (F32(1) - f * hard) + f * jump


@numba.njit(cache=True, inline="always")
def _step_row(x, v, out, beta, gain, theta, hard, jump, spikes):  # pragma: no cover - compiled
    """One step for a chunk: h = beta v + gain x, v <- its reset in place; ``out`` gets the spikes or h."""
    for i in range(v.shape[0]):
        h = beta * v[i] + gain * x[i]
        out[i] = F32(h - theta > F32(0)) if spikes else h
        v[i] = _reset(h, theta, hard, jump)


@numba.njit(cache=True, inline="always")
def _start(v0, out, n0):  # pragma: no cover - compiled
    """out = the initial membrane of the chunk starting at neuron n0: v0's values, or 0 for an empty v0 (at rest)."""
    if v0.shape[0] == 0:
        out[:] = 0
    else:
        out[:] = v0[n0 : n0 + out.shape[0]]


@numba.njit(parallel=True, cache=True)
def _forward(x, v0, beta, gain, theta, hard, jump, spikes, v, chunk):  # pragma: no cover - compiled
    T, N = x.shape
    for c in prange((N + chunk - 1) // chunk):
        n0, n1 = c * chunk, min(c * chunk + chunk, N)
        _start(v0, v[n0:n1], n0)
        for t in range(T):
            _step_row(x[t, n0:n1], v[n0:n1], spikes[t, n0:n1], beta, gain, theta, hard, jump, True)


@functools.cache
def _backward_kernel(kind: int) -> Callable[..., None]:
    """The backward compiled for one surrogate (a constant here, so that the surrogate is part of one fused,
    vectorised inner loop); each is compiled on first use and cached on disk."""

    @numba.njit(parallel=True, cache=True)
    def backward(  # pragma: no cover - compiled
        gs,
        gs_per_step,
        has_gs,
        gv,
        x,
        v0,
        beta,
        gain,
        theta,
        v_reset,
        soft,
        detach,
        alpha,
        param_grads,
        gx,
        gv0,
        acc,
        chunk,
    ):
        T, N = x.shape
        keep = F32(0) if detach else F32(1)
        hard, jump = (F32(0), -theta) if soft else (F32(1), v_reset)
        for c in prange((N + chunk - 1) // chunk):
            n0, n1 = c * chunk, min(c * chunk + chunk, N)
            m = n1 - n0
            hs = np.empty((T, m), np.float32)
            a = np.empty(m, np.float32)  # first the membrane, then dL/dv
            _start(v0, a, n0)
            for t in range(T):
                _step_row(x[t, n0:n1], a, hs[t], beta, gain, theta, hard, jump, False)
            if gv.shape[0] == 0:  # no gradient reaches the final membrane
                a[:] = 0
            else:
                a[:] = gv[n0:n1]
            g = np.zeros(m, np.float32)
            v_prev = np.empty(m, np.float32)
            sums = np.zeros((3, m), np.float32)  # per neuron: dL/dbeta, dL/dgain, dL/dtheta
            for t in range(T - 1, -1, -1):
                h, xt, gxt = hs[t], x[t, n0:n1], gx[t, n0:n1]
                if has_gs and gs_per_step:
                    g[:] = gs[t, 0]
                elif has_gs:
                    g[:] = gs[t, n0:n1]
                if param_grads and t == 0:
                    _start(v0, v_prev, n0)
                elif param_grads:
                    for i in range(m):
                        v_prev[i] = _reset(hs[t - 1, i], theta, hard, jump)
                for i in range(m):
                    u = h[i] - theta
                    sg = _surrogate(u, alpha, kind)
                    r = sg * keep
                    f = F32(u > F32(0))
                    if soft:
                        dv_dh = F32(1) - theta * r
                        dv_dtheta = theta * r - f
                    else:
                        dv_dh = (F32(1) - f) + (v_reset - h[i]) * r
                        dv_dtheta = (h[i] - v_reset) * r
                    gh = g[i] * sg + a[i] * dv_dh
                    if param_grads:
                        sums[0, i] += gh * v_prev[i]
                        sums[1, i] += gh * xt[i]
                        sums[2, i] += a[i] * dv_dtheta - g[i] * sg
                    gxt[i] = gain * gh
                    a[i] = beta * gh
            if gv0.shape[0] > 0:
                gv0[n0:n1] = a
            if param_grads:
                for j in range(3):
                    acc[c, j] = sums[j].astype(np.float64).sum()

    return backward


def _use_torch_threads() -> None:
    """Run on as many threads as torch does (``torch.set_num_threads`` governs both)."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _empty(like: Tensor) -> Tensor:
    """An uninitialised float32 tensor shaped like ``like``, allocated by numpy: numpy asks for transparent huge
    pages, torch's CPU allocator does not, and on a fresh 8 MB output the 4 KB page faults cost as much as the
    kernel itself."""
    return torch.from_numpy(np.empty(like.shape, np.float32))


def _f32(value: Tensor | float) -> np.float32:
    return F32(value.item() if isinstance(value, Tensor) else value)


def forward(
    x: Tensor, v0: Tensor, beta: Tensor, gain: Tensor, threshold: Tensor, v_reset: float, soft: bool, save: bool
) -> tuple[Tensor, Tensor, Tensor]:
    spikes, v = _empty(x), x.new_empty(x.shape[1], dtype=v0.dtype)
    _use_torch_threads()
    theta = _f32(threshold)
    hard, jump = (F32(0), -theta) if soft else (F32(1), _f32(v_reset))
    _forward(
        x.detach().numpy(), v0.detach().numpy(), _f32(beta), _f32(gain), theta, hard, jump, spikes.numpy(), v.numpy(),
        _chunk(x.shape[0]),
    )  # fmt: skip
    return spikes, v, x.new_empty((0, x.shape[1]))


def backward(
    grad_spikes: Tensor | None,
    grad_v: Tensor | None,
    x: Tensor,
    v0: Tensor,
    beta: Tensor,
    gain: Tensor,
    threshold: Tensor,
    saved: Tensor,
    v_reset: float,
    soft: bool,
    detach_reset: bool,
    surrogate: int,
    alpha: float,
    param_grads: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    T, N = x.shape
    gs, per_step = x.new_zeros((1, 1)), True
    if grad_spikes is not None:
        # spikes.sum() and the like give one value per step broadcast over the neurons: read it as such.
        per_step = grad_spikes.stride(1) == 0
        gs = (grad_spikes[:, :1] if per_step else grad_spikes).contiguous()  # C-contiguous: one compiled kernel
    # (no torch fill before the kernel: torch's OpenMP threads would still be spinning when it starts)
    gv = grad_v.contiguous() if grad_v is not None else x.new_empty(0)
    gx, gv0 = _empty(x), torch.empty_like(v0)
    chunk = _chunk(T)
    acc = np.zeros(((N + chunk - 1) // chunk, 3), np.float64)
    _use_torch_threads()
    _backward_kernel(surrogate)(
        gs.detach().numpy(), per_step, grad_spikes is not None, gv.detach().numpy(), x.detach().numpy(),
        v0.detach().numpy(), _f32(beta), _f32(gain), _f32(threshold), _f32(v_reset), soft, detach_reset, _f32(alpha),
        param_grads, gx.numpy(), gv0.numpy(), acc, chunk,
    )  # fmt: skip
    return gx, gv0, torch.from_numpy(acc.sum(0)).to(torch.float32)


def unsupported(device: str, dtype: torch.dtype) -> str | None:
    """Why these kernels cannot run an input on ``device`` of ``dtype``, or None."""
    if device != "cpu":
        return f"the numba kernels run on the CPU, the input is on {device}"
    if dtype != torch.float32:
        return f"the numba kernels take float32, the input is {dtype}"
    return None


lif = define_lif_op("numba", forward, backward, saved_rows=lambda T: 0)
