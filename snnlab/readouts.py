"""Readouts: how the output block's sequence ``[T, B, C]`` becomes class scores ``[B, C]``.

A membrane readout makes the output block non-spiking (its neuron is replaced
by the membrane-only form of the default neuron, e.g. LIF -> leaky integrator)
unless that block names its own neuron.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict
from torch import Tensor

from .registry import Registry


class Readout(BaseModel):
    """Turns the output sequence into scores; ``reads`` says whether it wants spikes or membranes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    reads: ClassVar[Literal["spikes", "membrane"]]

    def __call__(self, out_seq: Tensor) -> Tensor:
        raise NotImplementedError


class SpikeCount(Readout):
    """Scores = number of output spikes over time (rate coding)."""

    name: Literal["spike_count"] = "spike_count"
    reads: ClassVar[Literal["spikes", "membrane"]] = "spikes"

    def __call__(self, out_seq: Tensor) -> Tensor:
        return out_seq.sum(0)


class MeanMembrane(Readout):
    """Scores = output membrane averaged over time."""

    name: Literal["mean_membrane"] = "mean_membrane"
    reads: ClassVar[Literal["spikes", "membrane"]] = "membrane"

    def __call__(self, out_seq: Tensor) -> Tensor:
        return out_seq.mean(0)


class MaxMembrane(Readout):
    """Scores = the highest output membrane reached at any step."""

    name: Literal["max_membrane"] = "max_membrane"
    reads: ClassVar[Literal["spikes", "membrane"]] = "membrane"

    def __call__(self, out_seq: Tensor) -> Tensor:
        return out_seq.amax(0)


READOUTS: Registry[Readout] = Registry("readout", key="name")
for _cls in (SpikeCount, MeanMembrane, MaxMembrane):
    READOUTS.register(_cls.model_fields["name"].default, _cls, config=_cls)

ReadoutSpec = READOUTS.schema()
