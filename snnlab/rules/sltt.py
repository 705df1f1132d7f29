r"""Spatial learning through time (SLTT) and SLTT-K (Meng et al., ICCV 2023, arXiv 2302.14311).

SLTT drops the whole temporal route of BPTT's gradient: every step runs from its state detached (the membrane, the
reset and any other state), so the gradient of step t's loss reaches the weights through that step alone,

.. math::

    \nabla_\theta L = \sum_t \nabla_\theta L_t\big(\mathrm{network}(x[t];\ \mathrm{sg}(\mathrm{state}[t-1]))\big),

with :math:`L_t` the objective's per-step loss (cross-entropy of step t's scores over T, plus TET's MSE term when the
objective has ``tet``) and sg a stop-gradient. Memory holds one chunk's graph whatever T is; gradients accumulate
over the steps and the optimizer steps once per batch. SLTT-K (``k``) backpropagates only K distinct steps drawn at
random for each batch (the losses still divided by T, as the paper's code does); the other steps only advance the
states, without a graph, on the fused kernels.

``chunk`` steps are built and backpropagated together (``cut_trace``: one fused kernel per layer whose backward
drops the step-to-step term, batch norm per step): the gradient is the same as the paper's one step at a time
(``chunk: 1``), the memory that of ``chunk`` steps, and the per-step launch and autograd overhead divided by
``chunk``. A network with a recurrent connection or a stateful synapse runs step by step through
``Network.trace_step`` (recurrent input and synapse state are cut like the membrane). Batch norm uses each step's
own statistics, as the paper's per-step ``BatchNorm2d`` calls do.

Example::

    >>> import torch
    >>> from snnlab.network import Block, Network
    >>> from snnlab.neurons import LIF, LI
    >>> from snnlab.objectives import Classification
    >>> from snnlab.optim import TrainConfig
    >>> from snnlab.synapses import Linear
    >>> net = Network([Block(Linear(64, 32), neuron=LIF()), Block(Linear(32, 10), neuron=LI())])
    >>> rule = SLTT(SLTTConfig(k=2), net, Classification(), TrainConfig(epochs=1))
    >>> sorted(rule.train_step(net, (torch.rand(8, 16, 64), torch.randint(0, 10, (16,)))))
    ['accuracy', 'loss']
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from ..network import BlockTrace, Network, NetworkTrace
from ..seeding import sample_seed
from ..stateful import detach_state
from .base import Batch, GradientRule
from .cut_trace import cut_trace, unchunkable


class SLTTConfig(BaseModel):
    """``rule: {name: sltt, k: null, chunk: 1, grad_clip: null}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["sltt"] = "sltt"
    k: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="SLTT-K: backpropagate K distinct steps drawn at random for each batch, the others without a "
        "graph; null (or K >= T): every step",
    )
    chunk: Annotated[int, Field(ge=1)] = Field(
        1, description="steps built and backpropagated together: the same gradient, the memory of that many steps"
    )
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; null: no clipping")


class SLTT(GradientRule):
    """Per-step losses, each step's graph cut from the previous state, one update per batch."""

    name = "sltt"
    Config = SLTTConfig
    config: SLTTConfig

    def setup(self, network: Network) -> None:
        # SLTT-K's draws come from a generator of the rule's own, seeded by the run's seed (the global generator's when
        # the rule is built: the same on every process) and the batch count, so that every process draws the same steps
        # and a resumed run the same as one never stopped (both buffers are in the checkpoint).
        self.register_buffer("draw_seed", torch.tensor(torch.initial_seed() & (2**63 - 1)))
        self.register_buffer("draws", torch.tensor(0))
        self.by_chunks = unchunkable(network) is None

    def chosen_steps(self, T: int) -> list[bool]:
        """Which of the T steps this batch backpropagates: all for SLTT, K distinct ones at random for SLTT-K."""
        k = self.config.k
        if k is None or k >= T:
            return [True] * T
        generator = torch.Generator().manual_seed(sample_seed(int(self.draw_seed), int(self.draws), T))
        self.draws += 1
        chosen = [False] * T
        for t in torch.randperm(T, generator=generator)[:k].tolist():
            chosen[t] = True
        return chosen

    def train_step(self, network: Network, batch: Batch) -> dict[str, float]:
        x_seq, target = batch
        T = len(x_seq)
        chosen = self.chosen_steps(T)
        self.zero_grad()
        states, outputs, total = None, [], x_seq.new_zeros(())
        for start, stop in _segments(chosen, self.config.chunk):
            learn = chosen[start]
            with torch.set_grad_enabled(learn):
                trace = self._run(network, x_seq[start:stop], detach_state(states))
                if learn:
                    loss = self.objective.chunk_loss(trace, target, start, T)
                    self.backward(loss)
                    total += loss.detach()
            states = trace.states
            outputs.append(trace.output.detach())
        self.step(network, states, self.config.grad_clip)
        scores = self.objective.scores(torch.cat(outputs))
        # the step losses computed, scaled to all T steps (for SLTT-K an estimate of SLTT's loss)
        return {"loss": total.item() * T / sum(chosen), **self.objective.metrics(scores, target)}

    def _run(self, network: Network, x_seq: Tensor, states: list | None) -> NetworkTrace:
        """The chunk's trace, every step cut from the previous state."""
        if self.by_chunks:
            return cut_trace(network, x_seq, states)
        steps = []
        for x_t in x_seq:
            steps.append(network.trace_step(x_t, detach_state(states) if steps else states))
            states = steps[-1].states
        return _stacked(steps)


def _segments(chosen: list[bool], chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of steps that are all chosen (at most ``chunk`` long) or all not chosen."""
    segments, start = [], 0
    for t in range(1, len(chosen) + 1):
        if t == len(chosen) or chosen[t] != chosen[start] or (chosen[start] and t - start == chunk):
            segments.append((start, t))
            start = t
    return segments


def _stacked(steps: list[NetworkTrace]) -> NetworkTrace:
    """Per-step traces as the trace of their sequence: tensors stacked over time, the last states, and the mean of
    the steps' regularisation terms (a sequence's term is a time average)."""

    def stack(values: list) -> Tensor | None:
        return None if values[0] is None else torch.stack(values)

    blocks = [
        BlockTrace(*(stack([s.blocks[i][f] for s in steps]) for f in range(4)), steps[-1].blocks[i].state, None)
        for i in range(len(steps[0].blocks))
    ]
    reg = None if steps[0].regularization is None else stack([s.regularization for s in steps]).mean(0)
    return NetworkTrace(blocks, torch.stack([s.output for s in steps]), steps[-1].states, reg)
