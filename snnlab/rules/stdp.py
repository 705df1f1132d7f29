r"""Unsupervised pair-based STDP on a winner-take-all network, labelled afterwards (Diehl & Cook 2015).

Every block (a bias-free linear synapse and a spiking neuron, with lateral inhibition as its ``recurrent``
connection, ``recurrent: {kind: lateral_inhibition, strength: ...}``) learns without autograd while the network runs
one step at a time. Each sample keeps a trace per input and per neuron; at every step t

.. math::

    x_i[t] = (1 - 1/\tau_+)\, x_i[t-1] + s^{pre}_i[t], \qquad y_j[t] = (1 - 1/\tau_-)\, y_j[t-1] + s^{post}_j[t]

    \Delta W_{ji} = A_+ f_+(W_{ji})\, x_i[t]\, s^{post}_j[t] - A_-\, f_-(W_{ji})\, y_j[t]\, s^{pre}_i[t]

(LTP at a post spike, LTD at a pre spike; ``trace: nearest`` sets a trace to 1 at a spike instead of adding 1),
summed over the batch and applied at once, then W is clipped to [0, w_max]. Weight dependence: ``additive``
f+ = f- = 1; ``multiplicative`` (soft bounds) f+ = (w_max - W)^mu, f- = W^mu. A pre and a post spike at the same
step count both ways, as in SpikingJelly's ``STDPLearner`` (the traces include the step's own spikes).

What an unsupervised network needs besides (each optional):

* homeostasis: an adaptive threshold per neuron (``LIF.per_neuron_threshold``, saved with the network), raised by
  ``theta_plus`` at each of its spikes and decaying back to the configured threshold with ``tau_theta`` steps (of
  one sample: a batch of B ages it by B steps per step); frozen outside training, as in Diehl & Cook;
* weight normalisation: after each batch, each neuron's incoming weights are scaled to sum to ``normalize``
  (Diehl & Cook: 78 for 784 inputs, 0.1 per input), or with ``normalize_norm: l2`` to that length: then the
  neuron driven most by an input is the one whose weights are most parallel to it (the largest cosine), where
  the sum favours neurons whose weights are concentrated on few inputs;
* label assignment (``end_epoch``): the training data runs with plasticity off; each neuron of the last block is
  assigned the class to which it responds most on average (none if it never fires), and ``predict`` scores a class
  by the mean spike count of its neurons. ``assignments`` is the rule's state, saved beside the weights.

``loss`` is the mean absolute weight change of a batch (STDP minimises no loss; it falls as the weights settle);
``spikes`` the last block's spikes per sample; ``accuracy`` the vote under the previous epoch's assignments.
Not distributable: the updates are local and in place, not gradients to average.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..errors import UnsupportedNetwork
from ..health import NonFiniteError, first_non_finite
from ..network import Block, Network
from .base import Batch, Rule


class STDPConfig(BaseModel):
    """``rule: {name: stdp, ...}``. Time constants are in time steps."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: Literal["stdp"] = "stdp"
    a_plus: float = Field(0.01, ge=0, description="LTP amplitude A+ (per pair, at lag 0)")
    a_minus: float = Field(
        0.0105, ge=0, description="LTD amplitude A-; the default A-/A+ = 1.05 makes the net effect depression"
    )
    tau_plus: float = Field(20.0, ge=1, description="decay of the presynaptic trace, (1 - 1/tau) per step")
    tau_minus: float = Field(20.0, ge=1, description="decay of the postsynaptic trace, (1 - 1/tau) per step")
    trace: Literal["all_to_all", "nearest"] = Field(
        "all_to_all", description="a spike adds 1 to its trace (all_to_all) or sets it to 1 (nearest)"
    )
    weight_dependence: Literal["additive", "multiplicative"] = "additive"
    mu: float = Field(1.0, gt=0, description="exponent of the multiplicative soft bounds")
    w_max: float = Field(1.0, gt=0, description="weights are kept in [0, w_max]")
    w_init: float = Field(0.3, ge=0, le=1, description="initial weights uniform in [0, w_init * w_max]")
    normalize: float | None = Field(
        None, gt=0, description="after each batch, scale each neuron's incoming weights to this norm; null: never"
    )
    normalize_norm: Literal["l1", "l2"] = Field(
        "l1", description="the norm that normalize fixes: l1 (the sum, Diehl & Cook) or l2 (the length)"
    )
    theta_plus: float = Field(
        0.0, ge=0, description="adaptive threshold: added to a neuron's threshold at each of its spikes; 0: none"
    )
    tau_theta: float | None = Field(
        None, ge=1, description="steps (of one sample) for the adaptive threshold to decay back; null: never"
    )


class Traces(NamedTuple):
    """One sample's traces of the block's inputs ``pre [B, in]`` and of its neurons ``post [B, out]``."""

    pre: Tensor
    post: Tensor


