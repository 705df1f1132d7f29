r"""One fused op for a block's batch norm, LIF neuron and pooling: ``y -> norm -> LIF over T -> pool`` in one kernel
forward and one backward, with the norm's batch statistics reduced over T x B by torch before it.

Per neuron (b, c, h, w) and step t, with the channel's statistics (mean, invstd: the batch's in training, the
running ones in evaluation) and affine parameters (gamma, bias)::

    a[c] = invstd[c] gamma[c]      shift[c] = bias[c] - mean[c] a[c]      z[t] = y[t] a[c] + shift[c]
    h[t] = beta v[t-1] + gain z[t];  s[t] = 1[h[t] > theta];  v[t] = h[t] - theta s[t] (soft) | h[t](1 - s[t]) + v_reset s[t]
    out[t] = max | mean | sum of s[t] over each non-overlapping k x k window   (k = 1: no pooling, out = s)

``z`` is rounded as torch's batch norm rounds it on the CPU (two fused multiply-adds, ``a`` a plain product) and
then to y's dtype (the unfused path stores the normalised current in it), so the spikes are the unfused path's bit
for bit. Backward: the kernel recomputes each K-step segment from a checkpointed membrane (as the LIF kernel does),
sends each window's gradient to its first maximum (max pooling, torch's argmax) or shares it out (average),
runs the LIF backward, writes dL/dz and sums, per window, dL/dz and dL/dz (y - mean) (torch adds the windows' sums
up per channel); dL/dbeta, dL/dgain and dL/dtheta are summed per program. The batch norm's backward is then exact,
as torch's (``native_batch_norm_backward``) computes it, with n = T B H W per channel::

    dL/dbias = sum dL/dz      dL/dgamma = invstd sum dL/dz (y - mean)
    dL/dy = (dL/dz - sum dL/dz / n - (y - mean) invstd^2 sum dL/dz (y - mean) / n) invstd gamma

one elementwise pass in place over dL/dz; with running statistics (evaluation) the kernel writes dL/dy = dL/dz a
itself.

Saved for backward: y (which the unfused batch norm keeps too), the membrane every K steps (4/K bytes per
neuron-step) and the per-channel statistics; neither the normalised current, nor the spikes, nor the pooling
indices: the backward recomputes them.

``triton.py`` is the one backend (the GPU; the CPU runs the unfused composition, which is the reference). The op is
a ``torch.library`` custom op (``torch.ops.snnlab.block_triton``), so ``torch.compile`` and CUDA graphs see it.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from ...surrogates import Surrogate
from .. import fused_op
from ..scan_op import SURROGATE_IDS

POOLS = {"none": 0, "max": 1, "avg": 2}
"""The number each kernel uses for a pooling kind (``avg`` with a divisor: average or sum pooling)."""

BACKENDS = ("triton",)
"""The backends that have a fused block op."""


class Pool(NamedTuple):
    """A non-overlapping ``size`` x ``size`` pooling: ``kind`` ``none`` | ``max`` | ``avg``, the window's sum divided
    by ``divisor`` (``size * size`` for the average, 1 for sum pooling)."""

    kind: Literal["none", "max", "avg"] = "none"
    size: int = 1
    divisor: int = 1


N_TENSORS = 9
"""The forward op's tensors: y, mean, invstd, weight, bias, beta, gain, threshold, v0; then 11 other inputs."""
N_INPUTS = N_TENSORS + 11


