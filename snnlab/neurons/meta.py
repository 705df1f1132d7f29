r"""The probabilistic meta neuron (Rudnicka, Szczepanski & Pregowska, arXiv 2508.11674): a leaky soma that fires at
random, with a probability that rises smoothly through a learnable threshold g.

.. math::

    h[t] = \beta v[t-1] + x[t] \quad(\text{or } \beta v[t-1] + (1 - \beta) x[t] \text{ with decay\_input})

    p[t] = \sigma\big((h[t] - g) / T_f\big), \qquad s[t] \sim \mathrm{Bernoulli}(p[t]), \qquad
    v[t] = h[t] - g\, s[t]

with x the synaptic drive, :math:`\beta = e^{-dt/\tau}` (or :math:`1 - dt/\tau`), :math:`T_f` the firing
temperature and :math:`\sigma` the logistic function. Training uses the straight-through Bernoulli estimator:
the forward pass keeps the sampled spike, the backward pass takes :math:`\partial s / \partial h = \partial p /
\partial h = p (1 - p) / T_f`.

Choices (METHODS.md Part A 5 gives the model only in words; there is no code):

* The model is split where the biology splits it. The synaptic part (each active input transmits with probability
  p_syn and a random amplitude q ~ U(0, 1), inhibitory inputs scaled by b) needs every input spike, so it is the
  ``meta_linear`` synapse (``snnlab.synapses.meta_linear``), with p_syn and b; this neuron is the soma, with g and
  tau. A network of meta neurons is ``meta_linear`` blocks with ``neuron: meta``; each part has its own
  ``learn_intrinsic`` switch.
* ``tau: null`` gives the memoryless Levy-Baxter neuron (beta = 0: each step decided afresh); a finite tau a leaky
  one, whose tau is learnable (PLIF's beta = sigmoid(w)). Intrinsic parameters are one scalar per layer, as LIF's
  ``learn_tau`` and ``learn_threshold``, so the with/without comparison adds the same few parameters to both models.
* The reset subtracts g s (soft), and its gradient flows through s as the spike's does (LIF's default,
  ``detach_reset: false``); so ``firing: mean`` is a smooth function whose exact gradient the estimator follows.
* Randomness comes from torch's global generator, which the run seeds and every checkpoint saves, so a seed fixes a
  run and a resume repeats it; evaluation runs under a fixed seed (``snnlab.seeding.fixed_randomness``), so the
  same weights always score the same. ``firing: mean`` outputs p itself (the expectation, deterministic): the path
  the tests differentiate, and a mean-field ablation.

Example::

    >>> import torch
    >>> from snnlab.neurons import Meta
    >>> _ = torch.manual_seed(0)
    >>> spikes, state = Meta(tau=2.0, threshold=1.0)(torch.rand(8, 4, 10) * 3)   # [T, B, N]
    >>> spikes.shape, bool(((spikes == 0) | (spikes == 1)).all())
    (torch.Size([8, 4, 10]), True)
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from ..export.registry import refuse_nir
from .base import MembraneState, Neuron, validated
from .leak import Discretization, Leak, TimeConstant, charge, decay_factor
from .li import LI
from .nonspiking import NonSpiking

Firing = Literal["bernoulli", "mean"]


def firing_probability(h: Tensor, threshold: Tensor | float, temperature: float) -> Tensor:
    """p = sigmoid((h - g) / T_f): the chance of a spike at membrane h."""
    return torch.sigmoid((h - threshold) / temperature)


def sample_spikes(p: Tensor, noise: Tensor) -> Tensor:
    """s = 1[noise < p] for uniform ``noise`` (so s ~ Bernoulli(p)), with the straight-through gradient ds/dp = 1.

    Written s + (p - p.detach()), never (s + p) - p, so the forward value is exactly 0 or 1."""
    return (noise < p).to(p.dtype) + (p - p.detach())


class Meta(Neuron):
    """Probabilistic meta neuron: leaky membrane, Bernoulli spike with probability sigmoid((h - g) / T_f).

    Args:
        tau: membrane time constant in units of ``dt``; ``null``: memoryless (beta = 0, the Levy-Baxter neuron);
            ``.inf``: no leak.
        dt: the time step.
        discretization: ``exp`` (beta = exp(-dt/tau)) or ``euler`` (beta = 1 - dt/tau).
        threshold: g, where the firing probability is 1/2.
        temperature: T_f, the width of the firing probability's rise; small values approach a hard threshold.
        decay_input: scale the drive by (1 - beta).
        firing: ``bernoulli`` (sample spikes, straight-through gradient) or ``mean`` (output p: deterministic).
        learn_intrinsic: learn g, and tau when 0 < beta < 1 (one value per layer each).
    """

    @validated
    def __init__(
        self,
        tau: TimeConstant | None = 2.0,
        dt: Annotated[float, Field(gt=0)] = 1.0,
        discretization: Discretization = "exp",
        threshold: float = 1.0,
        temperature: Annotated[float, Field(gt=0)] = 0.2,
        decay_input: bool = False,
        firing: Firing = "bernoulli",
        learn_intrinsic: bool = True,
    ) -> None:
        super().__init__()
        self.leak: Leak | None = None
        if tau is not None:
            leaky = 0 < decay_factor(tau, dt, discretization) < 1
            self.leak = Leak(tau, dt, discretization, learnable=learn_intrinsic and leaky)
        self.temperature = temperature
        self.decay_input = decay_input
        self.firing = firing
        self.learn_intrinsic = learn_intrinsic
        self.threshold: Tensor | float = nn.Parameter(torch.tensor(float(threshold))) if learn_intrinsic else threshold

    def initial_state(self, like: Tensor) -> MembraneState:
        return MembraneState(torch.zeros_like(like))

    def step(self, x_t: Tensor, state: MembraneState) -> tuple[Tensor, MembraneState]:
        beta = 0.0 if self.leak is None else self.leak.beta
        h = charge(x_t, state.v, beta, self.decay_input)
        p = firing_probability(h, self.threshold, self.temperature)
        s = p if self.firing == "mean" else sample_spikes(p, torch.rand_like(p))
        return s, MembraneState(h - self.threshold * s)

    def readout_form(self) -> Neuron:
        """The membrane without firing: a leaky integrator with this neuron's leak, or the drive itself when
        memoryless."""
        if self.leak is None:
            return NonSpiking("identity")
        return LI(
            tau=self.leak.tau,
            dt=self.leak.dt,
            discretization=self.leak.discretization,
            decay_input=self.decay_input,
            learn_tau=self.leak.learnable,
        )

    def extra_repr(self) -> str:
        g = self.threshold.item() if isinstance(self.threshold, Tensor) else self.threshold
        return (
            f"threshold={g:.4g}, temperature={self.temperature}, memoryless={self.leak is None}, "
            f"decay_input={self.decay_input}, firing={self.firing}, learn_intrinsic={self.learn_intrinsic}"
        )


refuse_nir(Meta, "stochastic: its Bernoulli firing (spikes drawn with a sigmoid probability) has no NIR node")