def decay_trace(trace: Tensor | None, spikes: Tensor, tau: float, nearest: bool) -> Tensor:
    """x[t] = (1 - 1/tau) x[t-1] + s[t]; ``nearest``: x[t] = 1 where s[t], else the decayed trace."""
    decayed = torch.zeros_like(spikes) if trace is None else trace * (1 - 1 / tau)
    return torch.where(spikes > 0, torch.ones_like(spikes), decayed) if nearest else decayed + spikes


def stdp_step(
    weight: Tensor, traces: Traces | None, pre: Tensor, post: Tensor, cfg: STDPConfig
) -> tuple[Tensor, Traces]:
    """The traces after step t's spikes (``pre [B, in]``, ``post [B, out]``) and that step's weight change
    ``[out, in]``, summed over the batch (module docstring)."""
    nearest = cfg.trace == "nearest"
    traces = Traces(
        decay_trace(None if traces is None else traces.pre, pre, cfg.tau_plus, nearest),
        decay_trace(None if traces is None else traces.post, post, cfg.tau_minus, nearest),
    )
    ltp = post.T @ traces.pre
    ltd = traces.post.T @ pre
    if cfg.weight_dependence == "multiplicative":
        ltp = ltp * (cfg.w_max - weight).clamp_min(0).pow(cfg.mu)
        ltd = ltd * weight.clamp_min(0).pow(cfg.mu)
    return cfg.a_plus * ltp - cfg.a_minus * ltd, traces


def adapt_threshold(threshold: Tensor, base: float, spikes: Tensor, cfg: STDPConfig) -> Tensor:
    """theta <- base + (1 - 1/tau_theta)^B (theta - base) + theta_plus * (spikes of each neuron, summed over the
    batch ``spikes [B, N]``): B samples side by side age the threshold by B steps, as their updates are summed."""
    decay = 1.0 if cfg.tau_theta is None else (1 - 1 / cfg.tau_theta) ** len(spikes)
    return base + decay * (threshold - base) + cfg.theta_plus * spikes.sum(0)


def normalize_rows(weight: Tensor, total: float, norm: Literal["l1", "l2"] = "l1") -> Tensor:
    """Each row (a neuron's incoming weights, non-negative) scaled to ``total``, its sum (l1) or its length (l2);
    an all-zero row stays zero."""
    sums = weight.sum(1, keepdim=True) if norm == "l1" else weight.norm(dim=1, keepdim=True)
    return torch.where(sums > 0, weight * (total / sums), weight)


def assign_labels(sums: Tensor, samples: Tensor) -> Tensor:
    """Each neuron's class: where its mean response ``sums[c] / samples[c]`` (``sums [C, N]``, ``samples [C]``) is
    highest; -1 for a neuron that never responded."""
    rates = sums / samples.clamp_min(1).unsqueeze(1)
    best, label = rates.max(0)
    return torch.where(best > 0, label, torch.full_like(label, -1))


def vote(counts: Tensor, assignments: Tensor, classes: int) -> Tensor:
    """Class scores ``[B, C]``: the mean spike count ``counts [B, N]`` of each class's assigned neurons (0 for a
    class without one)."""
    members = F.one_hot(assignments.clamp_min(0), classes).to(counts.dtype) * (assignments >= 0).unsqueeze(1)
    return counts @ members / members.sum(0).clamp_min(1)


