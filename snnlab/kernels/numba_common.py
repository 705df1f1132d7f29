"""What every neuron model's Numba kernels (CPU, float32 arithmetic) share: the surrogate derivatives, the per-neuron
parameter reads, the reads and writes of float32 or bfloat16 activations (``load``, ``store``), the LIF family's
fire-and-reset arithmetic, the parallel-or-serial choice, the arrays the kernels write, the
notice printed while a kernel compiles, and the op around a model's two kernels (``define_numba_op``: what a
model's ``numba.py`` ends with).

The kernels run in parallel over chunks of neurons, a loop over T inside and a contiguous loop over the chunk
that LLVM vectorises. A parameter is one value (a float32 scalar, kept in a register) or one per neuron
(``n mod len(p)``, see ``scan_op``), copied into a chunk-sized buffer once per chunk. The arithmetic that decides
spikes is written like the neurons' torch ``step`` (no fused multiply-add, float32 constants), so spikes and states
are bit for bit those of the torch loop.

Numba's disk cache is keyed by the source file of the kernel it compiles, not by the files of the functions it
inlines: each kernel takes ``SOURCE_STAMP`` (this file's digest) into its closure, which is part of the key, so an
edit here recompiles every model's kernels.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.core import cgutils, event
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array
from torch import Tensor
from tqdm.auto import tqdm

from .scan_op import SURROGATE_IDS, ScanModel, ScanOp, define_scan_op

SOURCE_STAMP = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
"""This file's digest: a closure constant of every kernel (see the module docstring)."""

BUFFER = 131072
"""Floats of recomputed state per work item in backward (T x chunk per buffer, 512 KB): it stays in the core's L2."""

F32 = np.float32


