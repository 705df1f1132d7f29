"""The ``torch`` backend and the definition every fused kernel is tested against: the LIF step in a Python loop over T.

It is the neuron's own step (``leak.charge`` then ``lif.fire_and_reset``), so a kernel that matches it matches
``LIF.step`` too; autograd keeps every intermediate of every step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..neurons.leak import charge
from ..neurons.lif import Reset, fire_and_reset
from ..surrogates import Surrogate


def lif_reference(
    x_seq: Tensor,
    v: Tensor | None,
    beta: Tensor | float,
    threshold: Tensor | float,
    *,
    decay_input: bool,
    reset: Reset,
    v_reset: float,
    detach_reset: bool,
    surrogate: Surrogate,
) -> tuple[Tensor, Tensor]:
    """Spikes ``[T, ...]`` and the final membrane for input current ``x_seq`` ``[T, ...]`` from membrane ``v``
    (None: at rest, 0)."""
    if v is None:
        v = torch.zeros_like(x_seq[0])
    spikes = []
    for x_t in x_seq:
        h = charge(x_t, v, beta, decay_input)
        s, v = fire_and_reset(h, threshold, surrogate, reset, v_reset, detach_reset)
        spikes.append(s)
    return torch.stack(spikes), v
