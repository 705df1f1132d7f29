"""Normalisations applied to a block's current (or, in a block without a synapse, to its input), per time step.

On a sequence they run folded over T, so batch norm takes its statistics over time and batch together.
Each is registered in ``NORMS`` by its YAML name (``norm: batch``, ``norm: {name: layer}``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import Tensor, nn


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
