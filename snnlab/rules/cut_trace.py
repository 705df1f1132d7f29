r"""A network over a chunk of time steps with the temporal gradient path cut: SLTT's graphs (Meng et al., ICCV 2023)
for several steps built at once.

SLTT runs every step from its state detached, so step t's graph holds only that step: the gradient of its loss
reaches each block's synapse through :math:`\partial s_l[t] / \partial c_l[t]` alone. For blocks whose only memory is
their neuron's state (a stateless synapse, no recurrent connection) the graphs of C consecutive steps are therefore
independent, and can be built as one: synapses and post layers folded over the chunk, each neuron's
``forward_cut`` (one fused kernel for LIF, whose backward drops the step-to-step term), and batch norm per step
(``per_step_norm``), as C separate calls would normalise. One backward of the chunk's summed step losses then gives
exactly the gradient of C per-step backwards, with C times fewer launches and C steps' activations in memory.
``unchunkable`` says which networks need the step-by-step loop instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..network import (
    Block,
    BlockState,
    BlockTrace,
    Network,
    NetworkTrace,
    Residual,
    ResidualState,
    fold,
    regularization_of,
)
from ..stateful import is_stateful


def unchunkable(network: nn.Module, where: str = "network.blocks") -> str | None:
    """Why ``network`` cannot run as chunks of cut steps (naming the block), or None when it can: each block must
    be a ``Block`` (or a ``Residual`` of them) whose memory is its neuron's state alone."""
    for i, block in enumerate(network.blocks):
        path = f"{where}[{i}]"
        if isinstance(block, Residual):
            reason = unchunkable(block, f"{path}.residual")
            if reason is not None:
                return reason
        elif not isinstance(block, Block):
            return f"{path}: a {type(block).__name__}, not a block"
        elif block.recurrent is not None:
            return f"{path}: a recurrent connection carries the previous step's output"
        elif block.synapse is not None and is_stateful(block.synapse):
            return f"{path}: its synapse {type(block.synapse).__name__} keeps a state of its own"
        elif block.neuron is not None and not hasattr(block.neuron, "forward_cut"):
            return f"{path}: its neuron {type(block.neuron).__name__} has no forward_cut"
    return None


def per_step_norm(norm: nn.Module, x_seq: Tensor) -> Tensor:
    """``norm`` on each step of ``x_seq`` ``[T, B, ...]`` as T separate calls would apply it: batch norm in training
    takes each step's own statistics (time moved into the channels) and updates its running statistics T times in
    order; per-sample norms, and batch norm in evaluation, are the same folded over T."""
    if not (isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.training) or len(x_seq) == 1:
        return fold(norm, x_seq)
    T, B, C = x_seq.shape[:3]
    x = x_seq.transpose(0, 1).reshape(B, T * C, *x_seq.shape[3:])
    weight, bias = (norm.weight.repeat(T), norm.bias.repeat(T)) if norm.affine else (None, None)
    y = F.batch_norm(x, None, None, weight, bias, training=True, eps=norm.eps)
    if norm.track_running_stats:
        _update_running_stats(norm, x_seq)
    return y.view(B, T, *x_seq.shape[2:]).transpose(0, 1)


@torch.no_grad()
def _update_running_stats(norm: nn.modules.batchnorm._BatchNorm, x_seq: Tensor) -> None:
    """The running mean and (unbiased) variance after one training call per step, as ``_BatchNorm`` updates them."""
    dims = (0, *range(2, x_seq.dim() - 1))
    for x in x_seq:
        norm.num_batches_tracked.add_(1)
        momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        var, mean = torch.var_mean(x, dims)
        norm.running_mean.mul_(1 - momentum).add_(momentum * mean)
        norm.running_var.mul_(1 - momentum).add_(momentum * var)


def cut_trace(network: Network, x_seq: Tensor, states: Sequence[Any] | None = None) -> NetworkTrace:
    """``network.trace`` of the chunk ``x_seq`` ``[C, B, ...]`` with every state cut at every step (under ``no_grad``
    the neurons run their plain ``forward``: the values are the same). The regularisation is each module's term of
    its chunk, as ``trace`` computes it. ``network`` must pass ``unchunkable``."""
    states = list(states) if states is not None else [None] * len(network.blocks)
    traces, reg = [], None
    for i, block in enumerate(network.blocks):
        trace = _residual(block, x_seq, states[i]) if isinstance(block, Residual) else _block(block, x_seq, states[i])
        x_seq, states[i], reg = trace.output, trace.state, _add(reg, trace.regularization)
        traces.append(trace)
    return NetworkTrace(traces, x_seq, states, reg)


def _add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    return b if a is None else a if b is None else a + b


def _block(block: Block, x_seq: Tensor, state: BlockState | None) -> BlockTrace:
    state = state if state is not None else BlockState()
    c = fold(block.synapse, x_seq) if block.synapse is not None else x_seq
    if block.norm is not None:
        c = per_step_norm(block.norm, c)
    s, neuron_state, reg = c, state.neuron, None
    if block.synapse is not None:
        reg = regularization_of(block.synapse, c)
    if block.neuron is not None:
        run = block.neuron.forward_cut if torch.is_grad_enabled() else block.neuron
        s, neuron_state = run(c, neuron_state)
        reg = _add(reg, regularization_of(block.neuron, s))
    out = fold(block.post, s) if len(block.post) else s
    spikes = s if block.neuron is not None else None
    return BlockTrace(x_seq, c, spikes, out, BlockState(None, neuron_state, None), reg)


def _residual(residual: Residual, x_seq: Tensor, state: ResidualState | None) -> BlockTrace:
    inner = cut_trace(residual, x_seq, None if state is None else state.blocks)  # type: ignore[arg-type]
    new_state = ResidualState(tuple(inner.states))
    return BlockTrace(x_seq, None, None, x_seq + inner.output, new_state, inner.regularization)
