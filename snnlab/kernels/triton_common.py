"""What every neuron model's Triton kernels share: the surrogate derivatives, the float32 products that no compiler
contracts into a fused multiply-add, the LIF family's reset and its derivatives, per-neuron parameter and state
loads, the launch size, and the op around a model's two kernels (``define_triton_op``: what a model's ``triton.py``
ends with).

Each program owns BLOCK neurons and walks the time axis, its state in registers (float32 whatever the input dtype);
it reads each parameter once per neuron (``n mod len(p)``, see ``scan_op``: a 0-d parameter has length 1, which
Triton specialises to a broadcast load). The products that decide spikes are PTX ``mul.rn`` on NVIDIA GPUs, so
that Inductor, which compiles these kernels with its own options (fusion on), cannot change their rounding.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from .scan_op import ScanModel, ScanOp, define_scan_op

K = 8
"""Steps per checkpointed segment: the backward recomputes a segment's K steps from the states saved at its start."""
BLOCK = 256
"""Neurons per program at most; fewer when that leaves the GPU with too few programs (``launch``)."""
NUM_WARPS = 4


@triton.jit
def surrogate_grad(u, alpha, KIND: tl.constexpr):
    """g(u) for surrogate ``KIND`` (scan_op.SURROGATE_IDS), in float32."""
    if KIND == 0:  # sigmoid: alpha e / (1 + e)^2 with e = exp(-|alpha u|)
        e = tl.exp(-tl.abs(alpha * u))
        g = alpha * e / ((1.0 + e) * (1.0 + e))
    elif KIND == 1:  # atan
        z = (1.5707963267948966 * alpha) * u
        g = (0.5 * alpha) / (1.0 + z * z)
    elif KIND == 2:  # fast_sigmoid
        d = 1.0 + alpha * tl.abs(u)
        g = 1.0 / (d * d)
    elif KIND == 3:  # triangle
        g = tl.maximum(alpha - alpha * alpha * tl.abs(u), 0.0)
    else:  # rectangle
        g = tl.where(tl.abs(u) < 0.5 / alpha, alpha, 0.0)
    return g


