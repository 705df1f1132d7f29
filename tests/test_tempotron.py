"""The tempotron (snnlab/rules/tempotron.py) and its PSP neuron (snnlab/neurons/psp.py): the kernel against its
formula, the update against the PSP sum at t_max on hand-made spike trains, binary and one-vs-rest decisions."""

from __future__ import annotations

import math

import pytest
import torch

from snnlab.errors import SnnlabError, UnsupportedNetwork
from snnlab.network import Block, Network
from snnlab.neurons import LIF, PSP
from snnlab.objectives import Classification
from snnlab.optim import TrainConfig
from snnlab.rules.tempotron import Tempotron, TempotronConfig, decide, tempotron_cost
from snnlab.synapses import Linear


def test_psp_neuron_is_the_kernel() -> None:
    """tau 15, tau_s 3.75: t_peak 6.93, V0 2.12 (METHODS.md); V(t) = sum_i w_i K(t - t_i) on the grid, K(0) = 0."""
    psp = PSP(tau=15.0)
    assert psp.tau_s == 3.75 and psp.v0 == pytest.approx(2.1165, abs=1e-4)
    t_peak = 15 * 3.75 * math.log(4) / (15 - 3.75)
    assert t_peak == pytest.approx(6.93, abs=5e-3)
    assert float(psp.kernel(torch.tensor(t_peak))) == pytest.approx(1.0, abs=1e-6)
    x = torch.zeros(30, 1, 2)
    x[2, 0, 0], x[5, 0, 0], x[4, 0, 1] = 0.7, -0.3, 1.5  # input currents w_i at their spike steps
    v, _ = psp(x)
    t = torch.arange(30.0)
    expected = torch.stack([0.7 * psp.kernel(t - 2) - 0.3 * psp.kernel(t - 5), 1.5 * psp.kernel(t - 4)], 1).unsqueeze(1)
    assert torch.allclose(v, expected, atol=1e-6)
    assert v[2, 0, 0] == 0 and v[3, 0, 0] > 0  # an input counts from the next step


def test_psp_needs_tau_s_below_tau() -> None:
    with pytest.raises(ValueError, match="tau_s must be below tau"):
        PSP(tau=4.0, tau_s=4.0)


def tempotron(weights: list[list[float]], lr: float, threshold: float = 1.0) -> tuple[Network, Tempotron]:
    synapse = Linear(len(weights[0]), len(weights), bias=False)
    synapse.weight.data = torch.tensor(weights)
    net = Network([Block(synapse, neuron=PSP(tau=10.0))])
    train = TrainConfig(optimizer={"name": "sgd", "lr": lr, "momentum": 0.0})
    return net, Tempotron(TempotronConfig(threshold=threshold), net, Classification(), train)


def psp_sums(spike_times: dict[int, list[int]], inputs: int, t_max: int, psp: PSP) -> torch.Tensor:
    """sum_{t_i < t_max} K(t_max - t_i) per input."""
    return torch.tensor(
        [
            sum(float(psp.kernel(torch.tensor(float(t_max - t)))) for t in spike_times.get(i, []) if t < t_max)
            for i in range(inputs)
        ]
    )


def spikes(spike_times: dict[int, list[int]], inputs: int, steps: int = 40) -> torch.Tensor:
    x = torch.zeros(steps, 1, inputs)
    for i, times in spike_times.items():
        x[times, 0, i] = 1.0
    return x


