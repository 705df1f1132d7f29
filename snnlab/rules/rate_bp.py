r"""Rate-based backpropagation (Yu et al., NeurIPS 2024, arXiv 2410.11488): T steps without a graph, then one
backward through a graph of time-averaged rates, the size of a single step.

Phase 1 runs the network without autograd, on the neurons' fused kernels where they have them, and keeps per
neuron its rate and eligibility (``snnlab.kernels.rate``: a LIF's fused forward accumulates both, any other neuron
gets them by forward-mode AD through its loop),

.. math::

    r = \frac{1}{T} \sum_t s[t], \qquad e = \frac{\partial r}{\partial c} \text{ along a constant input current } c,

the rate's derivative along each learnable neuron parameter p (PLIF's tau, a learnable threshold) the same way,
:math:`e_p = \partial r / \partial p`, and each batch norm's input statistics over T and the batch. Phase 2 runs every
block once on time-averaged inputs :math:`\bar x` (synapses, average pooling and flatten are linear, so
:math:`W \bar x = \frac{1}{T} \sum_t W x[t]`), batch norm with phase 1's statistics as values and the rate
tensor's batch statistics as their gradient, and each neuron as

.. math::

    \mathrm{out} = r + \big(c\, e - \mathrm{sg}(c\, e)\big) + \textstyle\sum_p \big(p\, e_p - \mathrm{sg}(p\, e_p)\big),

whose value is the true rate and whose Jacobian is e (diagonal), sg a stop-gradient. The objective's loss is taken
on the output's rate (the readout of the sequence in which every step is the rate: the mean membrane, or T times
the rate for spike counts), and its gradient is divided by T as the paper's code does (``scale_gradient``); the
reported loss is the true one. Memory: the rates and eligibilities, one step's graph; time: T steps without a
graph plus one step's forward and backward.

A block must be linear in the time average: Linear or Conv synapses, batch norm, no recurrent connection, no
synapse with a state of its own, and post layers that are linear (average pooling, flatten; not max pooling or
dropout); ``supports`` names the first block that is not. Each neuron is taken as acting on its own input alone.

Example::

    >>> import torch
    >>> from snnlab.network import Block, Network
    >>> from snnlab.neurons import LIF, LI
    >>> from snnlab.objectives import Classification
    >>> from snnlab.optim import TrainConfig
    >>> from snnlab.synapses import Linear
    >>> net = Network([Block(Linear(64, 32), neuron=LIF()), Block(Linear(32, 10), neuron=LI())])
    >>> rule = RateBP(RateBPConfig(), net, Classification(), TrainConfig(epochs=1))
    >>> sorted(rule.train_step(net, (torch.rand(8, 16, 64), torch.randint(0, 10, (16,)))))
    ['accuracy', 'loss']
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..errors import ConfigError, UnsupportedNetwork
from ..kernels.rate import RateStatistics, parameter_slopes, rate_statistics_by_forward_ad
from ..network import Block, Network, NetworkTrace, Residual, fold, regularization_of
from ..objectives import MeanMembrane, Objective, SpikeCount
from ..optim import TrainConfig
from ..stateful import is_stateful
from .base import Batch, GradientRule

LINEAR_SYNAPSES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
LINEAR_POST = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Identity,
)


class RateBPConfig(BaseModel):
    """``rule: {name: rate_bp, scale_gradient: true, grad_clip: null}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["rate_bp"] = "rate_bp"
    scale_gradient: bool = Field(True, description="divide the gradient (not the reported loss) by T, as the paper")
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; null: no clipping")


class RateRecord(NamedTuple):
    """What phase 1 keeps of a block for phase 2 (the parts it lacks are None)."""

    rate: Tensor | None
    eligibility: Tensor | None
    tangents: tuple[tuple[nn.Parameter, Tensor], ...]
    """Each learnable neuron parameter with the rate's derivative along it (its slope)."""
    norm: tuple[Tensor, Tensor] | None
    """The batch norm's input mean and (biased) variance per channel, over T and the batch (None: no batch norm, or
    one in evaluation mode)."""


