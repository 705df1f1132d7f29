"""Neuron models and surrogates: hand-computed traces, step/forward agreement, gradients, registry."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import Tensor, nn
from torch.func import functional_call

from snnlab.neurons import ALIF, IF, LI, LIF, NEURONS, CubaLI, CubaLIF, Neuron, NonSpiking
from snnlab.surrogates import surrogate

TAU_075 = -1 / math.log(0.75)
"""The time constant (dt = 1, exp discretisation) that gives beta = 3/4: every trace below stays dyadic, hence exact in float32."""

# Hand-computed traces, beta = 0.75, threshold = 1, decay_input=False (h = 0.75 v + x), three neurons A, B, C.
# A hits the threshold exactly at t1 and t2 (h = 1, no spike: the rule is strictly h > threshold).
# B never fires. C is driven negative after a spike.
X = [[1.0, 0.5, 1.5], [0.25, 0.5, -1.0], [1.25, -0.5, 1.0], [0.5, 0.5, 1.0], [2.0, 0.5, 0.25]]

# Soft reset, v = h - s:
#   A: h = 1, .75*1+.25 = 1, .75*1+1.25 = 2 (fire, v 1), .75*1+.5 = 1.25 (fire, v .25), .75*.25+2 = 2.1875 (fire)
#   B: h = .5, .375+.5 = .875, .65625-.5 = .15625, .1171875+.5 = .6171875, .462890625+.5 = .962890625
#   C: h = 1.5 (fire, v .5), .375-1 = -.625, -.46875+1 = .53125, .3984375+1 = 1.3984375 (fire, v .3984375), .298828125+.25
SOFT_H = [
    [1.0, 0.5, 1.5],
    [1.0, 0.875, -0.625],
    [2.0, 0.15625, 0.53125],
    [1.25, 0.6171875, 1.3984375],
    [2.1875, 0.962890625, 0.548828125],
]
SOFT_S = [[0, 0, 1], [0, 0, 0], [1, 0, 0], [1, 0, 1], [1, 0, 0]]
SOFT_V = [
    [1.0, 0.5, 0.5],
    [1.0, 0.875, -0.625],
    [1.0, 0.15625, 0.53125],
    [0.25, 0.6171875, 0.3984375],
    [1.1875, 0.962890625, 0.548828125],
]

# Hard reset to 0, v = h (1 - s):
#   A: h = 1, 1, 2 (fire, v 0), 0+.5 = .5 (no spike, unlike soft), .375+2 = 2.375 (fire)
#   B: as soft.
#   C: h = 1.5 (fire, v 0), -1, -.75+1 = .25, .1875+1 = 1.1875 (fire, v 0), 0+.25 = .25
HARD_H = [
    [1.0, 0.5, 1.5],
    [1.0, 0.875, -1.0],
    [2.0, 0.15625, 0.25],
    [0.5, 0.6171875, 1.1875],
    [2.375, 0.962890625, 0.25],
]
HARD_S = [[0, 0, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0]]
HARD_V = [[1.0, 0.5, 0.0], [1.0, 0.875, -1.0], [0.0, 0.15625, 0.25], [0.5, 0.6171875, 0.0], [0.0, 0.962890625, 0.25]]

TRACES = {"soft": (SOFT_H, SOFT_S, SOFT_V), "hard": (HARD_H, HARD_S, HARD_V)}


def seq(rows: list) -> Tensor:
    """``[T, N]`` literals as a ``[T, 1, N]`` float32 sequence (batch of one)."""
    return torch.tensor(rows, dtype=torch.float32).unsqueeze(1)


def column(values: list) -> list:
    """One neuron's values over time as ``[T, 1]`` rows."""
    return [[a] for a in values]


def run_steps(neuron: Neuron, x: Tensor) -> tuple[Tensor, tuple]:
    """Drive ``neuron`` one ``step`` at a time; outputs stacked over time and the final state."""
    state = neuron.initial_state(x[0])
    outputs = []
    for x_t in x:
        out, state = neuron.step(x_t, state)
        outputs.append(out)
    return torch.stack(outputs), state


