"""Layers that sit around a synapse: batch norm, pooling, flatten, dropout.

All are applied per time step; on a sequence they run on ``[T * B, ...]``
(folded over T), so batch norm takes its statistics over time and batch together.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class PoolOptions(BaseModel):
    """``pool: 2`` or ``pool: {kind: max, size: 2, stride: 2}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["max", "avg"] = "max"
    size: int = Field(2, ge=1)
    stride: int | None = Field(None, ge=1)


def batch_norm(in_shape: tuple[int, ...]) -> nn.Module:
    """BatchNorm1d for flat features, BatchNorm2d for ``[C, H, W]`` maps."""
    if len(in_shape) == 1:
        return nn.BatchNorm1d(in_shape[0])
    if len(in_shape) == 3:
        return nn.BatchNorm2d(in_shape[0])
    raise ValueError(f"batch norm needs flat or [C, H, W] input, got {list(in_shape)}")


def pool(in_shape: tuple[int, ...], options: PoolOptions) -> nn.Module:
    """Max or average pooling over the spatial axes of ``[C, H, W]`` maps."""
    if len(in_shape) != 3:
        raise ValueError(f"pooling needs [C, H, W] input, got {list(in_shape)}")
    if options.size > min(in_shape[1:]):
        raise ValueError(f"pool size {options.size} exceeds the input's spatial size {list(in_shape[1:])}")
    cls = nn.MaxPool2d if options.kind == "max" else nn.AvgPool2d
    return cls(options.size, stride=options.stride)


def flatten() -> nn.Module:
    """[C, H, W] -> [C * H * W] per sample."""
    return nn.Flatten(start_dim=1)


def dropout(p: float) -> nn.Module:
    """Elementwise dropout, drawn anew at every time step."""
    return nn.Dropout(p)
