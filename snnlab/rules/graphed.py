"""BPTT's pass through the network, forward and backward, captured once as CUDA graphs and replayed at every step
(``train.cuda_graphs: true``): the launches of a step's many small kernels become one replay each way. The loss, the
optimizer, the gradient checks and evaluation stay eager.

A graph replays fixed shapes on fixed memory, so the run must give every training batch the same shape
(``data.drop_last: true``) and run on CUDA; the capture (``torch.cuda.make_graphed_callables``) runs the first batch
a few times to warm up, after which the network's buffers (batch norm's running statistics) are put back as they
were. Not measured on a GPU yet: whether it pays depends on how launch-bound a step is.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..errors import ConfigError
from ..network import Network, NetworkTrace


def check_cuda_graphs(cfg: Any, device: torch.device) -> None:
    """Raise ``ConfigError`` naming ``train.cuda_graphs`` when ``cfg`` asks for CUDA graphs where they cannot run."""
    if not cfg.train.cuda_graphs:
        return
    if device.type != "cuda":
        reason = f"CUDA graphs need a CUDA device; this run is on {device.type} (device: cuda, or cuda_graphs: false)"
    elif cfg.rule.name != "bptt":
        reason = f"only rule bptt replays its step as CUDA graphs, not {cfg.rule.name}"
    elif not cfg.data.drop_last:
        reason = "a graph replays one batch shape: set data.drop_last: true (the last batch of an epoch is smaller)"
    else:
        return
    raise ConfigError([("train.cuda_graphs", reason)])


class _FlatTrace(nn.Module):
    """The network's trace as a flat tuple of tensors (output, final states, regularisation), as
    ``make_graphed_callables`` takes a module; ``rebuild`` gives back the structure, its Nones (parts at rest)
    included."""

    def __init__(self, network: Network) -> None:
        super().__init__()
        self.network = network
        self.spec: Any = None
        self.others: list[Any] = []
        self.is_tensor: list[bool] = []

    def forward(self, x_seq: Tensor) -> tuple[Tensor, ...]:
        trace = self.network.trace(x_seq)
        leaves, self.spec = tree_flatten((trace.output, trace.states, trace.regularization))
        self.is_tensor = [isinstance(leaf, Tensor) for leaf in leaves]
        self.others = [leaf for leaf in leaves if not isinstance(leaf, Tensor)]
        return tuple(leaf for leaf in leaves if isinstance(leaf, Tensor))

    def rebuild(self, tensors: tuple[Tensor, ...]) -> tuple[Tensor, list[Any], Tensor | None]:
        """(output, states, regularisation) from ``forward``'s tensors."""
        tensors_, others = iter(tensors), iter(self.others)
        return tree_unflatten([next(tensors_) if t else next(others) for t in self.is_tensor], self.spec)


class GraphedTrace:
    """``network.trace`` for batches of one shape, forward and backward replayed from CUDA graphs captured on the
    first call. It returns the output, the final states and the regularisation (``blocks`` is empty): what BPTT's
    loss and checks read."""

    def __init__(self, network: Network) -> None:
        self.flat = _FlatTrace(network)
        self.graphed: nn.Module | None = None
        self.shape: torch.Size | None = None

    def __call__(self, x_seq: Tensor) -> NetworkTrace:
        if self.graphed is None:
            buffers = [(b, b.clone()) for b in self.flat.buffers()]
            self.graphed = torch.cuda.make_graphed_callables(self.flat, (x_seq,))
            with torch.no_grad():
                for buffer, before in buffers:  # the warm-up runs moved them
                    buffer.copy_(before)
            self.shape = x_seq.shape
        if x_seq.shape != self.shape:
            raise RuntimeError(
                f"train.cuda_graphs: a batch of shape {list(x_seq.shape)} after the captured {list(self.shape)}; "
                "CUDA graphs replay one shape (data.drop_last: true)"
            )
        output, states, regularization = self.flat.rebuild(self.graphed(x_seq))
        return NetworkTrace([], output, states, regularization)
