"""The probabilistic meta neuron and its quantal synapses: hand-computed traces (expectation path, and the sampled path
with the draws fixed by the seed), step/forward agreement, the straight-through gradient, gradcheck of every
intrinsic parameter, moments of the synaptic current, learning, config validation and deterministic evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.func import functional_call

from snnlab import lifecycle
from snnlab.config import validate
from snnlab.errors import ConfigError
from snnlab.neurons import LI, NEURONS, Meta, NonSpiking
from snnlab.synapses import SYNAPSES, MetaLinear

BETA_075 = -1 / math.log(0.75)
"""The time constant (dt = 1, exp discretisation) that gives beta = 3/4."""


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def run_steps(neuron: Meta, x: Tensor) -> tuple[Tensor, Tensor]:
    """Drive ``neuron`` one ``step`` at a time: outputs stacked over time, final membrane."""
    state = neuron.initial_state(x[0])
    outputs = []
    for x_t in x:
        out, state = neuron.step(x_t, state)
        outputs.append(out)
    return torch.stack(outputs), state.v


# --- the neuron ------------------------------------------------------------------------------------------


def test_expectation_trace_by_hand() -> None:
    """firing: mean, beta = 3/4, g = 1, T_f = 1/2, one neuron, x = 1, 0.5, 2:
    h0 = 1, p0 = sigmoid(0) = 1/2, v0 = 1 - 1/2 = 1/2;
    h1 = .75 * .5 + .5 = .875, p1 = sigmoid(-.25), v1 = .875 - p1;
    h2 = .75 v1 + 2, p2 = sigmoid(2 (h2 - 1)), v2 = h2 - p2."""
    neuron = Meta(tau=BETA_075, threshold=1.0, temperature=0.5, firing="mean", learn_intrinsic=False).double()
    x = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64).view(3, 1, 1)
    p1 = sigmoid(-0.25)
    h2 = 0.75 * (0.875 - p1) + 2
    p2 = sigmoid(2 * (h2 - 1))
    out, state = neuron(x)
    assert out.flatten().tolist() == pytest.approx([0.5, p1, p2], abs=1e-12)
    assert float(state.v) == pytest.approx(h2 - p2, abs=1e-12)


def test_sampled_trace_matches_the_seeded_draws() -> None:
    """firing: bernoulli with the global generator seeded: s[t] = 1[u[t] < p[t]] with u the same seed's uniforms
    ``[B, N]`` drawn step by step, and the soft reset by g on the sampled spike (reference loop in float64)."""
    T, B, N, g, temp, beta = 12, 3, 4, 0.8, 0.3, 0.75
    x = torch.rand(T, B, N, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 1.6
    neuron = Meta(tau=BETA_075, threshold=g, temperature=temp, learn_intrinsic=False).double()
    torch.manual_seed(11)
    out, state = neuron(x)
    torch.manual_seed(11)
    v = torch.zeros(B, N, dtype=torch.float64)
    expected = []
    for t in range(T):
        h = beta * v + x[t]
        p = torch.sigmoid((h - g) / temp)
        s = (torch.rand(B, N, dtype=torch.float64) < p).double()
        v = h - g * s
        expected.append(s)
    assert torch.equal(out, torch.stack(expected))
    assert torch.allclose(state.v, v, atol=1e-12)
    assert 0 < out.mean() < 1


def test_step_and_forward_agree_with_the_same_generator_state() -> None:
    neuron = Meta(tau=3.0, threshold=0.5, temperature=0.2)
    x = torch.rand(20, 4, 6, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    out_seq, state = neuron(x)
    torch.manual_seed(3)
    out_steps, v = run_steps(neuron, x)
    assert torch.equal(out_seq, out_steps) and torch.equal(state.v, v)


def test_memoryless_fires_at_the_sigmoid_rate() -> None:
    """tau: null forgets everything between steps: the rate at a constant drive x is sigmoid((x - g) / T_f)."""
    neuron = Meta(tau=None, threshold=1.0, temperature=0.5, learn_intrinsic=False)
    x = torch.tensor([0.0, 1.0, 1.5]).expand(400, 500, 3)
    torch.manual_seed(0)
    rate = neuron(x)[0].mean((0, 1))
    expected = torch.sigmoid((torch.tensor([0.0, 1.0, 1.5]) - 1.0) / 0.5)
    assert torch.allclose(rate, expected, atol=0.005)
    assert list(neuron.parameters()) == []


def test_straight_through_gradient_is_that_of_the_probability() -> None:
    """One sampled step: d s / d x = p (1 - p) / T_f and d s / d g = -p (1 - p) / T_f, whatever was drawn."""
    neuron = Meta(tau=2.0, threshold=0.7, temperature=0.4).double()
    x = torch.linspace(-1, 2, 9, dtype=torch.float64).view(1, 1, 9).requires_grad_()
    torch.manual_seed(0)
    s, _ = neuron(x)
    s.sum().backward()
    p = torch.sigmoid((x.detach() - 0.7) / 0.4)
    slope = p * (1 - p) / 0.4
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(x.grad, slope)
    assert float(neuron.threshold.grad) == pytest.approx(-float(slope.sum()))


def test_gradcheck_every_intrinsic_parameter_of_the_neuron() -> None:
    """The expectation path is smooth: input, threshold g and tau (beta = sigmoid(w)) pass gradcheck in float64."""
    neuron = Meta(tau=2.5, threshold=0.6, temperature=0.3, firing="mean").double()
    x = torch.randn(6, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    params = {n: p.detach().clone().requires_grad_() for n, p in neuron.named_parameters()}
    assert set(params) == {"threshold", "leak.w"}

    def outputs(x: Tensor, g: Tensor, w: Tensor) -> Tensor:
        out, state = functional_call(neuron, {"threshold": g, "leak.w": w}, (x,))
        return torch.cat([out.flatten(), state.v.flatten()])

    assert torch.autograd.gradcheck(outputs, (x, params["threshold"], params["leak.w"]))


def test_learn_intrinsic_switch_and_readout_form() -> None:
    assert {n for n, _ in Meta().named_parameters()} == {"threshold", "leak.w"}
    assert list(Meta(learn_intrinsic=False).parameters()) == []
    assert {n for n, _ in Meta(tau=math.inf).named_parameters()} == {"threshold"}  # no leak to learn
    li = Meta(tau=4.0).readout_form()
    assert isinstance(li, LI) and li.leak.tau == pytest.approx(4.0) and li.leak.learnable
    assert isinstance(Meta(tau=None).readout_form(), NonSpiking)
    assert NEURONS.builder("meta") is Meta


# --- the quantal synapses --------------------------------------------------------------------------------


def quantal(p_syn: float = 0.3, b: float = 1.5, transmission: str = "gaussian", **kw: object) -> MetaLinear:
    syn = MetaLinear(5, 3, p_syn=p_syn, b=b, transmission=transmission, **kw)  # type: ignore[arg-type]
    with torch.no_grad():
        syn.weight.copy_(torch.tensor([[1.0, -0.5, 0.25, 0.0, 2.0], [-1.0, -1.0, 0.5, 0.5, 0.0], [0.3, 0.0, 0, -2, 1]]))
        syn.bias.copy_(torch.tensor([0.1, 0.0, -0.2]))
    return syn


X = torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0]])


def test_mean_current_by_hand() -> None:
    """w^b = [W]+ - b [-W]+ with b = 1.5, p = 0.3, x = (1, 1, 0, 1, 1):
    row 0: 1 - .75 + 0 + 2 = 2.25; row 1: -1.5 - 1.5 + .5 = -2.5; row 2: .3 - 3 + 1 = -1.7;
    current = p/2 w^b x + bias = .15 * (2.25, -2.5, -1.7) + (.1, 0, -.2)."""
    current = quantal(transmission="mean")(X)
    assert current.flatten().tolist() == pytest.approx([0.4375, -0.375, -0.455], abs=1e-6)


@pytest.mark.parametrize("transmission", ["gaussian", "exact"])
def test_current_moments(transmission: str) -> None:
    """Both draws have mean p/2 w^b x + bias and variance (p/3 - p^2/4) sum (w^b x)^2 (E[xi q] = p/2, E[(xi q)^2] = p/3)."""
    syn = quantal(transmission=transmission)
    torch.manual_seed(0)
    with torch.no_grad():
        draws = syn(X.expand(40000, 5))
    w_b = torch.tensor([[1.0, -0.75, 0.25, 0.0, 2.0], [-1.5, -1.5, 0.5, 0.5, 0.0], [0.3, 0.0, 0, -3, 1]])
    variance = (0.1 - 0.09 / 4) * (w_b * X).square().sum(1)
    error = (draws.mean(0) - torch.tensor([0.4375, -0.375, -0.455])).abs()
    assert (error < 4 * (variance / len(draws)).sqrt()).all()  # within 4 standard errors
    assert torch.allclose(draws.var(0), variance, rtol=0.05)


def test_gradcheck_every_intrinsic_parameter_of_the_synapse() -> None:
    """Weights, bias, p_syn (its logit) and b pass gradcheck in float64: the mean current, and the gaussian draw with
    its noise fixed by the seed (reparameterised, so smooth in the parameters). Random weights: w^b has a kink at 0."""
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(4, 5, dtype=torch.float64, generator=generator)
    weight = torch.randn(3, 5, dtype=torch.float64, generator=generator)
    for transmission in ("mean", "gaussian"):
        syn = quantal(transmission=transmission).double()
        names = [n for n, _ in syn.named_parameters()]
        assert set(names) == {"weight", "bias", "p_logit", "b"}
        params = [(weight if n == "weight" else p).detach().clone().requires_grad_() for n, p in syn.named_parameters()]

        def current(*values: Tensor) -> Tensor:
            torch.manual_seed(0)
            return functional_call(syn, dict(zip(names, values)), (x,))  # noqa: B023

        assert torch.autograd.gradcheck(current, tuple(params))


def test_exact_draw_gradient_is_unbiased_for_p() -> None:
    """The exact draw's straight-through gradient d I / d p averages to d E[I] / d p = (1/2) w^b x."""
    syn = quantal(transmission="exact")
    torch.manual_seed(0)
    syn(X.expand(20000, 5)).sum().backward()
    p = syn.p_syn.item()
    expected = 0.5 * (torch.tensor([2.25, -2.5, -1.7]).sum()) * p * (1 - p)  # chain rule through sigmoid(logit)
    assert float(syn.p_logit.grad) / 20000 == pytest.approx(float(expected), rel=0.03)


