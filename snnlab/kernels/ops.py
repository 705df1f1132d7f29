"""A fused LIF kernel as a pair of ``torch.library`` custom ops (forward, backward) joined by its autograd formula.

Each backend supplies a forward and a backward implementation over flat tensors (``x`` ``[T, N]``, ``v0`` ``[N]``,
or ``[0]`` for a neuron at rest, which spares a fill and a read) and gets an operator
``torch.ops.snnlab.lif_<backend>`` with a fake (meta) implementation, so that ``torch.compile`` traces through it
and CUDA graphs capture it like a built-in operator.

The op computes, per neuron and step (the definition in ``reference.py``)::

    h[t] = beta v[t-1] + gain x[t]          (gain = 1 - beta with decay_input, else 1)
    s[t] = 1[h[t] - theta > 0]
    v[t] = h[t] - theta s[t]  (soft)   or   h[t] (1 - s[t]) + v_reset s[t]  (hard)

Its backward, with g the surrogate derivative at u[t] = h[t] - theta, r = g (0 with detach_reset) and
a[t] = dL/dv[t] (a[T-1] = the gradient of the final state, a[t-1] = beta gh[t])::

    dv/dh   = 1 - theta r  (soft)            (1 - s) + (v_reset - h) r  (hard)
    dv/dtheta = theta r - s  (soft)          (h - v_reset) r  (hard)
    gh[t]   = gs[t] g + a[t] dv/dh           dL/dx[t] = gain gh[t]      dL/dv0 = beta gh[0]
    dL/dbeta = sum gh[t] v[t-1]    dL/dgain = sum gh[t] x[t]    dL/dtheta = sum (a[t] dv/dtheta - gs[t] g)

beta and gain are separate inputs so that autograd chains both through beta = sigmoid(w) (PLIF) and gain = 1 - beta.
"""

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

SURROGATE_IDS: dict[str, int] = {"sigmoid": 0, "atan": 1, "fast_sigmoid": 2, "triangle": 3, "rectangle": 4}
"""The number each kernel uses for a surrogate (``snnlab.surrogates``); ``alpha`` is passed alongside."""


class Forward(Protocol):
    def __call__(
        self,
        x: Tensor,
        v0: Tensor,
        beta: Tensor,
        gain: Tensor,
        threshold: Tensor,
        v_reset: float,
        soft: bool,
        save: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Spikes ``[T, N]`` (x's dtype), final membrane ``[N]`` (v0's dtype), and what backward needs (``save``);
        an empty ``v0`` is a membrane at 0."""


class Backward(Protocol):
    def __call__(
        self,
        grad_spikes: Tensor | None,
        grad_v: Tensor | None,
        x: Tensor,
        v0: Tensor,
        beta: Tensor,
        gain: Tensor,
        threshold: Tensor,
        saved: Tensor,
        v_reset: float,
        soft: bool,
        detach_reset: bool,
        surrogate: int,
        alpha: float,
        param_grads: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Gradients of x ``[T, N]`` and v0 (shaped like it), and ``[3]`` float32 for (beta, gain, threshold) (zeros
        unless ``param_grads``). ``grad_spikes`` may be an expanded view (stride 0), as ``spikes.sum()`` gives."""


def define_lif_op(
    backend: str, forward: Forward, backward: Backward, saved_rows: Callable[[int], int], triton: bool = False
) -> Callable[..., tuple[Tensor, Tensor, Tensor]]:
    """Register ``snnlab::lif_<backend>`` and its backward op; ``saved_rows(T)`` is the row count of ``saved``.

    With ``triton`` the ops are ``torch.library.triton_op``s, whose Triton kernels ``torch.compile`` can see; their
    fake implementation is the function itself run on fake tensors.
    """
    if triton:
        define = torch.library.triton_op
    else:

        def define(name: str, mutates_args: tuple) -> Callable:
            return torch.library.custom_op(name, mutates_args=mutates_args)

    @define(f"snnlab::lif_{backend}", mutates_args=())
    def lif(
        x: Tensor,
        v0: Tensor,
        beta: Tensor,
        gain: Tensor,
        threshold: Tensor,
        v_reset: float,
        soft: bool,
        detach_reset: bool,
        surrogate: int,
        alpha: float,
        save: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return forward(x, v0, beta, gain, threshold, v_reset, soft, save)

    @define(f"snnlab::lif_{backend}_backward", mutates_args=())
    def lif_backward(
        grad_spikes: Tensor | None,
        grad_v: Tensor | None,
        x: Tensor,
        v0: Tensor,
        beta: Tensor,
        gain: Tensor,
        threshold: Tensor,
        saved: Tensor,
        v_reset: float,
        soft: bool,
        detach_reset: bool,
        surrogate: int,
        alpha: float,
        param_grads: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return backward(
            grad_spikes, grad_v, x, v0, beta, gain, threshold, saved, v_reset, soft, detach_reset, surrogate, alpha,
            param_grads,
        )  # fmt: skip

    if not triton:

        @lif.register_fake
        def _(x, v0, beta, gain, threshold, v_reset, soft, detach_reset, surrogate, alpha, save):
            rows = saved_rows(x.shape[0]) if save else 0
            v = x.new_empty(x.shape[1], dtype=v0.dtype)
            return torch.empty_like(x), v, x.new_empty((rows, x.shape[1]), dtype=torch.float32)

        @lif_backward.register_fake
        def _(grad_spikes, grad_v, x, v0, *args):
            return torch.empty_like(x), torch.empty_like(v0), x.new_empty(3, dtype=torch.float32)

    def setup_context(ctx, inputs, output) -> None:
        x, v0, beta, gain, threshold, v_reset, soft, detach_reset, surrogate, alpha, _ = inputs
        ctx.save_for_backward(x, v0, beta, gain, threshold, output[2])
        ctx.options = (v_reset, soft, detach_reset, surrogate, alpha)
        ctx.set_materialize_grads(False)

    def grads(ctx, grad_spikes: Tensor | None, grad_v: Tensor | None, _: Tensor | None) -> tuple:
        x, v0, beta, gain, threshold, saved = ctx.saved_tensors
        need = ctx.needs_input_grad
        if grad_spikes is None and grad_v is None:
            return (None,) * 11
        gx, gv0, gp = lif_backward(
            grad_spikes, grad_v, x, v0, beta, gain, threshold, saved, *ctx.options, param_grads=any(need[2:5])
        )
        params = [g.to(p.dtype) if n else None for g, p, n in zip(gp.unbind(), (beta, gain, threshold), need[2:5])]
        return (gx if need[0] else None, gv0 if need[1] else None, *params) + (None,) * 6

    lif.register_autograd(grads, setup_context=setup_context)
    return lif
