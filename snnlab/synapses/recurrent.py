"""Recurrent connections: the current a block's neuron receives from its own output at the previous step,
i[t] += W s[t-1]. Registered in ``RECURRENT`` (``recurrent: dense`` or ``recurrent: {kind: one_to_one}``).

``dense`` connects every neuron to every neuron of the block (all-to-all, flat layers); ``one_to_one`` connects
each neuron to itself only (one weight per neuron, any shape). The block keeps s[t-1] in its state.

NIR: the weight node of a loop neuron -> weight -> neuron in a nested graph (``snnlab.export.graph``): ``Linear``
for ``dense``, and for ``one_to_one`` the diagonal ``Linear`` snnTorch writes for its ``RLeaky(V=...)`` (a flat
layer) or ``Scale`` (maps).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..export.registry import ExportContext, ImportContext, NIRUnsupported, Part, nir_export, nir_import


class OneToOne(nn.Module):
    """i = w * s elementwise, one weight per neuron."""

    def __init__(self, shape: tuple[int, ...], init: float, learnable: bool) -> None:
        super().__init__()
        weight = torch.full(shape, float(init))
        if learnable:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)

    def forward(self, s: Tensor) -> Tensor:
        return s * self.weight


def dense(in_shape: tuple[int, ...], learnable: bool = True) -> nn.Module:
    """All-to-all W s[t-1] over a flat layer (no bias; PyTorch's default Linear initialisation)."""
    if len(in_shape) != 1:
        raise ValueError(f"a dense recurrent connection needs a flat layer, got {list(in_shape)}; use one_to_one")
    layer = nn.Linear(in_shape[0], in_shape[0], bias=False)
    layer.weight.requires_grad_(learnable)
    return layer


def one_to_one(in_shape: tuple[int, ...], init: float = 0.0, learnable: bool = True) -> nn.Module:
    """Each neuron's own s[t-1] times its weight (starting at ``init``)."""
    return OneToOne(in_shape, init, learnable)


@nir_export(OneToOne)
def one_to_one_to_nir(module: OneToOne, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    import nir

    weight = module.weight.detach().cpu().float().numpy()
    metadata = {"snnlab_options": json.dumps({"learnable": isinstance(module.weight, nn.Parameter)})}
    if weight.ndim == 1:
        return [nir.Linear(weight=np.diag(weight), metadata={**metadata, "snnlab_recurrent": "one_to_one"})]
    return [nir.Scale(scale=weight, metadata=metadata)]


@nir_import("Linear", "Affine", "Scale", role="recurrent")
def recurrent_from_nir(node: Any, ctx: ImportContext) -> Part:
    """``one_to_one`` from ``Scale`` or a ``Linear`` snnlab marked so; ``dense`` from any other (bias-free)
    weight."""
    options = json.loads(node.metadata.get("snnlab_options", "{}"))
    if type(node).__name__ == "Scale":
        return Part("recurrent", "one_to_one", options, {"weight": torch.as_tensor(node.scale, dtype=torch.float32)})
    if getattr(node, "bias", None) is not None and np.any(node.bias):
        raise NIRUnsupported("a recurrent weight with a bias; snnlab's recurrent connections have none")
    weight = torch.as_tensor(node.weight, dtype=torch.float32)
    if node.metadata.get("snnlab_recurrent") == "one_to_one":
        return Part("recurrent", "one_to_one", options, {"weight": torch.diagonal(weight).clone()})
    return Part("recurrent", "dense", options, {"weight": weight})
