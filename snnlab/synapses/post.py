"""Layers after a block's neuron: pooling, dropout, flatten. Each is registered in ``POST`` under its block key
(``pool: 2``, ``dropout: 0.1``, ``flatten: true``) and runs per time step, folded over T.

NIR: average and sum pooling are ``AvgPool2d`` and ``SumPool2d``, flatten is ``Flatten``; dropout is the identity
at inference (no node); max pooling has no NIR node and is refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field
from torch import nn

from ..export.registry import (
    ExportContext,
    ImportContext,
    NIRUnsupported,
    Part,
    nir_export,
    nir_import,
    one_int,
    refuse_nir,
)


def pool(
    in_shape: tuple[int, ...],
    size: Annotated[int, Field(ge=1)] = 2,
    kind: Literal["max", "avg", "sum"] = "max",
    stride: Annotated[int | None, Field(ge=1)] = None,
) -> nn.Module:
    """Max, average or sum pooling over the spatial axes of ``[C, H, W]`` maps (stride: the size). Sum pooling
    (an average times the window's size) is what spiking hardware does; max pooling has no NIR node."""
    if len(in_shape) != 3:
        raise ValueError(f"pooling needs [C, H, W] input, got {list(in_shape)}")
    if size > min(in_shape[1:]):
        raise ValueError(f"pool size {size} exceeds the input's spatial size {list(in_shape[1:])}")
    if kind == "max":
        return nn.MaxPool2d(size, stride=stride)
    return nn.AvgPool2d(size, stride=stride, divisor_override=1 if kind == "sum" else None)


def dropout(in_shape: tuple[int, ...], p: Annotated[float, Field(ge=0, lt=1)] = 0.5) -> nn.Module:
    """Elementwise dropout, drawn anew at every time step."""
    return nn.Dropout(p)


def flatten(in_shape: tuple[int, ...]) -> nn.Module:
    """[C, H, W] -> [C * H * W] per sample."""
    return nn.Flatten(start_dim=1)


refuse_nir(nn.MaxPool2d, "max pooling has no NIR node; train with pool: {kind: avg} or {kind: sum} to export")


@nir_export(nn.AvgPool2d)
def pool_to_nir(module: nn.AvgPool2d, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """``nir.SumPool2d`` for sum pooling, ``nir.AvgPool2d`` for the average."""
    import nir

    if module.ceil_mode or one_int(module.padding, "padding") != 0:
        raise NIRUnsupported("pooling with ceil_mode or padding (snnlab's pool has neither)")
    node = nir.SumPool2d if module.divisor_override == 1 else nir.AvgPool2d
    pair = [np.array([value] * 2 if np.ndim(value) == 0 else value) for value in (module.kernel_size, module.stride)]
    return [node(kernel_size=pair[0], stride=pair[1], padding=np.array([0, 0]))]


@nir_import("AvgPool2d", "SumPool2d")
def pool_from_nir(node: Any, ctx: ImportContext) -> Part:
    if one_int(node.padding, "padding") != 0:
        raise NIRUnsupported(f"padding {np.asarray(node.padding).tolist()}; snnlab's pool has none")
    kind = "sum" if type(node).__name__ == "SumPool2d" else "avg"
    size, stride = one_int(node.kernel_size, "kernel size"), one_int(node.stride, "stride")
    return Part("post", "pool", {"size": size, "kind": kind, "stride": stride})


@nir_export(nn.Dropout)
def dropout_to_nir(module: nn.Dropout, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """Nothing: dropout is the identity at inference."""
    return []


@nir_export(nn.Flatten)
def flatten_to_nir(module: nn.Flatten, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """``nir.Flatten`` of one sample's axes (NIR counts axes without the batch)."""
    import nir

    return [nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)]


@nir_import("Flatten")
def flatten_from_nir(node: Any, ctx: ImportContext) -> Part:
    shape = node.input_type.get("input") if node.input_type else None
    rank = len(shape) if shape is not None else None
    if node.start_dim != 0 or node.end_dim not in (-1, None if rank is None else rank - 1):
        raise NIRUnsupported(f"flatten of axes {node.start_dim}..{node.end_dim}; snnlab flattens all of a sample's")
    return Part("post", "flatten")
