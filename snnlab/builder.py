"""Build a ``Network`` from the ``network`` section, checking that each block's sizes chain to the next."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import NetworkConfig
from .errors import ConfigError
from .network import Block, Network
from .neurons import NEURONS, Neuron
from .synapses import SYNAPSES, batch_norm, dropout, flatten, pool


def build_network(cfg: NetworkConfig, input_shape: tuple[int, ...], num_classes: int) -> Network:
    """The network ``cfg`` describes, for per-step inputs of ``input_shape`` and ``num_classes`` outputs.

    Raises ``ConfigError`` naming ``network.blocks[i]...`` when sizes do not chain.
    """
    synapse_blocks = [i for i, b in enumerate(cfg.blocks) if b.synapse_kind() is not None]
    if not synapse_blocks:
        raise ConfigError([("network.blocks", "needs at least one block with a synapse (linear, conv)")])
    output_index = synapse_blocks[-1]
    blocks, shape = [], tuple(input_shape)
    for i, spec in enumerate(cfg.blocks):
        path = f"network.blocks[{i}]"
        try:
            block = _build_block(spec, shape, cfg, is_output=i == output_index, path=path)
            shape = _out_shape(block, shape)
        except (ValueError, RuntimeError) as exc:
            key = spec.synapse_kind() or next(k for k in ("flatten", "pool", "dropout") if getattr(spec, k))
            raise ConfigError([(f"{path}.{key}", str(exc).splitlines()[0])]) from None
        blocks.append(block)
    if shape != (num_classes,):
        raise ConfigError(
            [
                (
                    f"network.blocks[{len(cfg.blocks) - 1}]",
                    f"the network ends with shape {list(shape)} "
                    f"but the data has {num_classes} classes; the last block must produce [{num_classes}]",
                )
            ]
        )
    return Network(blocks, cfg.readout)


def _build_block(spec: Any, in_shape: tuple[int, ...], cfg: NetworkConfig, is_output: bool, path: str) -> Block:
    kind = spec.synapse_kind()
    post: list[nn.Module] = []
    if kind is None:
        if spec.flatten:
            post.append(flatten())
        if spec.pool is not None:
            post.append(pool(in_shape, spec.pool))
        if spec.dropout is not None:
            post.append(dropout(spec.dropout))
        return Block(post=post)
    synapse = SYNAPSES.build(getattr(spec, kind), in_shape=in_shape)
    current_shape = _shape_after(synapse, in_shape)
    norm = batch_norm(current_shape) if spec.norm == "batch" else None
    try:
        neuron = _neuron(spec, cfg, is_output)
    except ValueError as exc:
        key = f"{path}.neuron" if spec.neuron is not None else "network.neuron"
        raise ConfigError([(key, str(exc))]) from None
    if spec.pool is not None:
        post.append(pool(current_shape, spec.pool))
    if spec.dropout is not None:
        post.append(dropout(spec.dropout))
    return Block(synapse, norm, neuron, post)


def _neuron(spec: Any, cfg: NetworkConfig, is_output: bool) -> Neuron:
    """The block's own neuron, else the default; the output block gets the default's membrane form under a membrane readout."""
    if spec.neuron is not None:
        return NEURONS.build(spec.neuron)
    neuron = NEURONS.build(cfg.neuron)
    if is_output and cfg.readout.reads == "membrane":
        return neuron.readout_form()
    return neuron


@torch.no_grad()
def _shape_after(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    was_training = module.training
    module.eval()
    try:
        return tuple(module(torch.zeros(1, *in_shape)).shape[1:])
    finally:
        module.train(was_training)


@torch.no_grad()
def _out_shape(block: Block, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    return _shape_after(_StepOnce(block), in_shape)


class _StepOnce(nn.Module):
    def __init__(self, block: Block) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block.step(x)[0]
