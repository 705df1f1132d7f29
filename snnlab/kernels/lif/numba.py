"""Numba kernels of the LIF family for the CPU (float32): parallel over chunks of neurons, a loop over T inside, and a
contiguous inner loop over the chunk that LLVM vectorises.

A parameter that is one value is passed as a scalar; one per neuron (``n mod len(p)``, see ``scan_op``) is copied
into a chunk-sized buffer once per chunk. Numba compiles a variant per combination, so a scalar stays in a register. Saved for backward: nothing but
references to the input ``x`` and the initial membrane. The backward recomputes its chunk's membrane over all T into
a T x chunk buffer that stays in cache (the same float operations as the forward, so the same spikes) and then runs
back in time through it; this is cheaper than writing and re-reading the membrane. The arithmetic that decides
spikes is written like ``LIF.step`` (no fused multiply-add, float32 constants), so spikes and membranes are bit for
bit those of the torch loop.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import torch
from numba import prange, types
from numba.core import event
from numba.extending import overload
from torch import Tensor
from tqdm.auto import tqdm

from ..scan_op import SURROGATE_IDS, define_scan_op
from . import LIF_MODEL

BUFFER = 131072
"""Floats of recomputed membrane per work item in backward (T x chunk, 512 KB): it stays in the core's L2."""