def test_intrinsic_parameters_learn_and_b_stays_non_negative() -> None:
    """A few Adam steps of a meta block move p_syn, b, g and tau; the after-update hook clamps b at 0."""
    from snnlab.network import Block, Network

    torch.manual_seed(0)
    net = Network(
        [
            Block(MetaLinear(6, 8), neuron=Meta(tau=3.0, threshold=0.3, temperature=0.1)),
            Block(MetaLinear(8, 2), neuron=LI()),
        ]
    )
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    x = (torch.rand(10, 16, 6) < 0.5).float()
    y = torch.randint(0, 2, (16,))
    for _ in range(5):  # plain gradient steps (an optimizer's first step imports torch._dynamo: seconds)
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x)[0].mean(0), y).backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.5 * p.grad
        lifecycle.after_update(net)
    intrinsic = [
        "blocks.0.synapse.p_logit",
        "blocks.0.synapse.b",
        "blocks.0.neuron.threshold",
        "blocks.0.neuron.leak.w",
    ]
    for name in intrinsic:
        assert not torch.equal(before[name], dict(net.named_parameters())[name]), name
    with torch.no_grad():
        net.blocks[0].synapse.b.fill_(-0.5)
    lifecycle.after_update(net)
    assert net.blocks[0].synapse.b.item() == 0.0
    assert {n for n, _ in MetaLinear(3, 2, learn_intrinsic=False).named_parameters()} == {"weight", "bias"}


