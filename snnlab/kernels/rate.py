"""Per-neuron accumulators over T for rate-based backpropagation (Yu et al., NeurIPS 2024, arXiv 2410.11488):
phase 1 runs the network once without autograd and keeps, per neuron,

    r = (1/T) sum_t s[t]            the firing rate
    e = (1/T) sum_t ds[t]/dc        the eligibility, dr/dc along a constant input current c

where ds[t]/dc is the spike's surrogate derivative times the membrane's derivative along c (for LIF
g(u[t]) k[t], ``LIF.rate_statistics``). e is thus the forward-mode tangent of the rate for the input tangent 1 at
every step: that is the torch reference here, run through the neuron's own loop, and what a fused kernel's
``stats`` output is tested against. The slopes dr/dp of learnable parameters p (PLIF's tau, a learnable threshold)
are the tangents along p the same way (``parameter_slopes``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad


class RateStatistics(NamedTuple):
    """The outputs ``[T, ...]`` and final state of a forward, with the per-neuron rate and eligibility ``[...]``, and
    per learnable parameter (by its name in ``named_parameters``) the rate's derivative along it ``[...]``."""

    spikes: Tensor
    state: Any
    rate: Tensor
    eligibility: Tensor
    slopes: Mapping[str, Tensor] = {}


def rate_statistics_by_forward_ad(run: Callable[[Tensor], tuple[Tensor, Any]], x_seq: Tensor) -> RateStatistics:
    """r and e of the sequence model ``run`` (``x_seq`` ``[T, ...]`` -> outputs, state) by one forward-mode pass:
    e = (1/T) sum_t of s[t]'s tangent for the input tangent 1 everywhere (the rest, parameters and the initial
    state, held constant)."""
    with torch.no_grad(), forward_ad.dual_level():
        out, state = run(forward_ad.make_dual(x_seq, torch.ones_like(x_seq)))
        spikes, tangent = forward_ad.unpack_dual(out)
        primal = type(state)(*(forward_ad.unpack_dual(s).primal for s in state))
    eligibility = torch.zeros_like(spikes) if tangent is None else tangent
    return RateStatistics(spikes, primal, spikes.mean(0), eligibility.mean(0))


def parameter_slopes(module: nn.Module, x_seq: Tensor, state: Any = None) -> dict[str, Tensor]:
    """dr/dp per neuron for each learnable parameter p of ``module`` (a tangent of ones along p: each neuron's own
    entry of a per-neuron parameter), the input held constant, by forward mode through the module's own loop (the
    fused kernels have none, so the dispatch runs the loop: expected here, not worth the fallback warning)."""
    slopes = {}
    for name, p in module.named_parameters():
        if p.requires_grad:

            def rate(value: Tensor, name: str = name) -> Tensor:
                return torch.func.functional_call(module, {name: value}, (x_seq, state))[0].mean(0)

            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                slopes[name] = torch.func.jvp(rate, (p.detach(),), (torch.ones_like(p),))[1]
    return slopes
