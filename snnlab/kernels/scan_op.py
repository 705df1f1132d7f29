"""One factory for every fused neuron kernel: a neuron model's scan over T as a pair of ``torch.library`` custom ops
(forward, backward) joined by its autograd formula.

A model declares once, in a ``ScanModel``, its state variables, its parameters, its static options and whether it
fires through a surrogate; the factory writes the operator schemas from those names. A backend supplies two
functions over flat tensors, the same for every model:

* ``forward(x, states, params, options, save, stats) -> (out, states, saved, stats)``: ``x`` ``[T, N]`` (float32 or
  a lower precision the backend takes); each state ``[N]`` float32 (``[0]`` for a neuron at rest, which spares a fill
  and a read); each parameter 1-D of a length ``P`` that
  divides N; ``options`` a named tuple of the static options (then ``surrogate`` and ``alpha``). It returns the
  output ``[T, N]`` (x's dtype), the final states ``[N]``, what backward needs (``[rows, N]`` float32, ``rows =
  saved_rows(T)`` when ``save``, else 0) and, when ``stats``, ``[2 + n_params, N]`` float32: the rate, its
  derivative along a constant input (the eligibility of ``snnlab.kernels.rate``) and along each parameter (else
  ``[0, N]``).
* ``backward(grad_out, grad_states, x, states, params, saved, options, param_grads) -> (grad_x, grad_states,
  grad_params)``: gradients of x ``[T, N]`` and of the initial states (shaped like them), and ``[n_params, N]``
  float32 per-neuron parameter gradients (``[0, N]`` unless ``param_grads``). ``grad_out`` may be an expanded view
  (stride 0), as ``out.sum()`` gives; a missing gradient is None.

Neuron n reads parameter p at index ``n mod len(p)``: a 0-d parameter is one value for every neuron, and a
per-neuron one is indexed by the neuron's place within a sample (``[F]`` on ``[T, B, F]``, ``[C, H, W]`` or
``[C, 1, 1]`` on ``[T, B, C, H, W]``). The autograd formula sums a parameter's per-neuron gradients to its length
(dL/dp[j] = sum over the neurons n with n mod P = j), and autograd's own broadcasting sums them to its shape.

The ops have fake (meta) implementations, so ``torch.compile`` traces through them and CUDA graphs capture them
like built-in operators. They have no forward-mode formula: ``ScanOp`` refuses dual tensors and ``torch.func``
transforms, which the dispatch (``snnlab.kernels.choose``) sends to the neuron's own loop instead.
"""

from __future__ import annotations

import collections
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.autograd import forward_ad

from ..surrogates import Surrogate

SURROGATE_IDS: dict[str, int] = {"sigmoid": 0, "atan": 1, "fast_sigmoid": 2, "triangle": 3, "rectangle": 4}
"""The number each kernel uses for a surrogate (``snnlab.surrogates``); ``alpha`` is passed alongside."""


@dataclass(frozen=True)
class ScanModel:
    """What a neuron model's fused op reads and returns, named once: ``states`` and ``params`` are tensors,
    ``options`` static values (name, Python type), and ``surrogate`` adds the options ``surrogate`` (its number in
    ``SURROGATE_IDS``) and ``alpha``."""

    name: str
    states: tuple[str, ...]
    params: tuple[str, ...]
    options: tuple[tuple[str, type], ...]
    surrogate: bool = True

    def option_fields(self) -> list[tuple[str, type]]:
        return [*self.options, *([("surrogate", int), ("alpha", float)] if self.surrogate else [])]

    def signatures(self) -> tuple[inspect.Signature, inspect.Signature]:
        """The forward and backward operators' signatures, from which torch.library writes their schemas."""
        tensors = [(n, Tensor) for n in ("x", *self.states, *self.params)]
        options = self.option_fields()
        grads = [("grad_out", Tensor | None), *((f"grad_{s}", Tensor | None) for s in self.states)]
        forward = [*tensors, *options, ("save", bool), ("stats", bool)]
        backward = [*grads, *tensors, ("saved", Tensor), *options, ("param_grads", bool)]
        return _signature(forward, len(self.states) + 3), _signature(backward, len(self.states) + 2)


def _signature(arguments: list[tuple[str, Any]], outputs: int) -> inspect.Signature:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter(name, kind, annotation=annotation) for name, annotation in arguments]
    return inspect.Signature(parameters, return_annotation=tuple[(Tensor,) * outputs])  # type: ignore[misc]


class Forward(Protocol):
    def __call__(
        self, x: Tensor, states: list[Tensor], params: list[Tensor], options: Any, save: bool, stats: bool
    ) -> tuple[Tensor, list[Tensor], Tensor, Tensor]: ...


class Backward(Protocol):
    def __call__(
        self,
        grad_out: Tensor | None,
        grad_states: list[Tensor | None],
        x: Tensor,
        states: list[Tensor],
        params: list[Tensor],
        saved: Tensor,
        options: Any,
        param_grads: bool,
    ) -> tuple[Tensor, list[Tensor], Tensor]: ...


