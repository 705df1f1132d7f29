r"""UltraLIF (and UltraPLIF): the LIF neuron ultradiscretised into max-plus algebra and smoothed by a temperature
eps, trained by plain autograd with no surrogate (Miñoza, ICML 2026, arXiv 2602.11206;
code JomaMinoza/UltraLIF, ``ablations/eps_ablation.py``).

.. math::

    h[t] = \mathrm{LSE}_\varepsilon\big(v[t-1] + \ln\tau,\; x[t]\big), \qquad
    s[t] = \sigma\!\Big(\frac{h[t] - \vartheta}{\varepsilon}\Big), \qquad
    v[t] = h[t]\,(1 - s[t])

with :math:`\mathrm{LSE}_\varepsilon(A_1..A_n) = \varepsilon \ln \sum_k e^{A_k/\varepsilon}` the soft maximum, tau the
decay FACTOR in (0, 1) (not a time constant: LIF's v' = tau v + x becomes LSE(v + ln tau, x)), sigma the logistic
function. ``ln tau`` is added without the factor eps, as the paper's code has it. The output s is real-valued in
(0, 1) in training and inference alike. As eps -> 0 the neuron becomes the tropical LIF: h = max(v + ln tau, x),
s = H(h - theta), a max-plus LIF rather than the linear one.

Parameters are per layer: ``learn_tau`` (UltraPLIF) stores ln tau, clamped to [-2.3, -0.01] where it is used;
``learn_eps`` stores rho with eps = exp(rho) clamped to [0.1, 20] (the paper's default, initial value 1.0);
``learn_threshold`` a threshold. ``sparsity`` lambda adds lambda mean(s) to the loss (``regularization``).

Example::

    >>> import torch
    >>> from snnlab.neurons import UltraLIF
    >>> neuron = UltraLIF(tau=0.9, eps=1.0)
    >>> s, state = neuron(torch.randn(4, 2, 8))   # [T, B, N]; s in (0, 1)
    >>> bool(((s > 0) & (s < 1)).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, ClassVar

import torch
from pydantic import AfterValidator, Field
from torch import Tensor, nn

from ..export.registry import refuse_nir
from ..kernels import Backend, choose
from ..kernels.ultralif import ultralif_fused
from .base import MembraneState, Neuron, validated
from .nonspiking import NonSpiking

LN_TAU_RANGE = (-2.3, -0.01)
"""Where a learnable ln tau is clamped (tau in about [0.1, 0.99]), as the paper's UltraPLIF."""
EPS_RANGE = (0.1, 20.0)
"""Where a learnable eps = exp(rho) is clamped, as the paper's code."""


def _decay_factor(tau: float) -> float:
    if not 0 < tau < 1:
        raise ValueError("tau is the Ultra neurons' decay factor in (0, 1) (the paper's 0.9), not a time constant")
    return tau


DecayFactor = Annotated[float, AfterValidator(_decay_factor)]
Positive = Annotated[float, Field(gt=0)]


def value(p: Tensor | float) -> float:
    """A scalar parameter's current value, for descriptions."""
    return float(p.detach()) if isinstance(p, Tensor) else float(p)


def lse(terms: Sequence[Tensor], eps: Tensor | float) -> Tensor:
    r"""The soft maximum :math:`\varepsilon \ln \sum_k e^{A_k/\varepsilon}` of same-shaped ``terms``, computed
    about their largest (a constant shift: the gradient is softmax(A / eps) exactly)."""
    stack = torch.stack(list(torch.broadcast_tensors(*terms)))
    top = stack.detach().amax(0)
    return top + eps * torch.logsumexp((stack - top) / eps, 0)


def soft_fire(h: Tensor, threshold: Tensor | float, eps: Tensor | float) -> tuple[Tensor, Tensor]:
    """s = sigmoid((h - theta) / eps) and the membrane after the soft reset toward 0, v = h (1 - s): returns (s, v)."""
    s = torch.sigmoid((h - threshold) / eps)
    return s, h * (1 - s)


