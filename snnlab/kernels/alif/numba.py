"""Numba kernels of ALIF for the CPU (float32), on the pieces every model's Numba kernels share
(``snnlab.kernels.numba_common``).

Saved for backward: nothing but references to the input ``x`` and the initial states. The backward recomputes its
chunk's pre-reset membrane h and adaptation a over all T into two T x chunk buffers that stay in cache (the forward's
float operations, so the same spikes), then runs back in time through them. Every parameter is passed as an array
(``n mod len(p)``), so each kernel compiles once whatever mix of per-layer and per-neuron parameters a layer has.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

from ..numba_common import (
    F32,
    SOURCE_STAMP,
    at,
    chunk_of,
    chunk_size,
    empty,
    named,
    np_,
    output_gradient,
    output_gradient_row,
    parallel,
    reset,
    start,
    surrogate,
)
from ..numba_common import unsupported as unsupported  # what the dispatch asks this backend's module
from ..scan_op import define_scan_op
from . import ALIF_MODEL

BUFFERS = 2
"""Recomputed T x chunk buffers in backward: h and the adaptation before each step."""


@numba.njit(cache=True, inline="always")
def _step_row(x, v, a, out, beta, gain, rho, gain_a, beta_a, b0, hard, v_reset, spikes):  # pragma: no cover
    """One step for a chunk, v and a updated in place as ``ALIF.step`` computes them; ``out`` gets the spikes or h."""
    for i in range(v.shape[0]):
        threshold = at(b0, i) + at(beta_a, i) * a[i]
        h = at(beta, i) * v[i] + at(gain, i) * x[i]
        f = F32(h - threshold > F32(0))
        out[i] = f if spikes else h
        v[i] = reset(h, threshold, hard, v_reset)
        a[i] = at(rho, i) * a[i] + at(gain_a, i) * f


@functools.cache
def _forward_kernel(parallel: bool) -> Callable[..., None]:
    """The forward; ``parallel`` (see ``numba_common.parallel``): the chunks on Numba's thread pool, else a plain loop
    on the calling thread."""
    chunks = prange if parallel else range  # closure cells are part of the disk cache's key, unlike njit's flags
    stamp = SOURCE_STAMP  # the shared pieces' source (numba_common)

    @numba.njit(parallel=parallel, cache=True)
    def forward(x, v0, a0, beta, gain, rho, gain_a, beta_a, b0, hard, v_reset, spikes, v, a, chunk):  # pragma: no cover
        stamp  # noqa: B018 - in the closure, hence in the cache key
        T, N = x.shape
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
            for final, adjoint in ((gv, av), (ga, aa)):
                if final.shape[0] == 0:  # no gradient reaches this final state
                    adjoint[:] = 0
                else:
                    adjoint[:] = final[n0:n1]
            go = np.zeros(m, np.float32)
            v_prev = np.empty(m, np.float32)
            sums = np.zeros((6, m), np.float32)  # per neuron: beta, gain, rho, gain_a, beta_a, b0
            for t in range(T - 1, -1, -1):
                output_gradient_row(gs, gs_per_step, has_gs, t, n0, go)
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
                        sums[1, i] += gh * x[t, n0 + i]
                        sums[2, i] += aa[i] * a_prev
                        sums[3, i] += aa[i] * f
                        sums[4, i] += gthreshold * a_prev
                        sums[5, i] += gthreshold
                    gx[t, n0 + i] = at(g, i) * gh
                    aa[i] = at(r, i) * aa[i] + at(ba, i) * gthreshold
                    av[i] = at(b, i) * gh
            if gv0.shape[0] > 0:
                gv0[n0:n1] = av
            if ga0.shape[0] > 0:
                ga0[n0:n1] = aa
            if param_grads:
                gp[:, n0:n1] = sums

    return named(backward, "ALIF", "backward", kind, parallel)


def forward(
    x: Tensor, states: list[Tensor], params: list[Tensor], o: Any, save: bool, stats: bool
) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
    if stats:
        raise NotImplementedError("the ALIF kernels keep no rate statistics (ALIF.rate_statistics runs the loop)")
    v0, a0 = states
    T, N = x.shape
    spikes, v, a = empty(x.shape), x.new_empty(N, dtype=v0.dtype), x.new_empty(N, dtype=a0.dtype)
    _forward_kernel(parallel(N, chunk_size(T)))(
        np_(x), np_(v0), np_(a0), *map(np_, params), F32(0) if o.soft else F32(1), F32(o.v_reset), spikes.numpy(),
        v.numpy(), a.numpy(), chunk_size(T),
    )  # fmt: skip
    return spikes, [v, a], x.new_empty((0, N)), x.new_empty((0, N))


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
    (v0, a0), T, N = states, *x.shape
    gs, per_step = output_gradient(grad_out, x)
    gv, ga = (x.new_empty(0) if g is None else g.contiguous() for g in grad_states)
    gx, gv0, ga0 = empty(x.shape), torch.empty_like(v0), torch.empty_like(a0)
    gp = empty((len(params) if param_grads else 0, N))
    chunk = chunk_size(T, BUFFERS)
    _backward_kernel(o.surrogate, parallel(N, chunk))(
        np_(gs), per_step, grad_out is not None, np_(gv), np_(ga), np_(x), np_(v0), np_(a0), *map(np_, params),
        F32(o.v_reset), o.soft, F32(0) if o.detach_reset else F32(1), F32(o.alpha), param_grads, gx.numpy(),
        gv0.numpy(), ga0.numpy(), gp.numpy(), chunk,
    )  # fmt: skip
    return gx, [gv0, ga0], gp


op = define_scan_op(ALIF_MODEL, "numba", forward, backward, saved_rows=lambda T: 0)
"""``torch.ops.snnlab.alif_numba`` behind its ``ScanOp`` wrapper."""
