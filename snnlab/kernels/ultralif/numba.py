"""Numba kernels of UltraLIF for the CPU (float32 arithmetic, float32 or bf16 activations): parallel over chunks of
neurons, a loop over T inside, as the LIF kernels (``snnlab.kernels.lif.numba``), on the chunking, parameter buffers
and thread policy of ``snnlab.kernels.numba_common``.

Saved for backward: nothing but references to the input and the initial membrane. The backward recomputes its
chunk's membranes over all T into a T x chunk buffer that stays in cache, then runs back in time through it.
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
    start,
    store,
)
from ..numba_common import unsupported as unsupported  # what the dispatch asks this backend's module
from . import ULTRALIF_MODEL


@numba.njit(cache=True, inline="always")
def _charge(v, x, ln_tau, eps):  # pragma: no cover - compiled
    """(h, e, d) for membrane v and input x: h = LSE_eps(v + ln tau, x), e = exp(-|d| / eps), d = v + ln tau - x."""
    a = v + ln_tau
    d = a - x
    e = np.exp(-abs(d) / eps)
    return max(a, x) + eps * np.log(F32(1) + e), e, d


@numba.njit(cache=True, inline="always")
def _fire(h, theta, eps):  # pragma: no cover - compiled
    """(s, u): s = sigmoid(u), u = (h - theta) / eps."""
    u = (h - theta) / eps
    return F32(1) / (F32(1) + np.exp(-u)), u


@functools.cache
def _forward_kernel(parallel: bool) -> Callable[..., None]:
    """The forward; ``parallel``: the chunks on Numba's thread pool, else a plain loop on the calling thread."""
    chunks = prange if parallel else range  # a closure cell: part of the disk cache's key, unlike njit's flags
    stamp = SOURCE_STAMP  # another: the shared pieces' source (numba_common)

    @numba.njit(parallel=parallel, cache=True)
    def forward(x, v0, ln_tau, eps, theta, out, v, chunk):  # pragma: no cover - compiled
        stamp  # noqa: B018 - in the closure, hence in the cache key
        T, N = x.shape
        for c in chunks((N + chunk - 1) // chunk):
            n0, n1 = c * chunk, min(c * chunk + chunk, N)
            lt, ep, th = chunk_of(ln_tau, n0, n1 - n0), chunk_of(eps, n0, n1 - n0), chunk_of(theta, n0, n1 - n0)
            vc = v[n0:n1]
            start(v0, vc, n0)
            for t in range(T):
                xt, out_t = x[t], out[t]
                for i in range(n1 - n0):
                    h = _charge(vc[i], load(xt, n0 + i), at(lt, i), at(ep, i))[0]
                    s = _fire(h, at(th, i), at(ep, i))[0]
                    store(out_t, n0 + i, s)
                    vc[i] = h * (F32(1) - s)

    return named(forward, "UltraLIF", "forward", -1, parallel)


@functools.cache
def _backward_kernel(parallel: bool) -> Callable[..., None]:
    """The backward (the forward's exact derivative, ``snnlab.kernels.ultralif``); ``parallel`` as in the forward."""
    chunks = prange if parallel else range
    stamp = SOURCE_STAMP

    @numba.njit(parallel=parallel, cache=True)
    def backward(  # pragma: no cover - compiled
        gs, gs_per_step, has_gs, gv, x, v0, ln_tau, eps, theta, param_grads, gx, gv0, gp, chunk
    ):
        stamp  # noqa: B018 - in the closure, hence in the cache key
        T, N = x.shape
        for c in chunks((N + chunk - 1) // chunk):
            n0, n1 = c * chunk, min(c * chunk + chunk, N)
            m = n1 - n0
            lt, ep, th = chunk_of(ln_tau, n0, m), chunk_of(eps, n0, m), chunk_of(theta, n0, m)
            vs = np.empty((T + 1, m), np.float32)  # vs[t]: the membrane before step t
            start(v0, vs[0], n0)
            for t in range(T):
                xt = x[t]
                for i in range(m):
                    h = _charge(vs[t, i], load(xt, n0 + i), at(lt, i), at(ep, i))[0]
                    vs[t + 1, i] = h * (F32(1) - _fire(h, at(th, i), at(ep, i))[0])
            b = np.empty(m, np.float32)  # dL/dv[t]
            start(gv, b, n0)
            go = np.zeros(m, np.float32)
            sums = np.zeros((3, m), np.float32)  # per neuron: dL/dln_tau, dL/deps, dL/dtheta
            for t in range(T - 1, -1, -1):
                output_gradient_row(gs, gs_per_step, has_gs, t, n0, go)
                xt, gxt = x[t], gx[t]
                for i in range(m):
                    eps_i = at(ep, i)
                    h, e, d = _charge(vs[t, i], load(xt, n0 + i), at(lt, i), eps_i)
                    s, u = _fire(h, at(th, i), eps_i)
                    g = go[i]
                    small = e / (F32(1) + e)  # the weight of the smaller term
                    p = F32(1) - small if d >= F32(0) else small
                    c_theta = (b[i] * h - g) * (s * (F32(1) - s)) / eps_i
                    gh = b[i] * (F32(1) - s) - c_theta
                    store(gxt, n0 + i, gh * (F32(1) - p))
                    b[i] = gh * p
                    if param_grads:
                        sums[0, i] += gh * p
                        sums[1, i] += gh * (np.log(F32(1) + e) + abs(d) * small / eps_i) + c_theta * u
                        sums[2, i] += c_theta
            finish(b, gv0, n0)
            if param_grads:
                gp[:, n0:n1] = sums

    return named(backward, "UltraLIF", "backward", -1, parallel)


op = define_numba_op(
    ULTRALIF_MODEL,
    NumbaKernels(
        forward=lambda o, stats, parallel: _forward_kernel(parallel),
        backward=lambda o, parallel: _backward_kernel(parallel),
    ),
)
"""``torch.ops.snnlab.ultralif_numba`` behind its ``ScanOp`` wrapper."""
