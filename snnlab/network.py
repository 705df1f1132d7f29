"""A spiking network: an ordered list of blocks (and residual blocks of blocks), each a stateful layer.

A block is synapse -> norm -> (+ recurrent) -> neuron -> post layers, any part optional. Shapes are time-major:
a sequence is ``[T, B, ...]``, one step ``[B, ...]``. Stateless parts (Linear, Conv, norms, pooling) run folded
over time; a stateful synapse (a delay line) sees the time axis, and a block with a recurrent connection runs
its neuron step by step. A block's state is the ``BlockState`` of its parts; it is passed in and returned,
never kept on the module. How outputs become predictions and losses is the objective's business.

Example::

    >>> import torch
    >>> from snnlab.network import Block, Network
    >>> from snnlab.neurons import LIF, LI
    >>> from snnlab.synapses import Linear
    >>> net = Network([Block(Linear(64, 128), neuron=LIF()), Block(Linear(128, 10), neuron=LI())])
    >>> out, states = net(torch.rand(8, 32, 64))
    >>> out.shape
    torch.Size([8, 32, 10])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from .block_fusion import fused_sequence
from .stateful import State, is_stateful

MemoryFormat = Literal["contiguous", "channels_last"]
"""How a network stores ``[C, H, W]`` maps: as the data comes (NCHW), or with the channels innermost (NHWC)."""


def fold(module: nn.Module, x_seq: Tensor) -> Tensor:
    """Apply a per-step layer to every step of ``[T, B, ...]`` at once (views on the way in and out, whatever the
    memory format of the steps)."""
    return module(x_seq.flatten(0, 1)).unflatten(0, x_seq.shape[:2])


def in_memory_format(x: Tensor, memory_format: MemoryFormat) -> Tensor:
    """``x`` (a sequence ``[T, B, C, H, W]`` or a step ``[B, C, H, W]``) stored channels last within each sample: one
    copy, none when it already is; other shapes, and ``contiguous``, as they are."""
    if memory_format == "contiguous" or x.dim() not in (4, 5):
        return x
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


def regularization_of(module: nn.Module | None, output: Tensor) -> Tensor | None:
    """The term ``module.regularization(output)`` adds to the loss (UltraLIF's sparsity penalty, firing-rate
    penalties), or None for a module without one. ``output`` is the module's own output sequence."""
    term = getattr(module, "regularization", None)
    return term(output) if callable(term) else None


def _add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    return b if a is None else a if b is None else a + b


class BlockState(NamedTuple):
    """The state of each part of a block; None is a part at rest (or without state)."""

    synapse: State | None = None
    neuron: State | None = None
    recurrent: Tensor | None = None
    """The neuron's output at the previous step, which the recurrent connection reads."""


class BlockTrace(NamedTuple):
    """What a block computed over a sequence (or one step): what local rules read instead of re-running it."""

    input: Tensor
    current: Tensor | None
    """The neuron's input current: synapse, norm and recurrent contribution (None in a residual block, and in a
    fused block, ``snnlab.block_fusion``)."""
    spikes: Tensor | None
    """The neuron's output: spikes, or the membrane of a non-spiking neuron (None without a neuron, and in a fused
    block that pools)."""
    output: Tensor
    """After the post layers: what the next block receives."""
    state: Any
    regularization: Tensor | None = None
    """The sum of the regularisation terms of the block's parts, or None."""


