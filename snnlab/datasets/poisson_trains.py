r"""Spike-train classification generated in code (METHODS.md Part A 5, the probabilistic meta neuron's task): each
class is a point process on every input channel, and classes differ in rate or, at the same rate, in temporal
structure. Every sample is ``[T, channels]`` of 0/1 spikes in bins of ``dt_ms``.

Processes, each at a mean rate r (Hz), independent across channels and samples:

* ``poisson``: a spike in each bin with probability r dt, independently (a Bernoulli process).
* ``regular``: a gamma renewal process of shape k (``regularity``): intervals ~ Gamma(k, 1/(k r)), coefficient of
  variation 1/sqrt(k) (k = 1 is Poisson); started before the window, so the window sees it in its steady state.
* ``bursty``: bursts of ``burst_size`` spikes ``burst_isi_ms`` apart, burst onsets a Bernoulli process of rate
  r / burst_size (so the mean rate is r, less the rare spikes that overlapping bursts or a bin's second spike lose).

The default classes, Poisson at 20, 40 and 60 Hz and regular and bursty at 40 Hz, make rate and structure both
matter: the three 40 Hz classes have the same mean count and differ only in their timing (and count spread).
The trains are drawn once from ``data_seed`` (numpy's PCG64), train and test from separate streams, so every run
sees the same data; the validation split is held out of train as for every dataset (``data.validation_fraction``).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import ConfigError
from .base import DatasetSplits, check_sample_size

Process = Literal["poisson", "regular", "bursty"]


class TrainClass(BaseModel):
    """One class: its process and its mean rate."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    process: Process = "poisson"
    rate: float = Field(gt=0, description="mean firing rate in Hz")

    def __repr__(self) -> str:
        return f"{{process: {self.process}, rate: {self.rate:g}}}"


DEFAULT_CLASSES = (
    TrainClass(process="poisson", rate=20.0),
    TrainClass(process="poisson", rate=40.0),
    TrainClass(process="regular", rate=40.0),
    TrainClass(process="bursty", rate=40.0),
    TrainClass(process="poisson", rate=60.0),
)


class SpikeTrains(Dataset):
    """Samples ``[N, T, C]`` of 0/1 (stored as uint8) and labels ``[N]``, served as float32 ``([T, C], label)``."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i].float(), self.y[i]


def poisson_trains(
    channels: Annotated[int, Field(ge=1)] = 20,
    time_steps: Annotated[int, Field(ge=1)] = 100,
    dt_ms: Annotated[float, Field(gt=0)] = 1.0,
    classes: Annotated[tuple[TrainClass, ...], Field(min_length=2)] = DEFAULT_CLASSES,
    samples_per_class: Annotated[int, Field(ge=2)] = 300,
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25,
    regularity: Annotated[float, Field(ge=1)] = 8.0,
    burst_size: Annotated[int, Field(ge=1)] = 4,
    burst_isi_ms: Annotated[float, Field(gt=0)] = 2.0,
    data_seed: Annotated[int, Field(ge=0)] = 0,
) -> DatasetSplits:
    """Trains of ``classes`` on ``channels`` inputs for ``time_steps`` bins of ``dt_ms``.

    Args:
        channels: input channels (independent trains) per sample.
        time_steps: T, bins per sample.
        dt_ms: the bin width in milliseconds (rates are in Hz).
        classes: a list of ``{process: poisson | regular | bursty, rate: Hz}``, one per class.
        samples_per_class: samples drawn per class, train and test together.
        test_fraction: share of each class's samples held out for testing.
        regularity: the gamma shape k of ``regular`` trains (interval CV 1/sqrt(k)).
        burst_size: spikes per burst of ``bursty`` trains.
        burst_isi_ms: interval between the spikes of a burst (at least one bin).
        data_seed: seed of the trains; fixed, so that every run trains and tests on the same data.
    """
    check_sample_size("data.time_steps", time_steps, (channels,))
    for k, spec in enumerate(classes):
        if spec.rate * dt_ms / 1000 > 1:
            raise ConfigError(
                [
                    (
                        f"data.classes[{k}].rate",
                        f"{spec.rate} Hz is more than one spike per {dt_ms} ms bin; lower it or dt_ms",
                    )
                ]
            )
    n_test = math.ceil(test_fraction * samples_per_class)
    if n_test >= samples_per_class:
        raise ConfigError([("data.test_fraction", f"leaves no training sample of the {samples_per_class} per class")])
    gap = max(1, round(burst_isi_ms / dt_ms))
    streams = [np.random.default_rng(child) for child in np.random.SeedSequence(data_seed).spawn(2)]

    def draw(rng: np.random.Generator, n: int) -> SpikeTrains:
        parts = [
            _trains(rng, spec, n, time_steps, channels, dt_ms / 1000, regularity, burst_size, gap) for spec in classes
        ]
        labels = np.repeat(np.arange(len(classes)), n)
        order = rng.permutation(len(labels))
        return SpikeTrains(torch.from_numpy(np.concatenate(parts)[order]), torch.from_numpy(labels[order]).long())

    return DatasetSplits(
        train=draw(streams[0], samples_per_class - n_test),
        test=draw(streams[1], n_test),
        input_shape=(channels,),
        num_classes=len(classes),
    )


def _trains(
    rng: np.random.Generator,
    spec: TrainClass,
    n: int,
    steps: int,
    channels: int,
    dt: float,
    regularity: float,
    burst_size: int,
    gap: int,
) -> np.ndarray:
    """``n`` samples ``[n, steps, channels]`` (uint8) of one class; ``dt`` in seconds."""
    if spec.process == "poisson":
        return (rng.random((n, steps, channels)) < spec.rate * dt).astype(np.uint8)
    if spec.process == "bursty":
        span = (burst_size - 1) * gap  # bursts that start this many bins before the window reach into it
        onsets = rng.random((n, steps + span, channels)) < spec.rate / burst_size * dt
        trains = np.zeros((n, steps, channels), dtype=bool)
        for j in range(burst_size):
            trains |= onsets[:, span - j * gap : span - j * gap + steps]
        return trains.astype(np.uint8)
    return _gamma_renewal(rng, spec.rate, regularity, n, steps, channels, dt)


def _gamma_renewal(
    rng: np.random.Generator, rate: float, shape: float, n: int, steps: int, channels: int, dt: float
) -> np.ndarray:
    """Gamma renewal trains of mean rate ``rate``, binned (two spikes in one bin make one); the process starts
    ``warmup`` (five mean intervals) before the window, so that the window sees it in its steady state."""
    warmup, length = 5 / rate, steps * dt + 5 / rate
    count = math.ceil(2 * rate * length + 20)
    times = np.cumsum(rng.gamma(shape, 1 / (shape * rate), size=(n, channels, count)), axis=-1)
    while (times[..., -1] < length).any():  # too few intervals drawn (vanishingly rare): draw more
        more = rng.gamma(shape, 1 / (shape * rate), size=(n, channels, count))
        times = np.concatenate([times, times[..., -1:] + np.cumsum(more, axis=-1)], axis=-1)
    bins = np.floor((times - warmup) / dt)
    sample, channel, _ = np.nonzero((bins >= 0) & (bins < steps))
    inside = bins[(bins >= 0) & (bins < steps)].astype(np.int64)
    trains = np.zeros((n, steps, channels), dtype=np.uint8)
    trains[sample, inside, channel] = 1
    return trains
