"""The contract of an objective: what the network's output is for, apart from how a rule trains it.

An objective owns the loss over the sequence and per step, the targets it accepts (``[B]`` or ``[T, B]``),
the scores used for prediction, the metrics and which of them chooses the best epoch. It is a module, built
by the runner from the ``objective:`` section and owned by the rule (so its parameters are trained and saved
with the rule's state). Regularisation terms of the network's modules (``NetworkTrace.regularization``) are
added here, so no rule special-cases them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn

from ..network import NetworkTrace


class Objective(nn.Module):
    """Base of objectives (``classification``, ...)."""

    best: ClassVar[tuple[str, Literal["max", "min"]]]
    """The metric (a key of ``metrics``) whose best value on the evaluation split picks the best epoch."""

    @property
    def membrane_output(self) -> bool:
        """Whether the output block's default neuron is replaced by its membrane-only form."""
        return False

    def check(self, out_shape: tuple[int, ...], num_classes: int) -> None:
        """Raise ``ValueError`` when a network ending in ``out_shape`` cannot serve this objective."""

    def loss(self, trace: NetworkTrace, target: Tensor) -> Tensor:
        """The loss of a whole sequence's trace, regularisation terms included."""
        raise NotImplementedError

    def step_loss(self, trace: NetworkTrace, target: Tensor, t: int, T: int) -> Tensor:
        """The share of step ``t`` of ``T`` in the loss, from that step's trace (``Network.trace_step``)."""
        raise NotImplementedError

    def chunk_loss(self, trace: NetworkTrace, target: Tensor, start: int, T: int) -> Tensor:
        """The summed shares of steps ``start`` .. ``start + C - 1`` of ``T``, from the trace of those C steps (a
        sequence ``[C, B, ...]``, as ``Network.trace`` of the chunk gives it): what a rule that backpropagates several
        steps at once needs (SLTT). This default adds ``step_loss`` of each step, the chunk's regularisation counted
        C times at the first (its term is a time average, each step's share is 1/T of it)."""
        total = None
        for i, out in enumerate(trace.output):
            reg = None if i > 0 or trace.regularization is None else trace.regularization * len(trace.output)
            step = self.step_loss(trace._replace(output=out, regularization=reg), target, start + i, T)
            total = step if total is None else total + step
        return total

    def scores(self, out_seq: Tensor) -> Tensor:
        """What ``predict`` returns for an output sequence."""
        raise NotImplementedError

    def metrics(self, scores: Tensor, target: Tensor) -> dict[str, float]:
        """Means over the batch, of predictions ``scores`` against ``target``."""
        raise NotImplementedError


def with_regularization(loss: Tensor, trace: NetworkTrace, share: float = 1.0) -> Tensor:
    """``loss`` plus ``share`` times the trace's regularisation terms, if any."""
    return loss if trace.regularization is None else loss + share * trace.regularization