def check_trace(neuron: LIF, x: Tensor, h: list, s: list, v: list) -> None:
    """Step by step, h (from ``charge``), s and v equal the hand values exactly; forward gives the same spikes and final v."""
    state = neuron.initial_state(x[0])
    for t, x_t in enumerate(x):
        assert torch.equal(neuron.charge(x_t, state), seq(h)[t]), f"h at t={t}"
        spikes, state = neuron.step(x_t, state)
        assert torch.equal(spikes, seq(s)[t]), f"s at t={t}"
        assert torch.equal(state.v, seq(v)[t]), f"v at t={t}"
    spikes, final = neuron(x)
    assert torch.equal(spikes, seq(s))
    assert torch.equal(final.v, seq(v)[-1])


# --- hand-computed traces -------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("decay_input", [False, True])
def test_lif_hand_trace(reset: str, decay_input: bool) -> None:
    """LIF matches the hand trace; with decay_input the input enters scaled by 1 - beta = 1/4, so 4x gives the same trace."""
    neuron = LIF(tau=TAU_075, threshold=1.0, reset=reset, decay_input=decay_input)
    assert neuron.leak.beta == pytest.approx(0.75, abs=1e-15)
    x = seq(X) * (4 if decay_input else 1)
    check_trace(neuron, x, *TRACES[reset])


def test_lif_hand_trace_threshold_two() -> None:
    """A threshold of 2 is subtracted as 2 (soft) and compared against 2: doubling input and threshold doubles h and v."""
    neuron = LIF(tau=TAU_075, threshold=2.0, reset="soft", decay_input=False)
    check_trace(neuron, seq(X) * 2, [[2 * a for a in r] for r in SOFT_H], SOFT_S, [[2 * a for a in r] for r in SOFT_V])


def test_hard_reset_to_nonzero_v_reset() -> None:
    """A hard reset sets v to v_reset = -0.5, and the leak afterwards decays toward 0 (not toward v_reset as in SJ)."""
    neuron = LIF(tau=TAU_075, reset="hard", v_reset=-0.5, decay_input=False)
    # h = 1.5 (fire), .75*-.5+2 = 1.625 (fire), -.375+.5 = .125, .09375+1 = 1.09375 (fire), .75*-.5+0 = -.375
    x = [[1.5], [2.0], [0.5], [1.0], [0.0]]
    h = [[1.5], [1.625], [0.125], [1.09375], [-0.375]]
    s = [[1], [1], [0], [1], [0]]
    v = [[-0.5], [-0.5], [0.125], [-0.5], [-0.375]]
    check_trace(neuron, seq(x), h, s, v)


@pytest.mark.parametrize(
    ("reset", "h", "s", "v"),
    [
        # soft: .5, 1 (= threshold, no spike), 1.25 (fire, v .25), .25+1 = 1.25 (fire, v .25), .25-.5 = -.25
        ("soft", [0.5, 1.0, 1.25, 1.25, -0.25], [0, 0, 1, 1, 0], [0.5, 1.0, 0.25, 0.25, -0.25]),
        # hard: .5, 1, 1.25 (fire, v 0), 0+1 = 1 (= threshold, no spike), 1-.5 = .5
        ("hard", [0.5, 1.0, 1.25, 1.0, 0.5], [0, 0, 1, 0, 0], [0.5, 1.0, 0.0, 1.0, 0.5]),
    ],
)
def test_if_hand_trace(reset: str, h: list, s: list, v: list) -> None:
    """IF is LIF with beta = 1 and no input scaling: h = v + x."""
    neuron = IF(reset=reset)
    assert neuron.leak.beta == 1.0
    x = [0.5, 0.5, 0.25, 1.0, -0.5]
    check_trace(neuron, seq(column(x)), column(h), column(s), column(v))


