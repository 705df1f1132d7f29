"""What every neuron model's Triton kernels share: the surrogate derivatives, the float32 products that no compiler
contracts into a fused multiply-add, the LIF family's reset and its derivatives, per-neuron parameter loads, and the
launch size.

Each program owns BLOCK neurons and walks the time axis, its state in registers (float32 whatever the input dtype);
it reads each parameter once per neuron (``n mod len(p)``, see ``scan_op``: a 0-d parameter has length 1, which
Triton specialises to a broadcast load). The products that decide spikes are PTX ``mul.rn`` on NVIDIA GPUs, so
that Inductor, which compiles these kernels with its own options (fusion on), cannot change their rounding.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl


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
