"""Fused UltraLIF kernels against the torch loop: outputs and final membranes to float rounding (they are real-valued),
gradients of the input, the initial membrane, ln tau, eps and the threshold to float tolerance, for every pattern of
learnable parameters, on sizes that are not multiples of the kernels' blocks and chunks.

Numba runs here as it is; Triton on CUDA when there is a GPU, and on the CPU through its interpreter in a subprocess
(``test_triton_interpreter``, as in ``test_kernels.py``).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

from snnlab.kernels import unsupported
from snnlab.neurons import MembraneState, UltraLIF

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
CUDA = torch.cuda.is_available()

TARGETS = [
    pytest.param(b, d, id=f"{b}-{d}")
    for b, d in [("numba", "cpu"), ("triton", "cpu"), ("triton", "cuda")]
    if (d == "cpu" or CUDA)
    and (b != "triton" or (d == "cuda") != INTERPRETING)
    and unsupported(b, d, torch.float32, model="ultralif") is None
]

# No parameter learnable, each alone, all three.
LEARNABLE = [
    dict(learn_tau=tau, learn_eps=eps, learn_threshold=theta)
    for tau, eps, theta in itertools.product([False, True], repeat=3)
    if tau + eps + theta in (0, 1, 3)
]


def pair(backend: str, device: str, per_neuron: tuple[int, ...] | None = None, **options) -> tuple[UltraLIF, UltraLIF]:
    """The same neuron on the torch loop and on ``backend``; with ``per_neuron``, random learnable ln tau, eps and
    threshold of that shape."""
    options = {"tau": 0.8, "eps": 0.6, "threshold": 0.9, **options}
    if per_neuron is not None:
        options.update(learn_tau=True, learn_eps=True, learn_threshold=True)
    reference, fast = UltraLIF(backend="torch", **options).to(device), UltraLIF(backend=backend, **options).to(device)
    if per_neuron is not None:
        gen = torch.Generator().manual_seed(4)
        values = {
            "log_tau": -0.05 - torch.rand(per_neuron, generator=gen),
            "rho": torch.randn(per_neuron, generator=gen) * 0.4,
            "threshold": 0.6 + torch.rand(per_neuron, generator=gen),
        }
        for neuron in (reference, fast):
            for name, value in values.items():
                setattr(neuron, name, torch.nn.Parameter(value.to(device)))
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def run(neuron: UltraLIF, x: Tensor, v0: Tensor | None, loss: str) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Outputs, final membrane, and the gradients of a loss w.r.t. x, v0 (unless at rest) and the parameters."""
    s, state = neuron(x, None if v0 is None else MembraneState(v0))
    gen = torch.Generator(device=x.device).manual_seed(3)
    if loss == "weighted":  # a gradient for every output and every final membrane value
        value = (s * torch.randn(s.shape, generator=gen, device=x.device)).sum()
        value = value + (state.v * torch.randn(state.v.shape, generator=gen, device=x.device)).sum()
    elif loss == "sum":  # one gradient per step broadcast over the neurons (an expanded view), no v gradient
        value = s.sum()
    else:  # "membrane": no gradient reaches the outputs
        value = state.v.square().sum()
    grads = torch.autograd.grad(value, [x, *([] if v0 is None else [v0]), *neuron.parameters()])
    return s, state.v, list(grads)


def compare(backend: str, device: str, shape: tuple, loss: str = "weighted", at_rest: bool = False, **options) -> None:
    reference, fast = pair(backend, device, **options)
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=gen) * 1.5 + 0.6).to(device).requires_grad_()
    v0 = None if at_rest else (torch.randn(shape[1:], generator=gen) * 0.5).to(device).requires_grad_()
    s_ref, v_ref, g_ref = run(reference, x, v0, loss)
    s, v, g = run(fast, x, v0, loss)
    torch.testing.assert_close(s, s_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v, v_ref, rtol=1e-5, atol=1e-6)
    names = ["x", *([] if at_rest else ["v0"]), *dict(fast.named_parameters())]
    assert len(g) == len(names)
    for name, a, b in zip(names, g, g_ref):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, b.abs().max().item()), msg=name)


@pytest.mark.parametrize("options", LEARNABLE, ids=lambda o: "-".join(k for k, v in o.items() if v) or "fixed")
@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_kernel_matches_reference(backend: str, device: str, options: dict) -> None:
    """T = 11 (a partial last segment), 3 x 37 neurons (a partial block), each pattern of learnable parameters."""
    compare(backend, device, (11, 3, 37), **options)


@pytest.mark.parametrize(
    ("shape", "loss", "at_rest"),
    [((1, 5, 7), "weighted", False), ((8, 2, 300), "sum", True), ((9, 1100), "membrane", False),
     ((9, 3, 2, 5, 7), "weighted", True)],
    ids=["T1", "T8-sum-from-rest", "T9-two-chunks-membrane-loss", "T9-conv-from-rest"],
)  # fmt: skip
@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_kernel_shapes_and_losses(backend: str, device: str, shape: tuple, loss: str, at_rest: bool) -> None:
    """T = 1, T a multiple of the segment, several chunks (Numba's parallel variant), a conv-shaped input, no
    initial state; a loss on the output sum (a gradient broadcast over the neurons) and one on the final membrane."""
    compare(backend, device, shape, loss, at_rest, learn_tau=True, learn_threshold=True)


@pytest.mark.parametrize(("shape", "per_neuron"), [((9, 3, 37), (37,)), ((7, 2, 4, 3, 5), (4, 1, 1))])
@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_per_neuron_parameters(backend: str, device: str, shape: tuple, per_neuron: tuple) -> None:
    """ln tau, eps and the threshold per neuron or per channel: each gradient summed to its shape."""
    compare(backend, device, shape, per_neuron=per_neuron)


@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_kernel_inference_matches_reference(backend: str, device: str) -> None:
    """Without autograd (nothing saved) the outputs and final membrane are the reference's."""
    reference, fast = pair(backend, device)
    x = torch.randn(13, 4, 50, device=device) * 2
    with torch.no_grad():
        (s_ref, st_ref), (s, st) = reference(x), fast(x)
    torch.testing.assert_close(s, s_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(st.v, st_ref.v, rtol=1e-5, atol=1e-6)


def test_auto_backend_on_cpu_is_numba_and_float64_runs_the_loop() -> None:
    """``auto`` takes the Numba kernel for float32 CPU input (when installed) and the torch loop for float64."""
    from snnlab.kernels import choose

    expected = "numba" if unsupported("numba", "cpu", torch.float32, model="ultralif") is None else "torch"
    assert choose("auto", torch.zeros(2, 3), model="ultralif") == expected
    assert choose("auto", torch.zeros(2, 3, dtype=torch.float64), model="ultralif") == "torch"


@pytest.mark.skipif(INTERPRETING or unsupported("numba", "cpu", torch.float32) is not None, reason="runs it itself")
def test_triton_interpreter() -> None:
    """This file's Triton cases, on the CPU through ``TRITON_INTERPRET=1`` (read at import, hence the subprocess)."""
    pytest.importorskip("triton")
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__, "-k", "triton-cpu"],
        env=env, cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