def define_block_op(
    backend: str,
    forward: Callable[..., tuple[Tensor, Tensor, Tensor]],
    backward: Callable[..., tuple[Tensor, Tensor, Tensor]],
) -> Any:
    """Register ``snnlab::block_<backend>`` (forward: ``(out, v, saved)``) and its backward op (``(grad_y, grad_v0,
    per-program parameter gradients [3, P], grad_gamma, grad_bias)``) as Triton ops, joined by their autograd
    formula."""

    @torch.library.triton_op(f"snnlab::block_{backend}", mutates_args=())
    def op(
        y: Tensor, mean: Tensor, invstd: Tensor, weight: Tensor, bias: Tensor, beta: Tensor, gain: Tensor,
        threshold: Tensor, v0: Tensor, pool: int, size: int, divisor: int, soft: bool, v_reset: float,
        detach_reset: bool, surrogate: int, alpha: float, fma: bool, batch_stats: bool, save: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        options = (pool, size, divisor, soft, v_reset, detach_reset, surrogate, alpha, fma)
        return forward(y, mean, invstd, weight, bias, beta, gain, threshold, v0, *options, save)

    @torch.library.triton_op(f"snnlab::block_{backend}_backward", mutates_args=())
    def op_backward(
        grad_out: Tensor | None, grad_v: Tensor | None, y: Tensor, saved: Tensor, mean: Tensor, invstd: Tensor,
        weight: Tensor, bias: Tensor, beta: Tensor, gain: Tensor, threshold: Tensor, v0: Tensor, pool: int,
        size: int, divisor: int, soft: bool, v_reset: float, detach_reset: bool, surrogate: int, alpha: float,
        fma: bool, batch_stats: bool, param_grads: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        options = (pool, size, divisor, soft, v_reset, detach_reset, surrogate, alpha, fma, batch_stats)
        tensors = (y, saved, mean, invstd, weight, bias, beta, gain, threshold, v0)
        return backward(grad_out, grad_v, *tensors, *options, param_grads)

    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        ctx.save_for_backward(*inputs[:N_TENSORS], output[2])
        ctx.options = inputs[N_TENSORS:-1]  # with batch_stats, without save
        ctx.set_materialize_grads(False)

    def grads(ctx: Any, grad_out: Tensor | None, grad_v: Tensor | None, _: Any) -> tuple[Tensor | None, ...]:
        none = (None,) * N_INPUTS
        if grad_out is None and grad_v is None:
            return none
        need = ctx.needs_input_grad
        y, mean, invstd, weight, bias, beta, gain, threshold, v0, saved = ctx.saved_tensors
        params = (beta, gain, threshold)
        grad_y, grad_v0, gp, grad_weight, grad_bias = op_backward(
            grad_out, grad_v, y, saved, mean, invstd, weight, bias, *params, v0, *ctx.options, any(need[5:8])
        )
        g_params = [gp[j].sum().view_as(p) if need[5 + j] else None for j, p in enumerate(params)]
        affine = [
            g.to(p.dtype) if n else None for g, p, n in ((grad_weight, weight, need[3]), (grad_bias, bias, need[4]))
        ]
        return (grad_y if need[0] else None, None, None, *affine, *g_params, grad_v0 if need[8] else None) + none[9:]

    op.register_autograd(grads, setup_context=setup_context)
    return op


def rounds_with_fma(device: torch.device) -> bool:
    """Whether torch's batch norm on ``device`` rounds ``y a + shift`` (and ``bias - mean a``) as one fused multiply-add.
    Its CPU kernels do (measured on x86-64 with AVX2, ``tests/test_block_fusion.py``; the compiler contracts them
    wherever the vector unit has the instruction) except in an x86 build for no vector extension; on CUDA the kernel
    takes the fused form, the more accurate (cuDNN's rounding is not documented)."""
    if device.type != "cpu":
        return True
    return not (
        platform.machine().lower() in ("x86_64", "amd64") and torch.backends.cpu.get_cpu_capability() == "DEFAULT"
    )


def batch_statistics(norm: nn.modules.batchnorm._BatchNorm, y: Tensor) -> tuple[Tensor, Tensor, bool]:
    """(mean, invstd, batch) of ``norm`` for ``y`` ``[N, C, ...]``, float32: the batch's over every axis but C (and the
    running statistics updated, as ``norm(y)`` updates them) in training or without running statistics, else the
    running ones; invstd rounded as torch's batch norm rounds it."""
    batch = norm.training or norm.running_mean is None
    if not batch:  # 1 / sqrt(var + eps), each operation rounded to float32 (torch's float sqrt on the CPU is not)
        root = (norm.running_var.float() + norm.eps).double().sqrt().float()
        return norm.running_mean.float(), root.double().reciprocal().float(), False
    factor = 0.0 if norm.momentum is None else norm.momentum
    update = norm.training and norm.track_running_stats
    if update and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # a cumulative moving average
            factor = 1.0 / float(norm.num_batches_tracked)
    with torch.no_grad():
        running = (norm.running_mean, norm.running_var) if update else (None, None)
        mean, var = torch.batch_norm_update_stats(y, *running, factor)
        invstd = (var.double() + norm.eps).sqrt().reciprocal().float()  # 1/sqrt(var + eps) in double, as torch's
    return mean.float(), invstd, True


def _scalar(value: Tensor | float, like: Tensor) -> Tensor:
    """A 0-d parameter or a float as the one-element float32 tensor the kernels read (autograd follows a tensor)."""
    if isinstance(value, Tensor):
        return value.float().reshape(1)
    return torch.full((1,), value, dtype=torch.float32, device=like.device)


def block_fused(
    backend: str,
    y: Tensor,
    norm: nn.modules.batchnorm._BatchNorm,
    v: Tensor | None,
    beta: Tensor | float,
    threshold: Tensor | float,
    pool: Pool,
    *,
    decay_input: bool,
    reset: Literal["soft", "hard"],
    v_reset: float,
    detach_reset: bool,
    surrogate: Surrogate,
) -> tuple[Tensor, Tensor]:
    """``pool(LIF(norm(y)))`` over ``y`` ``[T, B, C, H, W]`` (or ``[T, B, F]``) from membrane ``v`` (None: at rest) on a
    fused ``backend``: the pooled spikes ``[T, B, C, H/k, W/k]`` and the final membrane ``[B, C, H, W]``; the norm's
    running statistics are updated as ``norm`` would update them."""
    flat = y.dim() == 3
    y5 = y[..., None, None] if flat else y
    T, B, C = y5.shape[:3]
    mean, invstd, batch = batch_statistics(norm, y5.flatten(0, 1))
    ones = torch.ones(C, dtype=torch.float32, device=y.device)
    weight = norm.weight if norm.weight is not None else ones
    bias = norm.bias if norm.bias is not None else torch.zeros_like(ones)
    # gain is (1 - beta) computed as leak.charge computes it, so the kernel's float32 products match the loop's
    gain = (1 - beta) if decay_input else 1.0
    params = [_scalar(p, y) for p in (beta, gain, threshold)]
    if not torch.ops.aten.is_non_overlapping_and_dense(y5):  # the norm's backward walks y's storage
        y5 = y5.contiguous()
    v0 = y.new_empty(0) if v is None else (v[..., None, None] if flat else v)
    tensors = (y5, mean, invstd, weight, bias, *params, v0)
    save = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    options = (POOLS[pool.kind], pool.size, pool.divisor, reset == "soft", float(v_reset), detach_reset)
    options += (SURROGATE_IDS[surrogate.name], float(surrogate.alpha), rounds_with_fma(y.device), batch, save)
    out, v_last, _ = fused_op("block", backend)(*tensors, *options)
    if flat:
        return out.view(T, B, C), v_last.view(B, C)
    return out, v_last


def pool_size(module: nn.Module) -> Pool | None:
    """``module`` as a ``Pool`` when it is a non-overlapping square max, average or sum pooling without padding (what
    the kernels pool), else None."""
    if not isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return None
    pairs = [v if isinstance(v, tuple) else (v, v) for v in (module.kernel_size, module.stride, module.padding)]
    (kh, kw), stride, padding = pairs
    if kh != kw or stride != (kh, kw) or padding != (0, 0) or module.ceil_mode:
        return None
    if isinstance(module, nn.MaxPool2d):
        dilation = module.dilation if isinstance(module.dilation, tuple) else (module.dilation,) * 2
        return Pool("max", kh) if dilation == (1, 1) and not module.return_indices else None
    if module.divisor_override not in (None, 1):
        return None
    return Pool("avg", kh, 1 if module.divisor_override == 1 else kh * kh)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (a Triton tile's side)."""
    return 1 << max(0, math.ceil(math.log2(n)))


__all__ = ["BACKENDS", "POOLS", "Pool", "batch_statistics", "block_fused", "define_block_op", "pool_size"]
