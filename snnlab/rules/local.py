"""What the local rules share: which blocks learn, the network run with each learning block on a detached input,
and a block's activity as one feature vector per sample (the input of rule-owned heads: FF's softmax readout, the
forward gradient's local losses).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import UnsupportedNetwork
from ..network import Block, Network, NetworkTrace


def learning_blocks(network: Network) -> list[int]:
    """Indices of the blocks that have a neuron and parameters: the layers a local rule trains (a block that is a
    norm or a flatten alone passes its input on)."""
    return [
        i
        for i, b in enumerate(network.blocks)
        if isinstance(b, Block) and b.neuron is not None and any(True for _ in b.parameters())
    ]


def refuse_residual(network: Network, rule: str) -> None:
    """Local rules train blocks one by one on their own input; a residual block mixes its input into its output."""
    for i, block in enumerate(network.blocks):
        if not isinstance(block, Block):
            raise UnsupportedNetwork(
                f"network.blocks[{i}]: rule {rule} trains each block on its own input and cannot train a "
                f"{type(block).__name__.lower()} block; use plain blocks"
            )


def trace_locally(network: Network, x_seq: Tensor, layers: list[int]) -> NetworkTrace:
    """``network.trace(x_seq)`` with the input of each block in ``layers`` detached, so that a gradient reaches a
    block's parameters only from its own output (and through the parameter-free blocks after it)."""
    traces, h, regularization = [], x_seq, None
    for i, block in enumerate(network.blocks):
        trace = block.trace(h.detach() if i in layers else h)
        h = trace.output
        traces.append(trace)
        if trace.regularization is not None:
            regularization = trace.regularization if regularization is None else regularization + trace.regularization
    return NetworkTrace(traces, h, [t.state for t in traces], regularization)


def feature_width(block: nn.Module) -> int | None:
    """Features per sample of ``features`` on this block's neuron output: the synapse's ``out_features`` (linear)
    or ``out_channels`` (convolution, averaged over positions); None when the synapse says neither."""
    synapse = getattr(block, "synapse", None)
    width = getattr(synapse, "out_features", None) or getattr(synapse, "out_channels", None)
    return int(width) if width is not None else None


def features(activity: Tensor) -> Tensor:
    """A neuron's output ``[T, B, N]`` or ``[T, B, C, H, W]`` as ``[B, N]`` or ``[B, C]``: averaged over time (a
    spike rate; the activation itself at T = 1) and, for feature maps, over positions."""
    rate = activity.mean(0)
    return rate.flatten(2).mean(2) if rate.dim() > 2 else rate
