"""Recording a state field of every block over a run: the membrane sequences snnTorch and SpikingJelly users reach
for first.

``record(network, x_seq)`` runs ``network.step`` over the time axis (the same result as ``network(x_seq)``, by the
stateful-layer contract) and stacks, for each block, the field ``v`` (a neuron's membrane after reset) of its state:
``[T, B, ...]`` per block (per layer of a ``Sequential``), or None for a block whose state has no such field. The modules keep no state: the
recording is returned, not stored on them.

Example::

    >>> import torch
    >>> from snnlab.network import Block, Network
    >>> from snnlab.neurons import LIF, LI
    >>> from snnlab.synapses import Linear
    >>> from snnlab.monitor import record
    >>> net = Network([Block(Linear(64, 32), neuron=LIF()), Block(Linear(32, 10), neuron=LI())])
    >>> rec = record(net, torch.rand(8, 4, 64))
    >>> [tuple(v.shape) for v in rec.fields]
    [(8, 4, 32), (8, 4, 10)]
    >>> rec.output.shape
    torch.Size([8, 4, 10])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .network import Network, Sequential
from .stateful import find_field


class Recording(NamedTuple):
    """What ``record`` returns."""

    output: Tensor
    """The network's output sequence ``[T, B, ...]``."""
    fields: list[Tensor | None]
    """Per block, the recorded state field ``[T, B, ...]``; None where the block's state has no such field."""
    states: list[Any]
    """The final states, to continue from."""


def record(
    network: Network | Sequential, x_seq: Tensor, field: str = "v", states: Sequence[Any] | None = None
) -> Recording:
    """Run ``x_seq [T, B, ...]`` step by step through ``network`` and record ``field`` of each block's state.

    Args:
        network: a ``Network`` or ``snnlab.network.Sequential`` (any module with ``step(x_t, states) -> (out,
            states)`` whose states are a list, one per block or layer).
        x_seq: the input sequence, time-major (``snnlab.time_major`` turns a ``[B, T, ...]`` batch around).
        field: the state field to record; ``v`` is a neuron's membrane after reset.
        states: the states to start from; None starts from rest.

    Gradients flow through the recording as through ``network(x_seq)``; wrap the call in ``torch.no_grad()``
    to only look.
    """
    steps: list[list[Tensor | None]] = []
    outputs = []
    current: Sequence[Any] | None = states
    for x_t in x_seq:
        out, current = network.step(x_t, current)
        outputs.append(out)
        steps = steps or [[] for _ in current]
        for i, state in enumerate(current):
            steps[i].append(find_field(state, field))
    fields = [torch.stack(s) if s and all(v is not None for v in s) else None for s in steps]  # type: ignore[arg-type]
    return Recording(torch.stack(outputs), fields, list(current or []))


def membranes(network: Network | Sequential, x_seq: Tensor) -> list[Tensor | None]:
    """Each block's membrane ``[T, B, ...]`` over ``x_seq`` (None for a block without one): ``record``'s fields.

    Example::

        >>> import torch
        >>> from snnlab.network import Block, Network
        >>> from snnlab.neurons import LIF
        >>> from snnlab.synapses import Linear
        >>> v = membranes(Network([Block(Linear(3, 5), neuron=LIF())]), torch.rand(6, 2, 3))
        >>> v[0].shape
        torch.Size([6, 2, 5])
    """
    return record(network, x_seq, "v").fields
