"""Recurrent connections: the current a block's neuron receives from its own output at the previous step,
i[t] += W s[t-1]. Registered in ``RECURRENT`` (``recurrent: dense`` or ``recurrent: {kind: one_to_one}``).

``dense`` connects every neuron to every neuron of the block (all-to-all, flat layers); ``one_to_one`` connects
each neuron to itself only (one weight per neuron, any shape). The block keeps s[t-1] in its state.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class OneToOne(nn.Module):
    """i = w * s elementwise, one weight per neuron."""

    def __init__(self, shape: tuple[int, ...], init: float, learnable: bool) -> None:
        super().__init__()
        weight = torch.full(shape, float(init))
        if learnable:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)

    def forward(self, s: Tensor) -> Tensor:
        return s * self.weight


def dense(in_shape: tuple[int, ...], learnable: bool = True) -> nn.Module:
    """All-to-all W s[t-1] over a flat layer (no bias; PyTorch's default Linear initialisation)."""
    if len(in_shape) != 1:
        raise ValueError(f"a dense recurrent connection needs a flat layer, got {list(in_shape)}; use one_to_one")
    layer = nn.Linear(in_shape[0], in_shape[0], bias=False)
    layer.weight.requires_grad_(learnable)
    return layer


def one_to_one(in_shape: tuple[int, ...], init: float = 0.0, learnable: bool = True) -> nn.Module:
    """Each neuron's own s[t-1] times its weight (starting at ``init``)."""
    return OneToOne(in_shape, init, learnable)
