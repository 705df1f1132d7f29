"""A network as a NIR graph and back: the chain of blocks, with each layer's nodes from its registered mapping.

Export: the input, then each block's synapse, norm, neuron and post layers in order, one node each (or as many as
the mapping gives); a block with a recurrent connection becomes a nested graph, input -> neuron -> output with the
loop neuron -> weight -> neuron (NIR allows cycles; snnTorch writes its ``RLeaky`` the same way), so the weight
reads the neuron's output of the previous step. The graph's metadata records ``dt`` (seconds per step) and each
neuron node its discretisation and reset.

Import: the nodes from the input to the output must form a chain (a recurrent loop inside a nested graph, or a
two-node cycle, is one link of it). Each node becomes a ``Part`` through its registered importer (a node whose
importer reads its neighbours, ``nir_import_around``, may take the node on either side into its part); a synapse
starts a block, the neuron after it joins it, and post layers join it in ``POST`` order. A neuron's input scaling
that no option gives (NIR's ``r``, ``w_in``, ``v_leak``) is folded into its block's synapse, so the network
computes the file's equations; the result is the YAML of the blocks and the tensors to load into the network that YAML builds.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..network import Block, Network
from ..stateful import is_stateful
from .registry import (
    Discretization,
    ExportContext,
    ImportContext,
    NIRUnsupported,
    Part,
    around_importer_for,
    exporter_for,
    importer_for,
)

NEURON_TYPES = ("LIF", "IF", "LI", "I", "CubaLIF", "CubaLI")
"""NIR node types that are neurons: what a loop weight feeds back into."""

KNOWN_DT = (
    "snnTorch and SpikingJelly export with 1e-4 s, Rockpool with 1e-3 s, Sinabs with 1 (time in steps, and exp steps), "
    "Norse with 1e-3 s but its time constants multiplied by that dt (read its files with 1e-6)"
)


def network_to_nir(
    network: Network, input_shape: tuple[int, ...], dt: float, metadata: dict[str, Any] | None = None
) -> Any:
    """The ``nir.NIRGraph`` of ``network`` (in eval mode: batch norm's running statistics) for per-step inputs of
    ``input_shape``, each step lasting ``dt`` seconds. ``NIRUnsupported`` names the first block NIR cannot express
    and why."""
    import nir

    if not dt > 0 or not math.isfinite(dt):
        raise NIRUnsupported(f"dt must be a positive number of seconds, got {dt}")
    ctx = ExportContext(float(dt))
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(input_shape))}
    edges: list[tuple[str, str]] = []
    last, shape = "input", tuple(input_shape)
    was_training = network.training
    network.eval()
    try:
        for i, block in enumerate(network.blocks):
            path = f"network.blocks[{i}]"
            if not isinstance(block, Block):
                raise NIRUnsupported(f"{path}: {type(block).__name__} blocks have no NIR mapping in snnlab")
            for part in ("synapse", "norm"):
                module = getattr(block, part)
                if module is not None:
                    last, shape = _chain(nodes, edges, last, f"blocks_{i}_{part}", module, shape, ctx, f"{path}.{part}")
            if block.recurrent is not None:
                last = _recurrent(nodes, edges, last, f"blocks_{i}_neuron", block, shape, ctx, path)
            elif block.neuron is not None:
                last, shape = _chain(
                    nodes, edges, last, f"blocks_{i}_neuron", block.neuron, shape, ctx, f"{path}.neuron"
                )
            for j, module in enumerate(block.post):
                last, shape = _chain(
                    nodes, edges, last, f"blocks_{i}_post_{j}", module, shape, ctx, f"{path}.post[{j}]"
                )
    finally:
        network.train(was_training)
    nodes["output"] = nir.Output(output_type=np.array(shape))
    edges.append((last, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": float(dt), **(metadata or {})})


def _export(module: nn.Module, shape: tuple[int, ...], ctx: ExportContext, path: str) -> list[Any]:
    try:
        return exporter_for(module)(module, shape, ctx)
    except NIRUnsupported as exc:
        raise NIRUnsupported(f"{path}: {type(module).__name__}: {exc}") from None


def _chain(
    nodes: dict[str, Any],
    edges: list[tuple[str, str]],
    last: str,
    name: str,
    module: nn.Module,
    shape: tuple[int, ...],
    ctx: ExportContext,
    path: str,
) -> tuple[str, tuple[int, ...]]:
    """Append the module's nodes after ``last``; returns the last node's name and the shape after the module."""
    exported = _export(module, shape, ctx, path)
    for k, node in enumerate(exported):
        key = name if len(exported) == 1 else f"{name}_{k}"
        nodes[key] = node
        edges.append((last, key))
        last = key
    return last, shape_after(module, shape)


def _recurrent(
    nodes: dict[str, Any],
    edges: list[tuple[str, str]],
    last: str,
    name: str,
    block: Block,
    shape: tuple[int, ...],
    ctx: ExportContext,
    path: str,
) -> str:
    """The block's neuron and recurrent weight as a nested graph whose loop feeds s[t-1] back."""
    import nir

    neuron = _export(block.neuron, shape, ctx, f"{path}.neuron")
    weight = _export(block.recurrent, shape, ctx, f"{path}.recurrent")
    if len(neuron) != 1 or len(weight) != 1:
        raise NIRUnsupported(f"{path}: a recurrent loop needs one neuron node and one weight node")
    inner = {
        "input": nir.Input(input_type=np.array(shape)),
        "neuron": neuron[0],
        "recurrent": weight[0],
        "output": nir.Output(output_type=np.array(shape)),
    }
    loop = [("input", "neuron"), ("neuron", "recurrent"), ("recurrent", "neuron"), ("neuron", "output")]
    nodes[name] = nir.NIRGraph(nodes=inner, edges=loop)
    edges.append((last, name))
    return name


@torch.no_grad()
def shape_after(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-sample shape ``module`` gives for inputs of ``shape`` (one step from rest for a stateful one)."""
    x = torch.zeros(1, *shape)
    out = module.step(x, module.initial_state(x))[0] if is_stateful(module) else module(x)
    return tuple(out.shape[1:])


# --- import ------------------------------------------------------------------------------------------------------


class ImportedBlocks(NamedTuple):
    """What a NIR graph becomes: the per-step input shape, the YAML of ``network.blocks``, the tensors to load
    into the network those blocks build (``state_dict`` keys), and notes on what was folded or assumed."""

    input_shape: tuple[int, ...]
    blocks: list[dict[str, Any]]
    tensors: dict[str, Tensor]
    notes: list[str]


def nir_to_blocks(graph: Any, dt: float, discretization: Discretization = "euler") -> ImportedBlocks:
    """Read a ``nir.NIRGraph`` as snnlab blocks, stepping its continuous equations by ``dt`` seconds with
    ``discretization`` where a node does not record its own. ``NIRUnsupported`` names the first node snnlab cannot
    express and why."""
    ctx = ImportContext(float(dt), discretization)
    input_shape, links = _chain_of(graph)
    blocks: list[dict[str, Part | list[Part] | None]] = []
    for name, part, recurrent in _parts_of(links, ctx):
        _place(blocks, part, recurrent, name)
    notes: list[str] = []
    yaml_blocks, tensors = [], {}
    for i, block in enumerate(blocks):
        _fold_input_map(block, i, notes)
        spec, block_tensors = _block_yaml(block)
        yaml_blocks.append(spec)
        tensors.update({f"blocks.{i}.{key}": value for key, value in block_tensors.items()})
    return ImportedBlocks(input_shape, yaml_blocks, tensors, notes)


def _parts_of(links: list[tuple[str, Any, Any]], ctx: ImportContext) -> list[tuple[str, Part, Part | None]]:
    """Each link of the chain as (name, part, loop weight's part or None). A node whose type reads its neighbours
    (``nir_import_around``) gets the node before it (unless that is a recurrent layer or taken by another such
    node) and the one after it (unless a recurrent layer or such a node itself), and may take them into its part."""
    parts: list[tuple[str, Part, Part | None]] = []
    k, taken_until = 0, -1  # links[: taken_until + 1] are read into a part of a node read with its neighbours
    while k < len(links):
        name, node, weight = links[k]
        around = around_importer_for(node)
        if around is None:
            recurrent = _import(weight, ctx, name, role="recurrent") if weight is not None else None
            parts.append((name, _import(node, ctx, name), recurrent))
            k += 1
            continue
        before = links[k - 1][1] if k > 0 and k - 1 > taken_until and links[k - 1][2] is None else None
        after = links[k + 1] if k + 1 < len(links) else None
        after = after[1] if after is not None and after[2] is None and around_importer_for(after[1]) is None else None
        try:
            read = around(before, node, after, ctx)
        except NIRUnsupported as exc:
            raise NIRUnsupported(f"node {name!r} ({type(node).__name__}): {exc}") from None
        if read.before:
            parts.pop()
        parts.append((name, read.part, None))
        taken_until = k + 1 if read.after else k
        k = taken_until + 1
    return parts


def _import(node: Any, ctx: ImportContext, name: str, role: str = "chain") -> Part:
    try:
        return importer_for(node, role)(node, ctx)  # type: ignore[arg-type]
    except NIRUnsupported as exc:
        raise NIRUnsupported(f"node {name!r} ({type(node).__name__}): {exc}") from None


def _chain_of(graph: Any) -> tuple[tuple[int, ...], list[tuple[str, Any, Any]]]:
    """The graph's input shape and its nodes from input to output as (name, node, loop weight or None)."""
    import nir

    successors: dict[str, list[str]] = defaultdict(list)
    predecessors: dict[str, list[str]] = defaultdict(list)
    for a, b in graph.edges:
        successors[a].append(b)
        predecessors[b].append(a)
    loops = _two_node_loops(graph, successors, predecessors)
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise NIRUnsupported(f"the graph has {len(inputs)} Input nodes; snnlab reads graphs with one")
    name, links = inputs[0], []
    shape = graph.nodes[name].input_type["input"]
    while True:
        after = [b for b in successors[name] if loops.get(name) != b]
        if not after:
            break
        if len(after) > 1:
            raise NIRUnsupported(
                f"node {name!r} feeds {len(after)} nodes ({', '.join(after)}); snnlab reads a chain of layers "
                "(recurrence inside a layer), not branches"
            )
        name = after[0]
        into = [a for a in predecessors[name] if loops.get(name) != a]
        if len(into) > 1:
            raise NIRUnsupported(f"node {name!r} sums {len(into)} inputs ({', '.join(into)}); snnlab reads a chain")
        node = graph.nodes[name]
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.NIRGraph):
            neuron, weight = _loop_of(node, name)
            links.append((name, neuron, weight))
        else:
            links.append((name, node, graph.nodes[loops[name]] if name in loops else None))
    if shape is None:
        raise NIRUnsupported("the Input node has no shape")
    return _without_sample_axis(tuple(int(n) for n in np.asarray(shape).reshape(-1)), links), links


def _without_sample_axis(shape: tuple[int, ...], links: list[tuple[str, Any, Any]]) -> tuple[int, ...]:
    """The per-step input shape: the Input's, less a leading axis of 1 where the first node reads the rest (the
    exporters built on nirtorch, Norse's and Rockpool's, record their sample's batch axis in the Input)."""
    first = links[0][1].input_type.get("input") if links else None
    reads = tuple(int(n) for n in np.asarray(first).reshape(-1)) if first is not None else ()
    if len(shape) > 1 and shape[0] == 1 and reads and shape[1:] == reads:
        return shape[1:]
    return shape


def _two_node_loops(graph: Any, successors: dict, predecessors: dict) -> dict[str, str]:
    """Neuron -> weight -> neuron cycles written without nesting: {neuron name: weight name}."""
    return {
        a: b
        for a, b in graph.edges
        if type(graph.nodes[a]).__name__ in NEURON_TYPES and successors[b] == [a] and predecessors[b] == [a]
    }


def _loop_of(subgraph: Any, name: str) -> tuple[Any, Any]:
    """The neuron and the weight of a nested recurrent graph: input -> neuron -> output, neuron -> weight ->
    neuron."""
    import nir

    inner = {k: n for k, n in subgraph.nodes.items() if not isinstance(n, (nir.Input, nir.Output))}
    neurons = [k for k, n in inner.items() if type(n).__name__ in NEURON_TYPES]
    weights = [k for k in inner if k not in neurons]
    if (
        len(neurons) != 1
        or len(weights) != 1
        or {(neurons[0], weights[0]), (weights[0], neurons[0])} - set(map(tuple, subgraph.edges))
    ):
        raise NIRUnsupported(
            f"nested graph {name!r} is not a recurrent layer (one neuron node and one weight node in a loop)"
        )
    return inner[neurons[0]], inner[weights[0]]


def _place(blocks: list[dict[str, Any]], part: Part, recurrent: Part | None, name: str) -> None:
    """Put ``part`` into the last block, or start a new one where the block order does not allow it there, or
    where the node's name says it was written from another block (``blocks_<i>_...``: snnlab's own files)."""
    from ..synapses import POST

    if recurrent is not None and part.role != "neuron":
        raise NIRUnsupported(f"node {name!r}: a loop around a {part.key}, not a neuron")
    hint = re.match(r"blocks_(\d+)_", name)
    hint = hint.group(1) if hint else None
    current = blocks[-1] if blocks and (hint is None or blocks[-1]["hint"] == hint) else None
    order = POST.in_order()
    if part.role == "synapse":
        current = None
    elif part.role == "neuron" and current is not None and (current["neuron"] is not None or current["post"]):
        current = None
    elif part.role == "post" and current is not None and current["post"]:
        if order.index(current["post"][-1].key) >= order.index(part.key):
            current = None
    if current is None:
        current = {"synapse": None, "neuron": None, "recurrent": None, "post": [], "hint": hint}
        blocks.append(current)
    if part.role == "post":
        current["post"].append(part)
    else:
        current[part.role] = part
        if recurrent is not None:
            current["recurrent"] = recurrent


def _fold_input_map(block: dict[str, Any], index: int, notes: list[str]) -> None:
    """Fold the neuron's input map ``scale * c + shift`` into the block's synapse (and the loop weight's rows)."""
    neuron: Part | None = block["neuron"]
    if neuron is None:
        return
    scale, shift = neuron.input_scale, neuron.input_shift
    if np.isscalar(scale) and scale == 1.0 and np.isscalar(shift) and shift == 0.0:
        return
    synapse: Part | None = block["synapse"]
    if synapse is None:
        raise NIRUnsupported(
            f"the {neuron.key} neuron of block {index} scales its input (NIR's r or v_leak), which snnlab folds into "
            "the synapse before it, and it has none"
        )
    out_features = synapse.tensors["weight"].shape[0]
    row_scale = _per_output(scale, out_features, "r")
    weight = synapse.tensors["weight"]
    synapse.tensors["weight"] = weight * row_scale.view(-1, *[1] * (weight.dim() - 1))
    bias = synapse.tensors.get("bias", torch.zeros(out_features))
    synapse.tensors["bias"] = bias * row_scale + _per_output(shift, out_features, "v_leak")
    synapse.options["bias"] = True
    if block["recurrent"] is not None:
        rec = block["recurrent"].tensors
        rec["weight"] = rec["weight"] * (row_scale if rec["weight"].dim() == 1 else row_scale.view(-1, 1))
    notes.append(
        f"network.blocks[{index}]: the neuron's input gain and leak potential (NIR's r, v_leak) are folded into "
        f"its {synapse.key} weights and bias"
    )


def _per_output(value: np.ndarray | float, out_features: int, name: str) -> Tensor:
    """A neuron's per-neuron factor as one value per synapse output (per channel for maps, which must agree)."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return torch.full((out_features,), float(array), dtype=torch.float32)
    per_channel = array.reshape(array.shape[0], -1)
    if per_channel.shape[0] != out_features or not np.allclose(per_channel, per_channel[:, :1], rtol=1e-6):
        raise NIRUnsupported(f"{name} varies within a channel of {out_features}; snnlab folds it per channel")
    return torch.as_tensor(per_channel[:, 0], dtype=torch.float32)


IDENTITY = {"model": "nonspiking", "activation": "identity"}
"""The neuron of an imported block that has a synapse but no neuron node (the builder would give it the default)."""


def _block_yaml(block: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    spec: dict[str, Any] = {}
    tensors: dict[str, Tensor] = {}
    synapse, neuron, recurrent = block["synapse"], block["neuron"], block["recurrent"]
    if synapse is not None:
        spec[synapse.key] = dict(synapse.options)
        tensors.update({f"synapse.{k}": v for k, v in synapse.tensors.items()})
    if neuron is not None:
        spec["neuron"] = {"model": neuron.key, **neuron.options}
    elif synapse is not None:
        spec["neuron"] = dict(IDENTITY)
    if recurrent is not None:
        spec["recurrent"] = {"kind": recurrent.key, **recurrent.options}
        tensors.update({f"recurrent.{k}": v for k, v in recurrent.tensors.items()})
    for post in block["post"]:
        spec[post.key] = dict(post.options) if post.options else True
    return spec, tensors
