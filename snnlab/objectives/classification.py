r"""Classification: cross-entropy of the readout's class scores against labels ``[B]``.

.. math::

    L = \mathrm{CE}(\mathrm{readout}(o[1..T]), y) + R \qquad
    L_t = \tfrac{1}{T} \big(\mathrm{CE}(\mathrm{readout}(o[t]), y) + R_t\big) \text{ (per step)}

with o the output block's sequence, R the modules' regularisation terms and CE with optional label smoothing.
With ``tet: lambda`` each step's scores are trained instead (TET, Deng et al., ICLR 2022; the per-step loss of SLTT's
code, Meng et al. 2023), with a mean-squared pull of every score toward ``tet_target`` (phi):

.. math::

    L_t = \tfrac{1}{T} \big((1 - \lambda)\, \mathrm{CE}(\mathrm{readout}(o[t]), y)
        + \lambda\, \mathrm{MSE}(\mathrm{readout}(o[t]), \phi) + R_t\big) \qquad L = \textstyle\sum_t L_t
Metric: ``accuracy``, the share of samples whose highest score is the label; the best epoch has the highest.

Example::

    >>> import torch
    >>> obj = Classification()
    >>> obj.scores(torch.ones(4, 2, 3)).shape          # [T, B, C] -> [B, C]
    torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
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
        tet: lambda of TET's loss, every step's scores trained (0: per-step cross-entropy alone); null: the
            cross-entropy of the readout over the whole sequence. Per-step rules (SLTT) always train each step's
            scores, with lambda 0 when null.
        tet_target: phi, the value TET's mean-squared term pulls every score toward.
    """

    best = ("accuracy", "max")

    def __init__(
        self,
        readout: ReadoutSpec = "mean_membrane",  # type: ignore[valid-type]
        label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0,
        swap_output_neuron: bool = True,
        tet: Annotated[float, Field(ge=0, le=1)] | None = None,
        tet_target: float = 1.0,
    ) -> None:
        super().__init__()
        self.readout: Readout = READOUTS.build(_as_config(readout))
        self.label_smoothing = label_smoothing
        self.swap_output_neuron = swap_output_neuron
        self.tet = tet
        self.tet_target = tet_target

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
        if self.tet is not None:
            return self.chunk_loss(trace, target, 0, len(trace.output))
        ce = F.cross_entropy(self.scores(trace.output), self._targets(target), label_smoothing=self.label_smoothing)
        return with_regularization(ce, trace)

    def step_loss(self, trace: NetworkTrace, target: Tensor, t: int, T: int) -> Tensor:
        return self.chunk_loss(trace._replace(output=trace.output.unsqueeze(0)), target, t, T)

    def chunk_loss(self, trace: NetworkTrace, target: Tensor, start: int, T: int) -> Tensor:
        """Every step's scores at once: the readout of each step, folded into the batch."""
        steps = len(trace.output)
        scores = self.scores(trace.output.flatten(0, 1).unsqueeze(0))
        labels = self._targets(target).repeat(steps)
        loss = F.cross_entropy(scores, labels, label_smoothing=self.label_smoothing)
        if self.tet:
            pull = F.mse_loss(scores, torch.full_like(scores, self.tet_target))
            loss = (1 - self.tet) * loss + self.tet * pull
        return with_regularization(loss * steps, trace, steps) / T

    def scores(self, out_seq: Tensor) -> Tensor:
        return self.readout(out_seq)

    def metrics(self, scores: Tensor, target: Tensor) -> dict[str, float]:
        return {"accuracy": (scores.argmax(1) == self._targets(target)).float().mean().item()}

    def extra_repr(self) -> str:
        tet = "" if self.tet is None else f", tet={self.tet}, tet_target={self.tet_target}"
        return f"label_smoothing={self.label_smoothing}, swap_output_neuron={self.swap_output_neuron}{tet}"


def _as_config(spec: Any) -> Any:
    """A readout option as its validated config (Python callers may pass the name)."""
    from pydantic import TypeAdapter

    return TypeAdapter(ReadoutSpec).validate_python(spec) if not hasattr(spec, "name") else spec


__all__ = ["Classification"]
