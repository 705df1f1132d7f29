"""The excitatory-inhibitory (E-I) circuit of DeepEISNN (Liu, Ding, Yu, ICLR 2026): a synapse that takes the place
of "linear/conv + batch norm" with an excitatory and an inhibitory population under Dale's law.

    I_EE = W_EE x,   I_IE = W_IE x         the E units and the I units read the same input x (fan-in d)
    I_bal = I_EE - W_EI I_IE               subtractive inhibition: the balanced current
    I_sh  = W_EI (g_I * I_IE)              divisive (shunting) inhibition
    I_int = g_E * I_bal / I_sh + b_E       what the block's neuron receives; an output layer gets I_bal

W_EE, W_IE, W_EI, g_I and g_E are non-negative (Dale's law: each pathway's sign is fixed). The I units are linear:
they pass currents and do not spike, as in the paper's code (METHODS.md 3, **choice**: for parity). There are
n_I = max(1, n_E // ei_ratio) of them (the floor of the paper's code; at least one, so that a 2-class output works).

Three parts come from the paper's training recipe:

* **E-I Init** (``initialize``, run once on the first training batch): W_EE, W_IE ~ Exponential with scale
  sqrt(Var / (d (E[x^2] + Var))), W_EI = 1/n_I, g_I = sqrt(E[x^2] + Var) / (sqrt(d) E[x]), g_E = 1, b_E = 0.
* **Dale's law**: every sign-constrained tensor is clamped to >= 0 in place before each forward (as the paper's
  code) and after each update (``after_update``, as its ``EiSGD(clamped=True)``).
* **E-I Prop**: zeros of I_sh are replaced, in the forward pass only, by their sample's smallest non-zero value
  (straight-through gradient); W_EI's gradient is divided by d; ``detach_denominator`` (an ablation the paper
  leaves open) blocks the gradient through I_sh.

Inputs arrive folded over time, ``[T*B, ...]`` (or one step ``[B, ...]``), and are expected to be non-negative
(spikes or intensities), as the previous layer's E spikes are. "A sample" is one row: one sample at one time step,
as in the paper's code, so a step-by-step run gives the same currents as a whole sequence.

NIR: the division by the shunting current has no NIR node, so a divisive circuit is refused; the balanced current
of an output block (no division) is linear and is exported as one ``Linear`` (``Conv2d``) of weight
W_EE - W_EI W_IE.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable
from typing import Annotated, Any, NamedTuple

import torch
from pydantic import Field
from torch import Tensor, nn

from ..export.registry import ExportContext, NIRUnsupported, nir_export
from .conv import Conv2d, conv_to_nir, image_channels
from .linear import Linear, flat_features, linear_to_nir


class InputStats(NamedTuple):
    """What E-I Init reads from a batch: E[x], Var[x] (the per-feature variance over the batch, averaged over
    features) and E[x^2]."""

    mean: float
    var: float
    mean_square: float


NOMINAL_STATS = InputStats(mean=0.5, var=0.25, mean_square=0.5)
"""**choice**: the statistics of Bernoulli(1/2) spikes. The initialisation before E-I Init has seen data
(``snnlab check``, a network built in Python, a checkpoint about to be loaded) assumes them, and E-I Init falls
back to them when the first batch cannot serve (see ``usable``)."""


def input_stats(x: Tensor) -> InputStats:
    """The ``InputStats`` of a folded batch ``x`` ``[N, ...]`` (variance with Bessel's correction, as the paper's
    ``x.var(dim=0)``; NaN for N = 1)."""
    x = x.detach().double()
    var = x.var(dim=0).mean().item() if x.shape[0] > 1 else math.nan
    return InputStats(x.mean().item(), var, x.square().mean().item())


def usable(stats: InputStats) -> bool:
    """Whether E-I Init can use ``stats``: finite, with E[x] > 0 (g_I divides by it) and Var[x] > 0 (else the
    weights' scale is 0). **choice**: a batch that fails (a silent input: E[x] = 0; one sample; identical
    samples) keeps ``NOMINAL_STATS`` rather than dividing by zero."""
    return all(math.isfinite(v) for v in stats) and stats.mean > 0 and stats.var > 0


def init_scales(stats: InputStats, fan_in: int) -> tuple[float, float]:
    """E-I Init's ``(scale, g_I)`` for inputs with ``stats`` and fan-in d:

        scale = sqrt(Var / (d (E[x^2] + Var)))          W_EE, W_IE ~ Exponential(mean = scale)
        g_I   = sqrt(E[x^2] + Var) / (sqrt(d) E[x])     (the paper's Eq. 54)

    Both populations see identically distributed weights, so I_EE and W_EI I_IE have the same mean (I_bal's mean
    is about 0) and I_sh is about sqrt(Var): the circuit normalises without batch statistics.
    """
    second = stats.mean_square + stats.var
    return math.sqrt(stats.var / (fan_in * second)), math.sqrt(second) / (math.sqrt(fan_in) * stats.mean)


def stabilize_shunting(i_sh: Tensor) -> Tensor:
    """E-I Prop (1): each zero of ``i_sh`` ``[N, ...]`` replaced by the smallest non-zero value of its row, in the
    forward pass only; the gradient passes straight through (d out / d i_sh = 1 everywhere).

    A row with no non-zero value gets +inf (as the paper's code, whose minimum over it is +inf), so its
    I_bal / I_sh is 0 and its E units receive b_E alone, with zero gradient through the division.
    """
    zero = i_sh == 0
    row_min = i_sh.masked_fill(zero, math.inf).flatten(1).amin(1).view(-1, *[1] * (i_sh.dim() - 1))
    return i_sh + torch.where(zero, row_min, 0.0).detach()


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``factor`` (tangents in forward mode pass unchanged)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, factor: float) -> Tensor:  # type: ignore[override]
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, float], output: Tensor) -> None:
        ctx.factor = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor, _: Any) -> Tensor:  # type: ignore[override]
        return tangent


def scale_grad(x: Tensor, factor: float) -> Tensor:
    """``x`` whose gradient is multiplied by ``factor`` on the way back (E-I Prop (2): W_EI's by 1/d)."""
    return _ScaleGrad.apply(x, factor)


def _per_channel(p: Tensor, like: Tensor) -> Tensor:
    """A per-channel vector ``[C]`` shaped to broadcast over ``like`` ``[N, C, ...]``."""
    return p.view(-1, *[1] * (like.dim() - 2))


def _mix(weight: Tensor, x: Tensor) -> Tensor:
    """``weight`` ``[n_E, n_I]`` applied along the channel axis of ``x`` ``[N, n_I, ...]`` (a 1x1 convolution)."""
    return torch.einsum("ei,ni...->ne...", weight, x)


def ei_current(
    i_ee: Tensor,
    i_ie: Tensor,
    weight_ei: Tensor,
    gain_i: Tensor,
    gain_e: Tensor,
    bias: Tensor | None,
    divisive: bool = True,
    detach_denominator: bool = False,
) -> Tensor:
    """The I -> E stage: from the populations' input currents ``i_ee`` ``[N, n_E, ...]`` and ``i_ie``
    ``[N, n_I, ...]`` (channels on axis 1) to the E units' current.

        I_bal = I_EE - W_EI I_IE;   divisive: g_E * I_bal / stabilize(W_EI (g_I * I_IE)) + b_E;   else I_bal
    """
    i_bal = i_ee - _mix(weight_ei, i_ie)
    if not divisive:
        return i_bal
    i_sh = stabilize_shunting(_mix(weight_ei, _per_channel(gain_i, i_ie) * i_ie))
    out = _per_channel(gain_e, i_bal) * i_bal / (i_sh.detach() if detach_denominator else i_sh)
    return out if bias is None else out + _per_channel(bias, out)


@torch.no_grad()
def clamp_nonnegative_(params: Iterable[Tensor]) -> None:
    """Dale's law: clamp ``params`` to >= 0 in place. Only when one has a negative entry, so that a forward run
    several times in one graph (step by step) does not change tensors autograd has saved."""
    params = list(params)
    if bool(torch.stack([p.lt(0).any() for p in params]).any()):
        for p in params:
            p.clamp_(min=0)


class EICircuit(nn.Module):
    """The E-I circuit around two projections of the input, ``ee`` (to the n_E E units) and ``ie`` (to the n_I
    I units), without bias: dense (``EILinear``) or convolutional (``EIConv2d``). See the module's docstring."""

    def __init__(
        self,
        ee: nn.Module,
        ie: nn.Module,
        n_e: int,
        n_i: int,
        fan_in: int,
        bias: bool,
        divisive: bool | None,
        detach_denominator: bool,
        scale_ei_grad: bool,
    ) -> None:
        super().__init__()
        self.ee, self.ie, self.fan_in = ee, ie, fan_in
        self.weight_ei = nn.Parameter(torch.empty(n_e, n_i))
        self.gain_i = nn.Parameter(torch.empty(n_i))
        self.gain_e = nn.Parameter(torch.empty(n_e))
        self.bias = nn.Parameter(torch.empty(n_e)) if bias else None
        self.divisive = divisive
        self.detach_denominator = detach_denominator
        self.scale_ei_grad = scale_ei_grad
        self.reset_parameters()

    def nonnegative(self) -> list[Tensor]:
        """The tensors Dale's law keeps >= 0: W_EE, W_IE, W_EI, g_I, g_E (b_E is free)."""
        return [self.ee.weight, self.ie.weight, self.weight_ei, self.gain_i, self.gain_e]

    @torch.no_grad()
    def reset_parameters(self, stats: InputStats = NOMINAL_STATS) -> None:
        """E-I Init's formulas for inputs with ``stats`` (default: ``NOMINAL_STATS``); draws from torch's
        generator."""
        scale, gain_i = init_scales(stats, self.fan_in)
        self.ee.weight.exponential_(1 / scale)
        self.ie.weight.exponential_(1 / scale)
        self.weight_ei.fill_(1 / self.weight_ei.shape[1])
        self.gain_i.fill_(gain_i)
        self.gain_e.fill_(1.0)
        if self.bias is not None:
            self.bias.zero_()

    def initialize(self, x: Tensor) -> None:
        """E-I Init from the first training batch ``x`` (folded ``[T*B, ...]``; the lifecycle hook)."""
        stats = input_stats(x)
        if not usable(stats):
            warnings.warn(
                f"E-I Init: the first batch's input to {type(self).__name__}({self.extra_repr()}) has E[x] = {stats.mean:.3g} and Var[x] = "
                f"{stats.var:.3g}; it needs both > 0, so the layer keeps the initialisation for Bernoulli(1/2) spikes",
                stacklevel=2,
            )
            stats = NOMINAL_STATS
        self.reset_parameters(stats)

    def after_update(self) -> None:
        """Dale's law after every update."""
        clamp_nonnegative_(self.nonnegative())

    def readout_form(self) -> EICircuit:
        """The form for the network's output block: the balanced current I_bal, without division, unless
        ``divisive`` was set explicitly (then this layer itself)."""
        if self.divisive is not None:
            return self
        out = copy.deepcopy(self)
        out.divisive = False
        return out

    def forward(self, x: Tensor) -> Tensor:
        clamp_nonnegative_(self.nonnegative())
        weight_ei = scale_grad(self.weight_ei, 1 / self.fan_in) if self.scale_ei_grad else self.weight_ei
        return ei_current(
            self.ee(x),
            self.ie(x),
            weight_ei,
            self.gain_i,
            self.gain_e,
            self.bias,
            divisive=self.divisive is not False,
            detach_denominator=self.detach_denominator,
        )

    def extra_repr(self) -> str:
        n_e, n_i = self.weight_ei.shape
        flags = [f"n_E={n_e}, n_I={n_i}, fan_in={self.fan_in}", f"bias={self.bias is not None}"]
        flags.append("divisive" if self.divisive is not False else "balanced current (no division)")
        flags += ["detach_denominator"] * self.detach_denominator + ["W_EI grad not scaled"] * (not self.scale_ei_grad)
        return ", ".join(flags)


def inhibitory_units(n_e: int, ei_ratio: int) -> int:
    """n_I = max(1, n_E // ei_ratio)."""
    return max(1, n_e // ei_ratio)


class EILinear(EICircuit):
    """A dense E-I circuit from ``in_features`` inputs to ``out_features`` E units (and
    ``max(1, out_features // ei_ratio)`` linear I units).

        I_int = g_E * (W_EE x - W_EI W_IE x) / stabilize(W_EI (g_I * W_IE x)) + b_E

    x: input ``[N, in_features]`` (non-negative); W_EE ``[n_E, d]``, W_IE ``[n_I, d]``, W_EI ``[n_E, n_I]``,
    g_I ``[n_I]``, g_E and b_E ``[n_E]``; all but b_E >= 0.

    Example::

        >>> import torch
        >>> from snnlab import lifecycle
        >>> from snnlab.network import Block, Network
        >>> from snnlab.neurons import LIF
        >>> from snnlab.synapses.ei import EILinear
        >>> _ = torch.manual_seed(0)
        >>> net = Network([Block(EILinear(64, 128), neuron=LIF(tau=2.0, decay_input=False))])
        >>> x = (torch.rand(4, 32, 64) < 0.3).float()          # [T, B, features] spikes
        >>> lifecycle.initialize(net, x)                        # E-I Init on this batch
        >>> current = net.blocks[0].synapse(x.flatten(0, 1))    # I_int [T*B, 128]
        >>> abs(current.mean().item()) < 0.3                    # balanced: mean about b_E = 0
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        ei_ratio: int = 4,
        bias: bool = True,
        divisive: bool | None = None,
        detach_denominator: bool = False,
        scale_ei_grad: bool = True,
    ) -> None:
        n_i = inhibitory_units(out_features, ei_ratio)
        ee, ie = Linear(in_features, out_features, bias=False), Linear(in_features, n_i, bias=False)
        super().__init__(ee, ie, out_features, n_i, in_features, bias, divisive, detach_denominator, scale_ei_grad)


class EIConv2d(EICircuit):
    """A convolutional E-I circuit: W_EE and W_IE are ``kernel_size`` convolutions from ``in_channels`` to
    ``out_channels`` E maps and ``max(1, out_channels // ei_ratio)`` I maps; W_EI mixes I into E channels at each
    position (a 1x1 convolution); g_I, g_E, b_E are per channel. Fan-in d = in_channels * kernel_size^2."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 0,
        ei_ratio: int = 4,
        bias: bool = True,
        divisive: bool | None = None,
        detach_denominator: bool = False,
        scale_ei_grad: bool = True,
    ) -> None:
        n_i = inhibitory_units(out_channels, ei_ratio)
        ee, ie = (
            Conv2d(in_channels, n, kernel_size, stride=stride, padding=padding, bias=False) for n in (out_channels, n_i)
        )
        fan_in = in_channels * kernel_size**2
        super().__init__(ee, ie, out_channels, n_i, fan_in, bias, divisive, detach_denominator, scale_ei_grad)


EIRatio = Annotated[int, Field(ge=1)]


def ei_linear(
    in_shape: tuple[int, ...],
    out_features: Annotated[int, Field(ge=1)],
    in_features: int | None = None,
    bias: bool = True,
    ei_ratio: EIRatio = 4,
    divisive: bool | None = None,
    detach_denominator: bool = False,
    scale_ei_grad: bool = True,
) -> EILinear:
    """A dense E-I circuit (DeepEISNN) from a flat ``in_shape`` to ``out_features`` E units; use it without
    ``norm``.

    Args:
        out_features: n_E, the excitatory units (the block's neurons).
        in_features: checked against what the previous block produces, when given.
        bias: learn b_E.
        ei_ratio: n_E / n_I (4: the paper's 80/20 split).
        divisive: null: divide by the shunting current, except in the network's output block under a membrane
            readout, which returns the balanced current I_bal; true or false: always or never.
        detach_denominator: no gradient through I_sh (an ablation; the paper leaves it open).
        scale_ei_grad: divide W_EI's gradient by the fan-in d (E-I Prop).
    """
    features = flat_features(in_shape, in_features)
    return EILinear(features, out_features, ei_ratio, bias, divisive, detach_denominator, scale_ei_grad)


def ei_conv(
    in_shape: tuple[int, ...],
    out_channels: Annotated[int, Field(ge=1)],
    kernel_size: Annotated[int, Field(ge=1)] = 3,
    stride: Annotated[int, Field(ge=1)] = 1,
    padding: Annotated[int, Field(ge=0)] = 0,
    in_channels: int | None = None,
    bias: bool = True,
    ei_ratio: EIRatio = 4,
    divisive: bool | None = None,
    detach_denominator: bool = False,
    scale_ei_grad: bool = True,
) -> EIConv2d:
    """A convolutional E-I circuit (DeepEISNN) from ``[C, H, W]`` to ``out_channels`` E maps; use it without
    ``norm``. No ``groups``: W_EI mixes all I channels.

    Args:
        out_channels: n_E, the excitatory maps (the block's neurons).
        kernel_size: of the W_EE and W_IE convolutions (fan-in d = channels * kernel_size^2).
        stride: of both convolutions.
        padding: of both convolutions (zeros).
        in_channels: checked against what the previous block produces, when given.
        bias: learn b_E (one per map).
        ei_ratio: n_E / n_I (4: the paper's 80/20 split).
        divisive: null: divide by the shunting current, except in the network's output block under a membrane
            readout; true or false: always or never.
        detach_denominator: no gradient through I_sh (an ablation; the paper leaves it open).
        scale_ei_grad: divide W_EI's gradient by the fan-in d (E-I Prop).
    """
    channels = image_channels(in_shape, in_channels)
    return EIConv2d(
        channels,
        out_channels,
        kernel_size,
        stride,
        padding,
        ei_ratio,
        bias,
        divisive,
        detach_denominator,
        scale_ei_grad,
    )


@nir_export(EILinear, EIConv2d)
def ei_to_nir(module: EICircuit, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """The balanced current W_EE x - W_EI (W_IE x) as one linear map; the divisive circuit is refused."""
    if module.divisive is not False:
        raise NIRUnsupported(
            "an E-I circuit divides by its shunting current W_EI (g_I W_IE x), and NIR has no division node; only "
            "the balanced current of an output block (divisive: false) is linear and exports"
        )
    with torch.no_grad():
        weight = module.ee.weight - torch.einsum("ei,i...->e...", module.weight_ei, module.ie.weight)
        merged = copy.deepcopy(module.ee)
        merged.weight.copy_(weight)
    return linear_to_nir(merged, shape, ctx) if isinstance(merged, Linear) else conv_to_nir(merged, shape, ctx)
