"""Backpropagation through time with surrogate gradients.

The whole sequence runs through autograd, so the gradient follows both the
spatial path (block to block within a step) and the temporal path (membrane
from step t-1 to t, reset included unless the neuron detaches it). Memory
grows with T; SLTT and rate-based BP trade exactness for constant memory.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..losses import accuracy, cross_entropy
from ..network import Network
from .base import Batch, GradientRule


class BPTTConfig(BaseModel):
    """``rule: {name: bptt, label_smoothing: 0.0, grad_clip: null}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["bptt"] = "bptt"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; null: no clipping")


class BPTT(GradientRule):
    """Cross-entropy on the readout of the whole sequence, one backward over all T steps."""

    name = "bptt"
    Config = BPTTConfig
    config: BPTTConfig

    def train_step(self, network: Network, batch: Batch) -> dict[str, float]:
        x_seq, labels = batch
        out, states = network(x_seq)
        scores = network.readout(out)
        loss = cross_entropy(scores, labels, self.config.label_smoothing)
        self.apply_gradients(loss, network, self.config.grad_clip, states)
        return {"loss": loss.item(), "accuracy": accuracy(scores.detach(), labels)}
