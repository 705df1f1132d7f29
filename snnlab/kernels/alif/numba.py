"""Numba kernels of ALIF for the CPU (float32 arithmetic on float32 or bfloat16 activations), on the pieces every
model's Numba kernels share (``snnlab.kernels.numba_common``).

Saved for backward: nothing but references to the input ``x`` and the initial states. The backward recomputes its
chunk's pre-reset membrane h and adaptation a over all T into two T x chunk buffers that stay in cache (the forward's
float operations, so the same spikes), then runs back in time through them. Every parameter is passed as an array
(``n mod len(p)``), so each kernel compiles once whatever mix of per-layer and per-neuron parameters a layer has.
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
    reset_options,
    start,
    store,
    surrogate,
)
from ..numba_common import unsupported as unsupported  # what the dispatch asks this backend's module
from . import ALIF_MODEL

BUFFERS = 2
"""Recomputed T x chunk buffers in backward: h and the adaptation before each step."""


@numba.njit(cache=True, inline="always")
def _step_row(x, v, a, out, beta, gain, rho, gain_a, beta_a, b0, hard, v_reset, spikes):  # pragma: no cover
    """One step for a chunk, v and a updated in place as ``ALIF.step`` computes them; ``out`` gets the spikes or h."""
    for i in range(v.shape[0]):
        threshold = at(b0, i) + at(beta_a, i) * a[i]
        h = at(beta, i) * v[i] + at(gain, i) * load(x, i)
        f = F32(h - threshold > F32(0))
        store(out, i, f if spikes else h)
        v[i] = reset(h, threshold, hard, v_reset)
        a[i] = at(rho, i) * a[i] + at(gain_a, i) * f


@functools.cache
def _forward_kernel(parallel: bool) -> Callable[..., None]:
    """The forward; ``parallel`` (see ``numba_common.parallel``): the chunks on Numba's thread pool, else a plain loop
    on the calling thread."""
    chunks = prange if parallel else range  # closure cells are part of the disk cache's key, unlike njit's flags
    stamp = SOURCE_STAMP  # the shared pieces' source (numba_common)

    @numba.njit(parallel=parallel, cache=True)
    def forward(x, v0, a0, beta, gain, rho, gain_a, beta_a, b0, v_reset, soft, spikes, v, a, chunk):  # pragma: no cover
        stamp  # noqa: B018 - in the closure, hence in the cache key
        T, N = x.shape
        hard = F32(0) if soft else F32(1)
        for c in chunks((N + chunk - 1) // chunk):
            n0, n1 = c * chunk, min(c * chunk + chunk, N)
            m = n1 - n0
            b, g, r, ga = chunk_of(beta, n0, m), chunk_of(gain, n0, m), chunk_of(rho, n0, m), chunk_of(gain_a, n0, m)
            ba, th = chunk_of(beta_a, n0, m), chunk_of(b0, n0, m)
            vc, ac = v[n0:n1], a[n0:n1]
            start(v0, vc, n0)
            start(a0, ac, n0)
            for t in range(T):
                _step_row(x[t, n0:n1], vc, ac, spikes[t, n0:n1], b, g, r, ga, ba, th, hard, v_reset, True)

    return named(forward, "ALIF", "forward", -1, parallel)


@functools.cache
def _backward_kernel(kind: int, parallel: bool) -> Callable[..., None]:
    """The backward compiled for one surrogate (a constant here, so that the surrogate is part of one fused inner
    loop); ``parallel`` as in the forward. The formulas are ``snnlab.kernels.alif``'s."""
    chunks = prange if parallel else range
    stamp = SOURCE_STAMP

    @numba.njit(parallel=parallel, cache=True)
    def backward(  # pragma: no cover - compiled
        gs, gs_per_step, has_gs, gv, ga, x, v0, a0, beta, gain, rho, gain_a, beta_a, b0, v_reset, soft, keep, alpha,
        param_grads, gx, gv0, ga0, gp, chunk,
    ):  # fmt: skip
        stamp  # noqa: B018 - in the closure, hence in the cache key
        T, N = x.shape
        hard = F32(0) if soft else F32(1)
        for c in chunks((N + chunk - 1) // chunk):
            n0, n1 = c * chunk, min(c * chunk + chunk, N)
            m = n1 - n0
            b, g, r, gna = chunk_of(beta, n0, m), chunk_of(gain, n0, m), chunk_of(rho, n0, m), chunk_of(gain_a, n0, m)
            ba, th = chunk_of(beta_a, n0, m), chunk_of(b0, n0, m)
            hs = np.empty((T, m), np.float32)
            before = np.empty((T, m), np.float32)  # a[t-1], the adaptation step t's threshold reads
            av = np.empty(m, np.float32)  # first the membrane, then dL/dv
            aa = np.empty(m, np.float32)  # first the adaptation, then dL/da
            start(v0, av, n0)
            start(a0, aa, n0)
            for t in range(T):
                before[t] = aa
                _step_row(x[t, n0:n1], av, aa, hs[t], b, g, r, gna, ba, th, hard, v_reset, False)
            start(gv, av, n0)  # the final states' gradients (0 without one)
            start(ga, aa, n0)
            go = np.zeros(m, np.float32)
            v_prev = np.empty(m, np.float32)
            sums = np.zeros((6, m), np.float32)  # per neuron: beta, gain, rho, gain_a, beta_a, b0
            for t in range(T - 1, -1, -1):
                output_gradient_row(gs, gs_per_step, has_gs, t, n0, go)
                xt, gxt = x[t], gx[t]
                if param_grads and t == 0:
                    start(v0, v_prev, n0)
                elif param_grads:
                    for i in range(m):
                        previous = at(th, i) + at(ba, i) * before[t - 1, i]
                        v_prev[i] = reset(hs[t - 1, i], previous, hard, v_reset)
                for i in range(m):
                    a_prev, h = before[t, i], hs[t, i]
                    threshold = at(th, i) + at(ba, i) * a_prev
                    u = h - threshold
                    f = F32(u > F32(0))
                    sg = surrogate(u, alpha, kind)
                    if soft:
                        dv_ds, dv_dh, dv_dthreshold = -threshold, F32(1), -f
                    else:
                        dv_ds, dv_dh, dv_dthreshold = v_reset - h, F32(1) - f, F32(0)
                    gu = sg * (go[i] + at(gna, i) * aa[i] + keep * av[i] * dv_ds)
                    gh = gu + av[i] * dv_dh
                    gthreshold = av[i] * dv_dthreshold - gu
                    if param_grads:
                        sums[0, i] += gh * v_prev[i]
                        sums[1, i] += gh * load(xt, n0 + i)
                        sums[2, i] += aa[i] * a_prev
                        sums[3, i] += aa[i] * f
                        sums[4, i] += gthreshold * a_prev
                        sums[5, i] += gthreshold
                    store(gxt, n0 + i, at(g, i) * gh)
                    aa[i] = at(r, i) * aa[i] + at(ba, i) * gthreshold
                    av[i] = at(b, i) * gh
            finish(av, gv0, n0)
            finish(aa, ga0, n0)
            if param_grads:
                gp[:, n0:n1] = sums

    return named(backward, "ALIF", "backward", kind, parallel)


op = define_numba_op(
    ALIF_MODEL,
    NumbaKernels(
        forward=lambda o, stats, parallel: _forward_kernel(parallel),
        backward=lambda o, parallel: _backward_kernel(o.surrogate, parallel),
        forward_options=lambda o: reset_options(o)[:2],
        backward_options=reset_options,
        backward_buffers=BUFFERS,
        scalar_params=False,
    ),
)
"""``torch.ops.snnlab.alif_numba`` behind its ``ScanOp`` wrapper."""
