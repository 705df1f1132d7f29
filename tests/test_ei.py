"""The E-I circuit (DeepEISNN, METHODS.md A.3): the currents against a hand computation, gradients in float64
(through the division, with and without the zero stabilisation, and its straight-through estimate), Dale's law
after every update of a run, E-I Init's statistics (once, not on resume), E-I Prop's 1/d on W_EI's gradient,
step-by-step equal to whole sequences, the convolutional form, and the YAML keys."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from torch.func import functional_call

from snnlab import lifecycle
from snnlab.builder import build_network
from snnlab.config import validate
from snnlab.errors import ConfigError
from snnlab.network import Block, Network
from snnlab.neurons import LIF, NonSpiking
from snnlab.rules.base import GradientRule
from snnlab.runner import run
from snnlab.synapses.ei import (
    NOMINAL_STATS,
    EICircuit,
    EIConv2d,
    EILinear,
    init_scales,
    input_stats,
    stabilize_shunting,
)


def _set(module: EICircuit, **values: Any) -> EICircuit:
    with torch.no_grad():
        for name, value in values.items():
            module.get_parameter(name).copy_(torch.as_tensor(value, dtype=module.gain_e.dtype))
    return module


def _hand_layer() -> EILinear:
    """d = 2 inputs, n_E = 2, n_I = 1 (ei_ratio 2), every parameter set by hand."""
    layer = EILinear(2, 2, ei_ratio=2)
    return _set(
        layer,
        **{"ee.weight": [[1.0, 2.0], [0.0, 1.0]], "ie.weight": [[1.0, 1.0]], "weight_ei": [[1.0], [0.5]]},
        gain_i=[2.0],
        gain_e=[1.0, 3.0],
        bias=[0.5, -1.0],
    )


def test_circuit_matches_a_hand_computation() -> None:
    # x = [1, 0]: I_EE = [1, 0], I_IE = 1, I_EI = [1, .5], I_bal = [0, -.5], I_sh = [2, 1]
    #   I_int = [1 * 0 / 2 + .5, 3 * -.5 / 1 - 1] = [.5, -2.5]
    # x = [2, 1]: I_EE = [4, 1], I_IE = 3, I_EI = [3, 1.5], I_bal = [1, -.5], I_sh = [6, 3]
    #   I_int = [1 / 6 + .5, 3 * -.5 / 3 - 1] = [2/3, -1.5]
    layer = _hand_layer()
    x = torch.tensor([[1.0, 0.0], [2.0, 1.0]])
    torch.testing.assert_close(layer(x), torch.tensor([[0.5, -2.5], [2 / 3, -1.5]]))
    assert layer.readout_form()(x).tolist() == [[0.0, -0.5], [1.0, -0.5]]  # the output layer: I_bal
    assert layer.divisive is None  # readout_form left the hidden layer as it was


def test_zero_shunting_is_replaced_by_the_rows_smallest_nonzero_value_with_a_straight_through_gradient() -> None:
    i_sh = torch.tensor([[0.0, 3.0, 2.0], [0.0, 0.0, 0.0], [1.0, 0.0, 5.0]], requires_grad=True)
    out = stabilize_shunting(i_sh)
    assert out.tolist() == [[2.0, 3.0, 2.0], [math.inf] * 3, [1.0, 1.0, 5.0]]
    (out * torch.arange(9.0).view(3, 3)).masked_fill(out.isinf(), 0).sum().backward()
    assert i_sh.grad.tolist() == [[0.0, 1.0, 2.0], [0.0, 0.0, 0.0], [6.0, 7.0, 8.0]]
    # a silent row gives its E units b_E alone, finitely, forward and backward
    layer = _hand_layer()
    x = torch.tensor([[0.0, 0.0], [2.0, 1.0]], requires_grad=True)
    y = layer(x)
    assert y[0].tolist() == [0.5, -1.0]
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.weight_ei.grad).all()


def _double(layer: EICircuit, seed: int) -> EICircuit:
    """``layer`` in float64 with every constrained parameter drawn in [0.2, 1.2], b_E in [-.5, .5]."""
    gen = torch.Generator().manual_seed(seed)
    layer = layer.double()
    with torch.no_grad():
        for p in layer.nonnegative():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.2)
        layer.bias.copy_(torch.rand(layer.bias.shape, generator=gen, dtype=p.dtype) - 0.5)
    return layer


def _as_function(layer: EICircuit, x: Tensor) -> tuple[Any, tuple[Tensor, ...]]:
    """The layer's output as a function of its parameters (for gradcheck), and their current values."""
    names = [n for n, _ in layer.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for _, p in layer.named_parameters())
    return (lambda *ps: functional_call(layer, dict(zip(names, ps, strict=True)), (x,))), values


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("detach", [False, True])
def test_gradients_through_the_division_in_float64(kind: str, detach: bool) -> None:
    """Every parameter (W_EE, W_IE, W_EI, g_I, g_E, b_E) and the input, with no zero to stabilise; with a detached
    denominator, against the same circuit whose I_sh is a constant."""
    if kind == "linear":
        layer, x = EILinear(5, 4, ei_ratio=2, scale_ei_grad=False, detach_denominator=detach), torch.rand(3, 5) + 0.1
    else:
        layer = EIConv2d(1, 2, kernel_size=2, padding=1, ei_ratio=2, scale_ei_grad=False, detach_denominator=detach)
        x = torch.rand(2, 1, 3, 3) + 0.1
    layer, x = _double(layer, seed=1), x.double().requires_grad_()
    f, params = _as_function(layer, x)
    if not detach:
        check = (lambda x, *ps: _with_input(layer, x, ps), (x, *params))
        assert torch.autograd.gradcheck(*check, fast_mode=kind == "conv")  # float64 convolutions are slow on the CPU
        return
    i_sh = _shunting(layer, x).detach()  # what the detached denominator holds constant

    def reference(*ps: Tensor) -> Tensor:
        p = dict(zip([n for n, _ in layer.named_parameters()], ps, strict=True))
        i_ee, i_ie = _project(layer, x, p["ee.weight"]), _project(layer, x, p["ie.weight"])
        i_bal = i_ee - torch.einsum("ei,ni...->ne...", p["weight_ei"], i_ie)
        return _channels(p["gain_e"], i_bal) * i_bal / i_sh + _channels(p["bias"], i_bal)

    assert torch.autograd.gradcheck(reference, params, fast_mode=kind == "conv")
    _assert_same_gradients(f, reference, params)


