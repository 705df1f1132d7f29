"""Memory layout: every fused neuron runs a channels_last sequence (``[T, B, C, H, W]`` stored NHWC within each sample)
on its storage as it is, with no copy of the input, the output or a gradient, and returns outputs, states and
gradients in that layout, equal to the contiguous run's; a network with ``network.memory_format: channels_last``
keeps the layout through convolution, batch norm, neurons and pooling and trains as the contiguous one does.

Triton runs on the CPU through its interpreter (``test_kernels.test_triton_interpreter`` reruns the ``triton-cpu``
cases with ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from test_kernels import TARGETS
from torch import Tensor
from torch.profiler import profile

from snnlab.builder import build_network
from snnlab.config import validate
from snnlab.errors import ConfigError
from snnlab.network import in_memory_format
from snnlab.neurons import ALIF, LIF, CubaLIF, UltraLIF

SHAPE = (7, 2, 5, 3, 4)  # T, B, C, H, W: no size a multiple of another's, so a wrong layout shows


def lif() -> torch.nn.Module:
    neuron = LIF(tau=2.5, reset="hard", v_reset=-0.1, learn_tau=True, learn_threshold=True)
    gen = torch.Generator().manual_seed(2)
    neuron.leak.w = torch.nn.Parameter(torch.randn(5, 1, 1, generator=gen) * 0.3)  # per channel
    neuron.threshold = torch.nn.Parameter(torch.rand(5, 3, 4, generator=gen) * 0.5 + 0.7)  # per neuron
    return neuron


MODELS: dict[str, Callable[[], torch.nn.Module]] = {
    "lif": lif,
    "alif": lambda: ALIF(
        tau=3.0,
        tau_a=5.0,
        beta_a=0.5,
        adaptive_fraction=0.5,
        in_shape=(5, 3, 4),
        learn_threshold=True,
        learn_tau_a=True,
        learn_beta_a=True,
    ),  # fmt: skip
    "cuba": lambda: CubaLIF(tau=3.0, tau_syn=2.0, decay_input=False, learn_tau=True, learn_threshold=True),
    "ultralif": lambda: UltraLIF(eps=0.5, learn_tau=True, learn_threshold=True),
}


def channels_last(x: Tensor) -> Tensor:
    return in_memory_format(x, "channels_last")


def is_channels_last(x: Tensor) -> bool:
    """``[T, B, C, H, W]`` (or a state ``[B, C, H, W]``) stored NHWC within each sample."""
    return (x.flatten(0, 1) if x.dim() == 5 else x).is_contiguous(memory_format=torch.channels_last)


def run(neuron: torch.nn.Module, x: Tensor, weights: Tensor) -> tuple[Tensor, tuple, list[Tensor]]:
    """Outputs, final states and the gradients of the input and every parameter of a weighted sum of the outputs and
    the squared final states."""
    out, state = neuron(x)
    loss = (out * weights).sum() + sum(s.square().sum() for s in state)
    return out, tuple(state), list(torch.autograd.grad(loss, [x, *neuron.parameters()]))


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize(("backend", "device"), [*TARGETS, pytest.param("torch", "cpu", id="torch-cpu")])
def test_neurons_keep_channels_last(backend: str, device: str, model: str) -> None:
    """The same values in both layouts: outputs and final states bit for bit, gradients to float rounding (per-neuron
    parameters sum their gradients in another order); outputs, states and the input's gradient come back channels
    last."""
    torch.manual_seed(0)
    neuron = MODELS[model]().to(device)
    if backend != "torch":
        neuron.backend = backend
    x = (torch.randn(SHAPE) * 1.5 + 0.6).to(device)
    weights = torch.randn(SHAPE).to(device)
    out, state, grads = run(neuron, x.clone().requires_grad_(), weights)
    out_cl, state_cl, grads_cl = run(neuron, channels_last(x).requires_grad_(), channels_last(weights))
    assert 0 < out.mean() < 0.9
    assert is_channels_last(out_cl) and all(is_channels_last(s) for s in state_cl) and is_channels_last(grads_cl[0])
    assert torch.equal(out_cl, out) and all(torch.equal(a, b) for a, b in zip(state_cl, state))
    for a, b in zip(grads_cl, grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_fused_neurons_copy_nothing(backend: str, device: str, model: str) -> None:
    """Forward and backward of a fused neuron on a channels_last sequence make no copy of the sequence's size: no
    ``copy_``, ``clone`` or conversion of ``T B C H W`` elements (only per-neuron parameters are laid out)."""
    neuron = MODELS[model]().to(device)
    neuron.backend = backend
    x = channels_last(torch.randn(SHAPE) * 1.5 + 0.6).to(device).requires_grad_()
    weights = channels_last(torch.randn(SHAPE)).to(device)
    run(neuron, x, weights)  # compiled, warm
    with profile(record_shapes=True) as prof:
        run(neuron, x, weights)
    copies = [e.name for e in prof.events()
              if e.name in ("aten::copy_", "aten::clone", "aten::_to_copy", "aten::contiguous")
              and any(s and torch.Size(s).numel() == x.numel() for s in e.input_shapes)]  # fmt: skip
    assert not copies, f"the sequence was copied: {copies}"


def _config(memory_format: str, backend: str) -> object:
    conv = {"kernel_size": 3, "padding": 1}
    return validate({
        "data": {"name": "digits", "flatten": False, "time_steps": 4},
        "network": {
            "memory_format": memory_format,
            "neuron": {"model": "lif", "backend": backend, "learn_tau": True, "tau": 2.0},
            "blocks": [
                {"conv": {"out_channels": 6, **conv}, "norm": "batch", "pool": 2},
                {"conv": {"out_channels": 5, **conv}, "norm": "batch", "pool": {"kind": "avg", "size": 2}},
                {"flatten": True},
                {"linear": 10},
            ],
        },
    })  # fmt: skip


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_channels_last_network_equals_contiguous(backend: str) -> None:
    """``network.memory_format: channels_last`` converts the convolution weights and the input; every neuron's
    spikes stay channels_last; the output and every parameter's gradient equal the contiguous network's."""
    torch.manual_seed(0)
    plain = build_network(_config("contiguous", backend).network, (1, 8, 8))
    fast = build_network(_config("channels_last", backend).network, (1, 8, 8))
    fast.load_state_dict(plain.state_dict())
    assert fast.blocks[0].synapse.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 1, 8, 8)
    results = []
    for net in (plain, fast):
        trace = net.trace(x)
        grads = torch.autograd.grad(trace.output.square().sum(), list(net.parameters()))
        results.append((trace, grads))
    (trace, grads), (trace_cl, grads_cl) = results
    maps = [b.spikes for b in trace_cl.blocks if b.spikes is not None and b.spikes.dim() == 5]
    assert len(maps) == 2 and all(is_channels_last(s) for s in maps)
    assert all(torch.equal(a.spikes, b.spikes) for a, b in zip(trace.blocks, trace_cl.blocks) if a.spikes is not None)
    torch.testing.assert_close(trace_cl.output, trace.output)
    for a, b in zip(grads_cl, grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_channels_last_needs_maps() -> None:
    """A network whose input is not ``[C, H, W]`` is refused by name, with what to do."""
    config = validate({"network": {"memory_format": "channels_last", "blocks": [{"linear": 10}]}})
    with pytest.raises(ConfigError, match=r"network.memory_format.*\[64\]"):
        build_network(config.network, (64,))
    with pytest.raises(ConfigError, match="memory_format"):
        validate({"network": {"memory_format": "nhwc", "blocks": [{"linear": 10}]}})
