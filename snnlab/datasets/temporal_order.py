"""A memory task generated in code: the temporal order of two spike bursts far apart in time (after Hochreiter and
Schmidhuber's temporal order problem, LSTM 1997), where a network without a slow variable is at chance.

Each sample shows two different symbols, each a burst of ``burst_steps`` steps on its own group of
``channels_per_symbol`` input channels (a spike with probability ``rate`` per step and channel), the second burst's
onset ``min_gap`` to ``max_gap`` steps after the first's, on background noise (probability ``noise``); the first
onset is drawn so that at least ``tail_steps`` quiet steps end the sequence. The class is whether the lower-numbered
of the two symbols came first. Every symbol appears as often in either class and in either position, so the spike
count of every channel has the same distribution in both: only the order tells them apart, and a layer must carry
the first burst across the gap to know it. A LIF membrane forgets in a few tau; an adaptive threshold (ALIF) that
the first burst raised still lowers the response to the second burst tau_a later, when the two symbols share
neurons.

The first burst is always the earlier one, so anything that tells absolute time tells the order too: a response
cut short by the end of the sequence (hence ``tail_steps``), or a clock in the network, such as neurons that a
constant drive (a bias) makes fire tonically from t = 0. With a hidden bias and a 5-step tail, LIF and CUBA-LIF
networks reached 57-69% here; without either, 47-50% (``experiments/temporal_order_alif.yaml`` has no hidden bias).

Example::

    >>> from snnlab.datasets import temporal_order
    >>> splits = temporal_order(train_samples=100, test_samples=20)
    >>> x, label = splits.train[0]
    >>> x.shape, splits.num_classes
    (torch.Size([80, 32]), 2)
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import ConfigError
from .base import DatasetSplits, check_sample_size


class Sequences(Dataset):
    """Binary sequences ``[N, T, C]`` (stored as bytes) and labels ``[N]``, served as ``(float [T, C], label)``."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i].float(), self.y[i]


def order_samples(
    n: int,
    generator: torch.Generator,
    *,
    time_steps: int,
    symbols: int,
    channels_per_symbol: int,
    burst_steps: int,
    min_gap: int,
    max_gap: int,
    tail_steps: int,
    rate: float,
    noise: float,
) -> tuple[Tensor, Tensor]:
    """``n`` samples ``[n, T, symbols channels_per_symbol]`` (uint8) and their labels (1: the lower symbol first)."""
    first = torch.randint(symbols, (n,), generator=generator)
    second = (first + torch.randint(1, symbols, (n,), generator=generator)) % symbols  # any other symbol
    gap = torch.randint(min_gap, max_gap + 1, (n,), generator=generator)
    latest = time_steps - tail_steps - burst_steps - gap  # the first onset's last possible step, >= 0
    onset = (torch.rand(n, generator=generator) * (latest + 1)).long()
    t = torch.arange(time_steps)
    group = torch.arange(symbols * channels_per_symbol) // channels_per_symbol
    active = torch.zeros(n, time_steps, symbols * channels_per_symbol, dtype=torch.bool)
    for symbol, start in ((first, onset), (second, onset + gap)):
        in_time = (t >= start[:, None]) & (t < start[:, None] + burst_steps)  # [n, T]
        active |= in_time[:, :, None] & (group[None, None, :] == symbol[:, None, None])
    p = torch.where(active, rate, noise)
    x = (torch.rand(p.shape, generator=generator) < p).to(torch.uint8)
    return x, (first < second).long()


def temporal_order(
    time_steps: Annotated[int, Field(ge=2)] = 80,
    symbols: Annotated[int, Field(ge=2)] = 4,
    channels_per_symbol: Annotated[int, Field(ge=1)] = 8,
    burst_steps: Annotated[int, Field(ge=1)] = 5,
    min_gap: Annotated[int, Field(ge=1)] = 25,
    max_gap: Annotated[int, Field(ge=1)] = 40,
    tail_steps: Annotated[int, Field(ge=0)] = 25,
    rate: Annotated[float, Field(gt=0, le=1)] = 0.6,
    noise: Annotated[float, Field(ge=0, lt=1)] = 0.01,
    train_samples: Annotated[int, Field(ge=2)] = 2000,
    test_samples: Annotated[int, Field(ge=1)] = 500,
    data_seed: Annotated[int, Field(ge=0)] = 0,
) -> DatasetSplits:
    """Two bursts on two symbols' channels, ``min_gap``..``max_gap`` steps apart; the class is their order.

    Args:
        time_steps: T, the length of every sequence.
        symbols: how many symbols (channel groups) a sample's two bursts are drawn from.
        channels_per_symbol: input channels of each symbol; the input has symbols x channels_per_symbol.
        burst_steps: steps of each burst.
        min_gap: fewest steps from the first burst's onset to the second's (the memory the task needs).
        max_gap: most steps between the onsets.
        tail_steps: quiet steps at least after the second burst, so that its response ends within the sequence as
            the first's does: a readout that sums over time must not see the second cut short.
        rate: spike probability per step on a burst's channels.
        noise: spike probability per step elsewhere.
        train_samples: training sequences (a validation share is held out of them).
        test_samples: test sequences.
        data_seed: seed of the generated sequences, fixed so that every run sees the same data.
    """
    shape = (symbols * channels_per_symbol,)
    check_sample_size("data.time_steps", time_steps, shape)
    if max_gap < min_gap:
        raise ConfigError([("data.max_gap", f"{max_gap} is below min_gap ({min_gap})")])
    if burst_steps + max_gap + tail_steps > time_steps:
        raise ConfigError(
            [
                (
                    "data.time_steps",
                    f"{time_steps} steps cannot hold a burst, the largest gap and the tail: need at least "
                    f"burst_steps + max_gap + tail_steps = {burst_steps + max_gap + tail_steps}",
                )
            ]
        )
    options = dict(time_steps=time_steps, symbols=symbols, channels_per_symbol=channels_per_symbol,
                   burst_steps=burst_steps, min_gap=min_gap, max_gap=max_gap, tail_steps=tail_steps, rate=rate,
                   noise=noise)  # fmt: skip
    generator = torch.Generator().manual_seed(data_seed)
    train = Sequences(*order_samples(train_samples, generator, **options))
    test = Sequences(*order_samples(test_samples, generator, **options))
    return DatasetSplits(train=train, test=test, input_shape=shape, num_classes=2)
