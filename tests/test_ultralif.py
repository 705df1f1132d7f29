"""UltraLIF, UltraPLIF, UltraDLIF and UltraDPLIF (METHODS.md 2.2-2.4): hand-computed traces, step against forward,
gradcheck of every learnable quantity, the tropical limit as eps shrinks, gradients where a hard threshold has none,
the sparsity penalty in the loss, and their YAML options."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.func import functional_call

from snnlab.neurons import NEURONS, MembraneState, UltraDLIF, UltraLIF
from snnlab.neurons.ultralif import value


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def steps(neuron: torch.nn.Module, x: Tensor, v0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Outputs and membranes ``[T, ...]`` of a loop of ``step``."""
    state = neuron.initial_state(x[0]) if v0 is None else MembraneState(v0)
    outs, vs = [], []
    for x_t in x:
        s, state = neuron.step(x_t, state)
        outs.append(s)
        vs.append(state.v)
    return torch.stack(outs), torch.stack(vs)


# --- hand-computed traces ---------------------------------------------------------------------------------------


def test_ultralif_hand_trace() -> None:
    """eps = 1, theta = 1, from rest: x1 = ln(1 - tau) gives h = ln(tau e^0 + 1 - tau) = 0, s = sigmoid(-1), v = 0;
    x2 = ln(2 - tau) gives h = ln 2, s = 1 / (1 + e / 2), v = ln 2 (1 - s). ln tau is added without eps, so with
    eps = 1/2 and x = 0 from rest: h = (1/2) ln(e^(2 ln tau) + 1) = (1/2) ln(1 + tau^2)."""
    tau = 0.9
    neuron = UltraLIF(tau=tau, eps=1.0, learn_eps=False, backend="torch").double()
    x = torch.tensor([math.log(1 - tau), math.log(2 - tau)], dtype=torch.float64).view(2, 1, 1)
    s, v = steps(neuron, x)
    s2 = 1 / (1 + math.e / 2)
    torch.testing.assert_close(s.flatten(), torch.tensor([sigmoid(-1), s2], dtype=torch.float64))
    torch.testing.assert_close(v.flatten(), torch.tensor([0.0, math.log(2) * (1 - s2)], dtype=torch.float64))

    half = UltraLIF(tau=tau, eps=0.5, learn_eps=False, backend="torch").double()
    s, v = steps(half, torch.zeros(1, 1, 1, dtype=torch.float64))
    h = 0.5 * math.log(1 + tau**2)
    torch.testing.assert_close(s.item(), sigmoid((h - 1) / 0.5))
    torch.testing.assert_close(v.item(), h * (1 - sigmoid((h - 1) / 0.5)))


def test_ultradlif_hand_trace() -> None:
    """A ring of three from rest, eps = 1: h_i = ln(e^0 + e^0 + e^0) + x_i = ln 3 + x_i, so x = 1 - ln 3 gives h = 1 =
    theta, s = 1/2, v = 1/2. Next step, all v = 1/2 and x = 0: h = 1/2 + ln 3. UltraDPLIF's centre term is tau v."""
    neuron = UltraDLIF(eps=1.0, learn_eps=False).double()
    x = torch.tensor([[1 - math.log(3)] * 3, [0.0] * 3], dtype=torch.float64).view(2, 1, 3)
    s, v = steps(neuron, x)
    h2 = 0.5 + math.log(3)
    torch.testing.assert_close(s[0], torch.full((1, 3), 0.5, dtype=torch.float64))
    torch.testing.assert_close(v[0], torch.full((1, 3), 0.5, dtype=torch.float64))
    torch.testing.assert_close(s[1], torch.full((1, 3), sigmoid(h2 - 1), dtype=torch.float64))

    plif = UltraDLIF(tau=0.5, learn_tau=True, eps=1.0, learn_eps=False).double()
    s, v = steps(plif, torch.zeros(1, 1, 3, dtype=torch.float64), v0=torch.full((1, 3), 2.0, dtype=torch.float64))
    h = math.log(2 * math.e**2 + math.e**1)  # neighbours v = 2, centre tau v = 1
    torch.testing.assert_close(s[0], torch.full((1, 3), sigmoid(h - 1), dtype=torch.float64))