@pytest.mark.parametrize(("decay_input", "scale"), [(True, 4.0), (False, 1.0)])
def test_li_hand_trace(decay_input: bool, scale: float) -> None:
    """LI outputs its membrane h (above threshold too, never a spike) and keeps it as state."""
    neuron = LI(tau=TAU_075, decay_input=decay_input)
    # h = 1, .75, .5625, .421875+2 = 2.421875, 1.81640625-1 = .81640625
    x = seq([[1.0], [0.0], [0.0], [2.0], [-1.0]]) * scale
    out, final = neuron(x)
    assert torch.equal(out, seq([[1.0], [0.75], [0.5625], [2.421875], [0.81640625]]))
    assert torch.equal(final.v, torch.tensor([[0.81640625]]))
    assert LI.spiking is False


@pytest.mark.parametrize(("tau", "dt"), [(4.0, 1.0), (2.0, 0.5)])
def test_euler_discretization(tau: float, dt: float) -> None:
    """Euler gives beta = 1 - dt/tau = 3/4 (exp would give e^-1/4), and then the same soft trace."""
    neuron = LIF(tau=tau, dt=dt, discretization="euler", reset="soft", decay_input=True)
    assert neuron.leak.beta == 0.75
    assert LIF(tau=tau, dt=dt).leak.beta == pytest.approx(math.exp(-0.25))
    check_trace(neuron, seq(X) * 4, SOFT_H, SOFT_S, SOFT_V)


def test_nonspiking_activations() -> None:
    """NonSpiking applies ReLU or the identity elementwise and has no state."""
    x = seq([[-1.0, 0.0, 2.5], [3.0, -0.5, 0.0]])
    relu_out, relu_state = NonSpiking("relu")(x)
    assert torch.equal(relu_out, seq([[0.0, 0.0, 2.5], [3.0, 0.0, 0.0]]))
    assert relu_state == ()
    assert torch.equal(NonSpiking("identity")(x)[0], x)


# --- step vs forward ------------------------------------------------------------------------------------

NEURON_CASES = {
    "lif": lambda: LIF(),
    "lif_hard_vreset": lambda: LIF(reset="hard", v_reset=-0.3),
    "lif_no_decay_input": lambda: LIF(tau=5.0, decay_input=False),
    "lif_detach_reset": lambda: LIF(detach_reset=True, surrogate="sigmoid"),
    "lif_euler": lambda: LIF(tau=3.0, discretization="euler", surrogate="triangle"),
    "plif": lambda: LIF(learn_tau=True),
    "lif_learn_threshold": lambda: LIF(learn_threshold=True, threshold=0.8, reset="hard"),
    "plif_learn_threshold": lambda: LIF(learn_tau=True, learn_threshold=True, surrogate="rectangle"),
    "if": lambda: IF(),
    "li": lambda: LI(tau=3.0),
    "li_learn_tau": lambda: LI(learn_tau=True, decay_input=False),
    "nonspiking_relu": lambda: NonSpiking("relu"),
    "nonspiking_identity": lambda: NonSpiking("identity"),
    "alif": lambda: ALIF(tau=2.0, tau_a=10.0, beta_a=0.5),
    "alif_hard_learned": lambda: ALIF(
        tau=3.0,
        tau_a=6.0,
        beta_a=1.0,
        reset="hard",
        detach_reset=True,
        learn_tau=True,
        learn_threshold=True,
        learn_tau_a=True,
        learn_beta_a=True,
    ),  # fmt: skip
    "cuba_lif": lambda: CubaLIF(tau=3.0, tau_syn=2.0),
    "cuba_lif_learned": lambda: CubaLIF(
        decay_input=False, reset="hard", learn_tau=True, learn_tau_syn=True, learn_threshold=True
    ),  # fmt: skip
    "cuba_li": lambda: CubaLI(tau=3.0, learn_tau_syn=True),
}


def loss_and_grads(out: Tensor, state: tuple, inputs: list[Tensor], seed: int = 1) -> list[Tensor]:
    """Gradients of a random weighting of the outputs and of the final state w.r.t. ``inputs``."""
    gen = torch.Generator().manual_seed(seed)
    loss = (out * torch.randn(out.shape, generator=gen)).sum()
    for s in state:
        loss = loss + (s * torch.randn(s.shape, generator=gen)).sum()
    return list(torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True))


