"""Forward gradient (``snnlab/rules/forward_gradient.py``): the rule's estimate, averaged over 2,000 random
directions (its ``directions`` option, vectorised by vmap), points along the true gradient (cosine > 0.9) on a tiny
network, weight- and activity-perturbed, at T = 1 and through LIF neurons over T; a single direction is unbiased
in expectation and noisy alone; the directions are the rule's shared, checkpointed draws."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from snnlab.errors import UnsupportedNetwork
from snnlab.network import Block, Network
from snnlab.neurons import LI, LIF, NonSpiking
from snnlab.objectives import Classification
from snnlab.optim import TrainConfig
from snnlab.rules.forward_gradient import ForwardGradient, ForwardGradientConfig
from snnlab.rules.local import features, trace_locally
from snnlab.synapses import Linear, batch_norm

pytestmark = pytest.mark.filterwarnings(  # torch compiles its forward-mode decompositions by torch.jit.script
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)
CASES = {"T=1": (1, NonSpiking, lambda: NonSpiking("identity")), "T=3 LIF": (3, LIF, LI)}


def setting(case: str, **options: object) -> tuple[Network, ForwardGradient, torch.Tensor, torch.Tensor]:
    steps, hidden, output = CASES[case]
    torch.manual_seed(0)
    net = Network([Block(Linear(4, 6), neuron=hidden()), Block(Linear(6, 3), neuron=output())])
    rule = ForwardGradient(ForwardGradientConfig(**options), net, Classification(), TrainConfig())
    gen = torch.Generator().manual_seed(2)
    return net, rule, torch.rand(steps, 5, 4, generator=gen) * 2, torch.tensor([0, 1, 2, 1, 0])


def flat_grads(net: Network) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in net.parameters()])


@pytest.mark.parametrize("case", sorted(CASES))
def test_weight_perturbed_estimate_points_along_the_gradient(case: str) -> None:
    """mean over 2,000 v of (grad L . v) v against grad L of the objective's loss (51 parameters)."""
    net, rule, x, y = setting(case, perturb="weights", directions=2000)
    rule.zero_grad()
    rule.gradients(net, x, y)
    estimate = flat_grads(net)
    true = torch.autograd.grad(rule.objective.loss(net.trace(x), y), list(net.parameters()))
    cosine = F.cosine_similarity(estimate, torch.cat([g.flatten() for g in true]), dim=0)
    assert cosine > 0.9, cosine


@pytest.mark.parametrize("case", sorted(CASES))
def test_activity_perturbed_estimate_points_along_the_local_gradients(case: str) -> None:
    """mean over 2,000 per-sample u of (grad_a l . u) u, carried to the weights by the block, against the gradient
    of each block's local loss on its detached input (the head's for block 0, the objective's for the output)."""
    net, rule, x, y = setting(case, perturb="activities", directions=2000)
    rule.zero_grad()
    rule.gradients(net, x, y)
    trace = trace_locally(net, x, [0, 1])
    local = F.cross_entropy(rule.heads["0"](features(trace.blocks[0].spikes)), y)
    local = local + F.cross_entropy(rule.objective.scores(trace.output), y)
    true = torch.autograd.grad(local, list(net.parameters()))
    for block, grads in ((0, true[:2]), (1, true[2:])):
        estimate = torch.cat([p.grad.flatten() for p in net.blocks[block].parameters()])
        cosine = F.cosine_similarity(estimate, torch.cat([g.flatten() for g in grads]), dim=0)
        assert cosine > 0.9, (block, cosine)


def test_one_direction_is_noisy_and_the_draws_advance() -> None:
    """With a single direction the estimate is far from the gradient but not orthogonal on average; each step
    takes the next draw of the rule's own stream (a buffer, so a checkpoint carries it)."""
    net, rule, x, y = setting("T=1", perturb="weights")
    true = torch.cat(
        [g.flatten() for g in torch.autograd.grad(rule.objective.loss(net.trace(x), y), list(net.parameters()))]
    )
    estimates = []
    for _ in range(3):
        rule.zero_grad()
        rule.gradients(net, x, y)
        estimates.append(flat_grads(net))
    assert int(rule.draws.count) == 3 and not torch.equal(estimates[0], estimates[1])
    assert {"draws.seed", "draws.count"} <= set(rule.state_dict())
    assert abs(F.cosine_similarity(estimates[0], true, dim=0)) < 0.9


def test_local_heads_are_rule_parameters_trained_by_their_exact_gradient() -> None:
    net, rule, x, y = setting("T=1")
    assert set(rule.heads) == {"0"} and "heads.0.weight" in rule.state_dict()
    metrics = rule.train_step(net, (x, y))
    assert set(metrics) == {"loss", "accuracy", "local_loss_0"}


def test_batch_norm_is_refused_naming_the_block() -> None:
    net = Network([Block(Linear(4, 6), norm=batch_norm((6,)), neuron=NonSpiking()), Block(Linear(6, 3), neuron=LI())])
    with pytest.raises(UnsupportedNetwork, match=r"network.blocks\[0\].norm"):
        ForwardGradient.supports(ForwardGradientConfig(), net)
