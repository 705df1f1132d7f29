"""Fully connected synapses: current[t] = W s[t] + b. NIR: ``Affine`` (``Linear`` without bias)."""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field
from torch import Tensor, nn

from ..export.registry import ExportContext, ImportContext, NIRUnsupported, Part, nir_export, nir_import


class Linear(nn.Linear):
    """``nn.Linear`` that can count the synaptic operations its input triggers."""

    def synaptic_ops(self, x: Tensor) -> Tensor:
        """Accumulates triggered by the non-zero entries of ``x`` ``[N, in]``: each reaches ``out_features`` targets."""
        return x.ne(0).sum() * self.out_features


def linear(
    in_shape: tuple[int, ...],
    out_features: Annotated[int, Field(ge=1)],
    in_features: int | None = None,
    bias: bool = True,
) -> Linear:
    """A Linear from ``in_shape`` (which must be flat) to ``out_features``.

    ``in_features``, when given, must equal the size the previous block produces.
    """
    return Linear(flat_features(in_shape, in_features), out_features, bias=bias)


def flat_features(in_shape: tuple[int, ...], in_features: int | None) -> int:
    """The size of a flat ``in_shape``, checked against ``in_features`` when given; else a ``ValueError`` saying
    what the previous block produces."""
    if len(in_shape) != 1:
        raise ValueError(
            f"expects a flat input but the previous block produces shape {list(in_shape)}; "
            "add a block `- flatten: true` before it"
        )
    if in_features is not None and in_features != in_shape[0]:
        raise ValueError(f"in_features is {in_features} but the previous block produces {in_shape[0]} features")
    return in_shape[0]


def numpy_of(tensor: Tensor | None) -> Any:
    """A parameter as the float32 numpy array NIR stores (None stays None)."""
    return None if tensor is None else tensor.detach().cpu().float().numpy()


@nir_export(Linear, nn.Linear)
def linear_to_nir(module: nn.Linear, shape: tuple[int, ...], ctx: ExportContext) -> list[Any]:
    """``nir.Affine``, or ``nir.Linear`` without bias (a dense recurrent connection is an ``nn.Linear`` too)."""
    import nir

    if module.bias is None:
        return [nir.Linear(weight=numpy_of(module.weight))]
    return [nir.Affine(weight=numpy_of(module.weight), bias=numpy_of(module.bias))]


@nir_import("Affine", "Linear")
def linear_from_nir(node: Any, ctx: ImportContext) -> Part:
    weight = torch.as_tensor(node.weight, dtype=torch.float32)
    if weight.dim() != 2:
        raise NIRUnsupported(f"weight of shape {list(weight.shape)}; snnlab's linear takes [out, in]")
    tensors = {"weight": weight}
    bias = getattr(node, "bias", None)
    if bias is not None:
        tensors["bias"] = torch.as_tensor(bias, dtype=torch.float32).reshape(-1)
    return Part("synapse", "linear", {"out_features": weight.shape[0], "bias": bias is not None}, tensors)
