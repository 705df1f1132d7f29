"""2-D convolutional synapses, applied to each time step (folded over T). NIR: ``Conv2d``."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..export.registry import ExportContext, ImportContext, NIRUnsupported, Part, nir_export, nir_import, one_int
from .linear import numpy_of


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that can count the synaptic operations its input triggers."""

    def synaptic_ops(self, x: Tensor) -> Tensor:
        """Exact accumulate count for input ``x`` ``[N, C, H, W]``, borders and stride included.

        Each output position receives one accumulate per active input in its
        receptive field from each of the ``out_channels / groups`` filters that read it.
        """
        active = x.ne(0).to(self.weight.dtype)
        ones = torch.ones(
            self.groups, self.in_channels // self.groups, *self.kernel_size, dtype=active.dtype, device=active.device
        )
        per_group = F.conv2d(active, ones, None, self.stride, self.padding, self.dilation, self.groups)  # type: ignore[arg-type]
        return per_group.sum() * (self.out_channels // self.groups)


def conv(
    in_shape: tuple[int, ...],
    out_channels: Annotated[int, Field(ge=1)],
    kernel_size: Annotated[int, Field(ge=1)] = 3,
    stride: Annotated[int, Field(ge=1)] = 1,
    padding: Annotated[int, Field(ge=0)] = 0,
    in_channels: int | None = None,
    groups: Annotated[int, Field(ge=1)] = 1,
    bias: bool = True,
) -> Conv2d:
    """A Conv2d from ``in_shape`` ``[C, H, W]`` to ``out_channels`` maps."""
    channels = image_channels(in_shape, in_channels)
    return Conv2d(channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups, bias=bias)


def image_channels(in_shape: tuple[int, ...], in_channels: int | None) -> int:
    """The channels of a ``[C, H, W]`` ``in_shape``, checked against ``in_channels`` when given; else a
    ``ValueError`` saying what the previous block produces."""
    if len(in_shape) != 3:
        raise ValueError(f"expects an input [channels, height, width] but the previous block produces {list(in_shape)}")
    if in_channels is not None and in_channels != in_shape[0]:
        raise ValueError(f"in_channels is {in_channels} but the previous block produces {in_shape[0]} channels")
    return in_shape[0]


@nir_export(Conv2d)
def conv_to_nir(module: Conv2d, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """``nir.Conv2d`` for input maps of ``shape`` ``[C, H, W]`` (a zero bias when the layer has none)."""
    import nir

    bias = numpy_of(module.bias)
    return [
        nir.Conv2d(
            input_shape=tuple(shape[1:]), weight=numpy_of(module.weight), stride=module.stride,
            padding=module.padding, dilation=module.dilation, groups=module.groups,
            bias=np.zeros(module.out_channels, dtype=np.float32) if bias is None else bias,
        )
    ]  # fmt: skip


@nir_import("Conv2d")
def conv_from_nir(node: Any, ctx: ImportContext) -> Part:
    weight = torch.as_tensor(node.weight, dtype=torch.float32)
    kernel = one_int(weight.shape[-2:], "kernel size")
    if one_int(node.dilation, "dilation") != 1:
        raise NIRUnsupported(f"dilation {node.dilation}; snnlab's conv has none")
    padding = node.padding
    if isinstance(padding, str):
        if padding == "same" and kernel % 2 == 1 and one_int(node.stride, "stride") == 1:
            padding = kernel // 2
        elif padding == "valid":
            padding = 0
        else:
            raise NIRUnsupported(f"padding {padding!r} with kernel {kernel} and stride {node.stride}")
    options = {
        "out_channels": weight.shape[0], "kernel_size": kernel, "stride": one_int(node.stride, "stride"),
        "padding": one_int(padding, "padding"), "groups": int(node.groups), "bias": True,
    }  # fmt: skip
    tensors = {"weight": weight, "bias": torch.as_tensor(node.bias, dtype=torch.float32).reshape(-1)}
    return Part("synapse", "conv", options, tensors)
