"""Layers after a block's neuron: pooling, dropout, flatten. Each is registered in ``POST`` under its block key
(``pool: 2``, ``dropout: 0.1``, ``flatten: true``) and runs per time step, folded over T."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from torch import nn


def pool(
    in_shape: tuple[int, ...],
    size: Annotated[int, Field(ge=1)] = 2,
    kind: Literal["max", "avg"] = "max",
    stride: Annotated[int | None, Field(ge=1)] = None,
) -> nn.Module:
    """Max or average pooling over the spatial axes of ``[C, H, W]`` maps (stride: the size)."""
    if len(in_shape) != 3:
        raise ValueError(f"pooling needs [C, H, W] input, got {list(in_shape)}")
    if size > min(in_shape[1:]):
        raise ValueError(f"pool size {size} exceeds the input's spatial size {list(in_shape[1:])}")
    cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    return cls(size, stride=stride)


def dropout(in_shape: tuple[int, ...], p: Annotated[float, Field(ge=0, lt=1)] = 0.5) -> nn.Module:
    """Elementwise dropout, drawn anew at every time step."""
    return nn.Dropout(p)


def flatten(in_shape: tuple[int, ...]) -> nn.Module:
    """[C, H, W] -> [C * H * W] per sample."""
    return nn.Flatten(start_dim=1)