@pytest.mark.parametrize("shape", [(7, 3, 11), (4, 2, 3, 5, 5)], ids=["dense", "conv"])
@pytest.mark.parametrize("name", list(NEURON_CASES))
def test_step_matches_forward(name: str, shape: tuple) -> None:
    """forward equals a loop of step: outputs, final state, and gradients w.r.t. the input and every parameter."""
    torch.manual_seed(0)
    neuron = NEURON_CASES[name]()
    x = (torch.randn(shape) * 2 + 1).requires_grad_()
    params = list(neuron.parameters())

    out_f, state_f = neuron(x)
    out_s, state_s = run_steps(neuron, x)
    torch.testing.assert_close(out_f, out_s, rtol=0, atol=0)
    assert len(state_f) == len(state_s)
    for a, b in zip(state_f, state_s):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    if neuron.spiking:
        assert 0 < out_f.mean() < 1, "the input should make some, not all, neurons fire"

    grads_f = loss_and_grads(out_f, state_f, [x, *params])
    grads_s = loss_and_grads(out_s, state_s, [x, *params])
    assert grads_f[0].abs().sum() > 0
    for g_f, g_s in zip(grads_f, grads_s):
        torch.testing.assert_close(g_f, g_s)


# --- learnable tau and threshold ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tau", "dt", "discretization", "beta"), [(3.0, 1.0, "exp", math.exp(-1 / 3)), (4.0, 1.0, "euler", 0.75)]
)
def test_plif_parameter_initialised_from_tau(tau: float, dt: float, discretization: str, beta: float) -> None:
    """PLIF holds one parameter ``leak.w`` with beta = sigmoid(w) starting at the beta that tau gives."""
    neuron = LIF(tau=tau, dt=dt, discretization=discretization, learn_tau=True)
    assert isinstance(neuron.leak.w, nn.Parameter)
    assert neuron.leak.w.shape == ()
    assert dict(neuron.named_parameters()).keys() == {"leak.w"}
    assert torch.sigmoid(neuron.leak.w).item() == pytest.approx(beta, rel=1e-6)
    assert neuron.leak.tau == pytest.approx(tau, rel=1e-5)


def test_learnable_tau_and_threshold_get_gradients() -> None:
    """With spiking activity, the loss gives w and the threshold non-zero, finite gradients."""
    torch.manual_seed(0)
    neuron = LIF(learn_tau=True, learn_threshold=True)
    assert isinstance(neuron.threshold, nn.Parameter)
    spikes, state = neuron(torch.randn(10, 4, 16) * 2 + 1.5)
    assert 0 < spikes.mean() < 1
    (spikes.sum() + state.v.sum()).backward()
    for p in (neuron.leak.w, neuron.threshold):
        assert p.grad is not None and torch.isfinite(p.grad) and p.grad != 0


def test_fixed_tau_and_threshold_are_not_parameters() -> None:
    """Without the learn_* flags a LIF has no parameters at all."""
    assert list(LIF().parameters()) == []


def test_li_learnable_tau_gradcheck() -> None:
    """LI is smooth, so its gradients w.r.t. the input and w pass finite-difference gradcheck in float64."""
    torch.manual_seed(0)
    neuron = LI(tau=2.5, learn_tau=True).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    w = neuron.leak.w.detach().clone().requires_grad_()

    def outputs(x: Tensor, w: Tensor) -> Tensor:
        out, state = functional_call(neuron, {"leak.w": w}, (x,))
        return torch.cat([out.flatten(), state.v.flatten()])

    assert torch.autograd.gradcheck(outputs, (x, w))


# --- detach_reset ---------------------------------------------------------------------------------------


def atan2(u: float) -> float:
    """The atan surrogate with alpha = 2, by hand: 1 / (1 + (pi u)^2)."""
    return 1 / (1 + (math.pi * u) ** 2)


