"""The one contract of every layer that carries state through time: neurons, stateful synapses, recurrent
connections and whole blocks.

A stateful layer offers ``initial_state(like)``, a pure ``step(x_t, state) -> (out_t, state)`` and a sequence
``forward(x_seq, state=None) -> (out_seq, state)``; its state is a NamedTuple of tensors (or of the states of
its parts), passed in and returned, never kept on the module. That is what lets a rule keep the temporal
gradient path (BPTT), cut it (SLTT) or run without autograd (STDP) on the same modules. Layers without state
(Linear, Conv, norms, pooling) are plain modules that run folded over time.

Example (a two-step delay line, a stateful synapse in five lines)::

    >>> import torch
    >>> from typing import NamedTuple
    >>> class DelayState(NamedTuple):
    ...     previous: torch.Tensor
    ...     before: torch.Tensor
    >>> class Delay2(StatefulModule):
    ...     def initial_state(self, like): return DelayState(torch.zeros_like(like), torch.zeros_like(like))
    ...     def step(self, x_t, state): return state.before, DelayState(x_t, state.previous)
    >>> out, _ = Delay2()(torch.arange(4.0).view(4, 1))
    >>> out.flatten().tolist()
    [0.0, 0.0, 0.0, 1.0]
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

State = tuple
"""A NamedTuple of tensors (or of the states of a layer's parts); each layer defines its own."""


class NoState(NamedTuple):
    """The state of a layer without memory."""


@runtime_checkable
class Stateful(Protocol):
    """What every layer that carries state through time offers (neurons, delay lines, recurrent blocks)."""

    def initial_state(self, like: Tensor) -> State:
        """The state before the first step, for per-step inputs shaped like ``like`` ``[B, ...]``."""
        ...

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step, pure: input ``[B, ...]`` and state in, output and new state out."""
        ...

    def forward(self, x_seq: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """The whole sequence ``[T, B, ...]`` from ``state`` (None: ``initial_state``): outputs and final state."""
        ...


class StatefulModule(nn.Module):
    """Base of stateful layers: subclasses write ``initial_state`` and ``step``; ``forward`` loops ``step`` over
    the leading time axis and may be replaced by a faster form that gives the same result."""

    def initial_state(self, like: Tensor) -> State:
        raise NotImplementedError

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError

    def forward(self, x_seq: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.initial_state(x_seq[0])
        outputs = []
        for x_t in x_seq:
            out, state = self.step(x_t, state)
            outputs.append(out)
        return torch.stack(outputs), state


def is_stateful(module: Any) -> bool:
    """Whether ``module`` follows the stateful contract (and so must see the time axis)."""
    return isinstance(module, nn.Module) and isinstance(module, Stateful)


def detach_state(state: Any) -> Any:
    """The same (nested) state with every tensor detached: cuts the temporal gradient path."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(s) for s in state)
    return state


def find_field(state: Any, name: str) -> Tensor | None:
    """The first tensor in a (nested) state under the field ``name`` (a neuron's membrane is ``v``), or None."""
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        if name in state._fields and isinstance(getattr(state, name), Tensor):
            return getattr(state, name)
        for part in state:
            found = find_field(part, name)
            if found is not None:
                return found
    elif isinstance(state, (list, tuple)):
        for part in state:
            found = find_field(part, name)
            if found is not None:
                return found
    return None
