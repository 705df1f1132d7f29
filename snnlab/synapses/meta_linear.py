r"""Quantal synapses of the probabilistic meta neuron (after Levy & Baxter 2002; Rudnicka, Szczepanski & Pregowska,
arXiv 2508.11674): each active input transmits with probability p_syn and a random amplitude q ~ U(0, 1), and
inhibitory inputs are scaled by b.

.. math::

    I_i = \sum_j w^b_{ij}\, x_j\, \xi_{ij}\, q_{ij} + c_i, \qquad
    \xi_{ij} \sim \mathrm{Bernoulli}(p_{syn}), \; q_{ij} \sim U(0, 1), \qquad
    w^b = [W]_+ - b\, [-W]_+

An input is inhibitory through a negative weight, so :math:`w^b` keeps the excitatory weights and scales the
inhibitory ones by b (choice: METHODS.md Part A 5 says only "inhibitory inputs are scaled by b"). Given the
inputs, E[xi q] = p/2 and E[(xi q)^2] = p/3, so

.. math::

    E[I_i] = \tfrac{p}{2} \sum_j w^b_{ij} x_j + c_i, \qquad
    \mathrm{Var}[I_i] = \big(\tfrac{p}{3} - \tfrac{p^2}{4}\big) \sum_j (w^b_{ij} x_j)^2 .

``transmission`` says how the current is drawn:

* ``gaussian`` (default; choice): :math:`I = E[I] + \sqrt{\mathrm{Var}[I]}\, \varepsilon`, one
  :math:`\varepsilon \sim N(0, 1)` per neuron and step. A sum of many independent synaptic terms is close to normal,
  and it costs two matrix products instead of a draw per synapse; W, p_syn and b get exact reparameterised
  gradients (the local reparameterisation trick, Kingma, Salimans & Welling 2015). With few active inputs the
  current is less skewed than the exact one, and may have the other sign.
* ``exact``: xi and q drawn for every synapse (``[N, out, in]`` numbers a step): the definition itself, for small
  layers and as the reference of ``gaussian``; p_syn's gradient is straight-through (d xi / d p = 1).
* ``mean``: E[I], deterministic: the path the tests differentiate, and a mean-field ablation.

Randomness comes from torch's global generator, as for the meta neuron (``snnlab.neurons.meta``). p_syn is learned
as sigmoid(logit), so it stays in (0, 1); b is clamped to b >= 0 after every update.

Example::

    >>> import torch
    >>> syn = MetaLinear(3, 2, p_syn=0.5, b=2.0, transmission="mean", bias=False)
    >>> with torch.no_grad():
    ...     _ = syn.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.5, -0.5]]))
    >>> syn(torch.tensor([[1.0, 1.0, 1.0]])).tolist()   # p/2 [(1 - 2), (0.5 + 0.5 - 1)]
    [[-0.25, 0.0]]
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..export.registry import refuse_nir
from ..neurons.meta import sample_spikes
from .linear import Linear, flat_features

Transmission = Literal["gaussian", "exact", "mean"]


def inhibition_scaled(weight: Tensor, b: Tensor | float) -> Tensor:
    """w^b = [W]_+ - b [-W]_+: excitatory weights as they are, inhibitory ones times b."""
    return weight.clamp(min=0) - b * (-weight).clamp(min=0)


def quantal_current(x: Tensor, weight: Tensor, p: Tensor | float, transmission: Transmission) -> Tensor:
    """sum_j w_ij x_j xi_ij q_ij for inputs ``x`` ``[N, in]`` and weights ``[out, in]`` (no bias), drawn as
    ``transmission`` says (see the module's docstring)."""
    mean = F.linear(x, weight) * (p / 2)
    if transmission == "mean":
        return mean
    if transmission == "gaussian":
        variance = F.linear(x * x, weight * weight) * (p / 3 - p * p / 4)
        return mean + variance.clamp_min(1e-30).sqrt() * torch.randn_like(mean)
    shape = (*x.shape[:-1], *weight.shape)
    p = p.to(x.dtype) if isinstance(p, Tensor) else torch.tensor(p, dtype=x.dtype, device=x.device)
    xi = sample_spikes(p, torch.rand(shape, dtype=x.dtype, device=x.device))
    q = torch.rand(shape, dtype=x.dtype, device=x.device)
    return (weight * xi * q * x.unsqueeze(-2)).sum(-1)


class MetaLinear(Linear):
    """Fully connected quantal synapses: current = sum_j w^b_ij x_j xi_ij q_ij + bias (see the module's docstring).

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        p_syn: the probability that an active input transmits.
        b: the scale of inhibitory (negative-weight) inputs.
        transmission: ``gaussian``, ``exact`` or ``mean``.
        learn_intrinsic: learn p_syn and b (one value per layer each).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        p_syn: float = 0.5,
        b: float = 1.0,
        transmission: Transmission = "gaussian",
        learn_intrinsic: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if not 0 < p_syn <= 1 or (learn_intrinsic and p_syn == 1):
            raise ValueError(f"p_syn must be in (0, 1) (1 only when not learned), got {p_syn}")
        if not b >= 0:
            raise ValueError(f"b must be >= 0, got {b}")
        self.transmission = transmission
        self.learn_intrinsic = learn_intrinsic
        if learn_intrinsic:
            self.p_logit = nn.Parameter(torch.tensor(math.log(p_syn / (1 - p_syn))))
            self.b: Tensor | float = nn.Parameter(torch.tensor(float(b)))
        else:
            self._p_syn = p_syn
            self.b = b

    @property
    def p_syn(self) -> Tensor | float:
        return torch.sigmoid(self.p_logit) if self.learn_intrinsic else self._p_syn

    def forward(self, x: Tensor) -> Tensor:
        current = quantal_current(x, inhibition_scaled(self.weight, self.b), self.p_syn, self.transmission)
        return current if self.bias is None else current + self.bias

    @torch.no_grad()
    def after_update(self) -> None:
        """Keep b >= 0, so that inhibitory inputs stay inhibitory."""
        if isinstance(self.b, Tensor):
            self.b.clamp_(min=0)

    def extra_repr(self) -> str:
        p, b = (float(v.detach()) if isinstance(v, Tensor) else v for v in (self.p_syn, self.b))
        return (
            f"{super().extra_repr()}, p_syn={p:.4g}, b={b:.4g}, transmission={self.transmission}, "
            f"learn_intrinsic={self.learn_intrinsic}"
        )


def meta_linear(
    in_shape: tuple[int, ...],
    out_features: Annotated[int, Field(ge=1)],
    in_features: int | None = None,
    bias: bool = True,
    p_syn: Annotated[float, Field(gt=0, le=1)] = 0.5,
    b: Annotated[float, Field(ge=0)] = 1.0,
    transmission: Transmission = "gaussian",
    learn_intrinsic: bool = True,
) -> MetaLinear:
    """Quantal synapses from ``in_shape`` (which must be flat) to ``out_features`` meta neurons (give the block
    ``neuron: meta``, or make it the network's default).

    Args:
        out_features: the neurons it feeds.
        in_features: when given, must equal the size the previous block produces.
        bias: add a learnable bias (not subject to transmission failures).
        p_syn: the probability that an active input transmits (learned as sigmoid(logit)).
        b: the scale of inhibitory (negative-weight) inputs (kept >= 0).
        transmission: ``gaussian`` (normal with the exact mean and variance), ``exact`` (a draw per synapse) or
            ``mean`` (the expected current: deterministic).
        learn_intrinsic: learn p_syn and b (one value per layer each).
    """
    return MetaLinear(flat_features(in_shape, in_features), out_features, bias, p_syn, b, transmission, learn_intrinsic)


refuse_nir(
    MetaLinear,
    "stochastic: its Bernoulli transmission (each input released with probability p_syn and a random amplitude) "
    "has no NIR node",
)