def _with_input(layer: EICircuit, x: Tensor, params: tuple[Tensor, ...]) -> Tensor:
    return functional_call(layer, dict(zip([n for n, _ in layer.named_parameters()], params, strict=True)), (x,))


def _project(layer: EICircuit, x: Tensor, weight: Tensor) -> Tensor:
    if isinstance(layer, EILinear):
        return F.linear(x, weight)
    return F.conv2d(x, weight, padding=layer.ee.padding)


def _channels(p: Tensor, like: Tensor) -> Tensor:
    return p.view(-1, *[1] * (like.dim() - 2))


def _shunting(layer: EICircuit, x: Tensor) -> Tensor:
    """I_sh before stabilisation, by hand."""
    i_ie = _project(layer, x, layer.ie.weight)
    return torch.einsum("ei,ni...->ne...", layer.weight_ei, _channels(layer.gain_i, i_ie) * i_ie)


def _assert_same_gradients(f: Any, reference: Any, params: tuple[Tensor, ...]) -> None:
    torch.testing.assert_close(f(*params), reference(*params))
    weights = torch.randn_like(f(*params))
    got = torch.autograd.grad((f(*params) * weights).sum(), params, allow_unused=True)
    want = torch.autograd.grad((reference(*params) * weights).sum(), params, allow_unused=True)
    for g, w in zip(got, want, strict=True):
        assert (g is None) == (w is None)  # g_I has none through a detached denominator
        if g is not None:
            torch.testing.assert_close(g, w)


