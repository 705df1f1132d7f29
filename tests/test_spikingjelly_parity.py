"""The documented mapping to SpikingJelly's ``LIFNode``: same spikes, membranes and input gradients.

SpikingJelly is a comparison-only dependency (installed with ``--no-deps`` in CI,
see .ci/run); the module is skipped where it is absent.
"""

from __future__ import annotations

import pytest
import torch

from snnlab.neurons import LIF

sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import neuron as sj_neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("tau", [2.0, 5.0])
def test_lifnode_equals_euler_lif(decay_input: bool, reset: str, tau: float) -> None:
    """``LIFNode(tau=k, decay_input=d, v_reset=None | 0)`` is ``LIF(tau=k, discretization="euler", decay_input=d)``."""
    torch.manual_seed(0)
    scale = 3.0 if decay_input else 1.2
    x = (torch.randn(25, 4, 50) * scale + 0.3).requires_grad_()
    theirs = sj_neuron.LIFNode(
        tau=tau,
        decay_input=decay_input,
        v_reset=None if reset == "soft" else 0.0,
        surrogate_function=sj_surrogate.Sigmoid(alpha=4.0),
        step_mode="m",
    )
    ours = LIF(tau=tau, discretization="euler", decay_input=decay_input, reset=reset, surrogate={"name": "sigmoid"})
    s_theirs = theirs(x)
    s_ours, state = ours(x)
    rate = float(s_ours.detach().mean())
    assert 0.05 < rate < 0.5, f"firing rate {rate} makes the comparison uninformative"
    assert torch.equal(s_ours, s_theirs)
    torch.testing.assert_close(state.v, theirs.v)
    weights = torch.randn_like(x)
    (g_theirs,) = torch.autograd.grad((s_theirs * weights).sum(), x)
    (g_ours,) = torch.autograd.grad((s_ours * weights).sum(), x)
    torch.testing.assert_close(g_ours, g_theirs)
