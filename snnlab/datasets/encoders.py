"""Encoders: turn a static sample ``[...]`` with values in [0, 1] into a sequence ``[T, ...]``.

* ``direct``: the value itself at every step (constant current; the first layer does MACs).
* ``poisson``: a spike with probability ``clip(gain * x, 0, 1)`` at every step, independently.
* ``latency``: one spike per input, earlier for larger values; inputs at or below ``threshold`` never spike.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.utils.data import Dataset

from ..registry import Registry


class Encoder(BaseModel):
    """Static sample in, ``[T, ...]`` sequence out."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: str

    def __call__(self, x: Tensor, time_steps: int, generator: torch.Generator | None = None) -> Tensor:
        """Encode ``x``; random encoders draw from ``generator`` (None: torch's global one)."""
        raise NotImplementedError


class Direct(Encoder):
    """x[t] = x for every t."""

    name: Literal["direct"] = "direct"

    def __call__(self, x: Tensor, time_steps: int, generator: torch.Generator | None = None) -> Tensor:
        return x.unsqueeze(0).expand(time_steps, *x.shape).contiguous()


class Poisson(Encoder):
    """s[t] ~ Bernoulli(clip(gain x, 0, 1)), as snnTorch's ``spikegen.rate``."""

    name: Literal["poisson"] = "poisson"
    gain: float = Field(1.0, gt=0)

    def __call__(self, x: Tensor, time_steps: int, generator: torch.Generator | None = None) -> Tensor:
        p = (self.gain * x).clamp(0, 1)
        return (torch.rand(time_steps, *x.shape, generator=generator) < p).to(x.dtype)


class Latency(Encoder):
    """Time-to-first-spike: one spike at step t(x), none for x <= threshold.

    ``linear``: t = (1 - x) (T - 1). ``rc``: the charging time of an RC circuit,
    t = tau ln(x / (x - threshold)) steps (snnTorch's ``spikegen.latency``); with
    ``normalize`` the sample's latest spike is stretched to step T - 1, as snnTorch
    does; without it, spikes that would come after step T - 1 are dropped.
    """

    name: Literal["latency"] = "latency"
    mode: Literal["linear", "rc"] = "linear"
    tau: float = Field(5.0, gt=0)
    threshold: float = Field(0.01, ge=0, lt=1)
    normalize: bool = True

    def spike_times(self, x: Tensor, time_steps: int) -> Tensor:
        """Fractional spike step of each input (inf where it does not spike)."""
        fires = x > self.threshold
        if self.mode == "linear":
            t = (1 - x.clamp(0, 1)) * (time_steps - 1)
        else:
            safe = torch.where(fires, x, torch.ones_like(x))
            t = self.tau * torch.log(safe / (safe - self.threshold))
            if self.normalize and fires.any():
                t = t * (time_steps - 1) / t[fires].max().clamp_min(1e-12)
        return torch.where(fires, t, torch.full_like(t, math.inf))

    def __call__(self, x: Tensor, time_steps: int, generator: torch.Generator | None = None) -> Tensor:
        step = self.spike_times(x, time_steps).round()
        grid = torch.arange(time_steps, dtype=x.dtype).view(-1, *([1] * x.dim()))
        return (grid == step).to(x.dtype)


ENCODERS: Registry[Encoder] = Registry("encoder", key="name")
for _cls in (Direct, Poisson, Latency):
    ENCODERS.register(_cls.model_fields["name"].default, _cls, config=_cls)

EncoderSpec = ENCODERS.schema()


class EncodedDataset(Dataset):
    """Static samples ``x [N, ...]`` and labels ``y [N]``, served as ``([T, ...], label)`` through an encoder."""

    def __init__(self, x: Tensor, y: Tensor, encoder: Encoder, time_steps: int) -> None:
        if len(x) != len(y):
            raise ValueError(f"{len(x)} samples but {len(y)} labels")
        self.x, self.y, self.encoder, self.time_steps = x, y, encoder, time_steps

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.sample(i, None)

    def sample(self, i: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Sample ``i``, its random encoding drawn from ``generator`` (see ``snnlab.sampling.SeededSamples``)."""
        return self.encoder(self.x[i], self.time_steps, generator), self.y[i]
