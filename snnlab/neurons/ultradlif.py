r"""UltraDLIF (and UltraDPLIF): the Ultra neuron whose membrane diffuses to its neighbours through a max-plus
gap-junction coupling instead of leaking (Miñoza, ICML 2026, arXiv 2602.11206; code JomaMinoza/UltraLIF).

.. math::

    h_i[t] = \mathrm{LSE}_\varepsilon\big(v_{i-1}[t-1],\; c\,v_i[t-1],\; v_{i+1}[t-1]\big) + x_i[t], \qquad
    s, v: \text{as UltraLIF}

the ultradiscretised explicit step of the diffusion equation on a chain of neurons, without coefficients or leak as
in the paper's code. The chain is a periodic ring over the flattened neuron index of each sample (``torch.roll``):
an arbitrary order, kept for parity with the paper. The centre factor c is 1 (UltraDLIF) or tau (a
multiplication, unlike UltraLIF's ln tau addition): fixed when ``tau`` is given, learnable with ``learn_tau``
(UltraDPLIF; ln tau clamped to [-2.3, -0.01], starting at the paper's 0.9 unless ``tau`` says otherwise).

Neighbours are coupled, so there is no per-neuron fused kernel: ``forward`` is the loop of ``step`` on any device.

Example::

    >>> import torch
    >>> from snnlab.neurons import UltraDLIF
    >>> s, state = UltraDLIF()(torch.randn(4, 2, 8))   # [T, B, N]: each sample's 8 neurons form a ring
    >>> s.shape
    torch.Size([4, 2, 8])
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from ..export.registry import refuse_nir
from .base import validated
from .ultralif import LN_TAU_RANGE, DecayFactor, Positive, UltraNeuron, lse, value


class UltraDLIF(UltraNeuron):
    """The spatial Ultra neuron: h_i = LSE_eps(v_{i-1}, c v_i, v_{i+1}) + x_i on a ring; ``learn_tau=True`` gives
    UltraDPLIF. Inputs are ``[T, B, ...]`` (the ring is each sample's neurons).

    Args:
        tau: the centre term's factor c, a decay factor in (0, 1); None: no factor (UltraDLIF), or 0.9 with
            ``learn_tau``.
        eps: temperature of the soft maximum and of the spike sigmoid; any value > 0 when fixed.
        threshold: firing threshold theta.
        learn_tau: learn ln tau per layer (UltraDPLIF), clamped to [-2.3, -0.01].
        learn_eps: learn eps = exp(rho) per layer, clamped to [0.1, 20] (the paper's default).
        learn_threshold: learn the threshold per layer.
        sparsity: lambda of the penalty lambda mean(s) added to the loss (the paper's 0.1; 0: none).
    """

    @validated
    def __init__(
        self,
        tau: DecayFactor | None = None,
        eps: Positive = 1.0,
        threshold: float = 1.0,
        learn_tau: bool = False,
        learn_eps: bool = True,
        learn_threshold: bool = False,
        sparsity: Annotated[float, Field(ge=0)] = 0.0,
    ) -> None:
        super().__init__(eps, threshold, learn_eps, learn_threshold, sparsity)
        self.learn_tau = learn_tau
        self._tau = tau
        if learn_tau:
            ln_tau = math.log(0.9 if tau is None else tau)
            if not LN_TAU_RANGE[0] <= ln_tau <= LN_TAU_RANGE[1]:
                raise ValueError(f"a learnable tau must start within [0.1, 0.99], where ln tau is clamped; got {tau}")
            self.log_tau = nn.Parameter(torch.tensor(ln_tau))

    @property
    def centre(self) -> Tensor | float | None:
        """The centre term's factor: tau = exp(ln tau) with ln tau clamped when learnable, the fixed tau, or None."""
        return self.log_tau.clamp(*LN_TAU_RANGE).exp() if self.learn_tau else self._tau

    def charge(self, x_t: Tensor, v: Tensor) -> Tensor:
        if v.dim() < 2:
            raise ValueError(f"UltraDLIF couples the neurons of a sample: it needs [B, ...] steps, got {list(v.shape)}")
        ring = v.flatten(1)
        centre = ring if self.centre is None else ring * self.centre
        return lse((ring.roll(1, 1), centre, ring.roll(-1, 1)), self.eps).view_as(v) + x_t

    def extra_repr(self) -> str:
        tau = "none" if self.centre is None else f"{value(self.centre):.4g}"
        return f"tau={tau}{' (learnable)' if self.learn_tau else ''}, {super().extra_repr()}"


refuse_nir(
    UltraDLIF,
    "its log-sum-exp (soft max) membrane update, coupling neighbours, and sigmoid output have no NIR node",
)