def test_stabilised_gradients_are_those_of_a_constant_replacement() -> None:
    """With zeros in I_sh (W_EI's first row and one input sample zero), the forward divides by the row's smallest
    non-zero value and the gradient is that of adding the replacement as a constant (straight through)."""
    layer = _double(EILinear(4, 3, ei_ratio=2, scale_ei_grad=False), seed=2)
    with torch.no_grad():
        layer.weight_ei[0] = 0
    x = (torch.rand(4, 4, dtype=torch.float64) + 0.1).requires_grad_()
    f, params = _as_function(layer, x)
    i_sh = _shunting(layer, x).detach()
    zero = i_sh == 0
    assert zero[:, 0].all() and not zero[:, 1:].any()  # triggered in every row, for E unit 0
    constant = torch.where(zero, i_sh.masked_fill(zero, math.inf).amin(1, keepdim=True), 0.0)

    def reference(*ps: Tensor) -> Tensor:
        p = dict(zip([n for n, _ in layer.named_parameters()], ps, strict=True))
        i_ee, i_ie = F.linear(x, p["ee.weight"]), F.linear(x, p["ie.weight"])
        denominator = F.linear(p["gain_i"] * i_ie, p["weight_ei"]) + constant
        return p["gain_e"] * (i_ee - F.linear(i_ie, p["weight_ei"])) / denominator + p["bias"]

    assert torch.autograd.gradcheck(reference, params)
    _assert_same_gradients(f, reference, params)


def test_the_gradient_of_w_ei_is_divided_by_the_fan_in() -> None:
    torch.manual_seed(3)
    scaled = EILinear(12, 8)
    plain = EILinear(12, 8, scale_ei_grad=False)
    plain.load_state_dict(scaled.state_dict())
    x = (torch.rand(6, 12) < 0.5).float()
    for layer in (scaled, plain):
        layer(x).square().sum().backward()
    torch.testing.assert_close(scaled.weight_ei.grad * 12, plain.weight_ei.grad)
    for name in ("ee.weight", "ie.weight", "gain_i", "gain_e", "bias"):
        torch.testing.assert_close(scaled.get_parameter(name).grad, plain.get_parameter(name).grad)
    conv = EIConv2d(3, 4, kernel_size=3)
    assert conv.fan_in == 27


def test_forward_mode_passes_through_the_circuit() -> None:
    """torch.func.jvp (the forward-gradient rule's engine) gives the reverse-mode directional derivative."""
    layer = _double(EILinear(5, 4), seed=4)
    x = torch.rand(3, 5, dtype=torch.float64) + 0.1
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach() for p in layer.parameters())
    tangents = tuple(torch.randn_like(p) for p in params)

    def f(*ps: Tensor) -> Tensor:
        return functional_call(layer, dict(zip(names, ps, strict=True)), (x,))

    _, forward = torch.func.jvp(f, params, tangents)
    grads = torch.autograd.grad(f(*[p.requires_grad_() for p in params]).sum(), params)
    scale = dict(zip(names, [1 / 5 if n == "weight_ei" else 1.0 for n in names], strict=True))
    reverse = sum((g * t).sum() / scale[n] for n, g, t in zip(names, grads, tangents, strict=True))
    torch.testing.assert_close(forward.sum(), reverse)


def test_dale_law_clamps_before_the_forward_only_when_needed() -> None:
    layer = _hand_layer()
    x = torch.rand(3, 2)
    version = layer.weight_ei._version
    layer(x)
    assert layer.weight_ei._version == version  # nothing negative: untouched (a step-by-step graph stays valid)
    with torch.no_grad():
        layer.gain_i.fill_(-1.0)
        layer.ee.weight[0, 0] = -2.0
        layer.bias.fill_(-3.0)
    layer(x)
    assert layer.gain_i.item() == 0 and layer.ee.weight[0, 0].item() == 0
    assert (layer.bias == -3.0).all()  # b_E is not sign-constrained


