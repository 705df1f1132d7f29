"""Mixed precision: the fused neurons run in their input's dtype under bf16 autocast, reading the bfloat16 current and
writing bfloat16 spikes and input gradients with no conversion of the sequence around the kernel, while the membrane,
the final states and the per-neuron parameters stay float32. Their spikes are those of the float32 reference on the
same (bf16-rounded) input, bit for bit, and their gradients agree to bfloat16's precision; the bfloat16 reference
(whose membrane is rounded to bf16 at every step) differs from both only where its rounding flips a spike.

Triton runs on the CPU through its interpreter (``test_kernels.test_triton_interpreter`` reruns the ``triton-cpu``
cases with ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from test_kernels import TARGETS
from test_memory_format import MODELS, SHAPE, run
from torch import Tensor
from torch.profiler import profile

from snnlab.builder import build_network
from snnlab.config import validate
from snnlab.neurons import LIF


def conversions_of(numel: int, fn) -> list[str]:  # type: ignore[no-untyped-def]
    """The copies and casts of ``numel`` elements that ``fn()`` makes."""
    with profile(record_shapes=True) as prof:
        fn()
    return [e.name for e in prof.events()
            if e.name in ("aten::copy_", "aten::clone", "aten::_to_copy", "aten::contiguous")
            and any(s and torch.Size(s).numel() == numel for s in e.input_shapes)]  # fmt: skip


def _lif() -> torch.nn.Module:
    """LIF with one learnable tau and threshold: the kind of neuron the network below builds, whose bf16 Numba
    kernels it shares (each mix of single and per-neuron parameters compiles kernels of its own)."""
    return LIF(tau=2.5, reset="hard", v_reset=-0.1, learn_tau=True, learn_threshold=True)


# Numba compiles bf16 kernels of their own for each model (~15 s for ALIF's or CUBA-LIF's): it runs LIF and UltraLIF,
# the interpreter every model (with per-neuron parameters).
CASES = [
    pytest.param(*target.values, model, id=f"{target.id}-{model}")
    for target in TARGETS
    for model in MODELS
    if target.values[0] != "numba" or model in ("lif", "ultralif")
]


@pytest.mark.parametrize(("backend", "device", "model"), CASES)
def test_bfloat16_under_autocast(backend: str, device: str, model: str) -> None:
    """A bf16 sequence through the fused op under autocast: bf16 output and input gradient, float32 final states;
    spikes equal to the float32 reference's on the same values (UltraLIF's real-valued outputs to bf16 rounding),
    gradients to bf16 precision; no sequence-sized copy or cast; the bf16 reference differs in few spikes."""
    torch.manual_seed(0)
    make = _lif if backend == "numba" and model == "lif" else MODELS[model]
    reference, fast = make().to(device), make().to(device)
    fast.load_state_dict(reference.state_dict())
    fast.backend = backend
    x = (torch.randn(SHAPE) * 1.5 + 0.6).to(device, torch.bfloat16)
    weights = torch.randn(SHAPE).to(device, torch.bfloat16)
    x_bf16, x_fp32 = x.clone().requires_grad_(), x.float().requires_grad_()
    with torch.autocast(device, dtype=torch.bfloat16), warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the loop
        out, state, grads = run(fast, x_bf16, weights)
        assert not conversions_of(x.numel(), lambda: run(fast, x_bf16, weights))
    out_ref, state_ref, grads_ref = run(reference, x_fp32, weights.float())
    assert out.dtype == grads[0].dtype == torch.bfloat16 and all(s.dtype == torch.float32 for s in state)
    if model == "ultralif":
        torch.testing.assert_close(out.float(), out_ref, rtol=1e-2, atol=1e-2)
    else:
        assert torch.equal(out.float(), out_ref)
        with torch.autocast(device, dtype=torch.bfloat16):
            out_bf16 = reference(x)[0]
        assert (out_bf16.float() != out_ref).float().mean() < 0.02
    for a, b in zip([*state, *grads], [*state_ref, *grads_ref]):
        torch.testing.assert_close(a.float(), b, rtol=2e-2, atol=2e-2 * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_autocast_network_runs_the_fused_neuron(memory_format: str) -> None:
    """Under CPU bf16 autocast a conv -> batch norm -> LIF network feeds its Numba LIF kernel the bf16 current as it
    is (no fallback to the loop, whatever the layout): spikes in bf16, the loss's gradients reach every parameter."""
    config = validate({
        "data": {"name": "digits", "flatten": False},
        "network": {
            "memory_format": memory_format,
            "neuron": {"model": "lif", "backend": "numba", "learn_tau": True},
            "blocks": [{"conv": {"out_channels": 6, "kernel_size": 3, "padding": 1}, "norm": "batch", "pool": 2},
                       {"flatten": True}, {"linear": 10}],
        },
    })  # fmt: skip
    network = build_network(config.network, (1, 8, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16), warnings.catch_warnings():
        warnings.simplefilter("error")
        trace = network.trace(torch.rand(4, 3, 1, 8, 8))
    spikes: Tensor = trace.blocks[0].spikes
    assert spikes.dtype == torch.bfloat16 and 0 < spikes.float().mean() < 1
    weights = torch.randn(trace.output.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((trace.output.float() * weights).sum(), list(network.parameters()))
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