class Block(nn.Module):
    """synapse -> norm -> (+ recurrent) -> neuron -> post (pooling, dropout, flatten); any part may be absent.

    ``recurrent`` (a module from the previous step's neuron output to current, ``synapses.recurrent``) needs a
    neuron; the block then loops over time. A stateful synapse receives the sequence with its time axis. With
    ``fuse`` a sequence may run the norm, neuron and pooling as one fused op (``snnlab.block_fusion``).
    """

    def __init__(
        self,
        synapse: nn.Module | None = None,
        norm: nn.Module | None = None,
        neuron: nn.Module | None = None,
        post: Sequence[nn.Module] = (),
        recurrent: nn.Module | None = None,
        fuse: bool = True,
    ) -> None:
        super().__init__()
        if recurrent is not None and neuron is None:
            raise ValueError("a recurrent connection needs a neuron in the same block")
        self.synapse = synapse
        self.norm = norm
        self.neuron = neuron
        self.recurrent = recurrent
        self.post = nn.Sequential(*post)
        self.fuse = fuse

    def initial_state(self, like: Tensor) -> BlockState:
        """Every part at rest; each part builds its own initial state from its first input."""
        return BlockState()

    def _feed_forward_step(self, x_t: Tensor, state: BlockState) -> tuple[Tensor, State | None]:
        c, synapse_state = x_t, state.synapse
        if self.synapse is not None:
            if is_stateful(self.synapse):
                if synapse_state is None:
                    synapse_state = self.synapse.initial_state(c)
                c, synapse_state = self.synapse.step(c, synapse_state)
            else:
                c = self.synapse(c)
        if self.norm is not None:
            c = self.norm(c)
        return c, synapse_state

    def trace_step(self, x_t: Tensor, state: BlockState | None = None) -> BlockTrace:
        """One time step ``[B, ...]`` with its intermediates; ``state=None`` starts every part at rest."""
        state = state if state is not None else BlockState()
        c, synapse_state = self._feed_forward_step(x_t, state)
        s, neuron_state = c, state.neuron
        if self.recurrent is not None and state.recurrent is not None:
            c = c + self.recurrent(state.recurrent)
        if self.neuron is not None:
            if neuron_state is None:
                neuron_state = self.neuron.initial_state(c)
            s, neuron_state = self.neuron.step(c, neuron_state)
        out = self.post(s)
        new_state = BlockState(synapse_state, neuron_state, s if self.recurrent is not None else None)
        reg = self._regularization(c, s if self.neuron is not None else None, step=True)
        return BlockTrace(x_t, c, s if self.neuron is not None else None, out, new_state, reg)

    def step(self, x_t: Tensor, state: BlockState | None = None) -> tuple[Tensor, BlockState]:
        """One time step; ``state=None`` starts every part at rest."""
        trace = self.trace_step(x_t, state)
        return trace.output, trace.state

    def trace(self, x_seq: Tensor, state: BlockState | None = None) -> BlockTrace:
        """The whole sequence ``[T, B, ...]`` with its intermediates; the neuron may run a fused kernel."""
        state = state if state is not None else BlockState()
        c, synapse_state = x_seq, state.synapse
        if self.synapse is not None:
            if is_stateful(self.synapse):
                c, synapse_state = self.synapse(c, synapse_state)
            else:
                c = fold(self.synapse, c)
        fused = fused_sequence(self, c, state.neuron) if self.fuse else None
        if fused is not None:  # no current, and no spikes where the kernel pooled them
            s, neuron_state, post, pooled = fused
            for layer in post:
                s = fold(layer, s)
            spikes = None if pooled else fused[0]
            return BlockTrace(x_seq, None, spikes, s, BlockState(synapse_state, neuron_state, None), None)
        if self.norm is not None:
            c = fold(self.norm, c)
        s, neuron_state, previous = c, state.neuron, state.recurrent
        if self.recurrent is not None:
            currents, outputs = [], []
            for c_t in c:
                if previous is not None:
                    c_t = c_t + self.recurrent(previous)
                if neuron_state is None:
                    neuron_state = self.neuron.initial_state(c_t)
                previous, neuron_state = self.neuron.step(c_t, neuron_state)
                currents.append(c_t)
                outputs.append(previous)
            c, s = torch.stack(currents), torch.stack(outputs)
        elif self.neuron is not None:
            s, neuron_state = self.neuron(c, neuron_state)
        out = fold(self.post, s) if len(self.post) else s
        new_state = BlockState(synapse_state, neuron_state, previous if self.recurrent is not None else None)
        spikes = s if self.neuron is not None else None
        return BlockTrace(x_seq, c, spikes, out, new_state, self._regularization(c, spikes, step=False))

    def forward(self, x_seq: Tensor, state: BlockState | None = None) -> tuple[Tensor, BlockState]:
        """The whole sequence: outputs ``[T, B, ...]`` and the final state."""
        trace = self.trace(x_seq, state)
        return trace.output, trace.state

    def _regularization(self, current: Tensor, spikes: Tensor | None, step: bool) -> Tensor | None:
        def seq(t: Tensor) -> Tensor:
            return t.unsqueeze(0) if step else t

        reg = regularization_of(self.synapse, seq(current)) if self.synapse is not None else None
        if self.neuron is not None and spikes is not None:
            reg = _add(reg, regularization_of(self.neuron, seq(spikes)))
        return reg