def _chunk(T: int) -> int:
    """Neurons per parallel work item: BUFFER / T, a multiple of 16 between 64 and 1024 (measured at N = 65,536,
    T = 8..128: 1024 was as fast as or faster than 64..512, and 4096 slower)."""
    return max(64, min(1024, BUFFER // T // 16 * 16))


F32 = np.float32


@numba.njit(cache=True, inline="always")
def _surrogate(u, alpha, kind):  # pragma: no cover - compiled
    """g(u) for surrogate ``kind`` (scan_op.SURROGATE_IDS), in float32."""
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


def _chunk_of(p, n0, m):
    """Parameter p for the neurons n0 .. n0 + m: a scalar stays one; an array gives a buffer of p[n mod len(p)]."""
    raise NotImplementedError  # compiled only, through the overload below


@overload(_chunk_of, inline="always")
def _chunk_of_typed(p, n0, m):
    if isinstance(p, types.Float):
        return lambda p, n0, m: p

    def take(p, n0, m):  # pragma: no cover - compiled
        out = np.empty(m, np.float32)
        for i in range(m):
            out[i] = p[(n0 + i) % p.shape[0]]
        return out

    return take


def _at(p, i):
    """Neuron i's value of a chunk's parameter (``_chunk_of``): p[i], or p itself for a scalar."""
    raise NotImplementedError  # compiled only, through the overload below


@overload(_at, inline="always")
def _at_typed(p, i):
    if isinstance(p, types.Float):
        return lambda p, i: p
    return lambda p, i: p[i]


@numba.njit(cache=True, inline="always")
def _reset(h, theta, hard, v_reset):  # pragma: no cover - compiled
    """The membrane after h's spike f: h (1 - f hard) + f jump, with jump = v_reset hard - theta (1 - hard), i.e.
    -theta for a soft reset (hard = 0) and v_reset for a hard one (hard = 1). Every product with f or hard is exact,
    so this rounds exactly as LIF.step's h - theta f and h (1 - f) + v_reset f, and one branch-free loop serves both
    resets."""
    f = F32(h - theta > F32(0))
    return h * (F32(1) - f * hard) + f * (v_reset * hard - theta * (F32(1) - hard))


@numba.njit(cache=True, inline="always")
def _dv(h, f, sg, theta, v_reset, soft, keep):  # pragma: no cover - compiled
    """(dv/dh, dv/dtheta) of the reset at h with spike f and surrogate derivative sg (times ``keep``: 0 with
    detach_reset, else 1)."""
    r = sg * keep
    if soft:
        return F32(1) - theta * r, theta * r - f
    return (F32(1) - f) + (v_reset - h) * r, (h - v_reset) * r


@numba.njit(cache=True, inline="always")
def _step_row(x, v, out, beta, gain, theta, hard, v_reset, spikes):  # pragma: no cover - compiled
    """One step for a chunk: h = beta v + gain x, v <- its reset in place; ``out`` gets the spikes or h."""
    for i in range(v.shape[0]):
        th = _at(theta, i)
        h = _at(beta, i) * v[i] + _at(gain, i) * x[i]
        out[i] = F32(h - th > F32(0)) if spikes else h
        v[i] = _reset(h, th, hard, v_reset)


@numba.njit(cache=True, inline="always")
def _start(v0, out, n0):  # pragma: no cover - compiled
    """out = the initial membrane of the chunk starting at neuron n0: v0's values, or 0 for an empty v0 (at rest)."""
    if v0.shape[0] == 0:
        out[:] = 0
    else:
        out[:] = v0[n0 : n0 + out.shape[0]]


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
        for i in range(m):
            beta, gain, theta = _at(b, i), _at(g, i), _at(th, i)
            h = beta * v[i] + gain * x[t, i]
            u = h - theta
            f = F32(u > F32(0))
            sg = _surrogate(u, alpha, kind)
            dv_dh, dv_dtheta = _dv(h, f, sg, theta, v_reset, soft, keep)
            kc, kb, kg, kt = gain + beta * k[0, i], v[i] + beta * k[1, i], x[t, i] + beta * k[2, i], beta * k[3, i]
            acc[0, i] += f
            acc[1, i] += sg * kc
            acc[2, i] += sg * kb
            acc[3, i] += sg * kg
            acc[4, i] += sg * (kt - F32(1))
            k[0, i], k[1, i], k[2, i], k[3, i] = kc * dv_dh, kb * dv_dh, kg * dv_dh, kt * dv_dh + dv_dtheta
            spikes[t, i] = f
            v[i] = _reset(h, theta, hard, v_reset)
    for r in range(5):
        for i in range(m):
            statistics[r, i] = acc[r, i] / F32(T)


class _CompileNotice(event.Listener):
    """Says on stderr when one of ``_KERNELS`` compiles, and how long it took: the first run after installing
    compiles each for ~10 s at "epoch 1: 0%", which looks like a hang. Later runs load them from Numba's disk
    cache (no compile event), silently."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}

    def on_start(self, ev: event.Event) -> None:
        name = _KERNELS.get(id(ev.data["dispatcher"]))
        if name is not None:
            self.started[id(ev.data["dispatcher"])] = time.perf_counter()
            tqdm.write(f"snnlab: compiling the Numba kernel {name}, once: it is cached on disk ...", file=sys.stderr)

    def on_end(self, ev: event.Event) -> None:
        started = self.started.pop(id(ev.data["dispatcher"]), None)
        if started is not None:
            name = _KERNELS[id(ev.data["dispatcher"])]
            tqdm.write(f"snnlab: compiled {name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)


_KERNELS: dict[int, str] = {}
"""id of each kernel's dispatcher: its name in ``_CompileNotice``'s messages."""
event.register("numba:compile", _CompileNotice())


def _named(kernel: Any, direction: str, kind: int, parallel: bool) -> Any:
    """``kernel``, entered in ``_KERNELS`` as the LIF ``direction`` with surrogate ``kind`` (-1: none)."""
    surrogate = {v: k for k, v in SURROGATE_IDS.items()}.get(kind)
    details = ([f"{surrogate} surrogate"] if surrogate else []) + ([] if parallel else ["serial"])
    _KERNELS[id(kernel)] = f"LIF {direction}" + (f" ({', '.join(details)})" if details else "")
    return kernel


@functools.cache
def _forward_kernel(kind: int, parallel: bool) -> Callable[..., None]:
    """The forward, and with a surrogate ``kind`` >= 0 the rate and eligibility accumulated along (the surrogate a
    constant here, as in backward); -1: spikes only. Each parameter is a float32 scalar or a 1-D array. ``parallel``
    (see ``_parallel``): the chunks on Numba's thread pool, else a plain loop on the calling thread."""
    stats = kind >= 0
    chunks = prange if parallel else range  # a closure cell: part of the disk cache's key, unlike njit's flags

    @numba.njit(parallel=parallel, cache=True)
    def forward(x, v0, beta, gain, theta, hard, v_reset, keep, alpha, spikes, v, statistics, chunk):  # pragma: no cover
        T, N = x.shape
        for c in chunks((N + chunk - 1) // chunk):
            n0, n1 = c * chunk, min(c * chunk + chunk, N)
            b, g, th = _chunk_of(beta, n0, n1 - n0), _chunk_of(gain, n0, n1 - n0), _chunk_of(theta, n0, n1 - n0)
            vc = v[n0:n1]
            _start(v0, vc, n0)
            if stats:
                _statistics_rows(x[:, n0:n1], vc, spikes[:, n0:n1], statistics[:, n0:n1], b, g, th, hard, v_reset,
                                 keep, alpha, kind)  # fmt: skip
            else:
                for t in range(T):
                    _step_row(x[t, n0:n1], vc, spikes[t, n0:n1], b, g, th, hard, v_reset, True)

    return _named(forward, "forward", kind, parallel)


@functools.cache
def _backward_kernel(kind: int, parallel: bool) -> Callable[..., None]:
    """The backward compiled for one surrogate (a constant here, so that the surrogate is part of one fused,
    vectorised inner loop); each is compiled on first use and cached on disk. ``parallel`` as in the forward."""
    chunks = prange if parallel else range

    @numba.njit(parallel=parallel, cache=True)
    def backward(  # pragma: no cover - compiled
        gs, gs_per_step, has_gs, gv, x, v0, beta, gain, theta, v_reset, soft, keep, carry, alpha, param_grads, gx, gv0,
        gp, chunk,
    ):  # fmt: skip
        T, N = x.shape
        hard = F32(0) if soft else F32(1)
        for c in chunks((N + chunk - 1) // chunk):
            n0, n1 = c * chunk, min(c * chunk + chunk, N)
            m = n1 - n0
            b, gn, th = _chunk_of(beta, n0, m), _chunk_of(gain, n0, m), _chunk_of(theta, n0, m)
            hs = np.empty((T, m), np.float32)
            a = np.empty(m, np.float32)  # first the membrane, then dL/dv
            _start(v0, a, n0)
            for t in range(T):
                _step_row(x[t, n0:n1], a, hs[t], b, gn, th, hard, v_reset, False)
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
                        v_prev[i] = _reset(hs[t - 1, i], _at(th, i), hard, v_reset)
                for i in range(m):
                    theta_i = _at(th, i)
                    u = h[i] - theta_i
                    sg = _surrogate(u, alpha, kind)
                    dv_dh, dv_dtheta = _dv(h[i], F32(u > F32(0)), sg, theta_i, v_reset, soft, keep)
                    gh = g[i] * sg + a[i] * dv_dh
                    if param_grads:
                        sums[0, i] += gh * v_prev[i]
                        sums[1, i] += gh * xt[i]
                        sums[2, i] += a[i] * dv_dtheta - g[i] * sg
                    gxt[i] = _at(gn, i) * gh
                    a[i] = _at(b, i) * gh * carry
            if gv0.shape[0] > 0:
                gv0[n0:n1] = a
            if param_grads:
                gp[:, n0:n1] = sums

    return _named(backward, "backward", kind, parallel)


def _parallel(N: int, chunk: int) -> bool:
    """Whether to run on Numba's thread pool, on as many threads as torch (``torch.set_num_threads`` governs both):
    only for more than one thread and chunk. On one thread the serial kernel does not touch the pool at all: a
    parallel kernel on a pool of one was 10x slower than the torch loop on a loaded 2-core machine (its OpenMP
    threads wait on those of torch's pool), the serial one faster than the loop."""
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if threads == 1 or N <= chunk:
        return False
    numba.set_num_threads(threads)
    return True


def _empty(shape: tuple[int, ...] | torch.Size) -> Tensor:
    """An uninitialised float32 tensor allocated by numpy: numpy asks for transparent huge pages, torch's CPU
    allocator does not, and on a fresh 8 MB output the 4 KB page faults cost as much as the kernel itself."""
    return torch.from_numpy(np.empty(tuple(shape), np.float32))


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def _param(p: Tensor) -> np.float32 | np.ndarray:
    """A parameter as the kernels take it: a float32 scalar when it is one value (then the inner loops keep it in a
    register), else its array."""
    return F32(p.item()) if p.shape[0] == 1 else _np(p)


def forward(
    x: Tensor, states: list[Tensor], params: list[Tensor], o: Any, save: bool, stats: bool
) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
    (v0,) = states
    T, N = x.shape
    spikes, v = _empty(x.shape), x.new_empty(N, dtype=v0.dtype)
    statistics = _empty((5 if stats else 0, N))
    _forward_kernel(o.surrogate if stats else -1, _parallel(N, _chunk(T)))(
        _np(x), _np(v0), *map(_param, params), F32(0) if o.soft else F32(1), F32(o.v_reset),
        F32(0) if o.detach_reset else F32(1), F32(o.alpha), spikes.numpy(), v.numpy(), statistics.numpy(), _chunk(T),
    )  # fmt: skip
    return spikes, [v], x.new_empty((0, N)), statistics


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
    gs, per_step = x.new_zeros((1, 1)), True
    if grad_out is not None:
        # spikes.sum() and the like give one value per step broadcast over the neurons: read it as such.
        per_step = grad_out.stride(1) == 0
        gs = (grad_out[:, :1] if per_step else grad_out).contiguous()  # C-contiguous: one compiled kernel
    # (no torch fill before the kernel: torch's OpenMP threads would still be spinning when it starts)
    gv = grad_v.contiguous() if grad_v is not None else x.new_empty(0)
    gx, gv0, gp = _empty(x.shape), torch.empty_like(v0), _empty((3 if param_grads else 0, N))
    _backward_kernel(o.surrogate, _parallel(N, _chunk(T)))(
        _np(gs), per_step, grad_out is not None, _np(gv), _np(x), _np(v0), *map(_param, params), F32(o.v_reset), o.soft,
        F32(0) if o.detach_reset else F32(1), F32(0) if o.cut else F32(1), F32(o.alpha), param_grads, gx.numpy(),
        gv0.numpy(), gp.numpy(), _chunk(T),
    )  # fmt: skip
    return gx, [gv0], gp


def unsupported(device: str, dtype: torch.dtype) -> str | None:
    """Why these kernels cannot run an input on ``device`` of ``dtype``, or None."""
    if device != "cpu":
        return f"the numba kernels run on the CPU, the input is on {device}"
    if dtype != torch.float32:
        return f"the numba kernels take float32, the input is {dtype}"
    return None


op = define_scan_op(LIF_MODEL, "numba", forward, backward, saved_rows=lambda T: 0)
"""``torch.ops.snnlab.lif_numba`` behind its ``ScanOp`` wrapper."""
