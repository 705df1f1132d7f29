"""Non-finite values: a cheap check every step, and, once one is seen, where it first appeared.

The per-step check costs one reduction over the loss, the gradient norm and the
blocks' final states, read in one sync with the loss itself. Only when it fails does
``locate_non_finite`` replay the batch step by step to name the block and time step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .errors import SnnlabError


class NonFiniteError(SnnlabError):
    """Training produced NaN or Inf: in the loss, a gradient or a state (raised before the weights were updated
    with it), or, with ``updated``, in the weights an update just made (nothing from it is ever saved)."""

    def __init__(self, what: str, updated: bool = False) -> None:
        super().__init__(what)
        self.what = what
        self.updated = updated


def first_non_finite(named: Iterable[tuple[str, Tensor]]) -> str | None:
    """The name of the first tensor holding NaN or Inf, or None (one sync in all)."""
    named = list(named)
    if not named or bool(all_finite([t for _, t in named])):
        return None
    return next(name for name, t in named if not torch.isfinite(t).all())


def tensors_of(states: Any) -> list[Tensor]:
    """The tensors inside a (nested) state: named tuples, lists, ``None``."""
    if isinstance(states, Tensor):
        return [states]
    if isinstance(states, Iterable) and not isinstance(states, str):
        return [t for s in states for t in tensors_of(s)]
    return []


def all_finite(tensors: Iterable[Tensor]) -> Tensor:
    """A 0-d bool tensor: every element of every tensor is finite (no sync until it is read)."""
    flags = [torch.isfinite(t).all() for t in tensors]
    return torch.stack(flags).all() if flags else torch.tensor(True)


def _describe_state(state: Any) -> str:
    """The field names of a (nested) state, leaves only: ``v`` for a LIF block's ``BlockState``."""
    fields = getattr(state, "_fields", ())
    names = [
        _describe_state(part) if hasattr(part, "_fields") else name
        for name, part in zip(fields, state)
        if part is not None
    ]
    return ", ".join(n for n in names if n) or "state"


@torch.no_grad()
def locate_non_finite(network: torch.nn.Module, x_seq: Tensor) -> str:
    """Where the first non-finite value shows up for this batch: a parameter, the input, a block at a
    time step, or a gradient; replays the batch one step at a time."""
    for name, p in network.named_parameters():
        if not torch.isfinite(p).all():
            return f"parameter network.{name}"
    if not torch.isfinite(x_seq).all():
        return "the input batch itself"
    states: list[Any] = [None] * len(network.blocks)
    for t in range(len(x_seq)):
        x_t = x_seq[t]
        for i, block in enumerate(network.blocks):
            x_t, states[i] = block.step(x_t, states[i])
            if not bool(all_finite([x_t, *tensors_of(states[i])])):
                part = getattr(block, "neuron", None) or block
                return f"network.blocks.{i} ({type(part).__name__}: output or {_describe_state(states[i])}) at time step {t}"
    for name, p in network.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            return f"the gradient of network.{name} (the forward pass was finite)"
    return "the loss (every block's outputs and states were finite)"
