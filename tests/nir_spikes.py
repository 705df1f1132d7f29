"""What the NIR exchange tests share: snnlab's spikes on the torch loop, and a check that a comparison means
something."""

from __future__ import annotations

import torch

from snnlab.network import Network


def ours(network: Network, x: torch.Tensor) -> torch.Tensor:
    """snnlab's output spikes, on the torch loop (the fused kernels give the same spikes, tests/test_kernels.py;
    the loop needs no compilation in a fresh environment)."""
    for module in network.modules():
        if hasattr(module, "backend"):
            module.backend = "torch"
    with torch.no_grad():
        return network(x)[0]


def firing(spikes: torch.Tensor) -> torch.Tensor:
    """``spikes``, after checking the firing rate is neither near 0 nor near 1 (where any two models agree)."""
    rate = float(spikes.mean())
    assert 0.02 < rate < 0.8, f"firing rate {rate} makes the comparison uninformative"
    return spikes
