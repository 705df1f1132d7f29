"""Where each layer's NIR mapping is registered: next to the layer, by the file that defines it.

A layer's file registers an exporter for its module type (``@nir_export(LIF)``: the module and the shape of one
sample entering it, to the NIR nodes that compute the same thing) and an importer for the NIR node type it reads
back (``@nir_import("LIF")``: a node to a ``Part``, the YAML options and tensors of one part of a block). A layer
that exports as a chain of nodes reads its chain back with ``@nir_import_around("Delay")``: the node together with
the nodes on either side of it, which it may take into its part. A layer NIR cannot express registers a refusal
that says why (``refuse_nir(nn.MaxPool2d, "...")``). The graph walker
(``snnlab.export.graph``) only chains what these functions return, so a new model is still one file and one
registry line. Nothing here imports ``nir``: a mapping imports it when it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from torch import Tensor, nn

from ..errors import SnnlabError

Role = Literal["synapse", "neuron", "recurrent", "post"]
"""Where a part sits in a block (``snnlab.network.Block``): synapse -> (+ recurrent) -> neuron -> post layers."""

Discretization = Literal["exp", "euler"]


class NIRUnsupported(SnnlabError):
    """A layer or NIR node that has no exact counterpart on the other side; the message names it and says why."""


@dataclass(frozen=True)
class ExportContext:
    """What every exporter needs besides the module: the seconds one time step stands for."""

    dt: float


@dataclass(frozen=True)
class ImportContext:
    """What every importer needs besides the node: the step ``dt`` in seconds, and the discretisation to read a
    node's continuous time constants with when the node does not record its own (files of other libraries,
    which all step with Euler)."""

    dt: float
    discretization: Discretization = "euler"


@dataclass
class Part:
    """One part of a block read from a NIR node.

    ``key`` is its YAML key (``linear``, ``conv``, ``pool``, ``flatten``, ``dense``...) or, for a neuron, its
    ``model``; ``options`` its YAML options; ``tensors`` the entries of the built module's ``state_dict``.
    A neuron whose input scaling no snnlab option gives returns it as ``input_scale`` and ``input_shift`` (per
    neuron or scalar): the current c becomes ``input_scale * c + input_shift``, folded into the block's synapse.
    """

    role: Role
    key: str
    options: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    input_scale: np.ndarray | float = 1.0
    input_shift: np.ndarray | float = 0.0


@dataclass
class Around:
    """What an importer of a node and its neighbours read: the part, and whether it took the node before the node
    (``before``) and the one after it (``after``) into that part."""

    part: Part
    before: bool = False
    after: bool = False


Exporter = Callable[[nn.Module, tuple[int, ...], ExportContext], list[Any]]
Importer = Callable[[Any, ImportContext], Part]
AroundImporter = Callable[[Any, Any, Any, ImportContext], Around]

_EXPORTERS: dict[type, Exporter] = {}
_IMPORTERS: dict[tuple[str, str], Importer] = {}
_AROUND: dict[str, AroundImporter] = {}


def nir_export(*types: type) -> Callable[[Exporter], Exporter]:
    """Register ``fn(module, in_shape, ctx) -> [nir nodes]`` as the NIR form of modules of exactly ``types`` (an
    empty list: the module is the identity at inference, e.g. dropout). A subclass is not covered by its base's
    entry: a CUBA-LIF is a LIF in Python but not in NIR, so a model without its own entry is refused."""

    def register(fn: Exporter) -> Exporter:
        for t in types:
            _EXPORTERS[t] = fn
        return fn

    return register


def nir_import(*node_types: str, role: Literal["chain", "recurrent"] = "chain") -> Callable[[Importer], Importer]:
    """Register ``fn(node, ctx) -> Part`` as the reading of NIR nodes of ``node_types`` (class names: ``"LIF"``).
    ``role="recurrent"`` reads the weight node of a recurrent loop (neuron -> weight -> neuron)."""

    def register(fn: Importer) -> Importer:
        for name in node_types:
            _IMPORTERS[(role, name)] = fn
        return fn

    return register


def nir_import_around(*node_types: str) -> Callable[[AroundImporter], AroundImporter]:
    """Register ``fn(before, node, after, ctx) -> Around`` as the reading of NIR nodes of ``node_types`` with their
    neighbours in the chain (``None`` at its ends, or where a neighbour is a recurrent layer or read so itself): for
    a layer that exports as a chain of nodes, as the delay synapse does (``Linear -> Delay -> Linear``)."""

    def register(fn: AroundImporter) -> AroundImporter:
        for name in node_types:
            _AROUND[name] = fn
        return fn

    return register


def around_importer_for(node: Any) -> AroundImporter | None:
    """The importer that reads ``node`` with its neighbours, if its type registered one."""
    return _AROUND.get(type(node).__name__)


def refuse_nir(module_type: type, reason: str) -> None:
    """Register that modules of ``module_type`` cannot be exported, and why (the message names the block)."""

    def refuse(module: nn.Module, in_shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
        raise NIRUnsupported(reason)

    _EXPORTERS[module_type] = refuse


def exporter_for(module: nn.Module) -> Exporter:
    """The exporter registered for ``module``'s type; ``NIRUnsupported`` when there is none."""
    found = _EXPORTERS.get(type(module))
    if found is None:
        raise NIRUnsupported(f"{type(module).__name__} has no NIR mapping")
    return found