class UltraNeuron(Neuron):
    """What the Ultra neurons share: eps (fixed or learnable), the threshold, the soft fire-and-reset, the sparsity
    penalty and the readout form. Subclasses define ``charge(x_t, v)``, the pre-reset membrane h."""

    spiking: ClassVar[bool] = False
    """The output is real-valued in (0, 1), not binary: statistics report no firing rate for it, and the next layer's
    synaptic operations are counted as multiply-accumulates (``snnlab.stats`` finds its input is not binary)."""

    def __init__(self, eps: float, threshold: float, learn_eps: bool, learn_threshold: bool, sparsity: float) -> None:
        super().__init__()
        if learn_eps:
            if not EPS_RANGE[0] <= eps <= EPS_RANGE[1]:
                raise ValueError(f"a learnable eps must start within {list(EPS_RANGE)}, where it is clamped; got {eps}")
            self.rho = nn.Parameter(torch.tensor(math.log(eps)))
        else:
            self._eps = float(eps)
        self.learn_eps = learn_eps
        self.threshold: Tensor | float = nn.Parameter(torch.tensor(float(threshold))) if learn_threshold else threshold
        self.sparsity = sparsity

    @property
    def eps(self) -> Tensor | float:
        """The temperature: exp(rho) clamped to [0.1, 20] when learnable."""
        return self.rho.exp().clamp(*EPS_RANGE) if self.learn_eps else self._eps

    def charge(self, x_t: Tensor, v: Tensor) -> Tensor:
        """The pre-reset membrane h from the input ``x_t`` and the previous membrane ``v``."""
        raise NotImplementedError

    def initial_state(self, like: Tensor) -> MembraneState:
        return MembraneState(torch.zeros_like(like))

    def step(self, x_t: Tensor, state: MembraneState) -> tuple[Tensor, MembraneState]:
        s, v = soft_fire(self.charge(x_t, state.v), self.threshold, self.eps)
        return s, MembraneState(v)

    def regularization(self, output_seq: Tensor) -> Tensor | None:
        """The sparsity penalty lambda mean(s) (the paper's lambda is 0.1), or None without one."""
        return self.sparsity * output_seq.mean() if self.sparsity else None

    def readout_form(self) -> NonSpiking:
        """The identity: the paper's networks read the output layer's current averaged over T (``fc2(s)``), which
        is what a membrane readout of an identity output gives."""
        return NonSpiking("identity")

    def extra_repr(self) -> str:
        eps = f"{value(self.eps):.4g}" + (" (learnable)" if self.learn_eps else "")
        threshold = f"{value(self.threshold):.4g}" + (" (learnable)" if isinstance(self.threshold, Tensor) else "")
        return f"eps={eps}, threshold={threshold}, sparsity={self.sparsity}"


class UltraLIF(UltraNeuron):
    """The temporal Ultra neuron: h = LSE_eps(v + ln tau, x); ``learn_tau=True`` gives UltraPLIF.

    Args:
        tau: decay factor in (0, 1) (the paper's 0.9; v' = tau v + x before ultradiscretisation).
        eps: temperature of the soft maximum and of the spike sigmoid; any value > 0 when fixed.
        threshold: firing threshold theta.
        learn_tau: learn ln tau per layer (UltraPLIF), clamped to [-2.3, -0.01].
        learn_eps: learn eps = exp(rho) per layer, clamped to [0.1, 20] (the paper's default).
        learn_threshold: learn the threshold per layer.
        sparsity: lambda of the penalty lambda mean(s) added to the loss (the paper's 0.1; 0: none).
        backend: what runs ``forward`` over a sequence (``snnlab.kernels``): ``auto`` (Triton on CUDA, Numba on
            the CPU, when installed), ``torch`` (the step in a Python loop), ``triton`` or ``numba``.
    """

    @validated
    def __init__(
        self,
        tau: DecayFactor = 0.9,
        eps: Positive = 1.0,
        threshold: float = 1.0,
        learn_tau: bool = False,
        learn_eps: bool = True,
        learn_threshold: bool = False,
        sparsity: Annotated[float, Field(ge=0)] = 0.0,
        backend: Backend = "auto",
    ) -> None:
        super().__init__(eps, threshold, learn_eps, learn_threshold, sparsity)
        if learn_tau:
            if not LN_TAU_RANGE[0] <= math.log(tau) <= LN_TAU_RANGE[1]:
                raise ValueError(f"a learnable tau must start within [0.1, 0.99], where ln tau is clamped; got {tau}")
            self.log_tau = nn.Parameter(torch.tensor(math.log(tau)))
        else:
            self._ln_tau = math.log(tau)
        self.learn_tau = learn_tau
        self.backend = backend

    @property
    def ln_tau(self) -> Tensor | float:
        """ln tau, clamped to [-2.3, -0.01] when learnable."""
        return self.log_tau.clamp(*LN_TAU_RANGE) if self.learn_tau else self._ln_tau

    def charge(self, x_t: Tensor, v: Tensor) -> Tensor:
        return lse((v + self.ln_tau, x_t), self.eps)

    def forward(self, x_seq: Tensor, state: MembraneState | None = None) -> tuple[Tensor, MembraneState]:
        """The whole sequence through the chosen backend: the fused kernel or the loop of ``step`` (``torch``)."""
        v = None if state is None else state.v
        params = (self.ln_tau, self.eps, self.threshold)
        backend = choose(self.backend, x_seq, model="ultralif", inputs=(v, *params))
        if backend == "torch":
            return super().forward(x_seq, state)
        s, v = ultralif_fused(backend, x_seq, v, *params)
        return s, MembraneState(v)

    def extra_repr(self) -> str:
        tau = f"{math.exp(value(self.ln_tau)):.4g}" + (" (learnable)" if self.learn_tau else "")
        return f"tau={tau}, {super().extra_repr()}, backend={self.backend}"


refuse_nir(UltraLIF, "its log-sum-exp (soft max) membrane update and sigmoid output have no NIR node")
