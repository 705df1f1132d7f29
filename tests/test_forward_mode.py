"""Forward-mode AD and ``torch.func`` through a LIF layer on every backend: the tangents equal the reverse-mode
directional derivative (a float64 reference on the torch loop), never zeros; ``torch.func.grad`` and ``vmap`` give
the loop's results. A fused op called directly under forward mode refuses with a clear error.

Numba runs here as it is; Triton on CUDA, or on the CPU through its interpreter in a subprocess
(``test_triton_interpreter``, ``TRITON_INTERPRET=1`` being read when triton is imported).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.autograd import forward_ad
from torch.func import functional_call, grad, jvp, vmap

from snnlab.kernels import choose, fused_op, unsupported
from snnlab.neurons import LI, LIF, MembraneState
from snnlab.surrogates import ATan

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = [b for b in ("torch", "numba", "triton") if unsupported(b, DEVICE, torch.float32, "atan") is None]
OPTIONS = dict(tau=2.5, threshold=0.9, reset="hard", v_reset=-0.2, learn_tau=True, learn_threshold=True)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    """An explicitly named backend says once that forward mode runs the torch loop; that warning is not tested here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="snnlab: backend")
        yield


class TwoLayers(nn.Module):
    """Linear -> LIF -> Linear -> LI, time-major, the LIF on ``backend``; its output is the LI membrane."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.fc1, self.lif, self.fc2, self.li = nn.Linear(5, 7), LIF(backend=backend, **OPTIONS), nn.Linear(7, 3), LI()

    def forward(self, x: Tensor) -> Tensor:
        spikes, _ = self.lif(self.fc1(x))
        return self.li(self.fc2(spikes))[0]


def data(features: int) -> tuple[Tensor, Tensor, Tensor]:
    """Input [T, B, features] that makes some LIF neurons fire, a random direction and random weights [features]."""
    gen = torch.Generator().manual_seed(0)
    shape = (6, 2, features)
    x, t = torch.randn(shape, generator=gen) * 2 + 0.5, torch.randn(shape, generator=gen)
    return x, t, torch.randn(features, generator=gen)


def layer_loss(neuron: nn.Module, weights: Tensor) -> Callable[[Tensor], Tensor]:
    """A scalar of every spike and every final membrane value of a LIF layer on [T, B, 7] input."""
    return lambda x: (neuron(x)[0] * weights).sum() + neuron(x)[1].v.square().sum()


def reverse_directional(make: Callable[[str], nn.Module], loss: Callable, x: Tensor, t: Tensor) -> Tensor:
    """<d loss / dx, t> by reverse mode on the torch loop in float64: the reference for every backend."""
    module = make("torch").double()
    x64 = x.double().requires_grad_()
    (g,) = torch.autograd.grad(loss(module)(x64), x64)
    return (g * t.double()).sum()


def lif(backend: str) -> nn.Module:
    torch.manual_seed(1)
    return LIF(backend=backend, **OPTIONS).to(DEVICE)


def two_layers(backend: str) -> nn.Module:
    torch.manual_seed(1)
    return TwoLayers(backend).to(DEVICE)


def check(tangent: Tensor, reference: Tensor) -> None:
    assert tangent.abs() > 1e-3, "forward mode gave no tangent"
    torch.testing.assert_close(tangent.double(), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jvp_through_a_layer(backend: str) -> None:
    """``torch.func.jvp`` of a LIF layer's spikes and final membrane on a random direction."""
    x, t, weights = data(7)

    def loss(neuron: nn.Module) -> Callable[[Tensor], Tensor]:
        return layer_loss(neuron, weights.to(next(neuron.parameters())))

    _, tangent = jvp(loss(lif(backend)), (x.to(DEVICE),), (t.to(DEVICE),))
    check(tangent, reverse_directional(lif, loss, x, t))


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_ad_through_a_layer(backend: str) -> None:
    """``torch.autograd.forward_ad`` dual tensors through a LIF layer, with and without autograd recording."""
    x, t, weights = data(7)

    def loss(neuron: nn.Module) -> Callable[[Tensor], Tensor]:
        return layer_loss(neuron, weights.to(next(neuron.parameters())))

    reference = reverse_directional(lif, loss, x, t)
    for no_grad in (False, True):
        with forward_ad.dual_level(), torch.set_grad_enabled(not no_grad):
            out = loss(lif(backend))(forward_ad.make_dual(x.to(DEVICE), t.to(DEVICE)))
            check(forward_ad.unpack_dual(out).tangent, reference)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jvp_through_two_layers(backend: str) -> None:
    """An input-perturbed directional derivative through Linear -> LIF -> Linear -> LI."""
    x, t, _ = data(5)

    def loss(module: nn.Module) -> Callable[[Tensor], Tensor]:
        return lambda x: module(x).square().sum()

    _, tangent = jvp(loss(two_layers(backend)), (x.to(DEVICE),), (t.to(DEVICE),))
    check(tangent, reverse_directional(two_layers, loss, x, t))


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_perturbed_forward_gradient(backend: str) -> None:
    """``jvp`` of a loss over ``functional_call(module, params, x)`` w.r.t. every parameter (the LIF's tau and
    threshold included), as a forward-gradient rule computes it."""
    x, _, _ = data(5)
    module = two_layers(backend)
    params = {k: v.detach() for k, v in module.named_parameters()}
    gen = torch.Generator().manual_seed(5)
    tangents = {k: torch.randn(v.shape, generator=gen).to(DEVICE) for k, v in params.items()}
    _, tangent = jvp(lambda p: functional_call(module, p, (x.to(DEVICE),)).square().sum(), (params,), (tangents,))

    reference = two_layers("torch").double()
    grads = torch.autograd.grad(reference(x.double()).square().sum(), list(reference.parameters()))
    directional = sum((g * tangents[k].cpu().double()).sum() for g, (k, _) in zip(grads, reference.named_parameters()))
    check(tangent, directional)