def reference_ultradlif(x: Tensor, v0: Tensor, eps: float, theta: float, centre: float) -> tuple[Tensor, Tensor]:
    """UltraDLIF written neuron by neuron in plain Python floats: neuron i of a sample of N neurons reads
    (i - 1) mod N and (i + 1) mod N."""
    T, B, N = x.shape
    v = v0.tolist()
    out, vs = [], []
    for t in range(T):
        s_t, v_t = [], []
        for b in range(B):
            row_s, row_v = [], []
            for i in range(N):
                terms = [v[b][(i - 1) % N], centre * v[b][i], v[b][(i + 1) % N]]
                h = eps * math.log(sum(math.exp(a / eps) for a in terms)) + float(x[t, b, i])
                s = sigmoid((h - theta) / eps)
                row_s.append(s)
                row_v.append(h * (1 - s))
            s_t.append(row_s)
            v_t.append(row_v)
        v = v_t
        out.append(s_t)
        vs.append(v_t)
    return torch.tensor(out, dtype=torch.float64), torch.tensor(vs, dtype=torch.float64)


@pytest.mark.parametrize("centre", [None, 0.7])
def test_ultradlif_ring_per_sample(centre: float | None) -> None:
    """The ring couples neighbours of the flattened index of each sample, wrapping around, and never two samples:
    equal to the neuron-by-neuron reference on a [T, B, 2, 3] input (6 neurons a sample)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 2, 2, 3, generator=gen, dtype=torch.float64)
    v0 = torch.randn(2, 2, 3, generator=gen, dtype=torch.float64)
    neuron = UltraDLIF(tau=centre, eps=0.7, learn_eps=False, threshold=0.8).double()
    s, v = steps(neuron, x, v0)
    s_ref, v_ref = reference_ultradlif(x.flatten(2), v0.flatten(1), 0.7, 0.8, 1.0 if centre is None else centre)
    torch.testing.assert_close(s.flatten(2), s_ref)
    torch.testing.assert_close(v.flatten(2), v_ref)


# --- step against forward, gradcheck ----------------------------------------------------------------------------

CASES = {
    "ultralif": lambda: UltraLIF(learn_eps=False, eps=0.8),
    "ultraplif": lambda: UltraLIF(learn_tau=True, learn_threshold=True),
    "ultradlif": lambda: UltraDLIF(),
    "ultradplif": lambda: UltraDLIF(learn_tau=True, learn_threshold=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_step_matches_forward(name: str) -> None:
    """``forward`` (the fused kernel where there is one) equals the loop of ``step``: outputs, final membrane and
    the gradients of x and every parameter; the outputs lie in (0, 1)."""
    torch.manual_seed(0)
    neuron = CASES[name]()
    x = (torch.randn(6, 3, 2, 7) * 2 + 0.5).requires_grad_()
    s_f, state = neuron(x)
    s_s, v_s = steps(neuron, x)
    torch.testing.assert_close(s_f, s_s, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state.v, v_s[-1], rtol=1e-5, atol=1e-6)
    assert ((s_f > 0) & (s_f < 1)).all()
    w = torch.randn(s_f.shape)
    inputs = [x, *neuron.parameters()]
    g_f = torch.autograd.grad((s_f * w).sum() + state.v.sum(), inputs)
    g_s = torch.autograd.grad((s_s * w).sum() + v_s[-1].sum(), inputs)
    for a, b in zip(g_f, g_s):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [UltraLIF, UltraDLIF])
def test_gradcheck_input_state_tau_eps_threshold(cls: type) -> None:
    """Float64 gradcheck of x, the initial membrane, ln tau, rho (eps = exp rho) and the threshold, through the
    outputs and the final membrane."""
    neuron = cls(tau=0.8, eps=0.7, learn_tau=True, learn_threshold=True).double()
    gen = torch.Generator().manual_seed(2)
    x = (torch.randn(4, 2, 5, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    v0 = torch.randn(2, 5, generator=gen, dtype=torch.float64).requires_grad_()
    names = [name for name, _ in neuron.named_parameters()]
    assert sorted(names) == ["log_tau", "rho", "threshold"]

    def run(x: Tensor, v0: Tensor, *params: Tensor) -> tuple[Tensor, Tensor]:
        s, state = functional_call(neuron, dict(zip(names, params)), (x, MembraneState(v0)))
        return s, state.v

    params = [p.detach().clone().requires_grad_() for p in neuron.parameters()]
    assert torch.autograd.gradcheck(run, (x, v0, *params))


def test_fixed_parameters_are_not_parameters() -> None:
    """Without the learn flags nothing is trained; learnable eps and tau start where they were asked to."""
    assert list(UltraLIF(learn_eps=False).parameters()) == []
    assert list(UltraDLIF(learn_eps=False, tau=0.5).parameters()) == []
    neuron = UltraLIF(tau=0.7, eps=2.0, learn_tau=True)
    assert value(neuron.eps) == pytest.approx(2.0) and value(neuron.ln_tau) == pytest.approx(math.log(0.7))
    assert value(UltraDLIF(learn_tau=True).centre) == pytest.approx(0.9)


def test_learnable_eps_and_tau_are_clamped() -> None:
    """eps = exp(rho) is held in [0.1, 20] and ln tau in [-2.3, -0.01], as the paper's code."""
    neuron = UltraLIF(learn_tau=True)
    with torch.no_grad():
        neuron.rho.fill_(10.0)
        neuron.log_tau.fill_(0.5)
    assert value(neuron.eps) == pytest.approx(20.0) and value(neuron.ln_tau) == pytest.approx(-0.01)
    with torch.no_grad():
        neuron.rho.fill_(-10.0)
        neuron.log_tau.fill_(-9.0)
    assert value(neuron.eps) == pytest.approx(0.1) and value(neuron.ln_tau) == pytest.approx(-2.3)