class RateBP(GradientRule):
    """One graph-free pass over T, one backward through the rate-level graph."""

    name = "rate_bp"
    Config = RateBPConfig
    config: RateBPConfig

    def __init__(self, config: RateBPConfig, network: Network, objective: Objective, train: TrainConfig) -> None:
        readout = getattr(objective, "readout", None)
        if not isinstance(readout, (MeanMembrane, SpikeCount)):
            raise ConfigError(
                [("objective.readout", "rate-based backpropagation needs a readout of the time average "
                  "(mean_membrane or spike_count)")]
            )  # fmt: skip
        super().__init__(config, network, objective, train)

    @classmethod
    def supports(cls, config: BaseModel, network: Network) -> None:
        reason = _nonlinear_on_rates(network, "network.blocks")
        if reason is not None:
            raise UnsupportedNetwork(f"{reason}; rate-based backpropagation needs blocks linear in the time average")

    def train_step(self, network: Network, batch: Batch) -> dict[str, float]:
        x_seq, target = batch
        T = len(x_seq)
        self.zero_grad()
        with torch.no_grad():
            out_seq, records = _spike_pass(network.blocks, x_seq)
        out, reg = _rate_pass(network.blocks, x_seq.mean(0), records, T)
        loss = self.objective.loss(NetworkTrace([], out.expand(T, *out.shape), [], reg), target)
        self.backward(loss / T if self.config.scale_gradient else loss)
        self.step(network, out_seq, self.config.grad_clip)
        return {"loss": loss.item(), **self.objective.metrics(self.objective.scores(out_seq), target)}


def _nonlinear_on_rates(blocks: nn.Module, where: str) -> str | None:
    """The first block (its path and why) whose output rate is not a function of its input rate, or None."""
    for i, block in enumerate(blocks.blocks):
        path = f"{where}[{i}]"
        if isinstance(block, Residual):
            reason = _nonlinear_on_rates(block, f"{path}.residual")
            if reason is not None:
                return reason
            continue
        if not isinstance(block, Block):
            return f"{path}: a {type(block).__name__}, not a block"
        if block.recurrent is not None:
            return f"{path}: a recurrent connection feeds the block its own output"
        if block.synapse is not None and (is_stateful(block.synapse) or not isinstance(block.synapse, LINEAR_SYNAPSES)):
            return f"{path}: the synapse {type(block.synapse).__name__} is not a Linear or Conv layer without state"
        if block.norm is not None and not isinstance(block.norm, nn.modules.batchnorm._BatchNorm):
            return f"{path}.norm: {type(block.norm).__name__} of the average is not the average of its steps"
        for layer in block.post:
            if not (isinstance(layer, LINEAR_POST) or (isinstance(layer, nn.Dropout) and layer.p == 0)):
                why = "a new mask at every step" if isinstance(layer, nn.Dropout) else "not linear"
                return f"{path}: its post layer {type(layer).__name__} is {why} (average pooling and flatten are)"
    return None


def _spike_pass(blocks: nn.ModuleList, x_seq: Tensor) -> tuple[Tensor, list[Any]]:
    """Phase 1 (no graph): the blocks' output sequence and each block's record (a list for a residual block)."""
    records: list[Any] = []
    for block in blocks:
        if isinstance(block, Residual):
            inner, record = _spike_pass(block.blocks, x_seq)
            x_seq = x_seq + inner
        else:
            x_seq, record = _block_spikes(block, x_seq)
        records.append(record)
    return x_seq, records