def chunk_size(T: int, buffers: int = 1) -> int:
    """Neurons per parallel work item: BUFFER / (T buffers), a multiple of 16 between 64 and 1024 (LIF, one buffer,
    measured at N = 65,536, T = 8..128: 1024 was as fast as or faster than 64..512, and 4096 slower)."""
    return max(64, min(1024, BUFFER // (T * buffers) // 16 * 16))


@numba.njit(cache=True, inline="always")
def surrogate(u, alpha, kind):  # pragma: no cover - compiled
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


def chunk_of(p, n0, m):
    """Parameter p for the neurons n0 .. n0 + m: a scalar stays one; an array gives a buffer of p[n mod len(p)]."""
    raise NotImplementedError  # compiled only, through the overload below


@overload(chunk_of, inline="always")
def _chunk_of_typed(p, n0, m):
    if isinstance(p, types.Float):
        return lambda p, n0, m: p

    def take(p, n0, m):  # pragma: no cover - compiled
        out = np.empty(m, np.float32)
        for i in range(m):
            out[i] = p[(n0 + i) % p.shape[0]]
        return out

    return take


def at(p, i):
    """Neuron i's value of a chunk's parameter (``chunk_of``): p[i], or p itself for a scalar."""
    raise NotImplementedError  # compiled only, through the overload below


@overload(at, inline="always")
def _at_typed(p, i):
    if isinstance(p, types.Float):
        return lambda p, i: p
    return lambda p, i: p[i]


@intrinsic
def load(typingctx, src, k):  # type: ignore[no-untyped-def]
    """src[k] as float32, from a float32 array or a bfloat16 one (its bits as uint16, ``np_``): the upper half of a
    float32's bits. Written as LLVM in the caller, as an index is, so loops over it vectorise."""
    if not isinstance(src, types.Array) or src.dtype not in (types.float32, types.uint16):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        value = builder.load(_pointer(context, builder, sig.args[0], *args))
        if sig.args[0].dtype == types.uint16:
            value = builder.bitcast(builder.shl(builder.zext(value, ir.IntType(32)), ir.Constant(ir.IntType(32), 16)),
                                    ir.FloatType())  # fmt: skip
        return value

    return types.float32(src, k), codegen


@intrinsic
def store(typingctx, dst, j, y):  # type: ignore[no-untyped-def]
    """dst[j] = y (float32) in a float32 array, or in a bfloat16 one rounded to the nearest, ties to even, as torch
    rounds (a NaN stays NaN)."""
    if not isinstance(dst, types.Array) or dst.dtype not in (types.float32, types.uint16):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        value = context.cast(builder, args[2], sig.args[2], types.float32)
        if sig.args[0].dtype == types.uint16:
            i32 = ir.IntType(32)
            bits = builder.bitcast(value, i32)
            even = builder.and_(builder.lshr(bits, ir.Constant(i32, 16)), ir.Constant(i32, 1))
            rounded = builder.lshr(builder.add(builder.add(bits, ir.Constant(i32, 0x7FFF)), even), ir.Constant(i32, 16))
            nan = builder.fcmp_unordered("uno", value, value)
            value = builder.select(nan, ir.Constant(ir.IntType(16), 0x7FC0), builder.trunc(rounded, ir.IntType(16)))
        builder.store(value, _pointer(context, builder, sig.args[0], args[0], args[1]))
        return context.get_dummy_value()

    return types.none(dst, j, y), codegen


def _pointer(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
    """The address of element ``index`` (non-negative) of a 1-D array, in LLVM."""
    return cgutils.get_item_pointer(
        context, builder, array_type, make_array(array_type)(context, builder, array), [index]
    )


@numba.njit(cache=True, inline="always")
def reset(h, theta, hard, v_reset):  # pragma: no cover - compiled
    """The membrane after h's spike f: h (1 - f hard) + f jump, with jump = v_reset hard - theta (1 - hard), i.e.
    -theta for a soft reset (hard = 0) and v_reset for a hard one (hard = 1). Every product with f or hard is exact,
    so this rounds exactly as ``fire_and_reset``'s h - theta f and h (1 - f) + v_reset f, and one branch-free loop
    serves both resets."""
    f = F32(h - theta > F32(0))
    return h * (F32(1) - f * hard) + f * (v_reset * hard - theta * (F32(1) - hard))


@numba.njit(cache=True, inline="always")
def reset_grads(h, f, sg, theta, v_reset, soft, keep):  # pragma: no cover - compiled
    """(dv/dh, dv/dtheta) of the reset at h with spike f and surrogate derivative sg (times ``keep``: 0 with
    detach_reset, else 1)."""
    r = sg * keep
    if soft:
        return F32(1) - theta * r, theta * r - f
    return (F32(1) - f) + (v_reset - h) * r, (h - v_reset) * r


@numba.njit(cache=True, inline="always")
def start(s0, out, n0):  # pragma: no cover - compiled
    """out = the initial state of the chunk starting at neuron n0: s0's values, or 0 for an empty s0 (at rest)."""
    if s0.shape[0] == 0:
        out[:] = 0
    else:
        out[:] = s0[n0 : n0 + out.shape[0]]


@numba.njit(cache=True, inline="always")
def finish(values, out, n0):  # pragma: no cover - compiled
    """out[n0 : n0 + len(values)] = values, unless ``out`` is empty (an initial state's gradient nobody asked for)."""
    if out.shape[0] > 0:
        out[n0 : n0 + values.shape[0]] = values


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


def named(kernel: Any, model: str, direction: str, kind: int, parallel: bool) -> Any:
    """``kernel``, entered in the compile notice's names as ``model``'s ``direction`` with surrogate ``kind`` (-1:
    none)."""
    surrogate_name = {v: k for k, v in SURROGATE_IDS.items()}.get(kind)
    details = ([f"{surrogate_name} surrogate"] if surrogate_name else []) + ([] if parallel else ["serial"])
    _KERNELS[id(kernel)] = f"{model} {direction}" + (f" ({', '.join(details)})" if details else "")
    return kernel


def parallel(N: int, chunk: int) -> bool:
    """Whether to run on Numba's thread pool, on as many threads as torch (``torch.set_num_threads`` governs both):
    only for more than one thread and chunk. On one thread the serial kernel does not touch the pool at all: a
    parallel kernel on a pool of one was 10x slower than the torch loop on a loaded 2-core machine (its OpenMP
    threads wait on those of torch's pool), the serial one faster than the loop."""
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if threads == 1 or N <= chunk:
        return False
    numba.set_num_threads(threads)
    return True


def empty(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype = torch.float32) -> Tensor:
    """An uninitialised float32 (or bfloat16) tensor allocated by numpy: numpy asks for transparent huge pages,
    torch's CPU allocator does not, and on a fresh 8 MB output the 4 KB page faults cost as much as the kernel
    itself."""
    if dtype == torch.bfloat16:
        return torch.from_numpy(np.empty(tuple(shape), np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(np.empty(tuple(shape), np.float32))


def np_(t: Tensor) -> np.ndarray:
    """A tensor's array, without autograd; a bfloat16 tensor's as its bits (uint16), which ``load`` and ``store``
    read and write."""
    t = t.detach()
    return t.view(torch.uint16).numpy() if t.dtype == torch.bfloat16 else t.numpy()


def param(p: Tensor) -> np.float32 | np.ndarray:
    """A parameter as the kernels take it: a float32 scalar when it is one value (then the inner loops keep it in a
    register), else its array."""
    return F32(p.item()) if p.shape[0] == 1 else np_(p)


def output_gradient(grad_out: Tensor | None, like: Tensor) -> tuple[Tensor, bool]:
    """The output's gradient as the backward kernels read it, and whether it is one value per step: ``spikes.sum()``
    and the like give one value per step broadcast over the neurons (stride 0), read as ``[T, 1]``; absent, a
    ``[1, 1]`` zero."""
    if grad_out is None:
        return like.new_zeros((1, 1)), True
    per_step = grad_out.stride(1) == 0
    return (grad_out[:, :1] if per_step else grad_out).contiguous(), per_step  # C-contiguous: one compiled kernel


@numba.njit(cache=True, inline="always")
def output_gradient_row(gs, per_step, has_gs, t, n0, out):  # pragma: no cover - compiled
    """out = the output's gradient at step t for the chunk starting at neuron n0 (``output_gradient``'s layout),
    float32; left as it is (zeros) without one."""
    row = gs[t]
    if has_gs and per_step:
        out[:] = load(row, 0)
    elif has_gs:
        for i in range(out.shape[0]):
            out[i] = load(row, n0 + i)


def reset_options(o: Any) -> tuple[np.float32, bool, np.float32, np.float32]:
    """The LIF family's reset and surrogate options as its kernels take them: (v_reset, soft, keep, alpha), keep 0
    with detach_reset (else 1); the forwards without a surrogate take the first two."""
    return F32(o.v_reset), o.soft, F32(0) if o.detach_reset else F32(1), F32(o.alpha)


def unsupported(device: str, dtype: torch.dtype) -> str | None:
    """Why the Numba kernels cannot run an input on ``device`` of ``dtype``, or None."""
    if device != "cpu":
        return f"the numba kernels run on the CPU, the input is on {device}"
    if dtype not in (torch.float32, torch.bfloat16):
        return f"the numba kernels take float32 or bfloat16, the input is {dtype}"
    return None


@dataclass(frozen=True)
class NumbaKernels:
    """A model's two compiled kernels, called by ``define_numba_op`` in one convention for every model (``x``,
    ``out``, ``gs`` and ``gx`` float32 or bfloat16, read and written through ``load`` and ``store``; every other array
    float32; an empty initial state or final-state gradient is absent: at rest, no gradient)::

        forward(x, *initial states, *params, *forward_options(o), out, *final states[, statistics], chunk)
        backward(gs, gs_per_step, has_gs, *final-state gradients, x, *initial states, *params,
                 *backward_options(o), param_grads, gx, *initial-state gradients, gp, chunk)

    ``gs`` is ``output_gradient``'s; ``statistics`` (``[stats_rows, N]``, ``[0, N]`` unless asked) is passed only
    to a model with rate statistics. ``o`` is the op's options (``ScanModel.option_fields``).
    """

    forward: Callable[[Any, bool, bool], Any]
    """(o, stats, parallel) -> the compiled forward."""
    backward: Callable[[Any, bool], Any]
    """(o, parallel) -> the compiled backward."""
    forward_options: Callable[[Any], tuple] = lambda o: ()
    backward_options: Callable[[Any], tuple] = lambda o: ()
    stats_rows: int = 0
    """Rows of rate statistics the forward accumulates (0: none; ``rate_statistics`` runs the loop)."""
    backward_buffers: int = 1
    """T x chunk buffers the backward recomputes (``chunk_size``)."""
    scalar_params: bool = True
    """Pass a one-value parameter as a float32 scalar (kept in a register; one compile per mix of scalar and
    per-neuron parameters), else every parameter as an array (one compile for any mix)."""


def define_numba_op(model: ScanModel, kernels: NumbaKernels) -> ScanOp:
    """``torch.ops.snnlab.<model>_numba`` (``scan_op.define_scan_op``) around ``kernels``: the outputs allocated,
    the tensors handed over as arrays, the chunk size and the thread pool chosen."""
    read = param if kernels.scalar_params else np_

    def forward(x, states, params, o, save, stats):  # scan_op.Forward
        if stats and not kernels.stats_rows:
            raise NotImplementedError(
                f"the {model.name} kernels keep no rate statistics (rate_statistics runs the loop)"
            )
        T, N = x.shape
        out, final = empty(x.shape, x.dtype), [x.new_empty(N, dtype=s.dtype) for s in states]
        statistics = empty((kernels.stats_rows if stats else 0, N))
        chunk = chunk_size(T)
        kernels.forward(o, stats, parallel(N, chunk))(
            np_(x), *map(np_, states), *map(read, params), *kernels.forward_options(o), np_(out),
            *(f.numpy() for f in final), *([statistics.numpy()] if kernels.stats_rows else []), chunk,
        )  # fmt: skip
        return out, final, empty((0, N)), statistics

    def backward(grad_out, grad_states, x, states, params, saved, o, param_grads):  # scan_op.Backward
        T, N = x.shape
        gs, per_step = output_gradient(grad_out, x)
        # (no torch fill before the kernel: torch's OpenMP threads would still be spinning when it starts)
        final = [x.new_empty(0) if g is None else g.contiguous() for g in grad_states]
        gx, g_states = empty(x.shape, x.dtype), [torch.empty_like(s) for s in states]
        gp = empty((len(params) * param_grads, N))
        chunk = chunk_size(T, kernels.backward_buffers)
        kernels.backward(o, parallel(N, chunk))(
            np_(gs), per_step, grad_out is not None, *map(np_, final), np_(x), *map(np_, states), *map(read, params),
            *kernels.backward_options(o), param_grads, np_(gx), *(g.numpy() for g in g_states), gp.numpy(), chunk,
        )  # fmt: skip
        return gx, g_states, gp

    return define_scan_op(model, "numba", forward, backward, saved_rows=lambda T: 0)