# --- the tropical limit -----------------------------------------------------------------------------------------


def tropical(kind: str, x: list[list[float]], tau: float = 0.9, theta: float = 1.0) -> tuple[Tensor, ...]:
    """The eps -> 0 limit (METHODS.md 2.4) neuron by neuron, with max and a hard threshold: h = max(v + ln tau, x)
    (UltraLIF) or max(v_(i-1), v_i, v_(i+1)) + x_i on a ring (UltraDLIF); s = H(h - theta), v = h (1 - s).

    The limit is discontinuous where h = theta, so an input that brings h within 0.25 of it is lowered by 0.6 first
    (h grows with x, and the other terms are already off the threshold). Returns that input [T, N], s and v."""
    n = len(x[0])
    v = [0.0] * n
    ss, vs = [], []

    def charge(v: list[float], i: int, x_i: float) -> float:
        if kind == "ultralif":
            return max(v[i] + math.log(tau), x_i)
        return max(v[i - 1], v[i], v[(i + 1) % n]) + x_i

    for row in x:
        h = []
        for i in range(n):
            if abs(charge(v, i, row[i]) - theta) < 0.25:
                row[i] -= 0.6
            h.append(charge(v, i, row[i]))
        s = [1.0 if hi > theta else 0.0 for hi in h]
        v = [hi * (1 - si) for hi, si in zip(h, s)]
        ss.append(s)
        vs.append(v)
    return tuple(torch.tensor(a, dtype=torch.float64) for a in (x, ss, vs))


