r"""Backpropagation through time with surrogate gradients.

The whole sequence runs through autograd, so the gradient follows both the spatial path (block to block
within a step) and the temporal path (membrane from step t-1 to t, reset included unless the neuron detaches
it): :math:`\nabla_\theta L(\mathrm{network}(x[1..T]), y)` with the objective's loss L. Memory grows with T;
SLTT and rate-based BP trade exactness for constant memory.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from ..network import Network, NetworkTrace
from ..objectives import Objective
from ..optim import TrainConfig
from .base import Batch, GradientRule
from .graphed import GraphedTrace


class BPTTConfig(BaseModel):
    """``rule: {name: bptt, grad_clip: null}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["bptt"] = "bptt"
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; null: no clipping")


class BPTT(GradientRule):
    """The objective's loss of the whole sequence, one backward over all T steps (through CUDA graphs with
    ``train.cuda_graphs``: ``rules/graphed.py``)."""

    name = "bptt"
    Config = BPTTConfig
    config: BPTTConfig

    def __init__(self, config: BPTTConfig, network: Network, objective: Objective, train: TrainConfig) -> None:
        super().__init__(config, network, objective, train)
        self._graphed = GraphedTrace(network) if train.cuda_graphs else None

    def _trace(self, network: Network, x_seq: Tensor) -> NetworkTrace:
        return network.trace(x_seq) if self._graphed is None else self._graphed(x_seq)

    def train_step(self, network: Network, batch: Batch) -> dict[str, float]:
        x_seq, target = batch
        self.zero_grad()
        trace = self._trace(network, x_seq)
        loss = self.objective.loss(trace, target)
        self.backward(loss)
        self.step(network, trace.states, self.config.grad_clip)
        scores = self.objective.scores(trace.output.detach())
        return {"loss": loss.item(), **self.objective.metrics(scores, target)}
