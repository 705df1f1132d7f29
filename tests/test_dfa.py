"""Direct Feedback Alignment (``snnlab/rules/dfa.py``): each hidden block's delta is B e * f'(a), with ReLU's f' at
T = 1 and the surrogate's for spiking neurons; the output block learns from the true e; B is a fixed buffer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from snnlab.errors import UnsupportedNetwork
from snnlab.network import Block, Network
from snnlab.neurons import LIF, NonSpiking
from snnlab.objectives import Classification
from snnlab.optim import TrainConfig
from snnlab.rules.dfa import DFA, DFAConfig
from snnlab.synapses import Conv2d, Linear


def make(neuron) -> tuple[Network, DFA]:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = Network(
        [
            Block(Linear(6, 5), neuron=neuron()),
            Block(Linear(5, 4), neuron=neuron()),
            Block(Linear(4, 3), neuron=NonSpiking("identity")),
        ]
    )
    return net, DFA(DFAConfig(), net, Classification(), TrainConfig())


def test_hidden_deltas_are_feedback_of_the_error_times_relu_derivative() -> None:
    """T = 1, ReLU: dW_k = delta_k^T h_{k-1}, delta_k = (e B_k^T) * 1[a_k > 0], e = (softmax(o) - onehot) / B; the
    output block's gradient is e^T h."""
    net, rule = make(NonSpiking)
    x, y = torch.rand(1, 7, 6) - 0.3, torch.tensor([0, 1, 2, 0, 1, 2, 0])
    rule.zero_grad()
    rule.gradients(net, x, y)
    with torch.no_grad():
        h, a = [x[0]], []
        for block in net.blocks:
            a.append(block.synapse(h[-1]))
            h.append(torch.relu(a[-1]) if block is not net.blocks[-1] else a[-1])
        e = (F.softmax(h[-1], 1) - F.one_hot(y, 3)) / len(y)
    for k in (0, 1):
        delta = (e @ rule.feedback(k).T) * (a[k] > 0)
        assert delta.abs().sum() > 0
        torch.testing.assert_close(net.blocks[k].synapse.weight.grad, delta.T @ h[k])
        torch.testing.assert_close(net.blocks[k].synapse.bias.grad, delta.sum(0))
    torch.testing.assert_close(net.blocks[2].synapse.weight.grad, e.T @ h[2])


def test_spiking_hidden_delta_uses_the_surrogate_derivative() -> None:
    """T = 1, LIF: h = H(a - theta), so delta = (B e) * sg'(a - theta)."""
    net, rule = make(lambda: LIF(threshold=0.2, backend="torch"))
    x, y = torch.rand(1, 7, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    rule.zero_grad()
    trace, _ = rule.gradients(net, x, y)
    e = (F.softmax(trace.output[0].detach(), 1) - F.one_hot(y, 3)) / len(y)
    a = trace.blocks[1].current[0].detach()
    delta = (e @ rule.feedback(1).T) * net.blocks[1].neuron.surrogate.derivative(a - 0.2)
    torch.testing.assert_close(net.blocks[1].synapse.weight.grad, delta.T @ trace.blocks[0].output[0].detach())


def test_spiking_blocks_over_time_get_b_e_at_every_step() -> None:
    """T = 4: block k's gradient is that of sum_t <B_k e[t], h_k[t]> through its own neuron (surrogate, in time)."""
    net, rule = make(lambda: LIF(threshold=0.2, backend="torch"))
    x, y = torch.rand(4, 7, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    rule.zero_grad()
    trace, _ = rule.gradients(net, x, y)
    e = (F.softmax(trace.output.detach().mean(0), 1) - F.one_hot(y, 3)) / (len(y) * 4)
    spikes = net.blocks[0](x)[0]
    (expected,) = torch.autograd.grad((spikes * (e @ rule.feedback(0).T)).sum(), net.blocks[0].synapse.weight)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(net.blocks[0].synapse.weight.grad, expected)


def test_feedback_matrices_are_fixed_buffers_of_the_rule() -> None:
    net, rule = make(NonSpiking)
    assert set(rule.state_dict()) == {"feedback_0", "feedback_1"}
    assert rule.feedback(0).shape == (5, 3) and rule.feedback(1).shape == (4, 3)
    layers = [Block(Linear(4, 400), neuron=NonSpiking()), Block(Linear(400, 10), neuron=NonSpiking("identity"))]
    big = DFA(DFAConfig(), Network(layers),
              Classification(), TrainConfig())  # fmt: skip
    assert big.feedback(0).std().item() == pytest.approx(1 / math.sqrt(10), rel=0.05)
    before = rule.feedback(0).clone()
    metrics = rule.train_step(net, (torch.rand(1, 7, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0])))
    assert torch.equal(before, rule.feedback(0)) and set(metrics) == {"loss", "accuracy"}


def test_alignment_reports_each_hidden_block_against_backpropagation() -> None:
    torch.manual_seed(0)
    net = Network([Block(Linear(6, 5), neuron=NonSpiking()), Block(Linear(5, 3), neuron=NonSpiking("identity"))])
    rule = DFA(DFAConfig(alignment=True), net, Classification(), TrainConfig())
    metrics = rule.train_step(net, (torch.rand(1, 7, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0])))
    assert -1 <= metrics["alignment_0"] <= 1 and "alignment_1" not in metrics


def test_convolution_hidden_blocks_are_refused_by_index() -> None:
    net = Network([Block(Conv2d(1, 2, 3), neuron=NonSpiking()), Block(Linear(72, 3), neuron=NonSpiking("identity"))])
    with pytest.raises(UnsupportedNetwork, match=r"network.blocks\[0\]: dfa sizes its feedback"):
        DFA.supports(DFAConfig(), net)
