r"""Classification: cross-entropy of the readout's class scores against labels ``[B]``.

.. math::

    L = \mathrm{CE}(\mathrm{readout}(o[1..T]), y) + R \qquad
    L_t = \tfrac{1}{T} \big(\mathrm{CE}(\mathrm{readout}(o[t]), y) + R_t\big) \text{ (per step)}

with o the output block's sequence, R the modules' regularisation terms and CE with optional label smoothing.
Metric: ``accuracy``, the share of samples whose highest score is the label; the best epoch has the highest.

Example::

    >>> import torch
    >>> obj = Classification()
    >>> obj.scores(torch.ones(4, 2, 3)).shape          # [T, B, C] -> [B, C]
    torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Annotated, Any

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..network import NetworkTrace
from .base import Objective, with_regularization
from .readouts import READOUTS, Readout

ReadoutSpec = READOUTS.schema()


class Classification(Objective):
    """Class scores by a readout, softmax cross-entropy, accuracy.

    Args:
        readout: how the output sequence becomes scores: ``mean_membrane``, ``max_membrane``, ``softmax_sum`` or
            ``spike_count``.
        label_smoothing: cross-entropy label smoothing.
        swap_output_neuron: under a membrane readout, give the output block the membrane-only form of the
            default neuron (LIF -> LI); false keeps it as configured. ``snnlab check`` says when it happens.
    """

    best = ("accuracy", "max")

    def __init__(
        self,
        readout: ReadoutSpec = "mean_membrane",  # type: ignore[valid-type]
        label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0,
        swap_output_neuron: bool = True,
    ) -> None:
        super().__init__()
        self.readout: Readout = READOUTS.build(_as_config(readout))
        self.label_smoothing = label_smoothing
        self.swap_output_neuron = swap_output_neuron

    @property
    def membrane_output(self) -> bool:
        return self.swap_output_neuron and self.readout.reads == "membrane"

    def check(self, out_shape: tuple[int, ...], num_classes: int) -> None:
        if tuple(out_shape) != (num_classes,):
            raise ValueError(
                f"the network ends with shape {list(out_shape)} but the data has {num_classes} classes; "
                f"the last block must produce [{num_classes}]"
            )

    def _targets(self, target: Tensor) -> Tensor:
        if target.dim() != 1:
            raise ValueError(f"classification takes one label per sample [B], got targets {list(target.shape)}")
        return target

    def loss(self, trace: NetworkTrace, target: Tensor) -> Tensor:
        ce = F.cross_entropy(self.scores(trace.output), self._targets(target), label_smoothing=self.label_smoothing)
        return with_regularization(ce, trace)

    def step_loss(self, trace: NetworkTrace, target: Tensor, t: int, T: int) -> Tensor:
        scores = self.scores(trace.output.unsqueeze(0))
        ce = F.cross_entropy(scores, self._targets(target), label_smoothing=self.label_smoothing)
        return with_regularization(ce, trace) / T

    def scores(self, out_seq: Tensor) -> Tensor:
        return self.readout(out_seq)

    def metrics(self, scores: Tensor, target: Tensor) -> dict[str, float]:
        return {"accuracy": (scores.argmax(1) == self._targets(target)).float().mean().item()}

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, swap_output_neuron={self.swap_output_neuron}"


def _as_config(spec: Any) -> Any:
    """A readout option as its validated config (Python callers may pass the name)."""
    from pydantic import TypeAdapter

    return TypeAdapter(ReadoutSpec).validate_python(spec) if not hasattr(spec, "name") else spec


__all__ = ["Classification"]
