r"""Direct Feedback Alignment (Nøkland, arXiv 1609.01596): the output error reaches every hidden block through a
fixed random matrix, not back through the blocks above.

.. math::

    e = \partial L / \partial o, \qquad
    \partial L / \partial h_k[t] := B_k\, e[t], \qquad
    \delta_k = (B_k e) \odot f'(a_k), \qquad \Delta W_k \propto -\delta_k h_{k-1}^\top

o is the output block's sequence ``[T, B, C]`` and L the objective's loss (for cross-entropy on a mean readout,
e[t] = (softmax - onehot) / (B T)); h_k is hidden block k's neuron output and a_k its current; B_k is ``[N_k, C]``,
drawn once (entries N(0, 1/C), METHODS.md 7.1's choice, or U(-1/sqrt(C), 1/sqrt(C))) and kept as a buffer of
the rule, so it is checkpointed and saved with the weights. The output block learns from the true e. Each
learning block runs on its input detached, so f' is applied by autograd inside the block alone: ReLU's
derivative at T = 1 with ``nonspiking`` neurons, the surrogate (through time within the block) for spiking ones.
``alignment`` also reports, per hidden block, the cosine between its DFA update and backpropagation's gradient
(a second, full backward).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from ..block_fusion import unfused
from ..errors import UnsupportedNetwork
from ..network import Network, NetworkTrace
from .base import Batch, GradientRule
from .local import feature_width, learning_blocks, refuse_residual, trace_locally


class DFAConfig(BaseModel):
    """``rule: {name: dfa, feedback: normal, alignment: false, grad_clip: null}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["dfa"] = "dfa"
    feedback: Literal["normal", "uniform"] = Field(
        "normal", description="entries of B: N(0, 1/C) or U(-1/sqrt(C), 1/sqrt(C))"
    )
    alignment: bool = Field(False, description="report each hidden block's cosine with backpropagation's gradient")
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; null: no clipping")


class DFA(GradientRule):
    """Direct Feedback Alignment on a network that ends in the classes (flat hidden blocks: linear synapses).

    Example (T = 1, a ReLU MLP)::

        >>> import torch
        >>> from snnlab.network import Block, Network
        >>> from snnlab.neurons import NonSpiking
        >>> from snnlab.objectives import Classification
        >>> from snnlab.optim import TrainConfig
        >>> from snnlab.synapses import Linear
        >>> net = Network([Block(Linear(64, 32), neuron=NonSpiking()), Block(Linear(32, 10), neuron=NonSpiking("identity"))])
        >>> rule = DFA(DFAConfig(), net, Classification(), TrainConfig())
        >>> rule.feedback_0.shape                      # B for block 0: [32 neurons, 10 classes]
        torch.Size([32, 10])
        >>> sorted(rule.train_step(net, (torch.rand(1, 8, 64), torch.randint(0, 10, (8,)))))
        ['accuracy', 'loss']
    """

    name = "dfa"
    Config = DFAConfig
    config: DFAConfig

    @classmethod
    def supports(cls, config: DFAConfig, network: Network) -> None:  # type: ignore[override]
        refuse_residual(network, cls.name)
        layers = learning_blocks(network)
        if not layers:
            raise UnsupportedNetwork("network.blocks: dfa needs a block with a synapse and a neuron")
        for i in layers[:-1]:
            synapse = getattr(network.blocks[i], "synapse", None)
            if getattr(synapse, "out_features", None) is None:
                raise UnsupportedNetwork(
                    f"network.blocks[{i}]: dfa sizes its feedback matrix by a hidden block's width, known for a "
                    "linear synapse; use linear hidden blocks"
                )

    def setup(self, network: Network) -> None:
        self.layers = learning_blocks(network)
        self.hidden = self.layers[:-1]
        classes = feature_width(network.blocks[self.layers[-1]]) or 1
        for i in self.hidden:
            shape = (feature_width(network.blocks[i]) or 1, classes)
            if self.config.feedback == "normal":
                matrix = torch.randn(shape) / math.sqrt(classes)
            else:
                matrix = (torch.rand(shape) * 2 - 1) / math.sqrt(classes)
            self.register_buffer(f"feedback_{i}", matrix)

    def feedback(self, i: int) -> Tensor:
        """B of hidden block ``i``, ``[N_i, C]``."""
        return getattr(self, f"feedback_{i}")

    def gradients(self, network: Network, x_seq: Tensor, y: Tensor) -> tuple[NetworkTrace, Tensor]:
        """Accumulate DFA's gradients: the true one for the output block, B_k e at each hidden block's neuron
        output. Returns the trace and the loss."""
        with unfused():  # the feedback reaches every hidden block's spikes
            trace = trace_locally(network, x_seq, self.layers)
        loss = self.objective.loss(trace, y)
        (error,) = torch.autograd.grad(loss, trace.output, retain_graph=True)
        self.backward(loss)
        if self.hidden:
            outputs = tuple(trace.blocks[i].spikes for i in self.hidden)
            self.backward(outputs, tuple(error @ self.feedback(i).T for i in self.hidden))
        return trace, loss

    def train_step(self, network: Network, batch: Batch) -> dict[str, float]:
        x_seq, y = batch
        self.zero_grad()
        trace, loss = self.gradients(network, x_seq, y)
        metrics = self._alignment(network, x_seq, y) if self.config.alignment else {}
        self.step(network, trace.states, self.config.grad_clip)
        scores = self.objective.scores(trace.output.detach())
        return {"loss": loss.item(), **self.objective.metrics(scores, y), **metrics}

    def _alignment(self, network: Network, x_seq: Tensor, y: Tensor) -> dict[str, float]:
        """Cosine between each hidden block's accumulated DFA gradient and backpropagation's."""
        params = [list(network.blocks[i].parameters()) for i in self.hidden]
        flat = [p for ps in params for p in ps]
        bp = torch.autograd.grad(self.objective.loss(network.trace(x_seq), y), flat, allow_unused=True)
        metrics, start = {}, 0
        for i, ps in zip(self.hidden, params):
            mine = torch.cat([p.grad.flatten() if p.grad is not None else p.new_zeros(p.numel()) for p in ps])
            true = torch.cat([g.flatten() if g is not None else p.new_zeros(p.numel()) for g, p in zip(bp[start:], ps)])
            metrics[f"alignment_{i}"] = F.cosine_similarity(mine, true, dim=0).item()
            start += len(ps)
        return metrics