def _block_spikes(block: Block, x_seq: Tensor) -> tuple[Tensor, RateRecord]:
    c = fold(block.synapse, x_seq) if block.synapse is not None else x_seq
    norm = None
    if block.norm is not None:
        if block.norm.training:  # (in evaluation mode it is an affine map, the same on the rates)
            var, mean = torch.var_mean(c, [d for d in range(c.dim()) if d != 2], correction=0)
            norm = (mean, var)
        c = fold(block.norm, c)
    s, rate, eligibility, tangents = c, None, None, ()
    if block.neuron is not None:
        stats = _rate_statistics(block.neuron, c)
        s, rate, eligibility = stats.spikes, stats.rate, stats.eligibility
        parameters = dict(block.neuron.named_parameters())
        tangents = tuple((parameters[name], slope) for name, slope in stats.slopes.items())
    out = fold(block.post, s) if len(block.post) else s
    return out, RateRecord(rate, eligibility, tangents, norm)


def _rate_statistics(neuron: nn.Module, c_seq: Tensor) -> RateStatistics:
    """The neuron's own (a fused kernel's accumulators), else forward-mode AD through its loop."""
    if hasattr(neuron, "rate_statistics"):
        return neuron.rate_statistics(c_seq)
    return rate_statistics_by_forward_ad(neuron, c_seq)._replace(slopes=parameter_slopes(neuron, c_seq))


def _rate_pass(blocks: nn.ModuleList, x_bar: Tensor, records: list[Any], T: int) -> tuple[Tensor, Tensor | None]:
    """Phase 2 (the graph): the blocks on time-averaged inputs, and the regularisation terms of the rates."""
    reg = None
    for block, record in zip(blocks, records):
        if isinstance(block, Residual):
            inner, term = _rate_pass(block.blocks, x_bar, record, T)
            x_bar = x_bar + inner
        else:
            x_bar, term = _block_rates(block, x_bar, record, T)
        reg = term if reg is None else reg if term is None else reg + term
    return x_bar, reg


def _block_rates(block: Block, x_bar: Tensor, record: RateRecord, T: int) -> tuple[Tensor, Tensor | None]:
    c = block.synapse(x_bar) if block.synapse is not None else x_bar
    if record.norm is not None:
        c = rate_batch_norm(block.norm, c, *record.norm)
    elif block.norm is not None:
        c = block.norm(c)
    out, terms = c, [regularization_of(block.synapse, c.expand(T, *c.shape))]
    if block.neuron is not None:
        out = record.rate + _slope(c * record.eligibility)
        for p, tangent in record.tangents:
            out = out + _slope(p * tangent)
        terms.append(regularization_of(block.neuron, out.expand(T, *out.shape)))
    present = [t for t in terms if t is not None]
    return block.post(out), sum(present[1:], present[0]) if present else None


def _slope(z: Tensor) -> Tensor:
    """Zero in value, z's gradient: ``z - sg(z)``."""
    return z - z.detach()


def rate_batch_norm(norm: nn.modules.batchnorm._BatchNorm, c: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    r"""Batch norm of the rate-level current ``c`` ``[B, C, ...]``: the statistics' values are phase 1's (``mean``,
    ``var`` over T and the batch), their gradients those of ``c``'s own batch statistics,

    .. math::

        \mu = \mu_1 + (\bar c - \mathrm{sg}(\bar c)), \quad \sigma^2 = \sigma^2_1 + (v - \mathrm{sg}(v)),\quad
        v = \mathrm{mean}\big((c - \mu)^2\big), \qquad y = \gamma \frac{c - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,

    as the paper's code computes it; the running statistics were updated in phase 1."""
    dims = [d for d in range(c.dim()) if d != 1]
    shape = [1, -1] + [1] * (c.dim() - 2)
    mu = mean.view(shape) + _slope(c.mean(dims, keepdim=True))
    sigma2 = var.view(shape) + _slope((c - mu).square().mean(dims, keepdim=True))
    y = (c - mu) / torch.sqrt(sigma2 + norm.eps)
    return y * norm.weight.view(shape) + norm.bias.view(shape) if norm.affine else y
