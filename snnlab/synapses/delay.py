"""Synapses with one weight and one delay per connection (Hammouamri et al., ICLR 2024, "DCLS" delays).

    y_i[t] = sum_j w_ij s_j[t - d_ij] (+ b_i),   d_ij in {0, ..., max_delay - 1}

(s_j[t] = 0 before the first step). ``mode: learned`` trains each delay as a continuous position p_ij through a
normalised Gaussian over the taps, K_ij[d] = w_ij g(d - p_ij) / sum_d' g(d' - p_ij), g(z) = exp(-z^2 / (2 sigma^2)),
with one sigma for the layer that shrinks each epoch to ``sigma_floor`` (``end_epoch``); evaluation (``eval()``)
rounds the positions to integer delays, one tap per connection. ``random`` draws integer delays once from the
run's seed and keeps them; ``fixed`` takes them from ``delays``.

Positions are measured as delays, in steps. DCLS (and the paper's code) measures them from the centre of a kernel
of size D that it pads by D - 1 on the left: its p_dcls is D - 1 - D // 2 - d here (d = D // 2 - p_dcls for the
paper's odd D), and its initialisation, uniform in [-D // 2, D // 2], is uniform in [0, D - 1] here.

NIR: the evaluation form, as the exact chain ``Linear`` (fan-out: one copy of the input per distinct delay d_k) ->
``Delay`` (copy k by d_k * dt seconds) -> ``Linear``/``Affine`` (weight ``[out, K * in]``, block k keeping the
connections whose delay is d_k). Import reads a ``Delay`` with the ``Linear``/``Affine`` on either side of it
(either may be absent: the identity) as this synapse, whenever every connection passes through one delay; so the
chain above comes back as it was written, and a hand-written ``Linear -> Delay`` (one delay per output) reads as
a layer whose row i has delay d_i.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..export.registry import (
    Around,
    ExportContext,
    ImportContext,
    NIRUnsupported,
    Part,
    nir_export,
    nir_import_around,
    options_from_metadata,
)
from ..stateful import StatefulModule

Mode = Literal["learned", "random", "fixed"]


class DelayState(NamedTuple):
    """The inputs of the last ``max_delay - 1`` steps ``[max_delay - 1, B, in]``, oldest first (a shifted
    buffer: the step's output reads them together with the current input)."""

    past: Tensor


def sigma_at(epoch: int, epochs: int, sigma0: float, floor: float) -> float:
    """The Gaussian's width after ``epoch`` of ``epochs`` epochs: sigma0 * alpha^epoch with
    alpha = (floor / sigma0)^(1 / (epochs // 4)), so that it reaches ``floor`` after a quarter of training and
    stays there. (With fewer than 4 epochs the paper's code never shrinks it; **choice**: the floor after the
    first epoch.)"""
    final = max(epochs // 4, 1)
    if epoch >= final or sigma0 <= floor:
        return floor
    return sigma0 * (floor / sigma0) ** (epoch / final)


def _taps(max_delay: int, like: Tensor) -> Tensor:
    """The delay each tap of a kernel in ``conv1d`` order holds: tap k is delay max_delay - 1 - k (the kernel
    reads the left-padded input forwards, so its last tap is the current step)."""
    return torch.arange(max_delay - 1, -1, -1, dtype=like.dtype, device=like.device)


def _normalised_gaussian(positions: Tensor, sigma: Tensor, max_delay: int) -> Tensor:
    """n[i, j, k] = g(delay_k - p_ij) / sum_k' g(delay_k' - p_ij), ``[out, in, max_delay]``."""
    z = (_taps(max_delay, positions) - positions.unsqueeze(-1)) / sigma
    return torch.softmax(-0.5 * z.square(), dim=-1)


class _GaussianKernel(torch.autograd.Function):
    """K = w * n(p): the training kernel, its backward recomputing n instead of keeping it, so that building the
    kernel keeps no ``[out, in, D]`` tensor for the backward pass (plain autograd keeps several: at D = 64 it keeps
    66 MiB where this keeps 18 MiB, the convolution's own, ``benchmarks/delays.py``).

    With n_k the normalised Gaussian and u_k = delay_k - p: dK_k/dw = n_k and
    dK_k/dp = w n_k (u_k - sum_m n_m u_m) / sigma^2.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, positions: Tensor, sigma: Tensor, max_delay: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(weight, positions, sigma)
        ctx.max_delay = max_delay
        return weight.unsqueeze(-1) * _normalised_gaussian(positions, sigma, max_delay)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
        weight, positions, sigma = ctx.saved_tensors
        n = _normalised_gaussian(positions, sigma, ctx.max_delay)
        grad_n = grad * n
        grad_weight = grad_n.sum(-1) if ctx.needs_input_grad[0] else None
        grad_positions = None
        if ctx.needs_input_grad[1]:
            u = _taps(ctx.max_delay, positions) - positions.unsqueeze(-1)
            mean_u = (n * u).sum(-1, keepdim=True)
            grad_positions = weight * (grad_n * (u - mean_u)).sum(-1) / sigma.square()
        return grad_weight, grad_positions, None, None


def gaussian_kernel(weight: Tensor, positions: Tensor, sigma: Tensor, max_delay: int) -> Tensor:
    """The training kernel ``[out, in, max_delay]`` in ``conv1d`` order: each weight spread over the taps by a
    normalised Gaussian of width ``sigma`` centred on its (continuous) delay."""
    return _GaussianKernel.apply(weight, positions, sigma, max_delay)


def integer_kernel(weight: Tensor, delays: Tensor, max_delay: int) -> Tensor:
    """The kernel ``[out, in, max_delay]`` in ``conv1d`` order with one tap per connection: w_ij at delay d_ij."""
    tap = (max_delay - 1 - delays.long()).unsqueeze(-1)
    kernel = weight.new_zeros(*weight.shape, max_delay)
    return kernel.scatter(-1, tap, weight.unsqueeze(-1))


def delayed_sum(x_seq: Tensor, kernel: Tensor, bias: Tensor | None, past: Tensor | None = None) -> Tensor:
    """y[t] = sum_k kernel[:, :, k] x[t - (D - 1) + k] (+ b) over a sequence ``[T, B, in]`` -> ``[T, B, out]``:
    a causal convolution over time. The input is preceded by ``past`` (the D - 1 steps before it,
    ``[D - 1, B, in]``) or, without it, padded by D - 1 zeros on the left only, so that T stays T.

    Why a dense ``conv1d``: for its backward it keeps the padded input ``[B, in, T + D - 1]`` and the kernel
    ``[out, in, D]``, nothing that grows with T * D. A loop of per-step products keeps every step's window and
    kernel (T * (B * in + out * in) * D), and a gather of one tap per connection materialises ``[T, B, out, in]``
    even without autograd; at T = 50, B = 16, 256 -> 256, D = 8 they take 119 MiB and 427 MiB against 14 MiB
    here (``benchmarks/delays.py``, peak of forward + backward). The one-tap kernel costs D times the arithmetic of
    a linear layer; its memory is the kernel's, out * in * D, as in the dense convolution it replaces.
    """
    x = x_seq.permute(1, 2, 0)
    if past is None:
        x = F.pad(x, (kernel.shape[-1] - 1, 0))
    else:
        x = torch.cat([past.permute(1, 2, 0), x], dim=-1)
    return F.conv1d(x, kernel, bias).permute(2, 0, 1)


class DelaySynapse(StatefulModule):
    """A fully connected layer whose every connection has its own delay: y_i[t] = sum_j w_ij s_j[t - d_ij] + b_i.

    Training (``mode="learned"``) spreads each weight over the taps by a Gaussian of width ``sigma`` (a buffer,
    annealed by ``end_epoch``) around a continuous position, so that the loss has a gradient in the delays;
    ``eval()`` rounds positions to integer delays. ``after_update`` clamps the positions to [0, max_delay - 1].

    Args:
        in_features, out_features: sizes.
        max_delay: D; delays run from 0 to D - 1 steps.
        mode: ``learned`` (positions trained), ``random`` (integer delays drawn once, frozen) or ``fixed``
            (``delays`` given).
        delays: for ``fixed``, one delay for every connection or a list ``[out][in]``.
        sigma_init: the Gaussian's width at the start (None: D // 2, the paper's).
        sigma_floor: its width from a quarter of training on (0.23, the paper's).
        bias: add a learned bias (the paper's layers have none).
        init: ``default`` (PyTorch's ``Linear``: U(+-1/sqrt(in))) or ``kaiming_uniform`` (U(+-sqrt(6/in)), the
            paper's).

    Example::

        >>> import torch
        >>> syn = DelaySynapse(2, 1, max_delay=4, mode="fixed", delays=[[0, 3]]).eval()
        >>> with torch.no_grad():
        ...     _ = syn.weight.fill_(1.0)
        >>> x = torch.zeros(5, 1, 2); x[0, 0, 1] = 1.0      # input 1 fires at t = 0
        >>> syn(x)[0].flatten().tolist()                     # arrives 3 steps later
        [0.0, 0.0, 0.0, 1.0, 0.0]
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int,
        mode: Mode = "learned",
        delays: int | list[list[int]] | None = None,
        sigma_init: float | None = None,
        sigma_floor: float = 0.23,
        bias: bool = False,
        init: Literal["default", "kaiming_uniform"] = "default",
    ) -> None:
        super().__init__()
        if max_delay < 1:
            raise ValueError(f"max_delay: expected at least 1 (delays 0 .. max_delay - 1), got {max_delay}")
        _check_delays(mode, delays, max_delay, (out_features, in_features))
        self.in_features, self.out_features, self.max_delay, self.mode = in_features, out_features, max_delay, mode
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        bound = 1 / math.sqrt(in_features) if init == "default" else math.sqrt(6 / in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -1 / math.sqrt(in_features), 1 / math.sqrt(in_features))
        shape = (out_features, in_features)
        if mode == "learned":
            self.positions = nn.Parameter(torch.rand(shape) * (max_delay - 1))
        elif mode == "random":
            self.register_buffer("positions", torch.randint(0, max_delay, shape).float())
        else:
            self.register_buffer("positions", torch.as_tensor(delays, dtype=torch.float32).expand(shape).clone())
        self.sigma0 = float(max_delay // 2) if sigma_init is None else sigma_init
        self.sigma_floor = sigma_floor
        self.register_buffer("sigma", torch.tensor(self.sigma0 if mode == "learned" else 0.0))

    @property
    def gaussian(self) -> bool:
        """Whether the next forward spreads the delays (training a learned layer) rather than rounding them."""
        return self.mode == "learned" and self.training

    def delays(self) -> Tensor:
        """The integer delays ``[out, in]`` that evaluation and export use: the positions rounded."""
        return self.positions.detach().round().clamp(0, self.max_delay - 1).long()

    def kernel(self) -> Tensor:
        """The kernel ``[out, in, max_delay]`` of the next forward, in ``conv1d`` order (tap k: delay D - 1 - k)."""
        if self.gaussian:
            return gaussian_kernel(self.weight, self.positions, self.sigma, self.max_delay)
        return integer_kernel(self.weight, self.delays(), self.max_delay)

    def initial_state(self, like: Tensor) -> DelayState:
        return DelayState(like.new_zeros(self.max_delay - 1, *like.shape))

    def step(self, x_t: Tensor, state: DelayState) -> tuple[Tensor, DelayState]:
        window = torch.cat([state.past, x_t.unsqueeze(0)])  # [D, B, in], oldest first: tap k is delay D - 1 - k
        y = torch.einsum("kbj,ijk->bi", window, self.kernel())
        if self.bias is not None:
            y = y + self.bias
        return y, DelayState(window[1:])

    def forward(self, x_seq: Tensor, state: DelayState | None = None) -> tuple[Tensor, DelayState]:
        """The whole sequence ``[T, B, in]`` as one causal convolution (``delayed_sum``), continuing from
        ``state`` (None: silence before the first step)."""
        past = None if state is None else state.past
        y = delayed_sum(x_seq, self.kernel(), self.bias, past)
        keep, steps = self.max_delay - 1, len(x_seq)
        if steps >= keep:
            return y, DelayState(x_seq[steps - keep :])
        before = past if past is not None else x_seq.new_zeros(keep, *x_seq.shape[1:])
        return y, DelayState(torch.cat([before[steps:], x_seq]))

    def synaptic_ops(self, x: Tensor) -> Tensor:
        """Accumulates triggered by the non-zero entries of ``x``: each reaches ``out_features`` targets, one tap
        each (the evaluation form)."""
        return x.ne(0).sum() * self.out_features

    @torch.no_grad()
    def after_update(self) -> None:
        """Keep learned positions inside the kernel: [0, max_delay - 1]."""
        if self.mode == "learned":
            self.positions.clamp_(0, self.max_delay - 1)

    @torch.no_grad()
    def end_epoch(self, epoch: int, epochs: int) -> None:
        """Shrink sigma to its value after ``epoch`` of ``epochs`` (``sigma_at``); never widen it (a run extended
        on resume keeps its floor)."""
        if self.mode == "learned":
            value = sigma_at(epoch, epochs, self.sigma0, self.sigma_floor)
            self.sigma.fill_(min(value, float(self.sigma)))

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, max_delay={self.max_delay}, mode={self.mode}, "
            f"bias={self.bias is not None}"
        )


def delay(
    in_shape: tuple[int, ...],
    out_features: Annotated[int, Field(ge=1)],
    max_delay: Annotated[int, Field(ge=1)] = 25,
    mode: Mode = "learned",
    delays: int | list[list[int]] | None = None,
    sigma_init: Annotated[float | None, Field(gt=0)] = None,
    sigma_floor: Annotated[float, Field(gt=0)] = 0.23,
    bias: bool = False,
    init: Literal["default", "kaiming_uniform"] = "default",
) -> DelaySynapse:
    """A ``DelaySynapse`` from a flat ``in_shape`` to ``out_features``, delays 0 .. ``max_delay`` - 1 steps;
    ``mode``: ``learned`` | ``random`` | ``fixed`` (with ``delays``: one for all, or ``[out][in]``)."""
    if len(in_shape) != 1:
        raise ValueError(
            f"expects a flat input but the previous block produces shape {list(in_shape)}; "
            "add a block `- flatten: true` before it"
        )
    return DelaySynapse(in_shape[0], out_features, max_delay, mode, delays, sigma_init, sigma_floor, bias, init)


def _check_delays(mode: Mode, delays: int | list[list[int]] | None, max_delay: int, shape: tuple[int, int]) -> None:
    """``delays`` is given exactly for ``mode: fixed``, as one delay or ``[out][in]``, each in [0, max_delay)."""
    if mode != "fixed":
        if delays is not None:
            raise ValueError(f"delays: given for mode {mode}; it is read only with mode: fixed")
        return
    if delays is None:
        raise ValueError("delays: mode fixed needs delays (one for every connection, or a list [out][in])")
    values = torch.as_tensor(delays)
    if values.dim() == 2 and tuple(values.shape) != shape:
        raise ValueError(f"delays: a list of {list(values.shape)}, expected [out, in] = {list(shape)}")
    if values.dim() not in (0, 2) or (values.dim() == 2 and values.numel() == 0):
        raise ValueError(f"delays: expected one integer or a list [out][in] = {list(shape)}")
    if bool((values < 0).any() | (values >= max_delay).any()):
        raise ValueError(
            f"delays: each must be in 0 .. max_delay - 1 = {max_delay - 1}, got {values.min()}..{values.max()}"
        )


@nir_export(DelaySynapse)
def delay_to_nir(module: DelaySynapse, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """The rounded integer delays (``delays()``, what ``eval()`` computes) as an exact composition: with d_1..d_K
    the distinct delays, ``Linear`` [K * in, in] of K stacked identities, ``Delay`` of d_k * dt for copy k, and
    ``Linear`` (``Affine`` with a bias) [out, K * in] whose block k is W masked to the connections of delay d_k:
    y[t] = sum_k (W * [D = d_k]) x[t - d_k] + b."""
    import nir

    delays = module.delays().cpu()
    distinct = torch.unique(delays)
    weight = module.weight.detach().cpu().float()
    n_in = module.in_features
    fan_out = torch.eye(n_in).repeat(len(distinct), 1)
    seconds = (distinct.double() * ctx.dt).repeat_interleave(n_in)
    masked = torch.cat([weight * (delays == d) for d in distinct], dim=1)
    saved = {"mode": module.mode, "max_delay": module.max_delay}
    if module.mode == "learned":
        saved.update(sigma_init=module.sigma0 or None, sigma_floor=module.sigma_floor, sigma=float(module.sigma))
    metadata = {"snnlab_options": json.dumps(saved, sort_keys=True)}
    nodes = [nir.Linear(weight=fan_out.numpy()), nir.Delay(delay=seconds.numpy(), metadata=metadata)]
    if module.bias is None:
        return [*nodes, nir.Linear(weight=masked.numpy())]
    return [*nodes, nir.Affine(weight=masked.numpy(), bias=module.bias.detach().cpu().float().numpy())]


def _dense(node: Any, size: int, side: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The weight and bias (None for ``Linear``) of a neighbour of a Delay of ``size`` channels, or None when it is
    not a ``Linear``/``Affine`` (nor a map of that size)."""
    if type(node).__name__ not in ("Linear", "Affine"):
        return None
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.ndim != 2 or weight.shape[0 if side == "before" else 1] != size:
        return None
    bias = getattr(node, "bias", None)
    return weight, None if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)


def _whole_steps(node: Any, dt: float) -> np.ndarray:
    """A Delay's delays (seconds) as whole steps of ``dt``; refused where one is not (to float32 rounding)."""
    seconds = np.asarray(node.delay, dtype=np.float64)
    if seconds.ndim != 1:
        raise NIRUnsupported(f"delay of shape {list(seconds.shape)}; snnlab reads one delay per channel of a vector")
    steps = np.rint(seconds / dt)
    if (steps < 0).any() or not np.allclose(steps * dt, seconds, rtol=1e-5, atol=1e-9 * dt):
        raise NIRUnsupported(
            f"delays {seconds.min():.6g} .. {seconds.max():.6g} s are not whole steps of dt = {dt:.6g} s (snnlab's "
            "delays are whole steps): give the dt the file was written for"
        )
    return steps.astype(np.int64)


@nir_import_around("Delay")
def delay_from_nir(before: Any, node: Any, after: Any, ctx: ImportContext) -> Around:
    """x -> ``Linear``/``Affine`` A (or none) -> ``Delay`` d -> ``Linear``/``Affine`` B (or none) is
    y[t] = sum_m B[:, m] (A x)_m[t - d_m] + b: the delay synapse with w_ij = sum_{m: d_m = k} B_im A_mj at the one
    delay k that connection (i, j) passes through (refused where it passes through two). A's bias is silent for
    the first d_m steps, which a synapse's bias is not: it is read only where its delay is 0."""
    steps = _whole_steps(node, ctx.dt)
    size = len(steps)
    first, last = _dense(before, size, "before"), _dense(after, size, "after")
    a, a_bias = first if first is not None else (np.eye(size), None)
    b, bias = last if last is not None else (np.eye(size), None)
    distinct = np.unique(steps)
    per_delay = np.stack([b[:, steps == k] @ a[steps == k] for k in distinct])  # [K, out, in]
    carried = (per_delay != 0).sum(0)
    if (carried > 1).any():
        i, j = np.argwhere(carried > 1)[0]
        ks = distinct[per_delay[:, i, j] != 0].tolist()
        raise NIRUnsupported(
            f"the connection from input {j} to output {i} passes through delays {ks} (steps); snnlab's delay synapse "
            "gives each connection one delay"
        )
    if a_bias is not None:
        late = (a_bias != 0) & (steps > 0) & (b != 0).any(0)
        if late.any():
            raise NIRUnsupported(
                f"the Affine before the Delay has a bias on channels delayed by up to {int(steps[late].max())} steps, "
                "which is silent for the first steps where a synapse's bias is not; write the bias after the Delay"
            )
        bias = b @ a_bias + (0 if bias is None else bias)
    weight = per_delay.sum(0)
    delays = distinct[(per_delay != 0).argmax(0)]  # a connection of weight 0 at the first
    saved = options_from_metadata(node)  # snnlab's own files: the mode and its settings, the current sigma
    sigma = saved.pop("sigma", None)
    max_delay = max(int(saved.pop("max_delay", 0)), int(distinct.max()) + 1)
    options: dict[str, Any] = {"out_features": weight.shape[0], "max_delay": max_delay, "bias": bias is not None}
    tensors = {"weight": torch.as_tensor(weight, dtype=torch.float32)}
    if saved.get("mode", "fixed") == "fixed":
        options.update(
            saved, mode="fixed", delays=int(delays[0, 0]) if (delays == delays[0, 0]).all() else delays.tolist()
        )
    else:
        options.update(saved)
        tensors["positions"] = torch.as_tensor(delays, dtype=torch.float32)
        if sigma is not None:
            tensors["sigma"] = torch.tensor(float(sigma))
    if bias is not None:
        tensors["bias"] = torch.as_tensor(bias, dtype=torch.float32)
    return Around(Part("synapse", "delay", options, tensors), before=first is not None, after=last is not None)