def test_ei_init_balances_the_currents_of_a_random_batch() -> None:
    torch.manual_seed(5)
    net = Network(
        [Block(EILinear(100, 64), neuron=LIF(tau=2.0, decay_input=False)), Block(EILinear(64, 10, divisive=False))]
    )
    x = (torch.rand(4, 256, 100) < 0.3).float()
    lifecycle.initialize(net, x)
    layer, folded = net.blocks[0].synapse, x.flatten(0, 1)
    stats = input_stats(folded)
    scale, gain_i = init_scales(stats, 100)
    assert stats.mean == pytest.approx(0.3, abs=0.01) and stats.mean_square == stats.mean  # spikes: x^2 = x
    torch.testing.assert_close(layer.gain_i.data, torch.full((16,), gain_i))
    assert (layer.weight_ei == 1 / 16).all() and (layer.gain_e == 1).all() and (layer.bias == 0).all()
    assert layer.ee.weight.mean().item() == pytest.approx(scale, rel=0.05)  # Exponential(mean = scale)
    i_bal = layer.readout_form()(folded)
    assert abs(i_bal.mean().item()) < 0.05 * layer.ee(folded).mean().item()  # inhibition cancels the mean excitation
    i_sh = _shunting(layer, folded)
    assert i_sh.mean().item() == pytest.approx(math.sqrt(stats.var), rel=0.1)  # the divisive term: about sd(x)
    current = layer(folded)
    assert abs(current.mean().item()) < 0.15 and 0.5 < current.std().item() < 1.5  # normalised without statistics
    # the next layer saw the spikes of the initialised first one
    spikes = net.blocks[0](x)[0].flatten(0, 1)
    torch.testing.assert_close(
        net.blocks[1].synapse.gain_i.data, torch.full((2,), init_scales(input_stats(spikes), 64)[1])
    )


def test_ei_init_keeps_the_default_on_a_silent_batch() -> None:
    torch.manual_seed(6)
    layer = EILinear(8, 4)
    with pytest.warns(UserWarning, match=r"E\[x\] = 0 .* keeps the initialisation for Bernoulli"):
        layer.initialize(torch.zeros(5, 8))
    assert layer.gain_i[0].item() == pytest.approx(init_scales(NOMINAL_STATS, 8)[1])


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_step_by_step_equals_the_whole_sequence(kind: str) -> None:
    """One row of the folded input is one sample at one step, so stepping gives the sequence's spikes, zeros of
    I_sh (silent rows, sparse spikes) included."""
    torch.manual_seed(7)
    if kind == "linear":
        synapse, x = EILinear(6, 8, ei_ratio=4), (torch.rand(5, 3, 6) < 0.3).float()
    else:
        synapse, x = EIConv2d(1, 4, kernel_size=3, padding=1), (torch.rand(5, 3, 1, 4, 4) < 0.3).float()
    block = Block(synapse, neuron=LIF(tau=2.0, decay_input=False, backend="torch"))
    x[0, 0] = 0
    state, outputs = None, []
    for x_t in x:
        out, state = block.step(x_t, state)
        outputs.append(out)
    torch.testing.assert_close(torch.stack(outputs), block(x)[0])


def test_the_convolutional_circuit_is_the_dense_one_at_every_position() -> None:
    """A 1x1 E-I convolution equals the dense circuit applied at each pixel (no zeros: the rows differ)."""
    torch.manual_seed(8)
    conv, dense = EIConv2d(3, 8, kernel_size=1), EILinear(3, 8)
    dense.load_state_dict({k: v.flatten(1) if k.endswith(".weight") else v for k, v in conv.state_dict().items()})
    x = torch.rand(2, 3, 4, 5) + 0.1
    expected = dense(x.permute(0, 2, 3, 1).reshape(-1, 3)).view(2, 4, 5, 8).permute(0, 3, 1, 2)
    torch.testing.assert_close(conv(x), expected)