@pytest.mark.parametrize("backend", BACKENDS)
def test_func_grad_and_vmap(backend: str) -> None:
    """``torch.func.grad`` equals autograd on the same backend, and ``vmap`` over a batch of sequences equals one
    call per sequence."""
    x, _, weights = data(7)
    x = x.to(DEVICE)
    neuron = lif(backend)
    loss = layer_loss(neuron, weights.to(DEVICE))
    x_ = x.clone().requires_grad_()
    torch.testing.assert_close(grad(loss)(x), torch.autograd.grad(loss(x_), x_)[0], rtol=2e-5, atol=1e-5)
    batch = torch.stack([x, x * 0.5, x + 1])
    spikes = vmap(lambda x: neuron(x)[0])(batch)
    assert torch.equal(spikes, torch.stack([neuron(s)[0] for s in batch]))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "torch"])
def test_dispatch_runs_the_loop_under_forward_mode_and_the_op_refuses(backend: str) -> None:
    """Outside forward mode the fused backend runs; a tangent on the input or a parameter, or a torch.func
    transform, sends it to the loop; the op itself, called with a dual tensor, raises."""
    x = torch.randn(4, 3, device=DEVICE)
    assert choose(backend, x, ATan()) == backend
    beta = torch.tensor(0.5, device=DEVICE)
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x, torch.ones_like(x))
        assert choose(backend, dual, ATan()) == "torch"
        assert choose(backend, x, ATan(), inputs=(forward_ad.make_dual(beta, torch.ones_like(beta)),)) == "torch"
        op = fused_op("lif", backend)
        with pytest.raises(RuntimeError, match="no forward-mode AD formula.*backend='torch'"):
            op(dual, [None], [0.5, 0.5, 1.0], (0.0, True, False, False), ATan())
    picked = []
    for transform in (lambda f: jvp(f, (x,), (x,)), lambda f: vmap(f)(x), lambda f: grad(lambda x: f(x).sum())(x)):
        transform(lambda x: picked.append(choose(backend, x, ATan())) or x)
    assert picked == ["torch"] * 3


@pytest.mark.parametrize("name", ["sigmoid", "atan", "fast_sigmoid", "triangle", "rectangle"])
def test_surrogate_spike_under_torch_func(name: str) -> None:
    """The torch loop in float64: jvp equals the reverse-mode directional derivative to rounding, and
    ``torch.func.grad`` equals autograd, for every surrogate (the spike's jvp is tangent * g(u))."""
    x, t, weights = (v.double() for v in data(7))
    neuron = LIF(backend="torch", surrogate={"name": name, "alpha": 1.3}, **OPTIONS).double()
    loss = layer_loss(neuron, weights)
    _, tangent = jvp(loss, (x,), (t,))
    x_ = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(loss(x_), x_)
    assert tangent.abs() > 1e-3
    torch.testing.assert_close(tangent, (g * t).sum(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad(loss)(x), g, rtol=1e-12, atol=1e-12)


def test_jvp_of_the_state_and_parameters() -> None:
    """Tangents on the initial membrane and a per-neuron threshold reach the final membrane (torch loop)."""
    gen = torch.Generator().manual_seed(3)
    x, v0, theta = torch.randn(5, 2, 4, generator=gen) * 2, torch.randn(2, 4, generator=gen), torch.rand(4) + 0.5
    neuron = LIF(backend="auto", threshold=1.0).double()

    def final(v0: Tensor, theta: Tensor) -> Tensor:
        neuron.threshold = theta
        return neuron(x.double(), MembraneState(v0))[1].v.sum()

    directions = (torch.randn(2, 4, generator=gen).double(), torch.randn(4, generator=gen).double())
    _, tangent = jvp(final, (v0.double(), theta.double()), directions)
    primals = (v0.double().requires_grad_(), theta.double().requires_grad_())
    grads = torch.autograd.grad(final(*primals), primals)
    torch.testing.assert_close(tangent, sum((g * d).sum() for g, d in zip(grads, directions)))


@pytest.mark.skipif(INTERPRETING or torch.cuda.is_available(), reason="runs the interpreter itself")
def test_triton_interpreter() -> None:
    """This file's Triton cases, on the CPU through ``TRITON_INTERPRET=1``."""
    pytest.importorskip("triton")
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__, "-k", "triton"],
        env=env, cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0 and " passed" in result.stdout, result.stdout[-4000:] + result.stderr[-2000:]
