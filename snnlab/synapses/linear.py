"""Fully connected synapses: current[t] = W s[t] + b."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import Tensor, nn


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
    """The input size of a fully connected synapse after a block producing ``in_shape``; ``ValueError`` when that
    is not flat or differs from ``in_features`` (when given)."""
    if len(in_shape) != 1:
        raise ValueError(
            f"expects a flat input but the previous block produces shape {list(in_shape)}; "
            "add a block `- flatten: true` before it"
        )
    if in_features is not None and in_features != in_shape[0]:
        raise ValueError(f"in_features is {in_features} but the previous block produces {in_shape[0]} features")
    return in_shape[0]