class STDP(Rule):
    """Unsupervised pair-based STDP with adaptive thresholds and weight normalisation on a winner-take-all network;
    each neuron labelled by the class it answers most, classes predicted by their neurons' spikes (Diehl & Cook).

    Example::

        >>> import torch
        >>> from snnlab.network import Block, Network
        >>> from snnlab.neurons import LIF
        >>> from snnlab.objectives import Classification
        >>> from snnlab.optim import TrainConfig
        >>> from snnlab.synapses import LateralInhibition, Linear
        >>> net = Network([Block(Linear(64, 20, bias=False), neuron=LIF(tau=20.0, decay_input=False, reset="hard"),
        ...                      recurrent=LateralInhibition(strength=2.0))])
        >>> rule = STDP(STDPConfig(theta_plus=0.05, normalize=6.4), net, Classification(), TrainConfig())
        >>> x = (torch.rand(30, 8, 64) < 0.2).float()
        >>> metrics = rule.train_step(net, (x, torch.randint(0, 10, (8,))))
        >>> rule.end_epoch(net, [(x, torch.arange(8))])
        >>> rule.predict(net, x).shape
        torch.Size([8, 8])
    """

    name = "stdp"
    Config = STDPConfig
    config: STDPConfig
    distributable = False
    needs_output_layer = False

    @classmethod
    def supports(cls, config: STDPConfig, network: Network) -> None:  # type: ignore[override]
        for i, block in enumerate(network.blocks):
            where = f"network.blocks[{i}]"
            if not isinstance(block, Block) or not isinstance(block.synapse, nn.Linear):
                raise UnsupportedNetwork(f"{where}: STDP trains blocks of a linear synapse and a spiking neuron")
            if block.synapse.bias is not None:
                raise UnsupportedNetwork(
                    f"{where}: STDP learns weights only; give the synapse no bias (linear: {{out_features: "
                    f"{block.synapse.out_features}, bias: false}})"
                )
            if block.neuron is None or not block.neuron.spiking:
                raise UnsupportedNetwork(f"{where}: STDP needs a spiking neuron (its spikes drive the updates)")
            if block.norm is not None or len(block.post):
                raise UnsupportedNetwork(f"{where}: STDP takes no norm or post layers (the input must be spikes)")
            if config.theta_plus > 0 and not hasattr(block.neuron, "per_neuron_threshold"):
                raise UnsupportedNetwork(
                    f"{where}: theta_plus needs a neuron with a per-neuron threshold (lif, if), got "
                    f"{type(block.neuron).__name__}"
                )

    def setup(self, network: Network) -> None:
        """Non-negative initial weights (normalised if asked), per-neuron thresholds when they adapt, and the
        label-assignment buffers."""
        cfg = self.config
        self.base_thresholds: list[float] = []
        with torch.no_grad():
            for block in network.blocks:
                weight = block.synapse.weight
                weight.uniform_(0, cfg.w_init * cfg.w_max)
                if cfg.normalize is not None:
                    weight.copy_(normalize_rows(weight, cfg.normalize, cfg.normalize_norm))
                if cfg.theta_plus > 0:
                    self.base_thresholds.append(float(block.neuron.threshold))
                    block.neuron.per_neuron_threshold((block.synapse.out_features,))
        neurons = network.blocks[-1].synapse.out_features
        self.register_buffer("assignments", torch.full((neurons,), -1, dtype=torch.long))
        self.register_buffer("classes", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def train_step(self, network: Network, batch: Batch) -> dict[str, float]:
        x_seq, target = batch
        cfg = self.config
        weights = [block.synapse.weight for block in network.blocks]
        before = [w.clone() for w in weights]
        states, traces = None, [None] * len(weights)
        counts: Tensor | int = 0
        for x_t in x_seq:
            trace = network.trace_step(x_t, states)
            states = trace.states
            for k, (block, bt) in enumerate(zip(network.blocks, trace.blocks)):
                change, traces[k] = stdp_step(weights[k], traces[k], bt.input, bt.spikes, cfg)
                weights[k].add_(change).clamp_(0, cfg.w_max)
                if cfg.theta_plus > 0:
                    threshold = block.neuron.threshold
                    threshold.copy_(adapt_threshold(threshold, self.base_thresholds[k], bt.spikes, cfg))
            counts = counts + trace.output
        if cfg.normalize is not None:
            for w in weights:
                w.copy_(normalize_rows(w, cfg.normalize, cfg.normalize_norm))
        broken = first_non_finite((f"network.blocks.{k}.synapse.weight", w) for k, w in enumerate(weights))
        if broken is not None:
            raise NonFiniteError(f"the update made {broken} NaN or Inf", updated=True)
        change = sum((w - b).abs().sum() for w, b in zip(weights, before)) / sum(w.numel() for w in weights)
        scores = self._scores(counts)
        return {
            "loss": float(change),
            "spikes": float(counts.sum(1).mean()),
            **self.objective.metrics(scores, target),
        }

    @torch.no_grad()
    def end_epoch(self, network: Network, data: Iterable[Batch]) -> None:
        """Label assignment: each neuron's class from its responses to the training data, plasticity off."""
        super().end_epoch(network, data)
        was_training = network.training
        network.eval()
        sums, samples = torch.zeros(0, len(self.assignments)), torch.zeros(0)
        for x_seq, target in data:
            counts = network(x_seq)[0].sum(0).cpu()
            classes = int(target.max()) + 1
            if classes > len(samples):
                sums = F.pad(sums, (0, 0, 0, classes - len(samples)))
                samples = F.pad(samples, (0, classes - len(samples)))
            sums.index_add_(0, target.cpu(), counts)
            samples.index_add_(0, target.cpu(), torch.ones(len(target)))
        network.train(was_training)
        self.assignments.copy_(assign_labels(sums, samples))
        self.classes.fill_(len(samples))

    @torch.no_grad()
    def predict(self, network: Network, x_seq: Tensor) -> Tensor:
        """Scores ``[B, C]``: each class's assigned neurons' mean spike count over the sequence."""
        return self._scores(network(x_seq)[0].sum(0))

    def _scores(self, counts: Tensor) -> Tensor:
        return vote(counts, self.assignments, max(int(self.classes), 1))