@triton.jit
def mul_rn(a, b):
    """a * b in float32 as PTX ``mul.rn``, which no compile option contracts into a fused multiply-add."""
    return tl.inline_asm_elementwise("mul.rn.f32 $0, $1, $2;", "=f,f,f", [a, b], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def charge(v, x, beta, gain, EXACT: tl.constexpr):
    """beta v + gain x rounded as the torch ``step`` rounds it: two products and a sum, never a fused multiply-add.
    The interpreter (``EXACT`` false) computes the separate operations in numpy."""
    if EXACT:
        h = mul_rn(beta, v) + mul_rn(gain, x)
    else:
        h = beta * v + gain * x
    return h


@triton.jit
def reset(h, f, theta, v_reset, SOFT: tl.constexpr):
    """The membrane after the spike ``f`` (0.0 or 1.0), written as ``fire_and_reset`` writes it; every product here
    is exact (a factor is 0 or 1), so a contraction cannot change it."""
    if SOFT:
        v = h - theta * f
    else:
        v = h * (1.0 - f) + v_reset * f
    return v


@triton.jit
def reset_grads(h, f, sg, theta, v_reset, SOFT: tl.constexpr, DETACH: tl.constexpr):
    """(dv/dh, dv/dtheta) of the reset at h with spike f and surrogate derivative sg (none through the reset with
    ``DETACH``)."""
    r = 0.0 if DETACH else sg
    if SOFT:
        dv_dh = 1.0 - theta * r
        dv_dtheta = theta * r - f
    else:
        dv_dh = (1.0 - f) + (v_reset - h) * r
        dv_dtheta = (h - v_reset) * r
    return dv_dh, dv_dtheta


@triton.jit
def param(ptr, n, mask, length):
    """The parameter of each neuron n: ptr[n mod length]."""
    return tl.load(ptr + n % length, mask=mask, other=0.0)


@triton.jit
def initial(ptr, n, mask, HAS: tl.constexpr, BLOCK: tl.constexpr):
    """Each neuron's value of a state (or a final state's gradient) in float32: ptr[n], or 0 without one (``HAS``
    false: at rest, no gradient)."""
    if HAS:
        value = tl.load(ptr + n, mask=mask, other=0.0).to(tl.float32)
    else:
        value = tl.zeros([BLOCK], tl.float32)
    return value


def reset_constants(o: Any) -> dict[str, Any]:
    """The LIF family's reset and surrogate options as its kernels take them (``define_triton_op``'s constants)."""
    return {"v_reset": o.v_reset, "alpha": o.alpha, "SOFT": o.soft, "DETACH": o.detach_reset,
            "SURROGATE": o.surrogate, "EXACT": exact()}  # fmt: skip


def interpreting() -> bool:
    """Whether Triton runs on the CPU through its interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def exact() -> bool:
    """Whether to spell the rounding out in PTX (compiled for NVIDIA; the interpreter runs no PTX)."""
    return not interpreting() and torch.version.hip is None


@functools.cache
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def launch(N: int, device: torch.device, block: int, warps: int) -> tuple[int, int]:
    """(BLOCK, num_warps) from at most ``block`` and ``warps``: halve the block until every multiprocessor gets four
    programs (small layers)."""
    if device.type == "cuda":
        while block > 64 and triton.cdiv(N, block) < 4 * _multiprocessors(device.index or 0):
            block //= 2
            warps = max(1, warps // 2) if block < 64 * warps else warps
    return block, warps


def unsupported(device: str, dtype: torch.dtype) -> str | None:
    """Why the Triton kernels cannot run an input on ``device`` of ``dtype``, or None (the CPU under the
    interpreter)."""
    if device != "cuda" and not (device == "cpu" and interpreting()):
        return f"the triton kernels need a CUDA device (or TRITON_INTERPRET=1 on the CPU), the input is on {device}"
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"the triton kernels take float32, float16 or bfloat16, the input is {dtype}"
    return None


def checkpoint_rows(model: ScanModel, T: int) -> int:
    """Rows the forward saves for backward: every state at the start of every K-step segment (``[len(states)
    ceil(T/K), N]`` float32: the first state's segments, then the next state's)."""
    return len(model.states) * triton.cdiv(T, K)


def define_triton_op(
    model: ScanModel,
    forward_kernel: Any,
    backward_kernel: Any,
    constants: Callable[[Any], dict[str, Any]] = lambda o: {},
    stats_rows: int = 0,
    exact_products: bool = True,
) -> ScanOp:
    """``torch.ops.snnlab.<model>_triton`` (a ``triton_op``) around two kernels, launched over programs of BLOCK
    neurons in one convention for every model::

        forward_kernel(x, *initial states, *params, *param lengths, out, *final states, checkpoints[, statistics],
                       T, N, ...)
        backward_kernel(gs, gs_t, gs_n, *final-state gradients, x, checkpoints, *params, *param lengths, gx,
                        *initial-state gradients, gp, T, N, ...)

    ``...`` are keywords, each kernel taking those it names of: ``SAVE``, ``STATS``, ``HAS_<S>0`` per state (false:
    at rest), ``HAS_GS`` and ``HAS_G<S>`` (the output's and each final state's gradient given), ``PARAM_GRADS``,
    ``K``, ``BLOCK`` and the model's ``constants(o)`` (its options as scalars and constexprs). ``gs`` is the output's
    gradient read in place at strides (gs_t, gs_n); ``statistics`` (``[stats_rows, N]``) goes to a model that keeps
    rate statistics. ``exact_products`` compiles without fused multiply-adds (the spikes' rounding as the loop's).
    """
    names = [s.upper() for s in model.states]

    def keywords(kernel: Any, values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if k in kernel.arg_names}

    def launch_options(N: int, device: torch.device) -> tuple[tuple[int], dict[str, Any]]:
        block, warps = launch(N, device, BLOCK, NUM_WARPS)
        options = {
            "K": K,
            "BLOCK": block,
            "num_warps": warps,
            **({"enable_fp_fusion": False} if exact_products else {}),
        }
        return (triton.cdiv(N, block),), options

    def forward(x, states, params, o, save, stats):  # scan_op.Forward
        if stats and not stats_rows:
            raise NotImplementedError(
                f"the {model.name} kernels keep no rate statistics (rate_statistics runs the loop)"
            )
        T, N = x.shape
        out, final = torch.empty_like(x), [x.new_empty(N, dtype=s.dtype) for s in states]
        ckpt = torch.empty((checkpoint_rows(model, T) if save else 0, N), dtype=torch.float32, device=x.device)
        statistics = torch.empty((stats_rows if stats else 0, N), dtype=torch.float32, device=x.device)
        grid, options = launch_options(N, x.device)
        flags = {f"HAS_{name}0": s.numel() > 0 for name, s in zip(names, states)}
        wrap_triton(forward_kernel)[grid](
            x, *states, *params, *(p.shape[0] for p in params), out, *final, ckpt,
            *([statistics] if stats_rows else []), T, N,
            **keywords(forward_kernel, {"SAVE": save, "STATS": stats, **flags, **constants(o)}), **options,
        )  # fmt: skip
        return out, final, ckpt, statistics

    def backward(grad_out, grad_states, x, states, params, saved, o, param_grads):  # scan_op.Backward
        T, N = x.shape
        gs = x if grad_out is None else grad_out
        if gs.stride(1) > 1:  # any layout with (time, neuron) strides whose neuron stride is 0 or 1 is read in place
            gs = gs.contiguous()
        final = [x if g is None else g.contiguous() for g in grad_states]  # x: a placeholder never read
        gx, g_states = torch.empty_like(x), [torch.empty_like(s) for s in states]
        gp = torch.empty((len(params) if param_grads else 0, N), dtype=torch.float32, device=x.device)
        grid, options = launch_options(N, x.device)
        flags = {
            "HAS_GS": grad_out is not None,
            "PARAM_GRADS": param_grads,
            **{f"HAS_G{name}": g is not None for name, g in zip(names, grad_states)},
            **{f"HAS_{name}0": s.numel() > 0 for name, s in zip(names, states)},
        }
        wrap_triton(backward_kernel)[grid](
            gs, gs.stride(0), gs.stride(1), *final, x, saved, *params, *(p.shape[0] for p in params), gx, *g_states,
            gp, T, N, **keywords(backward_kernel, {**flags, **constants(o)}), **options,
        )  # fmt: skip
        return gx, g_states, gp

    return define_scan_op(
        model, "triton", forward, backward, saved_rows=lambda T: checkpoint_rows(model, T), triton=True
    )