@pytest.mark.parametrize(
    ("reset", "detach_reset", "dx1", "dx2"),
    [
        # soft: h1 = 1.5 fires (u1 = .5), v1 = h1 - s1 = .5; h2 = .75 v1 + .75 = 1.125 (u2 = .125).
        # dv1/dh1 = 1 - g(u1), or 1 when s in the reset carries no gradient.
        ("soft", False, 0.75 * atan2(0.125) * (1 - atan2(0.5)), atan2(0.125)),
        ("soft", True, 0.75 * atan2(0.125), atan2(0.125)),
        # hard: v1 = h1 (1 - s1) = 0; h2 = .75 (u2 = -.25). dv1/dh1 = (1 - s1) - h1 g(u1), or 1 - s1 = 0 detached.
        ("hard", False, 0.75 * atan2(-0.25) * (-1.5 * atan2(0.5)), atan2(-0.25)),
        ("hard", True, 0.0, atan2(-0.25)),
    ],
)
def test_detach_reset_two_step_gradient(reset: str, detach_reset: bool, dx1: float, dx2: float) -> None:
    """d s[2] / d x for two steps, by hand: detach_reset removes the -theta g(u1) (soft) or -h1 g(u1) (hard) path."""
    neuron = LIF(
        tau=TAU_075, decay_input=False, reset=reset, detach_reset=detach_reset, surrogate={"name": "atan", "alpha": 2.0}
    )
    x = torch.tensor([[[1.5]], [[0.75]]], requires_grad=True)
    spikes, _ = neuron(x)
    spikes[1].sum().backward()
    assert x.grad.flatten().tolist() == pytest.approx([dx1, dx2], rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_detach_reset_changes_gradient_not_forward(reset: str) -> None:
    """On spiking input, detach_reset leaves spikes and membranes unchanged but changes the input gradient."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 10) * 2 + 1
    results = []
    for detach in (False, True):
        xi = x.clone().requires_grad_()
        spikes, state = LIF(reset=reset, detach_reset=detach)(xi)
        (spikes.sum() + state.v.sum()).backward()
        results.append((spikes, state.v, xi.grad))
    (s0, v0, g0), (s1, v1, g1) = results
    assert 0 < s0.mean() < 1
    assert torch.equal(s0, s1) and torch.equal(v0, v1)
    assert not torch.allclose(g0, g1)


# --- surrogates -----------------------------------------------------------------------------------------


def sigmoid_formula(a: float, u: float) -> float:
    """alpha sig(alpha u) (1 - sig(alpha u)), with the logistic written out."""
    sig = 1 / (1 + math.exp(-a * u))
    return a * sig * (1 - sig)


FORMULAS = {
    "sigmoid": sigmoid_formula,
    "atan": lambda a, u: (a / 2) / (1 + (math.pi * a * u / 2) ** 2),
    "fast_sigmoid": lambda a, u: 1 / (1 + a * abs(u)) ** 2,
    "triangle": lambda a, u: max(0.0, a - a**2 * abs(u)),
    "rectangle": lambda a, u: a if abs(u) < 1 / (2 * a) else 0.0,
}
DEFAULT_ALPHA = {"sigmoid": 4.0, "atan": 2.0, "fast_sigmoid": 25.0, "triangle": 1.0, "rectangle": 1.0}
POINTS = [-1.0, -0.3, -0.25, -0.1, 0.0, 0.05, 0.2, 0.25, 0.7, 3.0]


@pytest.mark.parametrize("name", list(FORMULAS))
def test_surrogate_forward_is_strict_heaviside(name: str) -> None:
    """spike(u) is exactly 1[u > 0] in value and dtype: 0 (and -0) give no spike, the smallest positive float does."""
    u = torch.tensor([-2.0, -1e-30, -0.0, 0.0, 1e-45, 1e-7, 0.5, 5.0])
    s = surrogate(name).spike(u)
    assert s.dtype == u.dtype
    assert s.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("alpha", [0.5, 2.0, 3.0])
@pytest.mark.parametrize("name", list(FORMULAS))
def test_surrogate_backward_closed_form(name: str, alpha: float) -> None:
    """The gradient through spike() equals the docstring's formula (rectangle: 0 on the edge |u| = 1/(2 alpha))."""
    u = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    sg = surrogate({"name": name, "alpha": alpha})
    upstream = torch.linspace(0.5, 2.0, len(POINTS), dtype=torch.float64)
    (sg.spike(u) * upstream).sum().backward()
    expected = [g * FORMULAS[name](alpha, p) for g, p in zip(upstream.tolist(), POINTS)]
    assert u.grad.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert sg.derivative(u.detach()).tolist() == pytest.approx(
        [FORMULAS[name](alpha, p) for p in POINTS], rel=1e-12, abs=1e-15
    )


@pytest.mark.parametrize("name", list(FORMULAS))
def test_surrogate_defaults(name: str) -> None:
    """A bare name gives the documented default alpha; a Surrogate instance passes through unchanged."""
    sg = surrogate(name)
    assert sg.name == name and sg.alpha == DEFAULT_ALPHA[name]
    assert surrogate(sg) is sg
    assert surrogate({"name": name}) == sg


def integral(name: str, alpha: float) -> float:
    """Trapezoid integral of the surrogate over [-1000, 1000] in float64: grid 1e-5 wide on [-2, 2], 1e-2 outside."""
    inner = torch.linspace(-2, 2, 400_001, dtype=torch.float64)
    outer = torch.linspace(2, 1000, 99_801, dtype=torch.float64)
    u = torch.cat([-outer.flip(0), inner[1:-1], outer])
    return torch.trapezoid(surrogate({"name": name, "alpha": alpha}).derivative(u), u).item()


@pytest.mark.parametrize("alpha", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("name", ["sigmoid", "atan", "triangle", "rectangle"])
def test_surrogate_integrates_to_one(name: str, alpha: float) -> None:
    """Every surrogate but fast_sigmoid has unit mass whatever alpha (atan's slow tail leaves < 1e-3 outside the range)."""
    assert integral(name, alpha) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("alpha", [1.0, 25.0])
def test_fast_sigmoid_has_peak_one(alpha: float) -> None:
    """fast_sigmoid follows snnTorch: peak 1 at u = 0, so its mass is 2/alpha rather than 1."""
    assert surrogate({"name": "fast_sigmoid", "alpha": alpha}).derivative(torch.tensor(0.0)).item() == 1.0
    assert integral("fast_sigmoid", alpha) == pytest.approx(2 / alpha, rel=2e-3)


@pytest.mark.parametrize("alpha", [0.0, -1.0])
@pytest.mark.parametrize("name", list(FORMULAS))
def test_surrogate_rejects_nonpositive_alpha(name: str, alpha: float) -> None:
    """alpha <= 0 fails validation, from the option dict and from a neuron's surrogate argument."""
    with pytest.raises(ValidationError):
        surrogate({"name": name, "alpha": alpha})
    with pytest.raises(ValidationError):
        LIF(surrogate={"name": name, "alpha": alpha})


def test_surrogate_rejects_unknown_name_and_extra_keys() -> None:
    """An unknown surrogate name or an unknown option is a ValidationError, not a silent default."""
    with pytest.raises(ValidationError):
        surrogate("erf")
    with pytest.raises(ValidationError):
        surrogate({"name": "atan", "alpha": 2.0, "slope": 3.0})


# --- registry -------------------------------------------------------------------------------------------


def test_neuron_registry_names() -> None:
    """The YAML names of the core neurons are registered and build the right classes."""
    assert {"lif", "if", "li", "nonspiking"} <= set(NEURONS.names())
    assert NEURONS.builder("lif") is LIF
    assert NEURONS.builder("if") is IF
    assert NEURONS.builder("li") is LI
    assert NEURONS.builder("nonspiking") is NonSpiking


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (LIF, {"reset": "Soft"}),
        (LIF, {"discretization": "Exp"}),
        (LI, {"tau": "slow"}),
        (NonSpiking, {"activation": "tanh"}),
    ],
)
def test_python_constructor_checks_options_like_yaml(cls: type, options: dict) -> None:
    """A misspelt option is refused in Python as in YAML, instead of silently picking another behaviour."""
    with pytest.raises(ValidationError):
        cls(**options)
