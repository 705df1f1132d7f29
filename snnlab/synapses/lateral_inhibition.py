r"""Lateral inhibition: each neuron's spike at the previous step inhibits every other neuron of its block.

.. math::

    i_j[t] \mathrel{+}= -g \sum_{k \ne j} s_k[t-1]

with g the fixed ``strength``: the recurrent weights are :math:`-g (1 - I)`, never learned. It is the soft
winner-take-all of Diehl & Cook (2015), whose excitatory neurons inhibit all others through one inhibitory partner
each, without that partner: the first neuron to fire holds the others below threshold, so training (STDP) and
inference run the same competing network. Registered in ``RECURRENT`` (``recurrent: {kind: lateral_inhibition,
strength: 5.0}``).

Example::

    >>> import torch
    >>> inhibit = LateralInhibition(strength=2.0)
    >>> inhibit(torch.tensor([[1.0, 0.0, 1.0]]))   # neurons 0 and 2 fired
    tensor([[-2., -4., -2.]])
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import Tensor, nn


class LateralInhibition(nn.Module):
    """The current -g (sum of the other neurons' spikes) for every neuron of a sample ``[B, ...]``."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = strength

    def forward(self, s: Tensor) -> Tensor:
        others = s.flatten(1).sum(1).view(-1, *([1] * (s.dim() - 1))) - s
        return -self.strength * others

    def extra_repr(self) -> str:
        return f"strength={self.strength}"


def lateral_inhibition(in_shape: tuple[int, ...], strength: Annotated[float, Field(ge=0)] = 1.0) -> LateralInhibition:
    """Every neuron inhibits every other neuron of the block by ``strength`` per spike, one step later."""
    return LateralInhibition(strength)
