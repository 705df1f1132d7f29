"""Networks to NIR graphs and files, and back, in Python (``snnlab.export``'s entry points)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

from ..network import Network
from .graph import KNOWN_DT, network_to_nir, nir_to_blocks
from .registry import Discretization, NIRUnsupported

DEFAULT_DT = 1e-4
"""Seconds per step when exporting without ``dt`` (**choice**: snnTorch's and SpikingJelly's importers assume
1e-4 s, so their default reads snnlab's files as written); the value is stored in the file either way."""


def to_nir(network: Network, input_shape: tuple[int, ...], dt: float = DEFAULT_DT, config: str | None = None) -> Any:
    """The ``nir.NIRGraph`` of ``network`` for per-step inputs of ``input_shape``, one step lasting ``dt`` seconds
    (recorded in the graph's metadata, with the experiment's YAML ``config`` when given)."""
    metadata: dict[str, Any] = {"source": "snnlab"}
    if config is not None:
        metadata["snnlab_config"] = config
    return network_to_nir(network, tuple(input_shape), dt, metadata)


def write_nir(path: str | Path, graph: Any) -> None:
    """Write a graph to a NIR (HDF5) file."""
    import nir

    nir.write(str(path), graph)


def read_nir(path: str | Path) -> Any:
    """Read a NIR file; a file that is not one is a ``NIRUnsupported`` naming it."""
    import nir

    try:
        return nir.read(str(path))
    except (OSError, KeyError, ValueError, AssertionError) as exc:
        raise NIRUnsupported(f"{path}: not a readable NIR file ({type(exc).__name__}: {exc})") from None


def graph_dt(graph: Any, dt: float | None) -> float:
    """The step to read ``graph`` with: ``dt`` when given, else the one its metadata records."""
    if dt is None:
        dt = graph.metadata.get("dt") if isinstance(graph.metadata, dict) else None
        if dt is None:
            raise NIRUnsupported(f"the graph records no time step; give dt in seconds ({KNOWN_DT})")
    dt = float(dt)
    if not dt > 0 or not math.isfinite(dt):
        raise NIRUnsupported(f"dt must be a positive number of seconds, got {dt}")
    return dt


class ImportedNetwork(NamedTuple):
    """A NIR graph as an snnlab network: the network with the file's weights, the ``network`` section of YAML that
    builds it, the per-step input shape, the step ``dt`` in seconds it was read with, and notes on what was
    folded."""

    network: Network
    config: dict[str, Any]
    input_shape: tuple[int, ...]
    dt: float
    notes: list[str]


def from_nir(source: Any, dt: float | None = None, discretization: Discretization | None = None) -> ImportedNetwork:
    """The network a NIR graph (or file) describes, stepping its equations by ``dt`` seconds (default: the file's
    own) with ``discretization`` for nodes that do not record theirs (default ``euler``, what every other library
    uses). ``NIRUnsupported`` names the first node snnlab cannot express."""
    import torch

    from ..builder import build_network
    from ..config import experiment_schema

    graph = read_nir(source) if isinstance(source, (str, Path)) else source
    step = graph_dt(graph, dt)
    imported = nir_to_blocks(graph, step, discretization or "euler")
    neurons = [block["neuron"] for block in imported.blocks if "neuron" in block]
    config = {"neuron": neurons[0] if neurons else "lif", "blocks": imported.blocks}
    network_config = experiment_schema().model_fields["network"].annotation.model_validate(config)
    network = build_network(network_config, imported.input_shape)
    state = network.state_dict()
    for key, tensor in imported.tensors.items():
        if key not in state or state[key].shape != tensor.shape:
            found = list(state[key].shape) if key in state else "nothing"
            raise NIRUnsupported(f"{key}: the file gives {list(tensor.shape)}, the network built from it has {found}")
    with torch.no_grad():
        network.load_state_dict(imported.tensors, strict=False)
    network.eval()
    return ImportedNetwork(network, config, imported.input_shape, step, imported.notes)