class ResidualState(NamedTuple):
    """The states of a residual block's inner blocks, in order."""

    blocks: tuple


class Residual(nn.Module):
    """out = x + blocks(x): inner blocks in order, the input added back (SEW-ResNet, SpikeGPT's streams).

    The inner blocks must give back the input's shape.
    """

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def initial_state(self, like: Tensor) -> ResidualState:
        return ResidualState(tuple(None for _ in self.blocks))

    def _run(self, x: Tensor, state: ResidualState | None, step: bool) -> BlockTrace:
        states = list(state.blocks) if state is not None else [None] * len(self.blocks)
        h, reg = x, None
        for i, block in enumerate(self.blocks):
            inner = block.trace_step(h, states[i]) if step else block.trace(h, states[i])
            h, states[i], reg = inner.output, inner.state, _add(reg, inner.regularization)
        return BlockTrace(x, None, None, x + h, ResidualState(tuple(states)), reg)

    def trace(self, x_seq: Tensor, state: ResidualState | None = None) -> BlockTrace:
        return self._run(x_seq, state, step=False)

    def trace_step(self, x_t: Tensor, state: ResidualState | None = None) -> BlockTrace:
        return self._run(x_t, state, step=True)

    def step(self, x_t: Tensor, state: ResidualState | None = None) -> tuple[Tensor, ResidualState]:
        trace = self.trace_step(x_t, state)
        return trace.output, trace.state

    def forward(self, x_seq: Tensor, state: ResidualState | None = None) -> tuple[Tensor, ResidualState]:
        trace = self.trace(x_seq, state)
        return trace.output, trace.state


class NetworkTrace(NamedTuple):
    """Every block's trace, the network's output, the final states, and the sum of the regularisation terms."""

    blocks: list[BlockTrace]
    output: Tensor
    states: list[Any]
    regularization: Tensor | None


class Network(nn.Module):
    """Blocks in order. ``forward`` runs a sequence, ``step`` one time step, ``trace`` and ``trace_step`` also
    return every block's intermediates and the modules' regularisation terms. States are lists with one entry
    per block (None: at rest).

    ``memory_format="channels_last"`` stores the convolution weights and every input map channels last (NHWC within
    each sample, ``in_memory_format``): convolution, batch norm, pooling and the fused neurons keep that layout, so
    the whole network runs on it without a conversion between layers."""

    def __init__(self, blocks: Sequence[nn.Module], memory_format: MemoryFormat = "contiguous") -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.memory_format = memory_format
        if memory_format == "channels_last":
            self.to(memory_format=torch.channels_last)

    def extra_repr(self) -> str:
        return "" if self.memory_format == "contiguous" else f"memory_format={self.memory_format}"

    def initial_state(self, like: Tensor) -> list[Any]:
        return [None] * len(self.blocks)

    def _run(self, x: Tensor, states: Sequence[Any] | None, step: bool) -> NetworkTrace:
        states = list(states) if states is not None else [None] * len(self.blocks)
        traces, reg = [], None
        x = in_memory_format(x, self.memory_format)
        for i, block in enumerate(self.blocks):
            trace = block.trace_step(x, states[i]) if step else block.trace(x, states[i])
            x, states[i], reg = trace.output, trace.state, _add(reg, trace.regularization)
            traces.append(trace)
        return NetworkTrace(traces, x, states, reg)

    def trace(self, x_seq: Tensor, states: Sequence[Any] | None = None) -> NetworkTrace:
        """The sequence ``[T, B, ...]`` through every block, keeping each block's intermediates."""
        return self._run(x_seq, states, step=False)

    def trace_step(self, x_t: Tensor, states: Sequence[Any] | None = None) -> NetworkTrace:
        """One time step ``[B, ...]`` through every block, keeping each block's intermediates."""
        return self._run(x_t, states, step=True)

    def forward(self, x_seq: Tensor, states: Sequence[Any] | None = None) -> tuple[Tensor, list[Any]]:
        """The output sequence and the final states."""
        trace = self.trace(x_seq, states)
        return trace.output, trace.states

    def step(self, x_t: Tensor, states: Sequence[Any] | None = None) -> tuple[Tensor, list[Any]]:
        """One time step through all blocks; ``states=None`` starts from rest."""
        trace = self.trace_step(x_t, states)
        return trace.output, trace.states


