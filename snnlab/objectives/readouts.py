"""Readouts: how the output block's sequence ``[T, B, C]`` becomes class scores ``[B, C]``.

Each is a module (so a readout may hold parameters, trained and saved with the objective that owns it),
registered in ``READOUTS`` by its YAML name. ``reads`` says whether it wants spikes or membranes; under a
membrane readout the output block's default neuron becomes its membrane-only form (LIF -> LI), which the
classification objective's ``swap_output_neuron`` controls and ``snnlab check`` reports.
Applied to one step ``out_seq[t:t+1]`` a readout gives that step's scores (per-step losses).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn

from ..registry import Registry


class Readout(nn.Module):
    """Turns the output sequence ``[T, B, ...]`` into scores ``[B, ...]`` by reducing the time axis."""

    reads: ClassVar[Literal["spikes", "membrane"]]


class SpikeCount(Readout):
    """Scores = number of output spikes over time (rate coding)."""

    reads = "spikes"

    def forward(self, out_seq: Tensor) -> Tensor:
        return out_seq.sum(0)


class MeanMembrane(Readout):
    """Scores = output membrane averaged over time."""

    reads = "membrane"

    def forward(self, out_seq: Tensor) -> Tensor:
        return out_seq.mean(0)


class MaxMembrane(Readout):
    """Scores = the highest output membrane reached at any step."""

    reads = "membrane"

    def forward(self, out_seq: Tensor) -> Tensor:
        return out_seq.amax(0)


class SoftmaxSum(Readout):
    """Scores = sum over time of the softmax over classes of each step's membrane, sum_t softmax(v[t]): the
    scores of Hammouamri et al.'s delays paper, whose loss is the cross-entropy of these sums (its ``loss: sum``)."""

    reads = "membrane"

    def forward(self, out_seq: Tensor) -> Tensor:
        return out_seq.softmax(-1).sum(0)


READOUTS: Registry[Readout] = Registry("readout", key="name")
READOUTS.register("spike_count", SpikeCount)
READOUTS.register("mean_membrane", MeanMembrane)
READOUTS.register("max_membrane", MaxMembrane)
READOUTS.register("softmax_sum", SoftmaxSum)
