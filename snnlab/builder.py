"""Build a ``Network`` from the ``network`` section, checking that each block's sizes chain to the next."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from .config import BlockConfig, NetworkConfig
from .errors import ConfigError
from .network import Block, Network, Residual
from .neurons import NEURONS, Neuron
from .stateful import is_stateful
from .synapses import NORMS, POST, RECURRENT, SYNAPSES


def build_network(
    cfg: NetworkConfig, input_shape: tuple[int, ...], membrane_output: bool = False, notes: list[str] | None = None
) -> Network:
    """The network ``cfg`` describes, for per-step inputs of ``input_shape``.

    With ``membrane_output`` (the objective reads membranes) the last block with a synapse gets the membrane-only
    form of the default neuron unless it names its own, and its synapse's ``readout_form()`` where it has one; a
    line saying so is appended to ``notes``.
    Raises ``ConfigError`` naming ``network.blocks[i]...`` when sizes do not chain.
    """
    if cfg.memory_format == "channels_last" and len(input_shape) != 3:
        raise ConfigError(
            [
                (
                    "network.memory_format",
                    f"channels_last orders the channels of [C, H, W] inputs; this network's input is "
                    f"{list(input_shape)} (contiguous, or data whose steps are maps: data.flatten: false)",
                )
            ]
        )
    synapse_blocks = [i for i, b in enumerate(cfg.blocks) if b.synapse_kind() is not None]
    output_index = synapse_blocks[-1] if membrane_output and synapse_blocks else None
    blocks, shape = [], tuple(input_shape)
    for i, spec in enumerate(cfg.blocks):
        block, shape = _build(spec, shape, cfg, f"network.blocks[{i}]", swap=i == output_index, notes=notes)
        blocks.append(block)
    return Network(blocks, memory_format=cfg.memory_format)


def output_shape(network: Network, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-sample shape of the network's output for per-step inputs of ``input_shape``."""
    return _shape_after(_StepOnce(network), input_shape)


def _build(
    spec: Any, shape: tuple[int, ...], cfg: NetworkConfig, path: str, swap: bool, notes: list[str] | None
) -> tuple[nn.Module, tuple[int, ...]]:
    if spec.residual is not None:
        inner, inner_shape = [], shape
        for j, sub in enumerate(spec.residual):
            block, inner_shape = _build(sub, inner_shape, cfg, f"{path}.residual[{j}]", False, notes)
            inner.append(block)
        if inner_shape != shape:
            raise ConfigError(
                [
                    (
                        f"{path}.residual",
                        f"its blocks turn {list(shape)} into {list(inner_shape)}; a residual block must keep the shape",
                    )
                ]
            )
        return Residual(inner), shape
    key = "neuron"
    try:
        parts: dict[str, Any] = {}
        current = shape
        if (kind := spec.synapse_kind()) is not None:
            key = kind
            parts["synapse"] = _synapse(spec, kind, shape, swap, path, notes)
            current = _shape_after(parts["synapse"], shape)
        if spec.norm is not None:
            key = "norm"
            parts["norm"] = NORMS.build(spec.norm, in_shape=current)
        key = "neuron"
        parts["neuron"] = _neuron(spec, cfg, swap, path, notes, current)
        if spec.recurrent is not None:
            key = "recurrent"
            parts["recurrent"] = RECURRENT.build(spec.recurrent, in_shape=current)
        post, after = [], current
        for kind in spec.post_kinds():
            key = kind
            post.append(POST.build(getattr(spec, kind), in_shape=after))
            after = _shape_after(post[-1], after)
        block = Block(post=post, fuse=cfg.fuse_blocks == "auto", **parts)
        return block, _shape_after(_StepOnce(block), shape)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(
            [
                (
                    f"{path}.{key}" if key != "neuron" or spec.neuron is not None else "network.neuron",
                    str(exc).splitlines()[0],
                )
            ]
        ) from None


def _synapse(
    spec: BlockConfig, kind: str, shape: tuple[int, ...], swap: bool, path: str, notes: list[str] | None
) -> nn.Module:
    """The block's synapse; in the output block (``swap``) the form its ``readout_form()`` gives, if it has one
    (an E-I circuit's balanced current, without division)."""
    synapse = SYNAPSES.build(getattr(spec, kind), in_shape=shape)
    readout_form = getattr(synapse, "readout_form", None)
    if not swap or not callable(readout_form):
        return synapse
    output = readout_form()
    if notes is not None and output is not synapse:
        notes.append(f"{path}.{kind}: {output.extra_repr()}, for the objective's membrane readout")
    return output


def _neuron(
    spec: BlockConfig, cfg: NetworkConfig, swap: bool, path: str, notes: list[str] | None, shape: tuple[int, ...]
) -> Neuron | None:
    """The block's own neuron, else the default for a block with a synapse; the output block gets the default's
    membrane form under a membrane readout. ``shape`` is the neuron's input per sample."""
    if spec.neuron is not None:
        return _build_neuron(spec.neuron, shape)
    if spec.synapse_kind() is None:
        return None
    neuron = _build_neuron(cfg.neuron, shape)
    if not swap:
        return neuron
    membrane = neuron.readout_form()
    if notes is not None and type(membrane) is not type(neuron):
        notes.append(
            f"{path}: neuron {getattr(cfg.neuron, NEURONS.key)} becomes {type(membrane).__name__} (its membrane) "
            f"for the objective's membrane readout; objective.swap_output_neuron=false keeps it"
        )
    return membrane


def _build_neuron(config: Any, shape: tuple[int, ...]) -> Neuron:
    """A neuron from its options; one whose constructor takes ``in_shape`` (per-neuron parameters, ALIF) gets the
    shape of its input per sample, as synapses and norms do."""
    builder = NEURONS.builder(getattr(config, NEURONS.key))
    extra = {"in_shape": shape} if "in_shape" in inspect.signature(builder).parameters else {}
    return NEURONS.build(config, **extra)


@torch.no_grad()
def _shape_after(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    was_training = module.training
    module.eval()
    x = torch.zeros(1, *in_shape)
    try:
        out = module.step(x, module.initial_state(x))[0] if is_stateful(module) else module(x)
        return tuple(out.shape[1:])
    finally:
        module.train(was_training)


class _StepOnce(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block.step(x)[0]