def forward_mode_active(*values: object) -> bool:
    """Whether a ``torch.func`` transform (jvp, grad, vmap, ...) is running or a tensor among ``values`` carries a
    forward-mode tangent (``torch.autograd.forward_ad``): the fused kernels would see neither."""
    if torch._C._are_functorch_transforms_active():
        return True
    return any(isinstance(v, Tensor) and forward_ad.unpack_dual(v).tangent is not None for v in values)


def storage_order(x_seq: Tensor) -> list[int]:
    """The dimensions of a sample (1, 2, ...) in the order ``x_seq``'s storage walks them, outermost first, when the
    time axis is outermost and the rest is dense in some order (NCHW, channels_last, ...): then ``x_seq.permute(0,
    *order)`` is contiguous and the kernels run on its storage as it is. Else the plain order, which the caller must
    copy into (a strided slice, a time axis that is not outermost)."""
    order = sorted(range(1, x_seq.dim()), key=lambda d: -x_seq.stride(d))
    if x_seq.permute(0, *order).is_contiguous():
        return order
    return list(range(1, x_seq.dim()))


def _per_neuron(p: Tensor | float, shape: torch.Size, order: Sequence[int], like: Tensor) -> Tensor:
    """``p`` as the kernels read it: float32, 1-D, neuron n at ``n mod len``, with neurons numbered in the storage
    ``order`` of a sample's dimensions. A 0-d parameter has length 1; another is broadcast over the innermost
    dimensions of that order from the first it spans (``[C, 1, 1]`` on channels_last: C values)."""
    if not isinstance(p, Tensor):
        return torch.full((1,), p, dtype=torch.float32, device=like.device)
    if p.dim() > len(shape) or torch.broadcast_shapes(p.shape, shape) != shape:
        raise ValueError(f"a parameter of shape {tuple(p.shape)} does not broadcast to the neurons' {tuple(shape)}")
    full = p.reshape((1,) * (len(shape) - p.dim()) + tuple(p.shape)).permute(*order)
    spans = [i for i, size in enumerate(full.shape) if size > 1]
    first = spans[0] if spans else len(shape)
    suffix = [shape[d] for d in order[first:]]
    return full.to(torch.float32).reshape(full.shape[first:]).expand(suffix).reshape(-1).contiguous()


class ScanOp:
    """A model's op on one backend, called on a sequence ``[T, ...]`` with states shaped like a step (None: at rest)
    and parameters that are floats, 0-d or per-neuron tensors.

    Precision: the op runs in its input's dtype, under autocast too (autocast passes custom ops by, and nothing here
    casts the sequence): a float32, bfloat16 or float16 sequence is read and the output and the input's gradient are
    written in that dtype, while parameters, states and the membrane are float32 (the final states are returned in
    float32, so a sequence continued in chunks keeps the membrane the kernel kept)."""

    def __init__(self, model: ScanModel, backend: str, op: Callable[..., tuple[Tensor, ...]]) -> None:
        self.model = model
        self.backend = backend
        self.op = op

    def __call__(
        self,
        x_seq: Tensor,
        states: Sequence[Tensor | None],
        params: Sequence[Tensor | float],
        options: Sequence[float | bool | int],
        surrogate: Surrogate | None = None,
        stats: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None]:
        """The output ``[T, ...]``, the final states and, with ``stats``, ``[2 + n_params, ...]`` float32: the
        per-neuron rate, eligibility and the rate's derivative along each parameter (``snnlab.kernels.rate``)."""
        if not torch.compiler.is_compiling() and forward_mode_active(x_seq, *states, *params):
            raise RuntimeError(
                f"snnlab::{self.model.name}_{self.backend} has no forward-mode AD formula (torch.func, "
                "torch.autograd.forward_ad): run the neuron with backend='torch', whose loop gives exact tangents"
            )
        T, shape = x_seq.shape[0], x_seq.shape[1:]
        order = [d - 1 for d in storage_order(x_seq)]  # of a sample's dimensions
        back = sorted(range(len(order)), key=order.__getitem__)  # the permutation that undoes it
        stored = [shape[d] for d in order]  # a sample's shape in storage order

        def flat(t: Tensor) -> Tensor:  # a state as the kernels read it: a view, when it is stored so in float32
            return t.expand(shape).permute(*order).reshape(-1).to(torch.float32).contiguous()

        x = x_seq.permute(0, *(d + 1 for d in order)).reshape(T, -1).contiguous()
        flat_states = [x.new_empty(0, dtype=torch.float32) if s is None else flat(s) for s in states]
        flat_params = [_per_neuron(p, shape, order, x) for p in params]
        if self.model.surrogate:
            if surrogate is None:
                raise ValueError(f"the {self.model.name} kernels need a surrogate")
            options = (*options, SURROGATE_IDS[surrogate.name], float(surrogate.alpha))
        save = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *flat_states, *flat_params))
        out, *final, _, statistics = self.op(x, *flat_states, *flat_params, *options, save, stats)
        sequence = [0, *(d + 1 for d in back)]  # x_seq's layout again, its strides included
        return (
            out.view(T, *stored).permute(*sequence),
            tuple(s.view(stored).permute(*back) for s in final),
            statistics.view(-1, *stored).permute(*sequence) if stats else None,
        )


