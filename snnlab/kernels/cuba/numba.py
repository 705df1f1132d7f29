"""Numba kernels of CUBA-LIF for the CPU (float32 arithmetic on float32 or bfloat16 activations), on the pieces every
model's Numba kernels share (``snnlab.kernels.numba_common``).

Saved for backward: nothing but references to the input ``x`` and the initial states. The backward recomputes its
chunk's pre-reset membrane h and synaptic current i over all T into two T x chunk buffers that stay in cache (the
forward's float operations, so the same spikes), then runs back in time through them. Every parameter is passed as
an array (``n mod len(p)``), so each kernel compiles once whatever mix of per-layer and per-neuron parameters a
layer has.
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
from . import CUBA_MODEL

BUFFERS = 2
"""Recomputed T x chunk buffers in backward: h and i of each step."""


@numba.njit(cache=True, inline="always")
def _step_row(x, v, cur, out, beta, gain, alpha_syn, gain_syn, theta, hard, v_reset, spikes):  # pragma: no cover
    """One step for a chunk, v and the current updated in place as ``CubaLIF.step`` computes them; ``out`` gets the
    spikes or h."""
    for i in range(v.shape[0]):
        c = at(alpha_syn, i) * cur[i] + at(gain_syn, i) * load(x, i)
        h = at(beta, i) * v[i] + at(gain, i) * c
        th = at(theta, i)
        store(out, i, F32(h - th > F32(0)) if spikes else h)
        v[i] = reset(h, th, hard, v_reset)
        cur[i] = c


@functools.cache
def _forward_kernel(parallel: bool) -> Callable[..., None]:
    """The forward; ``parallel`` (see ``numba_common.parallel``): the chunks on Numba's thread pool, else a plain loop
    on the calling thread."""
    chunks = prange if parallel else range  # closure cells are part of the disk cache's key, unlike njit's flags
    stamp = SOURCE_STAMP  # the shared pieces' source (numba_common)

    @numba.njit(parallel=parallel, cache=True)
    def forward(
        x, v0, i0, beta, gain, alpha_syn, gain_syn, theta, v_reset, soft, spikes, v, cur, chunk
    ):  # pragma: no cover
        stamp  # noqa: B018 - in the closure, hence in the cache key
        T, N = x.shape
        hard = F32(0) if soft else F32(1)
        for c in chunks((N + chunk - 1) // chunk):
            n0, n1 = c * chunk, min(c * chunk + chunk, N)
            m = n1 - n0
            b, g, al = chunk_of(beta, n0, m), chunk_of(gain, n0, m), chunk_of(alpha_syn, n0, m)
            gsyn, th = chunk_of(gain_syn, n0, m), chunk_of(theta, n0, m)
            vc, ic = v[n0:n1], cur[n0:n1]
            start(v0, vc, n0)
            start(i0, ic, n0)
            for t in range(T):
                _step_row(x[t, n0:n1], vc, ic, spikes[t, n0:n1], b, g, al, gsyn, th, hard, v_reset, True)

    return named(forward, "CUBA-LIF", "forward", -1, parallel)


@functools.cache
def _backward_kernel(kind: int, parallel: bool) -> Callable[..., None]:
    """The backward compiled for one surrogate (a constant here, so that the surrogate is part of one fused inner
    loop); ``parallel`` as in the forward. The formulas are ``snnlab.kernels.cuba``'s."""
    chunks = prange if parallel else range
    stamp = SOURCE_STAMP

    @numba.njit(parallel=parallel, cache=True)
    def backward(  # pragma: no cover - compiled
        gs, gs_per_step, has_gs, gv, gi, x, v0, i0, beta, gain, alpha_syn, gain_syn, theta, v_reset, soft, keep, alpha,
        param_grads, gx, gv0, gi0, gp, chunk,
    ):  # fmt: skip
        stamp  # noqa: B018 - in the closure, hence in the cache key
        T, N = x.shape
        hard = F32(0) if soft else F32(1)
        for c in chunks((N + chunk - 1) // chunk):
            n0, n1 = c * chunk, min(c * chunk + chunk, N)
            m = n1 - n0
            b, g, al = chunk_of(beta, n0, m), chunk_of(gain, n0, m), chunk_of(alpha_syn, n0, m)
            gsyn, th = chunk_of(gain_syn, n0, m), chunk_of(theta, n0, m)
            hs = np.empty((T, m), np.float32)
            currents = np.empty((T, m), np.float32)
            av = np.empty(m, np.float32)  # first the membrane, then dL/dv
            ai = np.empty(m, np.float32)  # first the current, then dL/di
            start(v0, av, n0)
            start(i0, ai, n0)
            for t in range(T):
                _step_row(x[t, n0:n1], av, ai, hs[t], b, g, al, gsyn, th, hard, v_reset, False)
                currents[t] = ai
            start(gv, av, n0)  # the final states' gradients (0 without one)
            start(gi, ai, n0)
            go = np.zeros(m, np.float32)
            v_prev = np.empty(m, np.float32)
            i_prev = np.empty(m, np.float32)
            sums = np.zeros((5, m), np.float32)  # per neuron: beta, gain, alpha_syn, gain_syn, theta
            for t in range(T - 1, -1, -1):
                output_gradient_row(gs, gs_per_step, has_gs, t, n0, go)
                xt, gxt = x[t], gx[t]
                if param_grads and t == 0:
                    start(v0, v_prev, n0)
                    start(i0, i_prev, n0)
                elif param_grads:
                    i_prev[:] = currents[t - 1]
                    for i in range(m):
                        v_prev[i] = reset(hs[t - 1, i], at(th, i), hard, v_reset)
                for i in range(m):
                    h, theta_i = hs[t, i], at(th, i)
                    u = h - theta_i
                    sg = surrogate(u, alpha, kind)
                    dv_dh, dv_dtheta = reset_grads(h, F32(u > F32(0)), sg, theta_i, v_reset, soft, keep)
                    gh = go[i] * sg + av[i] * dv_dh
                    gc = ai[i] + at(g, i) * gh
                    if param_grads:
                        sums[0, i] += gh * v_prev[i]
                        sums[1, i] += gh * currents[t, i]
                        sums[2, i] += gc * i_prev[i]
                        sums[3, i] += gc * load(xt, n0 + i)
                        sums[4, i] += av[i] * dv_dtheta - go[i] * sg
                    store(gxt, n0 + i, at(gsyn, i) * gc)
                    ai[i] = at(al, i) * gc
                    av[i] = at(b, i) * gh
            finish(av, gv0, n0)
            finish(ai, gi0, n0)
            if param_grads:
                gp[:, n0:n1] = sums

    return named(backward, "CUBA-LIF", "backward", kind, parallel)


op = define_numba_op(
    CUBA_MODEL,
    NumbaKernels(
        forward=lambda o, stats, parallel: _forward_kernel(parallel),
        backward=lambda o, parallel: _backward_kernel(o.surrogate, parallel),
        forward_options=lambda o: reset_options(o)[:2],
        backward_options=reset_options,
        backward_buffers=BUFFERS,
        scalar_params=False,
    ),
)
"""``torch.ops.snnlab.cuba_numba`` behind its ``ScanOp`` wrapper."""
