"""Normalisations applied to a block's current (or, in a block without a synapse, to its input), per time step.

On a sequence they run folded over T, so batch norm takes its statistics over time and batch together.
Each is registered in ``NORMS`` by its YAML name (``norm: batch``, ``norm: {name: layer}``).

NIR: batch norm at inference is a per-channel affine map, exported as ``Affine`` with a diagonal weight (flat
features) or a depthwise 1x1 ``Conv2d`` (maps), which import as a block of their own; layer and L2 norm divide by
a statistic of each sample, which no NIR node computes, and are refused.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from ..export.registry import ExportContext, nir_export, refuse_nir


def batch_norm(
    in_shape: tuple[int, ...],
    momentum: Annotated[float, Field(gt=0, le=1)] = 0.1,
    eps: Annotated[float, Field(gt=0)] = 1e-5,
) -> nn.Module:
    """BatchNorm1d for flat features, BatchNorm2d for ``[C, H, W]`` maps."""
    if len(in_shape) == 1:
        return nn.BatchNorm1d(in_shape[0], eps=eps, momentum=momentum)
    if len(in_shape) == 3:
        return nn.BatchNorm2d(in_shape[0], eps=eps, momentum=momentum)
    raise ValueError(f"batch norm needs flat or [C, H, W] input, got {list(in_shape)}")


def layer_norm(in_shape: tuple[int, ...], affine: bool = True, eps: Annotated[float, Field(gt=0)] = 1e-5) -> nn.Module:
    """LayerNorm over all of a sample's features (every axis after the batch)."""
    return nn.LayerNorm(list(in_shape), eps=eps, elementwise_affine=affine)


class L2Normalize(nn.Module):
    """x / (||x||_2 + eps) over each sample's features: Forward-Forward's normalisation between blocks, which
    passes on the direction of the activity and hides its length (the previous block's goodness)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x / (x.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1)) + self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


def l2_norm(in_shape: tuple[int, ...], eps: Annotated[float, Field(gt=0)] = 1e-8) -> nn.Module:
    """Scale each sample's features to unit L2 length."""
    return L2Normalize(eps)


@nir_export(nn.BatchNorm1d, nn.BatchNorm2d)
def batch_norm_to_nir(module: nn.modules.batchnorm._BatchNorm, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """The inference map x * scale + shift with the running statistics, scale = gamma / sqrt(var + eps)."""
    import nir

    with torch.no_grad():
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        shift = -module.running_mean * scale + (module.bias if module.bias is not None else 0)
    scale, shift = scale.cpu().float().numpy(), shift.cpu().float().numpy()
    if len(shape) == 1:
        return [nir.Affine(weight=np.diag(scale), bias=shift)]
    weight = scale.reshape(-1, 1, 1, 1)
    return [
        nir.Conv2d(
            input_shape=tuple(shape[1:]), weight=weight, stride=1, padding=0, dilation=1, groups=len(scale),
            bias=shift,
        )
    ]  # fmt: skip


_PER_SAMPLE = "divides by a statistic of each sample, which no NIR node computes"
refuse_nir(nn.LayerNorm, f"layer norm {_PER_SAMPLE}")
refuse_nir(L2Normalize, f"L2 normalisation {_PER_SAMPLE}")
