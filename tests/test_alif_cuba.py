"""ALIF (LSNN adaptive threshold) and CUBA-LIF: hand-computed traces, snnTorch ``Synaptic`` parity, the fused kernels
against the torch loop (spikes and states bit for bit, gradients of the input, the initial states and every
parameter, per layer and per neuron, to float rounding), recurrent blocks, the YAML surface and the memory task.

Triton runs on CUDA when there is a GPU and on the CPU through its interpreter in a subprocess
(``test_kernels.test_triton_interpreter`` reruns this file's ``triton-cpu`` cases with ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_kernels import TARGETS, _can_run
from torch import Tensor

from snnlab.builder import build_network
from snnlab.config import load_experiment, validate
from snnlab.datasets import DATASETS
from snnlab.errors import ConfigError
from snnlab.neurons import ALIF, LI, LIF, NEURONS, ALIFState, CubaLI, CubaLIF, CubaState

TAU_075 = -1 / math.log(0.75)
TAU_05 = -1 / math.log(0.5)
"""Time constants (dt = 1, exp) that give beta = 3/4 and 1/2: the traces below stay dyadic, hence exact."""


def seq(rows: list) -> Tensor:
    """``[T, 1, N]`` from a list of per-step rows."""
    return torch.tensor(rows, dtype=torch.float32).unsqueeze(1)


def steps(neuron: torch.nn.Module, x: Tensor) -> tuple[Tensor, list]:
    """Outputs ``[T, ...]`` and the state after every step, by ``step``."""
    state, outs, states = neuron.initial_state(x[0]), [], []
    for x_t in x:
        out, state = neuron.step(x_t, state)
        outs.append(out)
        states.append(state)
    return torch.stack(outs), states


# --- hand-computed traces -------------------------------------------------------------------------------

# ALIF, beta = 3/4, rho = 1/2, b0 = 1, beta_a = 1, h = .75 v + x; B = 1 + a[t-1], a[t] = .5 a[t-1] + .5 s[t].
# soft (v = h - B s):
#   t0: B 1,    h 2 (fire),                  v 1,        a .5
#   t1: B 1.5,  h .75 + .5 = 1.25 (no fire: a LIF would), v 1.25, a .25
#   t2: B 1.25, h .9375 + 2 = 2.9375 (fire), v 1.6875,   a .625
#   t3: B 1.625, h 1.265625 + 1.5 = 2.765625 (fire), v 1.140625, a .8125
# hard to 0 (v = h (1 - s)):
#   t0: fire, v 0, a .5;  t1: h .5, v .5, a .25;  t2: B 1.25, h 2.375 (fire), v 0, a .625;
#   t3: B 1.625, h 1.5 (no fire), v 1.5, a .3125
ALIF_X = [2.0, 0.5, 2.0, 1.5]
ALIF_TRACES = {
    "soft": ([1, 0, 1, 1], [1.0, 1.25, 1.6875, 1.140625], [0.5, 0.25, 0.625, 0.8125]),
    "hard": ([1, 0, 1, 0], [0.0, 0.5, 0.0, 1.5], [0.5, 0.25, 0.625, 0.3125]),
}


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_alif_hand_trace(reset: str) -> None:
    """Spikes, membrane and adaptation step by step; the threshold step t meets holds the spikes before t only."""
    neuron = ALIF(tau=TAU_075, tau_a=TAU_05, beta_a=1.0, threshold=1.0, decay_input=False, reset=reset,
                  backend="torch")  # fmt: skip
    s, states = steps(neuron, seq([[v] for v in ALIF_X]))
    spikes, v, a = ALIF_TRACES[reset]
    assert s.flatten().tolist() == spikes
    assert [st.v.item() for st in states] == v
    assert [st.a.item() for st in states] == a
    if reset == "soft":
        lif = LIF(tau=TAU_075, threshold=1.0, decay_input=False)
        assert steps(lif, seq([[v] for v in ALIF_X]))[0].flatten().tolist()[1] == 1, "without adaptation t1 fires"


def test_alif_non_adapting_neurons_are_lif() -> None:
    """With adaptive_fraction 0.5 the neurons whose beta_a is 0 spike exactly as LIF, the others less."""
    torch.manual_seed(0)
    neuron = ALIF(tau=3.0, tau_a=20.0, beta_a=2.0, adaptive_fraction=0.5, in_shape=(40,), backend="torch")
    lif = LIF(tau=3.0, backend="torch")
    x = torch.rand(30, 2, 40) * 4
    s, s_lif = neuron(x)[0], lif(x)[0]
    plain = neuron.adaptive == 0
    assert int(plain.sum()) == 20
    assert torch.equal(s[..., plain], s_lif[..., plain])
    assert s[..., ~plain].sum() < s_lif[..., ~plain].sum()


# CUBA, alpha = 1/2, beta = 3/4, threshold 1, soft reset.
# without decay_input, x = 1, 0, .5, 0: i = 1, .5, .75, .375; h = 1 (no fire: h > 1 is strict), .75 + .5 = 1.25
#   (fire, v .25), .1875 + .75 = .9375, .703125 + .375 = 1.078125 (fire, v .078125)
# with decay_input, x = 4, 0, 4, 4: i = 2, 1, 2.5, 3.25; h = .5, .375 + .25 = .625, .46875 + .625 = 1.09375 (fire,
#   v .09375), .0703125 + .8125 = .8828125
CUBA_TRACES = {
    False: ([1.0, 0.0, 0.5, 0.0], [1.0, 0.5, 0.75, 0.375], [0, 1, 0, 1], [1.0, 0.25, 0.9375, 0.078125]),
    True: ([4.0, 0.0, 4.0, 4.0], [2.0, 1.0, 2.5, 3.25], [0, 0, 1, 0], [0.5, 0.625, 0.09375, 0.8828125]),
}


@pytest.mark.parametrize("decay_input", [False, True])
def test_cuba_hand_trace(decay_input: bool) -> None:
    """Current, spikes and membrane step by step, decay_input scaling both stages; the readout form ``cuba_li``
    gives the membrane without reset."""
    x, current, spikes, v = CUBA_TRACES[decay_input]
    neuron = CubaLIF(tau=TAU_075, tau_syn=TAU_05, decay_input=decay_input, backend="torch")
    s, states = steps(neuron, seq([[value] for value in x]))
    assert s.flatten().tolist() == spikes
    assert [st.i.item() for st in states] == current
    assert [st.v.item() for st in states] == v
    readout = neuron.readout_form()
    assert isinstance(readout, CubaLI) and not readout.spiking and readout.decay_input == decay_input
    if not decay_input:  # the same input without firing: h = 1, 1.25, .9375 + .75, 1.265625 + .375
        h, states = steps(readout, seq([[value] for value in x]))
        assert h.flatten().tolist() == [1.0, 1.25, 1.6875, 1.640625]
        assert torch.equal(torch.stack([st.v for st in states]), h)


# --- snnTorch Synaptic ----------------------------------------------------------------------------------

ALPHA, BETA = 0.8, 0.9


@pytest.mark.parametrize(("mechanism", "reset"), [("subtract", "soft"), ("zero", "hard")])
def test_cuba_matches_snntorch_synaptic(mechanism: str, reset: str) -> None:
    """snnTorch ``Synaptic(reset_delay=False)`` is ``CubaLIF(decay_input=False)``: spikes equal, synaptic currents
    and membranes to float rounding, input gradients too (both keep the reset's gradient), on random input capped so
    that a reset membrane never stays above threshold (the limit snnTorch's ``Leaky`` mapping has too)."""
    snntorch = pytest.importorskip("snntorch")
    x = (torch.randn(25, 4, 50, generator=torch.Generator().manual_seed(0)) * 0.3 + 0.05).clamp(max=0.2)
    weights = torch.randn(25, 4, 50, generator=torch.Generator().manual_seed(1))
    synaptic = snntorch.Synaptic(alpha=ALPHA, beta=BETA, threshold=1.0, reset_mechanism=mechanism, reset_delay=False,
                                 spike_grad=snntorch.surrogate.atan(alpha=2))  # fmt: skip
    neuron = CubaLIF(tau=-1 / math.log(BETA), tau_syn=-1 / math.log(ALPHA), decay_input=False, reset=reset,
                     surrogate={"name": "atan", "alpha": 2.0}, backend="torch")  # fmt: skip
    results = []
    for run in ("snntorch", "snnlab"):
        xi = x.clone().requires_grad_()
        if run == "snntorch":
            syn, mem, out = torch.zeros_like(x[0]), torch.zeros_like(x[0]), []
            for x_t in xi:
                spk, syn, mem = synaptic(x_t, syn, mem)
                out.append((spk, syn, mem))
        else:
            s, states = steps(neuron, xi)
            out = [(s_t, st.i, st.v) for s_t, st in zip(s, states)]
        spikes, currents, membranes = (torch.stack(v) for v in zip(*out))
        ((spikes * weights).sum() + membranes[-1].sum()).backward()
        results.append((spikes, currents, membranes, xi.grad))
    (s_ref, i_ref, v_ref, g_ref), (s, i, v, g) = results
    assert 0.05 <= s.mean() <= 0.4
    assert (v <= 1.0).all(), "precondition of the mapping: no membrane above threshold after reset"
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(i, i_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(v, v_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)


# --- fused kernels against the torch loop ---------------------------------------------------------------


def pair(model: str, backend: str, device: str, per_neuron: tuple[int, ...] | None, **options) -> tuple:
    """The same neuron twice, on the torch loop and on ``backend``, every parameter learnable: per layer, or per
    neuron (ALIF: ``in_shape``; CUBA: a per-neuron tensor assigned to its learnable parameters) with random values."""
    if model == "alif":
        options = {"tau": 3.0, "tau_a": 8.0, "beta_a": 1.5, "adaptive_fraction": 0.6 if per_neuron else 1.0,
                   "in_shape": per_neuron, "learn_tau_a": True, "learn_beta_a": True, **options}  # fmt: skip
        make = ALIF
    else:
        options = {"tau": 3.0, "tau_syn": 2.0, "learn_tau_syn": True, **options}
        make = CubaLIF
    options = {"threshold": 0.9, "v_reset": -0.2, "learn_tau": True, "learn_threshold": True, **options}
    torch.manual_seed(4)
    reference = make(backend="torch", **options)
    fast = make(backend=backend, **options)
    if per_neuron is not None and model == "cuba":
        for neuron in (reference, fast):
            neuron.threshold = torch.nn.Parameter(torch.rand(per_neuron, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn(p.shape) * 0.1 + (0.6 if p is reference.threshold and per_neuron else 0.0))
    fast.load_state_dict(reference.state_dict())
    return reference.to(device), fast.to(device)


def run(neuron: torch.nn.Module, x: Tensor, state: tuple | None, loss: str) -> tuple[Tensor, tuple, list[Tensor]]:
    """Spikes, final state, and the gradients of a loss w.r.t. the input, the initial state and the parameters."""
    spikes, final = neuron(x, state)
    gen = torch.Generator(device=x.device).manual_seed(3)
    if loss == "weighted":  # a gradient for every spike and every final state value
        value = (spikes * torch.randn(spikes.shape, generator=gen, device=x.device)).sum()
        for f in final:
            value = value + (f * torch.randn(f.shape, generator=gen, device=x.device)).sum()
    elif loss == "spike_sum":  # one gradient per step broadcast over the neurons, none for the final state
        value = spikes.sum()
    else:  # "state": none for the spikes
        value = final[0].square().sum() + final[1].sum()
    wrt = [x, *([] if state is None else state), *neuron.parameters()]
    return spikes, final, list(torch.autograd.grad(value, wrt, allow_unused=True, materialize_grads=True))


def compare(model: str, backend: str, device: str, shape: tuple, loss: str = "weighted", at_rest: bool = False,
            per_neuron: tuple[int, ...] | None = None, **options) -> None:  # fmt: skip
    """``backend`` equals the torch loop on random input: spikes and final states exactly, gradients closely."""
    reference, fast = pair(model, backend, device, per_neuron, **options)
    gen = torch.Generator().manual_seed(0)
    scale = 3.0 if options.get("decay_input", True) else 0.8
    x = ((torch.randn(shape, generator=gen) * 1.2 + 0.6) * scale).to(device).requires_grad_()
    state_type = ALIFState if model == "alif" else CubaState
    state = None
    if not at_rest:
        v0, other = torch.randn(shape[1:], generator=gen) * 0.5, torch.rand(shape[1:], generator=gen)
        state = state_type(v0.to(device).requires_grad_(), other.to(device).requires_grad_())
    s_ref, final_ref, g_ref = run(reference, x, state, loss)
    s, final, g = run(fast, x, state, loss)
    assert 0.02 < s_ref.mean() < 0.9, "the input should make some, not all, neurons fire"
    assert torch.equal(s, s_ref), "spikes differ from the torch loop"
    for a, b in zip(final, final_ref):
        assert torch.equal(a, b), "a final state differs from the torch loop"
    names = ["x", *([] if at_rest else ["v0", "state0"]), *dict(fast.named_parameters())]
    for name, a, b in zip(names, g, g_ref):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-5 * max(1.0, b.abs().max().item()), msg=name)


OPTIONS = [
    dict(reset="soft"),
    dict(reset="soft", detach_reset=True, decay_input=False),
    dict(reset="hard"),
    dict(reset="hard", detach_reset=True, decay_input=False),
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("model", ["alif", "cuba"])
@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_fused_matches_torch(backend: str, device: str, model: str, options: dict) -> None:
    """T = 11 (a partial last segment), 3 x 37 neurons (a partial block), per-layer learnable parameters."""
    compare(model, backend, device, (11, 3, 37), **options)


@pytest.mark.parametrize("model", ["alif", "cuba"])
@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_fused_per_neuron_parameters(backend: str, device: str, model: str) -> None:
    """Per-neuron parameters (ALIF: b0, tau_a, beta_a and 40% non-adapting neurons; CUBA: the threshold): spikes and
    states bit for bit, each parameter's gradient summed over the batch; a triangle surrogate on Triton."""
    surrogate = {"name": "triangle" if backend == "triton" else "atan", "alpha": 0.9}
    compare(model, backend, device, (9, 3, 37), per_neuron=(37,), reset="hard", surrogate=surrogate)


@pytest.mark.parametrize(
    ("model", "shape", "loss", "at_rest"),
    [("alif", (1, 5, 7), "spike_sum", False), ("cuba", (8, 2, 300), "state", True)],
    ids=["alif-T1-spike-sum", "cuba-T8-state-loss-from-rest"],
)
@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_fused_shapes_and_losses(backend: str, device: str, model: str, shape: tuple, loss: str, at_rest: bool) -> None:
    """T = 1, T a multiple of the segment, from rest; a loss on the spike count (a gradient broadcast over the
    neurons) and one on the final states only."""
    compare(model, backend, device, shape, loss, at_rest)


@pytest.mark.parametrize("model", ["alif", "cuba"])
def test_numba_chunks(model: str) -> None:
    """More neurons than one Numba chunk holds (on one thread: the serial kernel), per-neuron parameters read at
    n mod P across the chunks' boundaries."""
    if not _can_run("numba", "cpu"):
        pytest.skip("numba is not installed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        compare(model, "numba", "cpu", (5, 2, 1100), per_neuron=(1100,), decay_input=False)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("model", ["alif", "cuba"])
@pytest.mark.skipif(not torch.cuda.is_available() or not _can_run("triton", "cuda"), reason="needs CUDA and triton")
def test_triton_cuda_graph_compile_and_bf16(model: str) -> None:
    """The Triton op runs inside a captured CUDA graph and under ``torch.compile`` with the eager spikes and
    gradients, and takes bfloat16 input (states in float32 inside: the spikes of the input upcast)."""
    from test_kernels import SpikesOnly

    reference, fast = pair(model, "triton", "cuda", (300,))
    x = (torch.randn(12, 8, 300, device="cuda") * 3).requires_grad_()
    weights = torch.randn(12, 8, 300, device="cuda")
    s_ref = reference(x)[0]
    g_ref = torch.autograd.grad((s_ref * weights).sum(), [x, *reference.parameters()])
    for layer in (torch.cuda.make_graphed_callables(SpikesOnly(fast), (x,)), torch.compile(SpikesOnly(fast))):
        spikes = layer(x)
        grads = torch.autograd.grad((spikes * weights).sum(), [x, *fast.parameters()])
        assert torch.equal(spikes, s_ref)
        for a, b in zip(grads, g_ref):
            torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-5 * max(1.0, b.abs().max().item()))
    reference, fast = pair(model, "triton", "cuda", None)
    low = x.detach().to(torch.bfloat16)
    assert torch.equal(fast(low)[0].float(), reference(low.float())[0])


def test_alif_rate_statistics_run_the_loop() -> None:
    """The fused kernels keep no rate statistics: ALIF's come from the torch loop, with the forward's spikes."""
    neuron = ALIF(tau=2.0, tau_a=10.0, beta_a=0.5)
    x = torch.rand(6, 2, 9) * 3
    statistics = neuron.rate_statistics(x)
    assert torch.equal(statistics.spikes, neuron(x)[0])
    assert statistics.eligibility.shape == (2, 9) and statistics.eligibility.abs().sum() > 0


# --- networks, YAML ------------------------------------------------------------------------------------


def network(neuron: dict, recurrent: str | None = None, width: int = 24):
    """A 16-width-4 network of ``neuron`` built from YAML (``recurrent`` on the hidden block), and its config."""
    hidden = {"linear": width, **({"recurrent": recurrent} if recurrent else {})}
    raw = {"network": {"neuron": neuron, "blocks": [hidden, {"linear": 4}]}}
    cfg = validate(raw)
    return build_network(cfg.network, (16,), membrane_output=True), cfg


@pytest.mark.parametrize(
    ("neuron", "recurrent"),
    [({"model": "alif", "tau": 3.0, "tau_a": 10.0, "beta_a": 1.0, "adaptive_fraction": 0.5}, "dense"),
     ({"model": "cuba_lif", "tau": 3.0, "tau_syn": 2.0}, "one_to_one")],
    ids=["alif-dense", "cuba-one-to-one"],
)  # fmt: skip
def test_recurrent_blocks(neuron: dict, recurrent: str) -> None:
    """A recurrent block of these neurons gives the same outputs and states over a sequence as step by step, and the
    recurrent weights get gradients."""
    torch.manual_seed(0)
    net, _ = network(neuron, recurrent)
    if recurrent == "one_to_one":
        torch.nn.init.normal_(net.blocks[0].recurrent.weight)
    x = torch.rand(12, 3, 16) * 2
    out, states = net(x)
    state, outs = None, []
    for x_t in x:
        o, state = net.step(x_t, state)
        outs.append(o)
    torch.testing.assert_close(torch.stack(outs), out, rtol=0, atol=0)
    hidden = net.trace(x).blocks[0].spikes
    assert 0 < hidden.mean() < 1
    out.sum().backward()
    assert net.blocks[0].recurrent.weight.grad.abs().sum() > 0


def test_yaml_builds_per_neuron_alif_and_readout_forms() -> None:
    """The builder gives ALIF its layer's shape: per-neuron parameters of the block's width, exactly the fraction of
    adapting neurons, the same choice for the same seed; membrane readouts swap ALIF for LI and CUBA for cuba_li."""
    neuron = {"model": "alif", "adaptive_fraction": 0.25, "learn_tau_a": True, "learn_threshold": True}
    torch.manual_seed(5)
    net, _ = network(neuron)
    hidden = net.blocks[0].neuron
    assert isinstance(hidden, ALIF) and hidden.adaptive.shape == (24,) and int(hidden.adaptive.sum()) == 6
    assert hidden.adaptation.w.shape == (24,) and hidden.threshold.shape == (24,)
    assert type(net.blocks[1].neuron) is LI
    torch.manual_seed(5)
    assert torch.equal(network(neuron)[0].blocks[0].neuron.adaptive, hidden.adaptive)
    cuba, _ = network({"model": "cuba_lif"})
    assert isinstance(cuba.blocks[0].neuron, CubaLIF) and isinstance(cuba.blocks[1].neuron, CubaLI)
    assert {"alif", "cuba_lif", "cuba_li"} <= set(NEURONS.names())


@pytest.mark.parametrize(
    ("neuron", "key"),
    [({"model": "alif", "adaptive_fraction": 1.5}, "network.neuron.adaptive_fraction"),
     ({"model": "alif", "tau_a": 0}, "network.neuron.tau_a"),
     ({"model": "alif", "in_shape": [4]}, "network.neuron.in_shape"),
     ({"model": "cuba_lif", "tau_syn": -1.0}, "network.neuron.tau_syn")],
)  # fmt: skip
def test_bad_options_name_the_key(neuron: dict, key: str) -> None:
    """A bad ALIF or CUBA option is a config error naming its key (``in_shape`` is not an option: the builder sets it)."""
    with pytest.raises(ConfigError) as error:
        validate({"network": {"neuron": neuron, "blocks": [{"linear": 4}]}})
    assert key in str(error.value)


@pytest.mark.parametrize(
    ("name", "shape", "hidden"), [("temporal_order_alif", (32,), ALIF), ("digits_cuba", (64,), CubaLIF)]
)
def test_bundled_experiments_build(name: str, shape: tuple, hidden: type) -> None:
    """The bundled experiments of these neurons validate and build (what ``snnlab check`` does)."""
    cfg, _ = load_experiment(str(Path(__file__).resolve().parents[1] / "experiments" / f"{name}.yaml"))
    net = build_network(cfg.network, shape, membrane_output=True)
    assert type(net.blocks[0].neuron) is hidden and not net.blocks[-1].neuron.spiking


def test_adaptive_fraction_needs_a_shape_in_python() -> None:
    """From Python, a fraction below 1 without ``in_shape`` is refused with what to give."""
    with pytest.raises(ValueError, match="in_shape"):
        ALIF(adaptive_fraction=0.5)


# --- the memory task ------------------------------------------------------------------------------------


def test_temporal_order_task() -> None:
    """Shapes, balanced classes, binary spikes, a seed that fixes the samples, and the property the task rests on:
    every channel's spike count has the same mean in both classes (each shows one burst of each of two symbols), so
    only the order of the bursts tells them apart."""
    splits = DATASETS.builder("temporal_order")(train_samples=600, test_samples=50)
    x, y = splits.train[0]
    assert x.shape == (80, 32) and x.dtype == torch.float32 and splits.input_shape == (32,)
    assert splits.num_classes == 2
    xs, ys = splits.train.x.float(), splits.train.y
    assert 0.4 < ys.float().mean() < 0.6 and set(xs.unique().tolist()) == {0.0, 1.0}
    counts = xs.sum(1)
    gap = (counts[ys == 1].mean(0) - counts[ys == 0].mean(0)).abs().max()
    assert gap < 0.3 * counts.mean(0).max(), "per-channel counts must not tell the classes apart"
    again = DATASETS.builder("temporal_order")(train_samples=600, test_samples=50)
    assert torch.equal(again.train.x, splits.train.x) and torch.equal(again.test.x, splits.test.x)
    with pytest.raises(ConfigError, match="data.time_steps"):
        DATASETS.builder("temporal_order")(time_steps=30)
