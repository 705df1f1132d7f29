"""Choosing a kernel backend: per network and per neuron from YAML, ``auto``'s pick, the one-line fallback to torch,
what a kernel keeps for backward, and ``torch.compile`` tracing through a kernel op."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Literal

import pytest
import torch
from torch import Tensor

from snnlab import kernels
from snnlab.builder import build_network
from snnlab.config import validate
from snnlab.errors import ConfigError
from snnlab.kernels import choose
from snnlab.neurons import LIF, MembraneState
from snnlab.surrogates import ATan, Surrogate

pytestmark = pytest.mark.skipif(
    kernels.unsupported("numba", "cpu", torch.float32, "atan") is not None, reason="no numba"
)


class Erf(Surrogate):
    """A surrogate no kernel knows."""

    name: Literal["erf"] = "erf"
    alpha: float = 1.0

    def derivative(self, u: Tensor) -> Tensor:
        return torch.exp(-((self.alpha * u) ** 2)) * self.alpha / 1.7724538509055159


def test_auto_picks_numba_on_cpu_float32_and_torch_otherwise() -> None:
    """auto: numba for float32 CPU tensors; the reference for float64 or a surrogate without kernels, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose("auto", torch.empty(2), ATan()) == "numba"
        assert choose("auto", torch.empty(2, dtype=torch.float64), ATan()) == "torch"
        assert choose("auto", torch.empty(2), Erf()) == "torch"
        assert choose("torch", torch.empty(2), ATan()) == "torch"


def test_named_backend_that_cannot_run_warns_once_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """numba on float64 input: one warning naming the backend and the reason, then the reference's result."""
    monkeypatch.setattr(kernels, "_warned", set())
    x = torch.randn(6, 3, 5, dtype=torch.float64) * 2
    v = torch.zeros(3, 5, dtype=torch.float64)
    neuron, reference = LIF(backend="numba", decay_input=False), LIF(backend="torch", decay_input=False)
    with pytest.warns(UserWarning, match=r"backend 'numba' falls back to torch: .*float32.*float64"):
        s, state = neuron(x, MembraneState(v))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call is silent
        neuron(x, MembraneState(v))
    s_ref, state_ref = reference(x, MembraneState(v))
    assert torch.equal(s, s_ref) and torch.equal(state.v, state_ref.v)


def test_surrogate_without_kernel_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "_warned", set())
    with pytest.warns(UserWarning, match="surrogate 'erf' has no numba kernel"):
        assert choose("numba", torch.empty(2), Erf()) == "torch"


def test_triton_without_cuda_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU tensors (and no interpreter) triton names the device it needs, or says it is not installed."""
    if torch.cuda.is_available():
        pytest.skip("CUDA is here")
    monkeypatch.setattr(kernels, "_warned", set())
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.warns(UserWarning, match="backend 'triton' falls back to torch: .*(CUDA|not installed)"):
        spikes, _ = LIF(backend="triton")(torch.randn(4, 2, 3))
    assert spikes.shape == (4, 2, 3)


def network_raw(quick_raw: dict, default: dict, first_block: dict | None = None) -> dict:
    quick_raw["network"]["neuron"] = {**quick_raw["network"]["neuron"], **default}
    if first_block is not None:
        quick_raw["network"]["blocks"][0]["neuron"] = first_block
    return quick_raw


def test_backend_per_network_and_per_block(quick_raw: dict) -> None:
    """``network.neuron.backend`` reaches every LIF block; a block's ``neuron: {backend: ...}`` overrides it there."""
    quick_raw["network"]["blocks"].insert(0, {"linear": 32})
    raw = network_raw(quick_raw, {"backend": "torch"}, {"backend": "numba"})
    net = build_network(validate(raw).network, (64,), membrane_output=True)
    assert [getattr(b.neuron, "backend", None) for b in net.blocks] == ["numba", "torch", None]  # output: LI