@pytest.mark.parametrize("kind", ["ultralif", "ultradlif"])
def test_tropical_limit(kind: str) -> None:
    """As eps shrinks over 1, 0.3, 0.1, 0.03, 0.01 (fixed), the membrane and output traces approach those of the
    tropical neuron computed independently with max and a hard threshold, the error decreasing every time."""
    gen = torch.Generator().manual_seed(5)
    x, s_trop, v_trop = tropical(kind, (torch.randn(8, 40, generator=gen, dtype=torch.float64) * 1.2 + 0.4).tolist())
    assert 0.1 < s_trop.mean() < 0.9
    errors = []
    for eps in [1.0, 0.3, 0.1, 0.03, 0.01]:
        neuron = (
            UltraLIF(tau=0.9, eps=eps, learn_eps=False) if kind == "ultralif" else UltraDLIF(eps=eps, learn_eps=False)
        )
        s, v = steps(neuron.double(), x.unsqueeze(1))
        errors.append(((s[:, 0] - s_trop).abs().max().item(), (v[:, 0] - v_trop).abs().max().item()))
    for trace in (0, 1):  # outputs, membranes
        assert all(a[trace] > b[trace] for a, b in zip(errors, errors[1:])), errors
    assert errors[-1][0] < 1e-6 and errors[-1][1] < 0.05, errors


@pytest.mark.parametrize(
    "make", [lambda: UltraLIF(), lambda: UltraDLIF(learn_tau=True)], ids=["ultralif", "ultradplif"]
)
def test_gradients_where_a_hard_threshold_has_none(make) -> None:
    """The hard-threshold LIF (the tropical limit, H by a comparison) passes no gradient from its spikes to its input
    at all; the Ultra neuron's gradient is finite and non-zero for every input and parameter, with no surrogate."""
    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(5, 4, 9, generator=gen, dtype=torch.float64) * 2 + 0.5).requires_grad_()
    v, hard = torch.zeros(4, 9, dtype=torch.float64), []
    for x_t in x:
        h = torch.maximum(v + math.log(0.9), x_t)
        s = (torch.sign(h - 1) + 1) / 2  # H(h - 1), differentiated as autograd does a step: 0
        v = h * (1 - s)
        hard.append(s)
    (g_hard,) = torch.autograd.grad(torch.stack(hard).sum(), x)
    assert 0 < torch.stack(hard).mean() < 1 and (g_hard == 0).all()

    neuron = make().double()
    s, _ = neuron(x)
    grads = torch.autograd.grad(s.sum(), [x, *neuron.parameters()])
    for g in grads:
        assert torch.isfinite(g).all() and (g != 0).all()


# --- the sparsity penalty, YAML, statistics ---------------------------------------------------------------------


def test_sparsity_penalty_reaches_the_loss() -> None:
    """``sparsity: lambda`` adds lambda mean(s) of the layer's outputs to the objective's loss (whole sequence and
    per step), and so its gradient to the weights before it."""
    import torch.nn.functional as F

    from snnlab.network import Block, Network
    from snnlab.neurons import NonSpiking
    from snnlab.objectives import Classification
    from snnlab.synapses import Linear

    torch.manual_seed(0)
    net = Network(
        [Block(Linear(6, 5), neuron=UltraLIF(sparsity=0.1)), Block(Linear(5, 3), neuron=NonSpiking("identity"))]
    )
    x, y = torch.rand(4, 2, 6), torch.tensor([0, 2])
    objective = Classification()
    trace = net.trace(x)
    ce = F.cross_entropy(objective.scores(trace.output), y)
    torch.testing.assert_close(objective.loss(trace, y), ce + 0.1 * trace.blocks[0].spikes.mean())
    step = net.trace_step(x[0])
    ce0 = F.cross_entropy(objective.scores(step.output.unsqueeze(0)), y)
    torch.testing.assert_close(objective.step_loss(step, y, 0, 4), (ce0 + 0.1 * step.blocks[0].spikes.mean()) / 4)

    weight = net.blocks[0].synapse.weight
    with_penalty = torch.autograd.grad(objective.loss(net.trace(x), y), weight)[0]
    net.blocks[0].neuron.sparsity = 0.0
    assert net.trace(x).regularization is None
    without = torch.autograd.grad(objective.loss(net.trace(x), y), weight)[0]
    penalty = torch.autograd.grad(0.1 * net.trace(x).blocks[0].spikes.mean(), weight)[0]
    torch.testing.assert_close(with_penalty, without + penalty)