class Sequential(nn.Module):
    """Layers in order, stateful or not, chained as ``torch.nn.Sequential`` chains stateless ones.

    ``nn.Sequential`` cannot chain a stateful layer, which returns ``(output, state)``. Here each stateful layer
    (a neuron, a block) gets its own state and passes its output on; a stateless layer (``nn.Linear``,
    ``nn.Conv2d``, ``nn.Flatten``) runs folded over time. ``forward`` returns the output and the list of states
    (None for a stateless layer), to pass back in to continue; nothing is kept on the modules between calls.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> from snnlab.network import Sequential
        >>> from snnlab.neurons import LIF
        >>> net = Sequential(nn.Flatten(), nn.Linear(64, 32), LIF(), nn.Linear(32, 10), LIF())
        >>> out, states = net(torch.rand(8, 4, 1, 8, 8))          # [T, B, ...]
        >>> out.shape
        torch.Size([8, 4, 10])
        >>> out_t, states = net.step(torch.rand(4, 1, 8, 8), states)   # one more step, continuing
        >>> out_t.shape
        torch.Size([4, 10])
    """

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def initial_state(self, like: Tensor) -> list[Any]:
        return [None] * len(self.layers)

    def _run(self, x: Tensor, states: Sequence[Any] | None, step: bool) -> tuple[Tensor, list[Any]]:
        states = list(states) if states is not None else [None] * len(self.layers)
        for i, layer in enumerate(self.layers):
            if not is_stateful(layer):
                x = layer(x) if step else fold(layer, x)
            elif step:
                x, states[i] = layer.step(x, layer.initial_state(x) if states[i] is None else states[i])
            else:
                x, states[i] = layer(x, states[i])
        return x, states

    def forward(self, x_seq: Tensor, states: Sequence[Any] | None = None) -> tuple[Tensor, list[Any]]:
        """The output sequence ``[T, B, ...]`` and each layer's final state; ``states=None`` starts from rest."""
        return self._run(x_seq, states, step=False)

    def step(self, x_t: Tensor, states: Sequence[Any] | None = None) -> tuple[Tensor, list[Any]]:
        """One time step ``[B, ...]``; ``states=None`` starts from rest."""
        return self._run(x_t, states, step=True)


class OutputOnly(nn.Module):
    """A stateful layer that returns only its output, starting from rest at every call: for use inside
    ``torch.nn.Sequential`` on whole sequences ``[T, B, ...]``. The state is dropped after each call, never kept
    on the module; use ``Sequential`` to carry it from one call to the next.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> from snnlab.neurons import LIF
        >>> net = nn.Sequential(nn.Linear(64, 10), OutputOnly(LIF()))
        >>> net(torch.rand(8, 4, 64)).shape
        torch.Size([8, 4, 10])
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x_seq: Tensor) -> Tensor:
        return self.layer(x_seq)[0]