def test_update_is_the_psp_sum_at_t_max_times_the_learning_rate() -> None:
    """A '+' pattern that stays below threshold: dw_i = +lambda sum_{t_i < t_max} K(t_max - t_i); the same pattern
    as a '-' that fires: dw = -lambda (...); no change once decided right."""
    times = {0: [1, 6], 1: [3], 2: [20], 3: []}  # input 2 spikes after t_max, input 3 never
    x = spikes(times, 4)
    net, rule = tempotron([[0.3, 0.2, 0.1, 0.4]], lr=0.05)
    psp = net.blocks[0].neuron
    v = net(x)[0].detach()
    t_max = int(v[:, 0, 0].argmax())
    assert 6 < t_max < 20 and float(v.max()) < 1.0
    before = net.blocks[0].synapse.weight.detach().clone()
    metrics = rule.train_step(net, (x, torch.tensor([1])))  # binary: label 1 is '+'
    change = net.blocks[0].synapse.weight.detach() - before
    expected = 0.05 * psp_sums(times, 4, t_max, psp)
    assert torch.allclose(change[0], expected, atol=1e-7) and change[0, 2] == 0 and change[0, 3] == 0
    assert metrics["loss"] == pytest.approx(1.0 - float(v.max()), rel=1e-5) and metrics["accuracy"] == 0.0

    net, rule = tempotron([[1.0, 1.0, 0.1, 0.4]], lr=0.05)
    v = net(x)[0].detach()
    t_max = int(v[:, 0, 0].argmax())
    assert float(v.max()) >= 1.0
    before = net.blocks[0].synapse.weight.detach().clone()
    rule.train_step(net, (x, torch.tensor([0])))  # a '-' pattern that fired
    change = net.blocks[0].synapse.weight.detach() - before
    assert torch.allclose(change[0], -0.05 * psp_sums(times, 4, t_max, psp), atol=1e-7)

    before = net.blocks[0].synapse.weight.detach().clone()
    metrics = rule.train_step(net, (x, torch.tensor([1])))  # '+' and fires: right, no update
    assert torch.equal(net.blocks[0].synapse.weight.detach(), before) and metrics == {"loss": 0.0, "accuracy": 1.0}


def test_one_vs_rest_updates_only_the_tempotrons_that_err() -> None:
    """Three tempotrons, label 2: tempotron 0 fires wrongly (depressed), 1 stays silent (right, unchanged), 2 fails to
    fire (potentiated); the batch's updates are averaged."""
    times = {0: [2], 1: [4, 9]}
    x = spikes(times, 2).expand(-1, 2, -1)
    net, rule = tempotron([[2.0, 1.0], [0.1, 0.1], [0.2, 0.3]], lr=0.1)
    psp = net.blocks[0].neuron
    v = net(x)[0].detach()
    t_max = v[:, 0].argmax(0).tolist()
    before = net.blocks[0].synapse.weight.detach().clone()
    rule.train_step(net, (x, torch.tensor([2, 2])))
    change = net.blocks[0].synapse.weight.detach() - before
    assert torch.allclose(change[0], -0.1 * psp_sums(times, 2, t_max[0], psp), atol=1e-7)
    assert torch.equal(change[1], torch.zeros(2))
    assert torch.allclose(change[2], 0.1 * psp_sums(times, 2, t_max[2], psp), atol=1e-7)


def test_decisions_binary_and_one_vs_rest() -> None:
    """One tempotron: '+' (class 1) iff V_max >= V_thr; several: the largest V_max, whether or not it fires."""
    v = torch.tensor([[[0.2], [1.0], [0.9]], [[0.5], [0.3], [1.2]]])  # [T=2, B=3, 1]
    assert decide(v, 1.0).argmax(1).tolist() == [0, 1, 1]
    v = torch.tensor([[[0.2, 1.4, 1.1], [0.1, 0.3, 0.2]]])  # [T=1, B=2, 3]
    assert decide(v, 1.0).argmax(1).tolist() == [1, 1]
    plus = torch.tensor([[False, True, False], [True, False, False]])
    assert tempotron_cost(v, plus, 1.0).tolist() == pytest.approx([0.1, 0.9])


def test_refusals() -> None:
    with pytest.raises(UnsupportedNetwork, match="non-firing neuron"):
        Tempotron.supports(TempotronConfig(), Network([Block(Linear(4, 2), neuron=LIF())]))
    with pytest.raises(UnsupportedNetwork, match="single block"):
        Tempotron.supports(
            TempotronConfig(), Network([Block(Linear(4, 4), neuron=PSP()), Block(Linear(4, 2), neuron=PSP())])
        )
    net, rule = tempotron([[0.1, 0.1], [0.1, 0.1]], lr=0.1)
    with pytest.raises(SnnlabError, match="2 tempotron.* decide 2 classes.*label 5"):
        rule.train_step(net, (torch.zeros(5, 1, 2), torch.tensor([5])))
