"""Forward-Forward (``snnlab/rules/ff.py``): goodness and loss against their equations on hand-made activity and
spike trains, each block's gradient is that of its own loss alone (no gradient crosses blocks), layer
collaboration, label embedding, negatives, and both readouts."""

from __future__ import annotations

import math

import pytest
import torch

from snnlab.network import Block, Network
from snnlab.neurons import LIF, NonSpiking
from snnlab.objectives import Classification
from snnlab.optim import TrainConfig
from snnlab.rules.ff import ForwardForward, ForwardForwardConfig, collaborative, embed_labels, ff_loss, goodness
from snnlab.synapses import L2Normalize, Linear


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def swish(x: float) -> float:
    return x / (1 + math.exp(-x))


def test_goodness_of_spike_counts_and_activities() -> None:
    """G = mean_j (n_j / T)^2 from spike counts over T; at T = 1 the squared activity itself."""
    spikes = torch.tensor(
        [[[1.0, 0, 1], [0, 0, 0]], [[1, 0, 0], [1, 1, 0]], [[0, 0, 1], [0, 1, 0]], [[1, 0, 1], [0, 1, 0]]]
    )
    # counts over T = 4: sample 0 (3, 0, 3), sample 1 (1, 3, 0)
    expected = [(0.75**2 + 0 + 0.75**2) / 3, (0.25**2 + 0.75**2 + 0) / 3]
    torch.testing.assert_close(goodness(spikes), torch.tensor(expected))
    torch.testing.assert_close(goodness(spikes, "sum_square"), torch.tensor(expected) * 3)
    torch.testing.assert_close(goodness(torch.tensor([[[2.0, 1.0]]])), torch.tensor([2.5]))


def test_block_loss_equals_its_equation() -> None:
    """softplus(alpha (theta - G+)) + softplus(alpha (G- - theta)) and swish(alpha (G- - G+)), batch means."""
    g_pos, g_neg = torch.tensor([3.0, 1.5]), torch.tensor([0.5, 2.5])
    theta, alpha = 2.0, 1.5
    expected = (
        sum(softplus(alpha * (theta - p)) + softplus(alpha * (n - theta)) for p, n in [(3.0, 0.5), (1.5, 2.5)]) / 2
    )
    assert ff_loss(g_pos, g_neg, "softplus", theta, alpha).item() == pytest.approx(expected, rel=1e-6)
    expected = (swish(alpha * (0.5 - 3.0)) + swish(alpha * (2.5 - 1.5))) / 2
    assert ff_loss(g_pos, g_neg, "swish", theta, alpha).item() == pytest.approx(expected, rel=1e-6)


def test_collaboration_holds_the_other_blocks_constant() -> None:
    """G_l + sum_{k != l} stopgrad(G_k): the value is the total, the gradient reaches G_l alone."""
    g = [torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([3.0, 5.0], requires_grad=True)]
    first, second = collaborative(g)
    torch.testing.assert_close(first.detach(), torch.tensor([4.0, 7.0]))
    first.sum().backward()
    assert torch.equal(g[0].grad, torch.ones(2)) and g[1].grad is None