def define_scan_op(
    model: ScanModel,
    backend: str,
    forward: Forward,
    backward: Backward,
    saved_rows: Callable[[int], int],
    triton: bool = False,
) -> ScanOp:
    """Register ``snnlab::<model>_<backend>`` and its backward op from a backend's two functions.

    With ``triton`` the ops are ``torch.library.triton_op``s, whose Triton kernels ``torch.compile`` can see; their
    fake implementation is the function itself run on fake tensors.
    """
    n_states, n_params = len(model.states), len(model.params)
    n_tensors = 1 + n_states + n_params
    Options = collections.namedtuple(f"{model.name}_options", [name for name, _ in model.option_fields()])  # type: ignore[misc]
    n_inputs = n_tensors + len(Options._fields) + 2
    name = f"snnlab::{model.name}_{backend}"

    def define(op_name: str, fn: Callable, signature: inspect.Signature) -> Any:
        fn.__signature__ = signature  # type: ignore[attr-defined]
        if triton:
            return torch.library.triton_op(op_name, fn, mutates_args=())
        return torch.library.custom_op(op_name, fn, mutates_args=())

    def run_forward(*args: Any) -> tuple[Tensor, ...]:
        x, states, params = args[0], list(args[1 : 1 + n_states]), list(args[1 + n_states : n_tensors])
        out, final, saved, statistics = forward(x, states, params, Options(*args[n_tensors:-2]), *args[-2:])
        return (out, *final, saved, statistics)

    def run_backward(*args: Any) -> tuple[Tensor, ...]:
        grad_out, grad_states = args[0], list(args[1 : 1 + n_states])
        rest = args[1 + n_states :]
        x, states, params = rest[0], list(rest[1 : 1 + n_states]), list(rest[1 + n_states : n_tensors])
        saved, options, param_grads = rest[n_tensors], Options(*rest[n_tensors + 1 : -1]), rest[-1]
        gx, g_states, g_params = backward(grad_out, grad_states, x, states, params, saved, options, param_grads)
        return (gx, *g_states, g_params)

    forward_signature, backward_signature = model.signatures()
    op = define(name, run_forward, forward_signature)
    op_backward = define(f"{name}_backward", run_backward, backward_signature)

    if not triton:

        @op.register_fake
        def _(*args: Any) -> tuple[Tensor, ...]:
            x, save, stats = args[0], args[-2], args[-1]
            T, N = x.shape
            final = [x.new_empty(N, dtype=s.dtype) for s in args[1 : 1 + n_states]]
            saved = x.new_empty((saved_rows(T) if save else 0, N), dtype=torch.float32)
            rows = 2 + n_params if stats else 0
            return (torch.empty_like(x), *final, saved, x.new_empty((rows, N), dtype=torch.float32))

        @op_backward.register_fake
        def _(*args: Any) -> tuple[Tensor, ...]:
            x, states = args[1 + n_states], args[2 + n_states : 2 + 2 * n_states]
            rows = n_params if args[-1] else 0
            gp = x.new_empty((rows, x.shape[1]), dtype=torch.float32)
            return (torch.empty_like(x), *(torch.empty_like(s) for s in states), gp)

    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        ctx.save_for_backward(*inputs[:n_tensors], output[1 + n_states])
        ctx.options = inputs[n_tensors:-2]
        ctx.set_materialize_grads(False)

    def grads(ctx: Any, grad_out: Tensor | None, *grad_rest: Tensor | None) -> tuple[Tensor | None, ...]:
        grad_states = grad_rest[:n_states]
        if grad_out is None and all(g is None for g in grad_states):
            return (None,) * n_inputs
        need = ctx.needs_input_grad
        x, *tensors, saved = ctx.saved_tensors
        states, params = tensors[:n_states], tensors[n_states:]
        gx, *g_states, gp = op_backward(
            grad_out, *grad_states, x, *states, *params, saved, *ctx.options, any(need[1 + n_states : n_tensors])
        )
        g_params = [gp[j].view(-1, p.shape[0]).sum(0) if need[1 + n_states + j] else None for j, p in enumerate(params)]
        g_states = [g if n else None for g, n in zip(g_states, need[1 : 1 + n_states])]
        return (gx if need[0] else None, *g_states, *g_params) + (None,) * (n_inputs - n_tensors)

    op.register_autograd(grads, setup_context=setup_context)
    return ScanOp(model, backend, op)
