"""When a block's batch norm, LIF neuron and pooling run as one fused op (``snnlab.kernels.block``), and how.

A block is fused when it is built so (``network.fuse_blocks: auto``, the default; ``off`` never fuses) and, at each
``trace`` of a sequence:

* its parts match: a batch norm (``norm: batch``), a LIF, PLIF or IF neuron (any reset, ``decay_input``, surrogate,
  learnable tau or threshold), no recurrent connection, and a synapse (or none) without a regularisation term;
* the neuron's ``backend`` would run its sequence on a backend with a fused block op (Triton: ``auto`` on CUDA, or
  ``triton``), which also sends forward-mode AD and mismatched dtypes to the unfused path, as for the neuron alone;
* nothing is watching the parts: no forward or backward hook on the norm, the neuron or the pooling (the activity
  monitor's spike counts, hence evaluation in a run, see the unfused path), and no global module hook;
* no caller asked for every block's intermediates (``unfused()``).

A first post layer that is a non-overlapping square max, average or sum pooling is pooled in the kernel; the other
post layers (dropout, flatten) run after it as usual. The fused block's ``BlockTrace`` has no ``current`` (the
normalised current is never written), and its ``spikes`` are the kernel's output where it does not pool, else None:
code that reads either (Forward-Forward's goodness, DFA's feedback, LZC features) runs inside ``unfused()``. The
modules, their parameters, buffers, ``state_dict``, NIR export and every ``step`` are the same either way: fusion
is how a sequence is computed, not what the block is. The unfused path is the reference; ``tests/test_block_fusion.py``
holds them equal (spikes bit for bit, gradients to float rounding).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from torch.nn.modules import module as torch_module

from .kernels import choose, unsupported
from .kernels.block import BACKENDS, Pool, block_fused, pool_size
from .kernels.scan_op import SURROGATE_IDS
from .neurons.base import MembraneState
from .neurons.lif import IF, LIF

_unfused_depth = 0


@contextmanager
def unfused() -> Iterator[None]:
    """Within it, every block runs unfused, so each ``BlockTrace`` holds its current and the neuron's spikes."""
    global _unfused_depth
    _unfused_depth += 1
    try:
        yield
    finally:
        _unfused_depth -= 1


def matches(block: Any) -> str | None:
    """Why ``block``'s parts do not match the fused op (its build, not its input), or None when they do."""
    if not getattr(block, "fuse", False):
        return "network.fuse_blocks is off"
    if type(block.norm) not in (nn.BatchNorm1d, nn.BatchNorm2d):
        return "its norm is not a batch norm"
    if type(block.neuron) not in (LIF, IF):
        return "its neuron is not a LIF, PLIF or IF"
    if block.recurrent is not None:
        return "it has a recurrent connection (the block steps through time)"
    if block.synapse is not None and callable(getattr(block.synapse, "regularization", None)):
        return "its synapse's regularisation reads the current"
    if block.neuron.surrogate.name not in SURROGATE_IDS:
        return f"the surrogate {block.neuron.surrogate.name!r} has no kernel"
    return None


def _watched(modules: Sequence[nn.Module | None]) -> bool:
    """Whether a hook would see these modules run (or any module: a global hook)."""
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    if any(getattr(torch_module, f"_global{name}", None) for name in hooks):
        return True
    return any(m is not None and any(getattr(m, name) for name in hooks) for m in modules)


def fused_sequence(
    block: Any, current: Tensor, state: MembraneState | None
) -> tuple[Tensor, MembraneState, Sequence[nn.Module], bool] | None:
    """``block``'s norm, neuron and (first) pooling over the synapse's output ``current`` ``[T, B, ...]`` as one
    fused op: (its output, the neuron's final state, the post layers still to run, whether it pooled); or None when
    the block runs unfused (see the module's docstring)."""
    if _unfused_depth or matches(block) is not None:
        return None
    norm, neuron = block.norm, block.neuron
    pool = pool_size(block.post[0]) if len(block.post) and current.dim() == 5 else None
    if _watched([norm, neuron, block.post[0] if pool is not None else None]):
        return None
    if current.dim() != (3 if isinstance(norm, nn.BatchNorm1d) else 5) or current.shape[2] != norm.num_features:
        return None
    v, beta = None if state is None else state.v, neuron.leak.beta
    backend = choose(neuron.backend, current, neuron.surrogate, inputs=(v, beta, neuron.threshold))
    if backend not in BACKENDS or unsupported(backend, current.device, current.dtype, model="block") is not None:
        return None
    out, v_last = block_fused(
        backend, current, norm, v, beta, neuron.threshold, pool or Pool(), decay_input=neuron.decay_input,
        reset=neuron.reset, v_reset=neuron.v_reset, detach_reset=neuron.detach_reset, surrogate=neuron.surrogate,
    )  # fmt: skip
    post = list(block.post)[1:] if pool is not None else list(block.post)
    return out, MembraneState(v_last), post, pool is not None


__all__ = ["fused_sequence", "matches", "unfused"]