def test_the_convolutional_network_trains() -> None:
    """A few Adam steps on a fixed batch of digits-sized images reduce the loss."""
    torch.manual_seed(9)
    net = Network(
        [
            Block(
                EIConv2d(1, 8, kernel_size=3, padding=1), neuron=LIF(tau=2.0, decay_input=False), post=[nn.Flatten()]
            ),
            Block(EILinear(8 * 8 * 8, 10, divisive=False), neuron=NonSpiking("identity")),
        ]
    )
    x, y = torch.rand(2, 16, 1, 8, 8), torch.randint(0, 10, (16,))
    lifecycle.initialize(net, x)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(net(x)[0].mean(0), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lifecycle.after_update(net)
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def _quick_ei_raw(tmp_path: Path) -> dict[str, Any]:
    raw = yaml.safe_load((Path(__file__).parents[1] / "experiments" / "digits_ei.yaml").read_text())
    raw["network"]["blocks"] = [{"ei_linear": 32}, {"ei_linear": 32}, raw["network"]["blocks"][-1]]
    raw["train"].update(epochs=1, optimizer={"name": "adam", "lr": 0.02})
    raw["output"] = {"dir": str(tmp_path / "run"), "plots": False}
    return raw


def test_a_run_keeps_dale_law_after_every_update_and_initializes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inits, checks, zeros = [], [], []
    real_init, real_step = EICircuit.initialize, GradientRule.step

    def counted_init(self: EICircuit, x: Tensor) -> None:
        inits.append(x.shape)
        real_init(self, x)

    def checked_step(self: GradientRule, network: Network, *args: Any, **kwargs: Any) -> None:
        real_step(self, network, *args, **kwargs)
        constrained = [p for m in network.modules() if isinstance(m, EICircuit) for p in m.nonnegative()]
        checks.append(all(bool((p >= 0).all()) for p in constrained))
        zeros.append(sum(int((p == 0).sum()) for p in constrained))

    monkeypatch.setattr(EICircuit, "initialize", counted_init)
    monkeypatch.setattr(GradientRule, "step", checked_step)
    raw = _quick_ei_raw(tmp_path)
    result = run(validate(raw), "test", progress=False)
    assert inits == [(4 * 64, 64), (4 * 64, 32), (4 * 64, 32)]  # each layer once, on the folded first batch
    steps = len(checks)
    assert steps > 10 and all(checks) and max(zeros) > 0  # updates pushed weights below 0, and the hook clamped
    config = result.run_dir / "config.yaml"
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 2"))
    run(validate(yaml.safe_load(config.read_text())), "test", progress=False, resume=result.run_dir)
    assert len(inits) == 3 and len(checks) == 2 * steps and all(checks)  # not initialised again on resume


def test_yaml_keys_are_validated_and_the_output_block_returns_the_balanced_current(tmp_path: Path) -> None:
    raw = _quick_ei_raw(tmp_path)
    notes: list[str] = []
    net = build_network(validate(raw).network, (64,), membrane_output=True, notes=notes)
    assert [b.synapse.divisive for b in net.blocks] == [None, None, False]
    assert notes and "blocks[2].ei_linear" in notes[0] and "no division" in notes[0]
    raw["network"]["blocks"][-1]["ei_linear"] = {"out_features": 10, "divisive": True}
    assert build_network(validate(raw).network, (64,), membrane_output=True).blocks[-1].synapse.divisive is True
    raw["network"]["blocks"][0] = {"ei_conv": {"out_channels": 4, "padding": 1}, "flatten": True}
    net = build_network(validate(raw).network, (1, 8, 8), membrane_output=True)
    assert isinstance(net.blocks[0].synapse, EIConv2d) and net.blocks[0].synapse.weight_ei.shape == (4, 1)
    for block, match in [
        ({"ei_linear": {"out_features": 8, "ei_ratio": 0}}, r"ei_linear\.ei_ratio"),
        ({"ei_linear": 0}, r"ei_linear\.out_features"),
        ({"ei_linear": {"out_features": 8, "divisive": "sometimes"}}, r"ei_linear\.divisive"),
        ({"ei_conv": {"out_channels": 8, "groups": 2}}, r"ei_conv\.groups: unknown key"),
    ]:
        raw["network"]["blocks"][0] = block
        with pytest.raises(ConfigError, match=match):
            validate(raw)
    raw["network"]["blocks"][0] = {"ei_conv": 4}
    with pytest.raises(ConfigError, match=r"blocks\[0\]\.ei_conv: expects an input \[channels, height, width\]"):
        build_network(validate(raw).network, (64,))
