"""Networks: step and forward agree, sizes are inferred, readouts and synaptic-operation counts are right."""

from __future__ import annotations

import pytest
import torch

from snnlab.builder import build_network
from snnlab.config import validate
from snnlab.network import Block, BlockState, Network
from snnlab.neurons import LI, LIF, NonSpiking
from snnlab.objectives import OBJECTIVES, MaxMembrane, MeanMembrane, SpikeCount
from snnlab.stats import ActivityMonitor
from snnlab.synapses import Conv2d, Linear

CONV_NET = {
    "network": {
        "neuron": {"model": "lif", "tau": 2.0},
        "blocks": [
            {"conv": {"out_channels": 4, "kernel_size": 3, "padding": 1}, "norm": "batch", "pool": 2},
            {"conv": {"out_channels": 6, "kernel_size": 3, "stride": 2}},
            {"flatten": True},
            {"linear": 16, "dropout": 0.1},
            {"linear": 10},
        ],
    },
    "objective": {"readout": "mean_membrane"},
}


def build(raw: dict, shape: tuple[int, ...]) -> Network:
    cfg = validate(raw)
    return build_network(cfg.network, shape, OBJECTIVES.build(cfg.objective).membrane_output)


def step_through(net: Network, x_seq: torch.Tensor) -> torch.Tensor:
    states, outputs = None, []
    for x_t in x_seq:
        out, states = net.step(x_t, states)
        outputs.append(out)
    return torch.stack(outputs)


def test_conv_network_shapes_and_output_form() -> None:
    """Sizes chain through conv, pool, flatten; the output block becomes a leaky integrator."""
    net = build(CONV_NET, (1, 8, 8))
    assert isinstance(net.blocks[-1].neuron, LI)
    assert isinstance(net.blocks[0].neuron, LIF)
    out, states = net(torch.rand(5, 3, 1, 8, 8))
    assert out.shape == (5, 3, 10)
    assert states[2] == BlockState()  # flatten carries no state


def test_spike_count_readout_keeps_spiking_output() -> None:
    raw = {"network": {"blocks": [{"linear": 20}, {"linear": 10}]}, "objective": {"readout": "spike_count"}}
    net = build(raw, (64,))
    assert isinstance(net.blocks[-1].neuron, LIF)


@pytest.mark.parametrize("shape", [(64,), (1, 8, 8)])
def test_step_equals_forward(shape: tuple[int, ...]) -> None:
    """Running the network one step at a time gives the sequence forward's outputs and gradients."""
    torch.manual_seed(0)
    raw = CONV_NET if len(shape) == 3 else {"network": {"blocks": [{"linear": 33}, {"linear": 10}]}}
    net = build(raw, shape).eval()  # eval: batch norm and dropout are per-step identical
    x = (torch.rand(6, 4, *shape) * 2).requires_grad_()
    out_seq, _ = net(x)
    (g_seq,) = torch.autograd.grad(out_seq.square().sum(), x)
    out_step = step_through(net, x)
    (g_step,) = torch.autograd.grad(out_step.square().sum(), x)
    torch.testing.assert_close(out_seq, out_step)
    torch.testing.assert_close(g_seq, g_step)


def test_forward_continues_from_given_states() -> None:
    """Two halves with the state passed along equal one whole sequence."""
    torch.manual_seed(1)
    net = Network([Block(Linear(5, 7), neuron=LIF()), Block(Linear(7, 3), neuron=LI())])
    x = torch.rand(10, 2, 5) * 3
    whole, _ = net(x)
    first, states = net(x[:4])
    second, _ = net(x[4:], states)
    torch.testing.assert_close(torch.cat([first, second]), whole)


def test_readouts() -> None:
    out = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[1.0, 3.0]]])
    assert SpikeCount()(out).tolist() == [[2.0, 3.0]]
    assert MeanMembrane()(out).tolist() == [[pytest.approx(2 / 3), 1.0]]
    assert MaxMembrane()(out).tolist() == [[1.0, 3.0]]


def test_linear_synaptic_ops_count_active_inputs() -> None:
    layer = Linear(4, 3)
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert int(layer.synaptic_ops(x)) == 3 * 3


@pytest.mark.parametrize(("stride", "padding", "groups"), [(1, 0, 1), (2, 1, 1), (1, 1, 2)])
def test_conv_synaptic_ops_match_brute_force(stride: int, padding: int, groups: int) -> None:
    """The exact count equals, per output element, the active inputs it reads."""
    torch.manual_seed(2)
    conv = Conv2d(4, 6, 3, stride=stride, padding=padding, groups=groups)
    x = (torch.rand(2, 4, 7, 6) < 0.3).float()
    unfolded = torch.nn.functional.unfold(x, 3, padding=padding, stride=stride)  # [N, C*9, L]
    per_group = unfolded.view(2, groups, (4 // groups) * 9, -1).sum(2)  # active inputs per group and position
    expected = per_group.sum() * (6 // groups)
    assert int(conv.synaptic_ops(x)) == int(expected)


def test_activity_monitor_counts_spikes_and_ops() -> None:
    """Firing rates come from the neurons' outputs; the first layer's analog input counts as MACs."""
    hidden = LIF(tau=1e9, decay_input=False, threshold=0.5)
    net = Network([Block(Linear(4, 5), neuron=hidden), Block(Linear(5, 2), neuron=LI())])
    with torch.no_grad():
        net.blocks[0].synapse.weight.fill_(1.0)
        net.blocks[0].synapse.bias.zero_()
    x = torch.full((3, 2, 4), 0.25)  # current 1.0 at every step: every hidden neuron fires every step
    with ActivityMonitor(net) as monitor, torch.no_grad():
        net(x)
        monitor.count(2)
    summary = monitor.summary()
    assert summary["blocks"][0]["firing_rate"] == 1.0
    assert summary["blocks"][0]["input"] == "analog"
    assert summary["macs_per_sample"] == 3 * 4 * 5  # T * active inputs * fan-out
    assert summary["synops_per_sample"] == 3 * 5 * 2  # T * spikes * fan-out
    assert summary["firing_rate"] == 1.0


def test_nonspiking_network_is_an_mlp() -> None:
    """At T = 1 with non-spiking neurons the network computes W2 relu(W1 x + b1) + b2."""
    torch.manual_seed(3)
    raw = {"network": {"neuron": "nonspiking", "blocks": [{"linear": 8}, {"linear": 10}]}}
    net = build(raw, (5,))
    assert isinstance(net.blocks[1].neuron, NonSpiking) and net.blocks[1].neuron.activation == "identity"
    x = torch.rand(1, 3, 5)
    l1, l2 = net.blocks[0].synapse, net.blocks[1].synapse
    torch.testing.assert_close(MeanMembrane()(net(x)[0]), l2(torch.relu(l1(x[0]))))