def importer_for(node: Any, role: Literal["chain", "recurrent"] = "chain") -> Importer:
    """The importer of a NIR node's type; ``NIRUnsupported`` naming the type when snnlab has none."""
    name = type(node).__name__
    found = _IMPORTERS.get((role, name))
    if found is None:
        known = sorted({n for r, n in _IMPORTERS if r == role} | (set(_AROUND) if role == "chain" else set()))
        where = "as a recurrent weight" if role == "recurrent" else "as a layer"
        raise NIRUnsupported(f"NIR {name} has no snnlab counterpart {where} (snnlab reads: {', '.join(known)})")
    return found


def uniform(values: Any, name: str, rtol: float = 1e-6) -> float:
    """The one value of a per-neuron NIR parameter that is the same for every neuron (to ``rtol``: files store
    float32); ``NIRUnsupported`` naming it otherwise, since the snnlab option is one per layer."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise NIRUnsupported(f"{name} is empty")
    first = float(array[0])
    if not np.allclose(array, first, rtol=rtol, atol=0.0) and not (np.isinf(array) & (array == first)).all():
        raise NIRUnsupported(
            f"{name} differs between neurons ({float(array.min()):.6g} to {float(array.max()):.6g}); snnlab's option "
            "is one value per layer"
        )
    return first


def tidy(value: float) -> float:
    """A parameter read from a file as the shortest number of 12 significant digits: the config says ``tau: 5.0``,
    not ``4.999999999999999``; a change far below float32's resolution (which every kernel computes in)."""
    return float(f"{value:.12g}")


def close(a: Any, b: Any, rtol: float = 1e-5) -> bool:
    """Whether arrays or numbers ``a`` and ``b`` agree to ``rtol`` (the rounding of float32 files)."""
    return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=1e-12))


def one_int(value: Any, name: str) -> int:
    """A NIR conv or pool argument (an int or a (height, width) pair) as snnlab's one int for both axes."""
    pair = np.broadcast_to(np.asarray(value), (2,))
    if pair[0] != pair[1]:
        raise NIRUnsupported(f"{name} {pair.tolist()} differs between height and width; snnlab's is one for both")
    return int(pair[0])


def options_from_metadata(node: Any) -> dict[str, Any]:
    """The snnlab options a node written by snnlab carries in its metadata (``snnlab_options``, JSON: what NIR has
    no field for); none for other libraries' files."""
    return json.loads(node.metadata.get("snnlab_options", "{}"))