def test_unknown_backend_is_a_config_error(tmp_path: Path, quick_raw: dict) -> None:
    raw = network_raw(quick_raw, {"backend": "cuda"})
    with pytest.raises(ConfigError, match=r"network.neuron.backend.*'auto', 'torch', 'triton' or 'numba'"):
        validate(raw, str(tmp_path / "exp.yaml"))


def test_kernel_keeps_only_references_for_backward() -> None:
    """The numba op keeps its input and initial membrane themselves (no copies) and nothing per step."""
    saved: list[Tensor] = []
    x = torch.randn(16, 4, 100, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        LIF(backend="numba")(x)
    per_step = [t for t in saved if t.dim() > 0 and t.shape[0] == x.shape[0] and t.numel() == x.numel()]
    assert per_step and all(t.data_ptr() == x.data_ptr() for t in per_step)
    assert sum(t.numel() for t in saved if t.data_ptr() != x.data_ptr()) <= 4 * 100 + 3  # v0 and the scalars


def test_torch_compile_traces_through_the_op() -> None:
    """``torch.compile(fullgraph=True)`` sees through the custom op and its autograd (fake tensors, AOT autograd)."""
    torch._dynamo.reset()
    neuron = LIF(backend="numba", learn_tau=True, learn_threshold=True)

    def loss(x: Tensor) -> Tensor:
        spikes, state = neuron(x)
        return (spikes * torch.arange(spikes.shape[-1])).sum() + state.v.sum()

    x = torch.randn(7, 3, 13) * 3
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    xs = [x.clone().requires_grad_() for _ in range(2)]
    eager, traced = loss(xs[0]), compiled(xs[1])
    assert torch.equal(eager, traced)
    g_eager = torch.autograd.grad(eager, [xs[0], *neuron.parameters()])
    g_traced = torch.autograd.grad(traced, [xs[1], *neuron.parameters()])
    for a, b in zip(g_eager, g_traced):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", ["auto", "numba"])
def test_state_of_another_dtype_runs_the_torch_loop(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A float64 membrane with float32 input: the torch loop's spikes, membrane and gradients (the loop promotes to
    float64; a float32 kernel would not); ``auto`` silently, a named backend with its one warning."""
    monkeypatch.setattr(kernels, "_warned", set())
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(9, 3, 20, generator=gen) * 2 + 0.5).requires_grad_()
    v0 = torch.randn(3, 20, generator=gen, dtype=torch.float64).requires_grad_()
    neuron, reference = LIF(backend=backend, learn_threshold=True), LIF(backend="torch", learn_threshold=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s, state = neuron(x, MembraneState(v0))
    assert [str(w.message) for w in caught] == (
        [] if backend == "auto" else ["snnlab: backend 'numba' falls back to torch: a state or per-neuron parameter "
                                      "is torch.float64, the input torch.float32"]
    )  # fmt: skip
    s_ref, state_ref = reference(x, MembraneState(v0))
    assert s.dtype == s_ref.dtype == torch.float64
    assert torch.equal(s, s_ref) and torch.equal(state.v, state_ref.v)
    weights = torch.randn(s.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((s * weights).sum() + state.v.sum(), [x, v0, neuron.threshold])
    grads_ref = torch.autograd.grad((s_ref * weights).sum() + state_ref.v.sum(), [x, v0, reference.threshold])
    for a, b in zip(grads, grads_ref):
        assert torch.equal(a, b)


def test_import_loads_no_backend_and_compile_can_come_first() -> None:
    """``import snnlab.neurons`` imports neither torch._dynamo, numba nor triton; a neuron's first run loads its
    backend, even when that first run is traced by ``torch.compile(fullgraph=True)``."""
    code = """
import sys, torch, snnlab.kernels, snnlab.neurons
heavy = [m for m in ("torch._dynamo", "numba", "triton") if m in sys.modules]
assert not heavy, heavy
neuron = snnlab.neurons.LIF(backend="numba", learn_threshold=True)
x = torch.randn(5, 2, 9) * 3
traced = torch.compile(lambda x: neuron(x)[0], fullgraph=True, backend="aot_eager")(x)
assert "numba" in sys.modules and torch.equal(traced, neuron(x)[0])
"""
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
