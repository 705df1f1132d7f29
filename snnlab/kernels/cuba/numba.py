"""Numba kernels of CUBA-LIF for the CPU (float32), on the pieces every model's Numba kernels share
(``snnlab.kernels.numba_common``).

Saved for backward: nothing but references to the input ``x`` and the initial states. The backward recomputes its
chunk's pre-reset membrane h and synaptic current i over all T into two T x chunk buffers that stay in cache (the
forward's float operations, so the same spikes), then runs back in time through them. Every parameter is passed as
an array (``n mod len(p)``), so each kernel compiles once whatever mix of per-layer and per-neuron parameters a
layer has.
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
    reset_grads,
    start,
    surrogate,
)
from ..numba_common import unsupported as unsupported  # what the dispatch asks this backend's module
from ..scan_op import define_scan_op
from . import CUBA_MODEL

BUFFERS = 2
"""Recomputed T x chunk buffers in backward: h and i of each step."""


@numba.njit(cache=True, inline="always")
def _step_row(x, v, cur, out, beta, gain, alpha_syn, gain_syn, theta, hard, v_reset, spikes):  # pragma: no cover
    """One step for a chunk, v and the current updated in place as ``CubaLIF.step`` computes them; ``out`` gets the
    spikes or h."""
    for i in range(v.shape[0]):
        c = at(alpha_syn, i) * cur[i] + at(gain_syn, i) * x[i]
        h = at(beta, i) * v[i] + at(gain, i) * c
        th = at(theta, i)
        out[i] = F32(h - th > F32(0)) if spikes else h
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
        x, v0, i0, beta, gain, alpha_syn, gain_syn, theta, hard, v_reset, spikes, v, cur, chunk
    ):  # pragma: no cover
        stamp  # noqa: B018 - in the closure, hence in the cache key
        T, N = x.shape
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
            for final, adjoint in ((gv, av), (gi, ai)):
                if final.shape[0] == 0:  # no gradient reaches this final state
                    adjoint[:] = 0
                else:
                    adjoint[:] = final[n0:n1]
            go = np.zeros(m, np.float32)
            v_prev = np.empty(m, np.float32)
            i_prev = np.empty(m, np.float32)
            sums = np.zeros((5, m), np.float32)  # per neuron: beta, gain, alpha_syn, gain_syn, theta
            for t in range(T - 1, -1, -1):
                output_gradient_row(gs, gs_per_step, has_gs, t, n0, go)
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
                        sums[3, i] += gc * x[t, n0 + i]
                        sums[4, i] += av[i] * dv_dtheta - go[i] * sg
                    gx[t, n0 + i] = at(gsyn, i) * gc
                    ai[i] = at(al, i) * gc
                    av[i] = at(b, i) * gh
            if gv0.shape[0] > 0:
                gv0[n0:n1] = av
            if gi0.shape[0] > 0:
                gi0[n0:n1] = ai
            if param_grads:
                gp[:, n0:n1] = sums

    return named(backward, "CUBA-LIF", "backward", kind, parallel)


def forward(
    x: Tensor, states: list[Tensor], params: list[Tensor], o: Any, save: bool, stats: bool
) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
    if stats:
        raise NotImplementedError("the CUBA-LIF kernels keep no rate statistics (rate_statistics runs the loop)")
    v0, i0 = states
    T, N = x.shape
    spikes, v, cur = empty(x.shape), x.new_empty(N, dtype=v0.dtype), x.new_empty(N, dtype=i0.dtype)
    _forward_kernel(parallel(N, chunk_size(T)))(
        np_(x), np_(v0), np_(i0), *map(np_, params), F32(0) if o.soft else F32(1), F32(o.v_reset), spikes.numpy(),
        v.numpy(), cur.numpy(), chunk_size(T),
    )  # fmt: skip
    return spikes, [v, cur], x.new_empty((0, N)), x.new_empty((0, N))


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
    (v0, i0), T, N = states, *x.shape
    gs, per_step = output_gradient(grad_out, x)
    gv, gi = (x.new_empty(0) if g is None else g.contiguous() for g in grad_states)
    gx, gv0, gi0 = empty(x.shape), torch.empty_like(v0), torch.empty_like(i0)
    gp = empty((len(params) if param_grads else 0, N))
    chunk = chunk_size(T, BUFFERS)
    _backward_kernel(o.surrogate, parallel(N, chunk))(
        np_(gs), per_step, grad_out is not None, np_(gv), np_(gi), np_(x), np_(v0), np_(i0), *map(np_, params),
        F32(o.v_reset), o.soft, F32(0) if o.detach_reset else F32(1), F32(o.alpha), param_grads, gx.numpy(),
        gv0.numpy(), gi0.numpy(), gp.numpy(), chunk,
    )  # fmt: skip
    return gx, [gv0, gi0], gp


op = define_scan_op(CUBA_MODEL, "numba", forward, backward, saved_rows=lambda T: 0)
"""``torch.ops.snnlab.cuba_numba`` behind its ``ScanOp`` wrapper."""