# --- configuration and evaluation ------------------------------------------------------------------------


def meta_config(**data: object) -> dict:
    return {
        "data": {"name": "poisson_trains", "samples_per_class": 12, "time_steps": 16, "channels": 5, **data},
        "network": {
            "neuron": {"model": "meta", "threshold": 0.25, "temperature": 0.05},
            "blocks": [{"meta_linear": {"out_features": 8, "p_syn": 0.6}}, {"linear": 5}],
        },
    }


def test_yaml_options_are_validated() -> None:
    cfg = validate(meta_config())
    assert cfg.network.blocks[0].meta_linear.p_syn == 0.6
    assert SYNAPSES.builder("meta_linear") is not None
    bad = [
        ("network.blocks.0.meta_linear.p_syn", {"meta_linear": {"out_features": 8, "p_syn": 1.5}}),
        ("network.blocks.0.meta_linear.b", {"meta_linear": {"out_features": 8, "b": -1}}),
        ("network.blocks.0.meta_linear.transmission", {"meta_linear": {"out_features": 8, "transmission": "poisson"}}),
    ]
    for key, block in bad:
        raw = meta_config()
        raw["network"]["blocks"][0] = block
        with pytest.raises(ConfigError) as info:
            validate(raw)
        assert key.replace(".0.", "[0].") in str(info.value) or key in str(info.value), str(info.value)
    raw = meta_config()
    raw["network"]["neuron"]["temperature"] = 0
    with pytest.raises(ConfigError, match="temperature"):
        validate(raw)


def test_evaluation_is_deterministic_and_leaves_the_training_stream() -> None:
    """The runner evaluates under a fixed seed: two evaluations of a stochastic network agree, and the global
    generator is where it was."""
    from snnlab.distributed import Context
    from snnlab.runner import build_experiment, build_rule, data_loaders, evaluate

    cfg = validate(meta_config())
    splits, network, objective, _ = build_experiment(cfg)
    rule = build_rule(cfg, network, objective)
    ctx = Context(torch.device("cpu"))
    loader = data_loaders(cfg, splits, ctx).test
    torch.manual_seed(7)
    first, _ = evaluate(network, rule, loader, ctx)
    after = torch.rand(3)
    torch.manual_seed(7)
    second, _ = evaluate(network, rule, loader, ctx)
    assert first == second
    torch.manual_seed(7)
    assert torch.equal(after, torch.rand(3))  # evaluation drew nothing from the training stream