@pytest.mark.parametrize("model", ["ultralif", "ultradlif"])
def test_yaml_network_with_membrane_readout(quick_raw: dict, model: str) -> None:
    """The registered names build from YAML with their options; under a membrane readout the output block becomes
    the identity (the paper's linear readout averaged over T), and the statistics count the Ultra layer's real-valued
    outputs as no firing rate, the next layer's operations as multiply-accumulates."""
    from snnlab.builder import build_network
    from snnlab.config import validate
    from snnlab.neurons import NonSpiking
    from snnlab.stats import ActivityMonitor

    quick_raw["network"]["neuron"] = {"model": model, "learn_tau": True, "eps": 0.5, "sparsity": 0.1}
    quick_raw["network"]["blocks"] = [{"linear": 16}, {"linear": 10}]
    cfg = validate(quick_raw)
    notes: list[str] = []
    net = build_network(cfg.network, (64,), membrane_output=True, notes=notes)
    hidden, output = net.blocks[0].neuron, net.blocks[1].neuron
    assert type(hidden) is NEURONS.builder(model) and hidden.learn_tau and hidden.sparsity == 0.1
    assert isinstance(output, NonSpiking) and output.activation == "identity" and "NonSpiking" in notes[0]
    with ActivityMonitor(net) as monitor:
        net(torch.rand(3, 2, 64))
        monitor.count(2)
    summary = monitor.summary()
    assert summary["firing_rate"] is None and summary["blocks"][1]["input"] == "analog"


@pytest.mark.parametrize(
    ("neuron", "expected"),
    [
        ({"model": "ultralif", "tau": 2.0}, "network.neuron.tau: tau is the Ultra neurons' decay factor in (0, 1)"),
        ({"model": "ultradlif", "tau": 0.0}, "network.neuron.tau"),
        ({"model": "ultralif", "eps": 0.0}, "network.neuron.eps"),
        ({"model": "ultralif", "sparsity": -0.1}, "network.neuron.sparsity"),
        ({"model": "ultralif", "eps": 50.0}, "network.neuron: a learnable eps must start within [0.1, 20.0]"),
        ({"model": "ultralif", "tau": 0.995, "learn_tau": True}, "network.neuron: a learnable tau must start within"),
        ({"model": "ultradlif", "backend": "numba"}, "network.neuron.backend: unknown key"),
    ],
)
def test_yaml_options_are_checked(quick_raw: dict, neuron: dict, expected: str) -> None:
    """Bad options are refused naming the key and what was expected; a fixed eps may be any positive value."""
    from snnlab.builder import build_network
    from snnlab.config import validate
    from snnlab.errors import ConfigError

    quick_raw["network"]["neuron"] = neuron
    with pytest.raises(ConfigError) as error:
        build_network(validate(quick_raw).network, (64,))
    assert expected in str(error.value), str(error.value)
    quick_raw["network"]["neuron"] = {"model": "ultralif", "eps": 50.0, "learn_eps": False}
    assert build_network(validate(quick_raw).network, (64,)).blocks[0].neuron.eps == 50.0


def test_forward_mode_runs_the_loop() -> None:
    """Under ``torch.func.jvp`` the auto backend runs the neuron's own loop, so the tangents are exact: those of the
    torch backend, and a central difference's to its rounding."""
    torch.manual_seed(3)
    auto, loop = UltraLIF(learn_tau=True), UltraLIF(learn_tau=True, backend="torch")
    x, t = torch.randn(5, 2, 7), torch.randn(5, 2, 7)
    _, tangent = torch.func.jvp(lambda x: auto(x)[0], (x,), (t,))
    _, expected = torch.func.jvp(lambda x: loop(x)[0], (x,), (t,))
    torch.testing.assert_close(tangent, expected)
    with torch.no_grad():
        difference = (loop(x.double() + 1e-6 * t)[0] - loop(x.double() - 1e-6 * t)[0]) / 2e-6
    assert tangent.abs().max() > 0.01
    torch.testing.assert_close(tangent, difference.float(), rtol=1e-4, atol=1e-5)
