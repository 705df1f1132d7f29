"""Numba kernels of the LIF family for the CPU (float32 arithmetic on float32 or bfloat16 activations), on the pieces
every model's Numba kernels share (``snnlab.kernels.numba_common``: chunks of neurons in parallel, per-neuron
parameters, the reset's arithmetic).

Saved for backward: nothing but references to the input ``x`` and the initial membrane. The backward recomputes its
chunk's membrane over all T into a T x chunk buffer that stays in cache (the same float operations as the forward,
so the same spikes) and then runs back in time through it; this is cheaper than writing and re-reading the membrane.
The arithmetic that decides spikes is written like ``LIF.step`` (no fused multiply-add, float32 constants), so
spikes and membranes are bit for bit those of the torch loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np
from numba import prange

from ..numba_common import (
    F32,
    SOURCE_STAMP,
    NumbaKernels,
    at,
    chunk_of,
    define_numba_op,
    finish,
    load,
    named,
    output_gradient_row,
    reset,
    reset_grads,
    reset_options,
    start,
    store,
    surrogate,
)
from ..numba_common import unsupported as unsupported  # what the dispatch asks this backend's module
from . import LIF_MODEL


@numba.njit(cache=True, inline="always")
def _step_row(x, v, out, beta, gain, theta, hard, v_reset, spikes):  # pragma: no cover - compiled
    """One step for a chunk: h = beta v + gain x, v <- its reset in place; ``out`` gets the spikes or h."""
    for i in range(v.shape[0]):
        th = at(theta, i)
        h = at(beta, i) * v[i] + at(gain, i) * load(x, i)
        store(out, i, F32(h - th > F32(0)) if spikes else h)
        v[i] = reset(h, th, hard, v_reset)


@numba.njit(cache=True, inline="always")
def _statistics_rows(x, v, spikes, statistics, b, g, th, hard, v_reset, keep, alpha, kind):  # pragma: no cover
    """The steps of a chunk (``x``, ``spikes`` ``[T, m]``) as ``_step_row`` takes them, with the rate and the
    rate's derivatives (1/T) sum g(u[t]) du[t]/dq into ``statistics`` ``[5, m]``, along q = a constant input c, beta,
    gain and theta: du/dq = dh/dq (dh/dtheta - 1 for theta) with dh[t]/dq = (1, v[t-1], x[t], 0)[q] + beta dv[t-1]/dq
    and dv[t]/dq = dv/dh dh[t]/dq (+ dv/dtheta for theta)."""
    T, m = x.shape
    soft = hard == F32(0)
    k = np.zeros((4, m), np.float32)  # dv[t-1]/dq
    acc = np.zeros((5, m), np.float32)
    for t in range(T):
        xt = x[t]
        for i in range(m):
            beta, gain, theta = at(b, i), at(g, i), at(th, i)
            x_i = load(xt, i)
            h = beta * v[i] + gain * x_i
            u = h - theta
            f = F32(u > F32(0))
            sg = surrogate(u, alpha, kind)
            dv_dh, dv_dtheta = reset_grads(h, f, sg, theta, v_reset, soft, keep)
            kc, kb, kg, kt = gain + beta * k[0, i], v[i] + beta * k[1, i], x_i + beta * k[2, i], beta * k[3, i]
            acc[0, i] += f
            acc[1, i] += sg * kc
            acc[2, i] += sg * kb
            acc[3, i] += sg * kg
            acc[4, i] += sg * (kt - F32(1))
            k[0, i], k[1, i], k[2, i], k[3, i] = kc * dv_dh, kb * dv_dh, kg * dv_dh, kt * dv_dh + dv_dtheta
            store(spikes[t], i, f)
            v[i] = reset(h, theta, hard, v_reset)
    for r in range(5):
        for i in range(m):
            statistics[r, i] = acc[r, i] / F32(T)


@functools.cache
def _forward_kernel(kind: int, parallel: bool) -> Callable[..., None]:
    """The forward, and with a surrogate ``kind`` >= 0 the rate and eligibility accumulated along (the surrogate a
    constant here, as in backward); -1: spikes only. Each parameter is a float32 scalar or a 1-D array. ``parallel``
    (see ``numba_common.parallel``): the chunks on Numba's thread pool, else a plain loop on the calling thread."""
    stats = kind >= 0
    chunks = prange if parallel else range  # a closure cell: part of the disk cache's key, unlike njit's flags
    stamp = SOURCE_STAMP  # another: the shared pieces' source (numba_common)

    @numba.njit(parallel=parallel, cache=True)
    def forward(x, v0, beta, gain, theta, v_reset, soft, keep, alpha, spikes, v, statistics, chunk):  # pragma: no cover
        stamp  # noqa: B018 - in the closure, hence in the cache key
        T, N = x.shape
        hard = F32(0) if soft else F32(1)
        for c in chunks((N + chunk - 1) // chunk):
            n0, n1 = c * chunk, min(c * chunk + chunk, N)
            b, g, th = chunk_of(beta, n0, n1 - n0), chunk_of(gain, n0, n1 - n0), chunk_of(theta, n0, n1 - n0)
            vc = v[n0:n1]
            start(v0, vc, n0)
            if stats:
                _statistics_rows(x[:, n0:n1], vc, spikes[:, n0:n1], statistics[:, n0:n1], b, g, th, hard, v_reset,
                                 keep, alpha, kind)  # fmt: skip
            else:
                for t in range(T):
                    _step_row(x[t, n0:n1], vc, spikes[t, n0:n1], b, g, th, hard, v_reset, True)

    return named(forward, "LIF", "forward", kind, parallel)


@functools.cache
def _backward_kernel(kind: int, parallel: bool) -> Callable[..., None]:
    """The backward compiled for one surrogate (a constant here, so that the surrogate is part of one fused,
    vectorised inner loop); each is compiled on first use and cached on disk. ``parallel`` as in the forward."""
    chunks = prange if parallel else range
    stamp = SOURCE_STAMP

    @numba.njit(parallel=parallel, cache=True)
    def backward(  # pragma: no cover - compiled
        gs, gs_per_step, has_gs, gv, x, v0, beta, gain, theta, v_reset, soft, keep, alpha, carry, param_grads, gx, gv0,
        gp, chunk,
    ):  # fmt: skip
        stamp  # noqa: B018 - in the closure, hence in the cache key
        T, N = x.shape
        hard = F32(0) if soft else F32(1)
        for c in chunks((N + chunk - 1) // chunk):
            n0, n1 = c * chunk, min(c * chunk + chunk, N)
            m = n1 - n0
            b, gn, th = chunk_of(beta, n0, m), chunk_of(gain, n0, m), chunk_of(theta, n0, m)
            hs = np.empty((T, m), np.float32)
            a = np.empty(m, np.float32)  # first the membrane, then dL/dv
            start(v0, a, n0)
            for t in range(T):
                _step_row(x[t, n0:n1], a, hs[t], b, gn, th, hard, v_reset, False)
            start(gv, a, n0)  # the final membrane's gradient (0 without one)
            g = np.zeros(m, np.float32)
            v_prev = np.empty(m, np.float32)
            sums = np.zeros((3, m), np.float32)  # per neuron: dL/dbeta, dL/dgain, dL/dtheta
            for t in range(T - 1, -1, -1):
                h, xt, gxt = hs[t], x[t, n0:n1], gx[t, n0:n1]
                output_gradient_row(gs, gs_per_step, has_gs, t, n0, g)
                if param_grads and t == 0:
                    start(v0, v_prev, n0)
                elif param_grads:
                    for i in range(m):
                        v_prev[i] = reset(hs[t - 1, i], at(th, i), hard, v_reset)
                for i in range(m):
                    theta_i = at(th, i)
                    u = h[i] - theta_i
                    sg = surrogate(u, alpha, kind)
                    dv_dh, dv_dtheta = reset_grads(h[i], F32(u > F32(0)), sg, theta_i, v_reset, soft, keep)
                    gh = g[i] * sg + a[i] * dv_dh
                    if param_grads:
                        sums[0, i] += gh * v_prev[i]
                        sums[1, i] += gh * load(xt, i)
                        sums[2, i] += a[i] * dv_dtheta - g[i] * sg
                    store(gxt, i, at(gn, i) * gh)
                    a[i] = at(b, i) * gh * carry
            finish(a, gv0, n0)
            if param_grads:
                gp[:, n0:n1] = sums

    return named(backward, "LIF", "backward", kind, parallel)


op = define_numba_op(
    LIF_MODEL,
    NumbaKernels(
        forward=lambda o, stats, parallel: _forward_kernel(o.surrogate if stats else -1, parallel),
        backward=lambda o, parallel: _backward_kernel(o.surrogate, parallel),
        forward_options=reset_options,
        backward_options=lambda o: (*reset_options(o), F32(0) if o.cut else F32(1)),
        stats_rows=5,
    ),
)
"""``torch.ops.snnlab.lif_numba`` behind its ``ScanOp`` wrapper."""