def test_labels_replace_the_first_inputs_of_every_step() -> None:
    x = torch.rand(3, 2, 1, 4, 4)
    out = embed_labels(x, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert out.shape == x.shape and torch.equal(out.flatten(2)[..., 2:], x.flatten(2)[..., 2:])
    assert torch.equal(out.flatten(2)[:, :, :2], torch.eye(2).expand(3, 2, 2))


def network(spiking: bool) -> Network:
    torch.manual_seed(0)
    neuron = (lambda: LIF(threshold=0.3, backend="torch")) if spiking else NonSpiking
    return Network(
        [
            Block(norm=L2Normalize()),
            Block(Linear(12, 8), neuron=neuron()),
            Block(norm=L2Normalize()),
            Block(Linear(8, 6), neuron=neuron()),
        ]
    )


def rule(net: Network, **options: object) -> ForwardForward:
    return ForwardForward(ForwardForwardConfig(classes=3, **options), net, Classification(), TrainConfig())


@pytest.mark.parametrize("spiking", [False, True], ids=["T=1", "spiking"])
@pytest.mark.parametrize("form", ["softplus", "swish"])
def test_each_block_learns_from_its_own_loss_only(spiking: bool, form: str) -> None:
    """The rule's gradient of each block equals the gradient of that block's loss, computed here by hand on its own
    (detached) input with the same negatives: nothing from a later block reaches an earlier one."""
    net = network(spiking)
    ff = rule(net, loss=form, threshold=0.1, scale=3.0)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(4 if spiking else 1, 5, 12, generator=gen), torch.tensor([0, 1, 2, 1, 0])
    count = ff.draws.count.clone()
    ff.zero_grad()
    metrics, _ = ff.gradients(net, x, y)
    ff.draws.count.copy_(count)
    wrong = ff._wrong_labels(y, None)
    assert not (wrong == y).any()
    h = torch.cat([ff._embed(x, y), ff._embed(x, wrong)], 1)
    total = 0.0
    for i, block in enumerate(net.blocks):
        out = block(h.detach())[0]
        if i in (1, 3):
            g = goodness(out)
            loss = ff_loss(g[:5], g[5:], form, 0.1, 3.0)
            for p, expected in zip(block.parameters(), torch.autograd.grad(loss, list(block.parameters()))):
                torch.testing.assert_close(p.grad, expected)
            total += loss.item()
        h = out
    assert metrics["loss"] == pytest.approx(total, rel=1e-6)


def test_collaboration_trains_each_block_on_the_network_goodness() -> None:
    net = network(False)
    ff = rule(net, collaboration=True, threshold=0.5)
    x, y = torch.rand(1, 5, 12), torch.tensor([0, 1, 2, 1, 0])
    count = ff.draws.count.clone()
    ff.zero_grad()
    ff.gradients(net, x, y)
    ff.draws.count.copy_(count)
    wrong = ff._wrong_labels(y, None)
    h = torch.cat([ff._embed(x, y), ff._embed(x, wrong)], 1)
    h1 = net.blocks[1](net.blocks[0](h)[0])[0]
    h3 = net.blocks[3](net.blocks[2](h1.detach())[0])[0]
    g1, g3 = goodness(h1), goodness(h3)
    loss1 = ff_loss(g1[:5] + g3[:5].detach(), g1[5:] + g3[5:].detach(), "softplus", 1.0, 1.0)
    expected = torch.autograd.grad(loss1, net.blocks[1].synapse.weight)[0]
    torch.testing.assert_close(net.blocks[1].synapse.weight.grad, expected)


def test_goodness_readout_sums_the_blocks_after_the_first_for_each_label() -> None:
    net = network(True)
    ff = rule(net)
    x = torch.rand(4, 5, 12)
    manual = []
    for c in range(3):
        trace = net.trace(ff._embed(x, torch.full((5,), c)))
        manual.append(goodness(trace.blocks[3].spikes))
    torch.testing.assert_close(ff.predict(net, x), torch.stack(manual, 1))
    everything = rule(net, skip_first_layer=False).predict(net, x)
    assert (everything >= ff.predict(net, x)).all()


def test_hard_negatives_follow_the_scores_and_are_never_the_label() -> None:
    ff = rule(network(False), negatives="hard", scale=50.0)
    y = torch.tensor([0, 1, 2, 0])
    scores = torch.tensor([[9.0, 5.0, 1.0], [9.0, 9.5, 1.0], [1.0, 1.0, 9.0], [9.0, 1.0, 1.0]])
    for _ in range(5):
        wrong = ff._wrong_labels(y, scores)
        assert wrong[:2].tolist() == [1, 0] and wrong[2] in (0, 1) and wrong[3] in (1, 2)


def test_softmax_readout_trains_a_head_of_the_rule_on_the_neutral_label() -> None:
    net = network(False)
    ff = rule(net, readout="softmax")
    assert ff.head.in_features == 6 and "head.weight" in ff.state_dict()
    x, y = torch.rand(1, 5, 12), torch.tensor([0, 1, 2, 1, 0])
    before = ff.head.weight.clone()
    metrics = ff.train_step(net, (x, y))
    assert {"head_loss", "accuracy"} <= set(metrics) and not torch.equal(before, ff.head.weight)
    assert ff.predict(net, x).shape == (5, 3)


def test_labels_beyond_classes_are_refused_naming_the_key() -> None:
    from snnlab.errors import ConfigError

    net = network(False)
    with pytest.raises(ConfigError, match="rule.classes: is 3 but the data has label 7"):
        rule(net).train_step(net, (torch.rand(1, 2, 12), torch.tensor([0, 7])))
