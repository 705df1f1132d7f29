"""Fused LIF kernels against the torch reference: spikes and membranes bit for bit, gradients of the input, the
initial membrane, the learnable tau and threshold to float tolerance, for every reset, decay_input, detach_reset and
surrogate, on sizes that are not multiples of the kernels' blocks.

Numba runs here as it is. Triton runs on CUDA when there is a GPU, and on the CPU through its interpreter in a
subprocess (``TRITON_INTERPRET=1`` must be set before triton is imported): ``test_triton_interpreter`` reruns this
file's ``triton`` cases that way.
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
from snnlab.neurons import IF, LIF, MembraneState

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
CUDA = torch.cuda.is_available()


def _can_run(backend: str, device: str) -> bool:
    return unsupported(backend, device, torch.float32, "atan") is None


# (backend, device) pairs this process can test: Triton on the CPU only while interpreting.
TARGETS = [
    pytest.param(b, d, id=f"{b}-{d}")
    for b, d in [("numba", "cpu"), ("triton", "cpu"), ("triton", "cuda")]
    if (d == "cpu" or CUDA) and (b != "triton" or (d == "cuda") != INTERPRETING) and _can_run(b, d)
]

SURROGATES = ["sigmoid", "atan", "fast_sigmoid", "triangle", "rectangle"]
# Every reset x detach_reset x decay_input x learnable (tau, threshold) pattern, each surrogate in turn.
OPTIONS = [
    dict(reset=reset, detach_reset=detach, decay_input=decay, learn_tau=learn, learn_threshold=learn)
    for reset, detach, decay, learn in itertools.product(["soft", "hard"], [False, True], [False, True], [False, True])
]


def lif_pair(
    backend: str, device: str, per_neuron: tuple[int, ...] | None = None, **options
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same neuron twice: on the torch reference and on ``backend``, with identical parameters; with
    ``per_neuron`` a learnable tau and threshold of that shape (random, tau about 2.5, threshold in [0.6, 1.2])."""
    make = IF if options.pop("model", "lif") == "if" else LIF
    options = {"threshold": 0.9, "v_reset": -0.2, **({} if make is IF else {"tau": 2.5}), **options}
    if per_neuron is not None:
        options.update(learn_tau=True, learn_threshold=True)
    reference = make(backend="torch", **options).to(device)
    fast = make(backend=backend, **options).to(device)
    if per_neuron is not None:
        gen = torch.Generator().manual_seed(4)
        w, theta = torch.randn(per_neuron, generator=gen) * 0.3 - 0.45, torch.rand(per_neuron, generator=gen) * 0.6
        for neuron in (reference, fast):
            neuron.leak.w = torch.nn.Parameter(w.to(device))
            neuron.threshold = torch.nn.Parameter(theta.to(device) + 0.6)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def run(neuron: torch.nn.Module, x: Tensor, v0: Tensor | None, loss: str) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Spikes, final membrane, and gradients of a loss w.r.t. the input, the initial membrane (unless at rest)
    and the parameters."""
    spikes, state = neuron(x, None if v0 is None else MembraneState(v0))
    gen = torch.Generator(device=x.device).manual_seed(3)
    if loss == "weighted":  # a gradient for every spike and every final membrane value
        value = (spikes * torch.randn(spikes.shape, generator=gen, device=x.device, dtype=spikes.dtype)).sum()
        value = value + (state.v * torch.randn(state.v.shape, generator=gen, device=x.device)).sum()
    elif loss == "spike_sum":  # one gradient per step broadcast over the neurons (an expanded view), no v gradient
        value = spikes.sum()
    else:  # "membrane": no gradient reaches the spike output at all
        value = state.v.square().sum()
    grads = torch.autograd.grad(value, [x, *([] if v0 is None else [v0]), *neuron.parameters()])
    return spikes, state.v, list(grads)


def inputs(shape: tuple, device: str, at_rest: bool, seed: int = 0, **options) -> tuple[Tensor, Tensor | None]:
    """Random input current of ``shape`` that makes some neurons fire, and a random initial membrane (or None)."""
    gen = torch.Generator().manual_seed(seed)
    scale = 3.0 if options.get("decay_input", True) and options.get("model") != "if" else 1.0
    x = ((torch.randn(shape, generator=gen) * 1.2 + 0.5) * scale).to(device).requires_grad_()
    v0 = None if at_rest else (torch.randn(shape[1:], generator=gen) * 0.5).to(device).requires_grad_()
    return x, v0


def compare(
    backend: str,
    device: str,
    shape: tuple,
    loss: str = "weighted",
    at_rest: bool = False,
    per_neuron: tuple[int, ...] | None = None,
    **options,
) -> None:
    """``backend`` equals the reference on random input of ``shape`` (from a random membrane, or from rest):
    spikes and v exactly, gradients closely."""
    reference, fast = lif_pair(backend, device, per_neuron, **options)
    x, v0 = inputs(shape, device, at_rest, **options)
    s_ref, v_ref, g_ref = run(reference, x, v0, loss)
    s, v, g = run(fast, x, v0, loss)
    assert 0 < s_ref.mean() < 0.9, "the input should make some, not all, neurons fire"
    assert torch.equal(s, s_ref), "spikes differ from the reference"
    assert torch.equal(v, v_ref), "final membrane differs from the reference"
    for name, a, b in zip(["x", *([] if at_rest else ["v0"]), *dict(fast.named_parameters())], g, g_ref):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-5 * max(1.0, b.abs().max().item()), msg=name)


def _matrix() -> list:
    """Every target x surrogate x option pattern; on CUDA (where each combination compiles) atan with every
    pattern and each other surrogate with four of them, the interpreter having run them all."""
    cases = []
    for target in TARGETS:
        for s, name in enumerate(SURROGATES):
            for o, options in enumerate(OPTIONS):
                if target.values[1] == "cuda" and name != "atan" and o % 4 != s % 4:
                    continue
                label = "-".join(f"{k}={v}" for k, v in options.items())
                cases.append(pytest.param(*target.values, name, options, id=f"{target.id}-{name}-{label}"))
    return cases


@pytest.mark.parametrize(("backend", "device", "name", "options"), _matrix())
def test_kernel_matches_reference(backend: str, device: str, name: str, options: dict) -> None:
    """T = 11 (a partial last segment), 3 x 37 neurons (a partial block), a non-default surrogate sharpness."""
    compare(backend, device, (11, 3, 37), surrogate={"name": name, "alpha": 1.7}, **options)


@pytest.mark.parametrize(
    ("shape", "loss", "at_rest"),
    [
        ((1, 5, 7), "weighted", False),
        ((8, 2, 300), "spike_sum", True),
        ((17, 1301), "membrane", False),
        ((37, 3, 2, 5, 9), "weighted", True),
    ],
    ids=["T1", "T8-spike-sum-from-rest", "T17-membrane-loss", "T37-conv-from-rest"],
)
@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_kernel_shapes_and_losses(backend: str, device: str, shape: tuple, loss: str, at_rest: bool) -> None:
    """T = 1, T a multiple of the segment, several blocks and chunks with a partial last one, a conv-shaped input,
    no initial state; a loss on the spike count (gradient broadcast over the neurons) and one on the final
    membrane only."""
    compare(backend, device, shape, loss, at_rest, learn_tau=True, learn_threshold=True, decay_input=False)


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_if_kernel(backend: str, device: str, reset: str) -> None:
    """IF is the kernel with beta = 1 and gain 1."""
    compare(backend, device, (9, 4, 33), model="if", reset=reset, learn_threshold=True)


@pytest.mark.parametrize(
    ("shape", "per_neuron"),
    [((9, 3, 37), (37,)), ((7, 2, 4, 3, 5), (4, 1, 1)), ((7, 2, 4, 3, 5), (4, 3, 5)), ((11, 301), (301,))],
    ids=["linear", "per-channel", "conv-per-neuron", "no-batch"],
)
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_per_neuron_parameters(backend: str, device: str, shape: tuple, per_neuron: tuple, reset: str) -> None:
    """A tau and threshold per neuron (``[F]``), per channel (``[C, 1, 1]``) or per place in a sample: spikes and
    membrane bit for bit, and each parameter's gradient, summed over the batch (and the broadcast dimensions), to
    float rounding."""
    compare(backend, device, shape, per_neuron=per_neuron, reset=reset)


RATE_OPTIONS = [
    dict(reset="soft", detach_reset=True, decay_input=False),  # rate-based BP's default
    dict(reset="soft", learn_tau=True, learn_threshold=True),
    dict(reset="hard", per_neuron=(37,)),
    dict(
        reset="hard", detach_reset=True, decay_input=False, learn_tau=True, surrogate={"name": "triangle", "alpha": 0.8}
    ),
]


@pytest.mark.parametrize(
    "options", RATE_OPTIONS, ids=["soft-detached", "plif-soft", "hard-per-neuron", "plif-hard-detached"]
)
@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_rate_statistics_match_reference(backend: str, device: str, options: dict) -> None:
    """The fused forward's rate, eligibility and slopes of a learnable tau and threshold equal the torch loop's by
    forward-mode AD (``snnlab.kernels.rate``), with the same spikes and final membrane."""
    options = {"surrogate": {"name": "sigmoid", "alpha": 4.0}, **options}
    reference, fast = lif_pair(backend, device, options.pop("per_neuron", None), **options)
    x, v0 = inputs((10, 3, 37), device, at_rest=False, **options)
    expected, got = reference.rate_statistics(x, MembraneState(v0)), fast.rate_statistics(x, MembraneState(v0))
    assert 0 < expected.rate.mean() < 0.9 and expected.eligibility.abs().mean() > 0.01
    assert torch.equal(got.spikes, expected.spikes) and torch.equal(got.state.v, expected.state.v)
    torch.testing.assert_close(got.rate, expected.rate)
    torch.testing.assert_close(got.eligibility, expected.eligibility, rtol=1e-5, atol=1e-6)
    assert got.slopes.keys() == expected.slopes.keys() == {n for n, p in fast.named_parameters()}
    for name, slope in expected.slopes.items():
        torch.testing.assert_close(got.slopes[name], slope, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("reset", ["soft-detached", "soft", "hard"])
def test_eligibility_is_the_rate_bp_accumulator(reset: str) -> None:
    """The reference's eligibility is rate-based BP's (METHODS.md Part B, 3): e = (1/T) sum_t sg_t k_t with k_0 = 1
    and k_{t+1} = 1 + lam k_t (soft, detached), 1 + lam k_t (1 - sg_t) (soft, V_th = 1), 1 + lam k_t (1 - s_t -
    H_t sg_t) (hard, V_reset = 0), sg the sigmoid surrogate with alpha 4, H = lam V + I."""
    soft, detach = reset.startswith("soft"), reset.endswith("detached")
    neuron = LIF(tau=1.25, decay_input=False, threshold=1.0, reset="soft" if soft else "hard", detach_reset=detach,
                 surrogate={"name": "sigmoid", "alpha": 4.0}, backend="torch").double()  # fmt: skip
    lam = neuron.leak.beta
    x = torch.randn(8, 3, 20, generator=torch.Generator().manual_seed(6), dtype=torch.float64) + 0.6
    v, k, e = torch.zeros(3, 20, dtype=torch.float64), torch.ones(3, 20, dtype=torch.float64), 0
    for x_t in x:
        h = lam * v + x_t
        s = (h > 1).double()
        sg = 4 * torch.sigmoid(4 * (h - 1)) * (1 - torch.sigmoid(4 * (h - 1)))
        e = e + sg * k / len(x)
        v = h - s if soft else h * (1 - s)
        k = 1 + lam * k * (1 if detach else (1 - sg) if soft else (1 - s - h * sg))
    statistics = neuron.rate_statistics(x)
    assert 0 < statistics.rate.mean() < 0.9
    torch.testing.assert_close(statistics.eligibility, e)


@pytest.mark.parametrize(("backend", "device"), TARGETS)
def test_kernel_inference_matches_reference(backend: str, device: str) -> None:
    """Without autograd (nothing saved) the spikes and final membrane are the reference's."""
    reference, fast = lif_pair(backend, device)
    x = torch.randn(13, 4, 50, device=device) * 3
    with torch.no_grad():
        s_ref, st_ref = reference(x)
        s, st = fast(x)
    assert torch.equal(s, s_ref) and torch.equal(st.v, st_ref.v)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.skipif(not CUDA or not _can_run("triton", "cuda"), reason="needs CUDA and triton")
def test_triton_low_precision_cuda(dtype: torch.dtype) -> None:
    """Half-precision inputs: the membrane stays float32 in the kernel, so spikes are the reference's on the input
    upcast to float32, and gradients are those rounded to the input's precision."""
    torch.manual_seed(0)
    reference, fast = lif_pair("triton", "cuda", learn_tau=True, learn_threshold=True, reset="hard")
    x32 = torch.randn(19, 8, 1000, device="cuda") * 3
    x = x32.to(dtype).requires_grad_()
    xr = x.detach().float().requires_grad_()
    s, st = fast(x)
    s_ref, st_ref = reference(xr)
    assert s.dtype == dtype and torch.equal(s.float(), s_ref)
    torch.testing.assert_close(st.v.float(), st_ref.v, rtol=1e-2, atol=1e-2)
    g = torch.autograd.grad((s.float() * 2).sum() + st.v.float().sum(), [x, *fast.parameters()])
    g_ref = torch.autograd.grad((s_ref * 2).sum() + st_ref.v.sum(), [xr, *reference.parameters()])
    assert g[0].dtype == dtype
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a.float(), b, rtol=2e-2, atol=2e-2 * max(1.0, b.abs().max().item()))


class SpikesOnly(torch.nn.Module):
    """A LIF layer whose output is its spikes alone (what graph capture and compilation wrap)."""

    def __init__(self, neuron: torch.nn.Module) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, x: Tensor) -> Tensor:
        return self.neuron(x)[0]


@pytest.mark.skipif(not CUDA or not _can_run("triton", "cuda"), reason="needs CUDA and triton")
def test_triton_cuda_graph_and_compile() -> None:
    """The Triton op runs inside a captured CUDA graph (forward and backward) and under ``torch.compile``
    (Inductor sees the user kernels) with the eager spikes and gradients."""
    torch.manual_seed(0)
    reference, fast = lif_pair("triton", "cuda", learn_tau=True, learn_threshold=True)
    x = (torch.randn(12, 8, 300, device="cuda") * 3).requires_grad_()
    weights = torch.randn(12, 8, 300, device="cuda")

    def check(layer: torch.nn.Module) -> None:
        spikes = layer(x)
        grads = torch.autograd.grad((spikes * weights).sum(), [x, *fast.parameters()])
        s_ref = reference(x)[0]
        g_ref = torch.autograd.grad((s_ref * weights).sum(), [x, *reference.parameters()])
        assert torch.equal(spikes, s_ref)
        for a, b in zip(grads, g_ref):
            torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-5 * max(1.0, b.abs().max().item()))

    check(torch.cuda.make_graphed_callables(SpikesOnly(fast), (x,)))
    check(torch.compile(SpikesOnly(fast), fullgraph=True))


@pytest.mark.parametrize(("backend", "device"), TARGETS)
@pytest.mark.parametrize("options", OPTIONS[::3], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_cut_path_matches_the_loop(backend: str, device: str, options: dict) -> None:
    """``forward_cut`` (SLTT's step-to-step gradient dropped) on the kernel equals the loop of ``step`` on detached
    states: spikes and v exactly, the gradients of the input, the initial membrane (none) and the parameters."""
    reference, fast = lif_pair(backend, device, (5,) if options["learn_tau"] else None, **options)
    x, v0 = inputs((9, 2, 5), device, at_rest=False, **options)
    results = []
    for neuron in (reference, fast):
        spikes, state = neuron.forward_cut(x, MembraneState(v0))
        weights = torch.randn(spikes.shape, generator=torch.Generator().manual_seed(1)).to(device)
        value = (spikes * weights).sum() + state.v.square().sum()
        grads = torch.autograd.grad(value, [x, v0, *neuron.parameters()], allow_unused=True, materialize_grads=True)
        results.append((spikes, state.v, grads))
    (s_ref, v_ref, g_ref), (s, v, g) = results
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)
    assert not g_ref[1].any(), "no gradient reaches the initial membrane"
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-5 * max(1.0, b.abs().max().item()))


@pytest.mark.skipif(INTERPRETING, reason="compiles for a GPU")
@pytest.mark.parametrize(
    ("model", "scalar", "products", "unused"),
    [("lif", "fp32", 2, 0), ("lif", "fp64", 2, 0), ("alif", "fp32", 5, 2), ("cuba", "fp32", 4, 0)],
)
def test_triton_kernels_compile_for_hopper(model: str, scalar: str, products: int, unused: int) -> None:
    """Without a GPU: both kernels of each model compile for sm_90 with fusion on (as Inductor compiles them), keep
    nothing in local memory, and the products that decide spikes stay separate ``mul.rn`` instructions (no fused
    multiply-add): ``products`` per step (LIF: beta v and gain x; ALIF also beta_a a, rho a and gain_a s;
    CUBA-LIF also alpha i and gain_syn x), less the ``unused`` ones the backward's recomputation drops at a segment's
    last step (ALIF's next adaptation). Inductor passes Python floats (``v_reset``, ``alpha``) as fp64: the kernels
    must still compute in fp32."""
    triton = pytest.importorskip("triton")
    import importlib

    from triton.backends.compiler import GPUTarget

    kernels = importlib.import_module(f"snnlab.kernels.{model}.triton")
    common = importlib.import_module("snnlab.kernels.triton_common")

    def ptx(kernel, constexprs: dict) -> str:
        names = kernel.arg_names
        signature = {n: "constexpr" if n in constexprs else ("*fp32" if n.endswith("_ptr") else "i32") for n in names}
        signature.update({n: scalar for n in ("v_reset", "alpha") if n in names})
        signature.update({n: "constexpr" for n in names if n.endswith("_len")})  # 0-d parameters: length 1
        flags = {n: True for n in names if n.startswith("HAS_")}
        constexprs = {**flags, **constexprs, **{n: 1 for n in names if n.endswith("_len")}}
        source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
        options = {"num_warps": common.NUM_WARPS, "enable_fp_fusion": True}
        return triton.compiler.compile(source, target=GPUTarget("cuda", 90, 32), options=options).asm["ptx"]

    shared = {"SOFT": True, "EXACT": True, "K": common.K, "BLOCK": common.BLOCK}
    lif_only = {"DETACH": False, "SURROGATE": 1, "STATS": False} if model == "lif" else {}
    forward = ptx(kernels._forward_kernel, {**shared, "SAVE": True, **lif_only})
    cut = {"CUT": False} if model == "lif" else {}
    backward = ptx(kernels._backward_kernel, {**shared, "DETACH": False, "SURROGATE": 1, "PARAM_GRADS": True, **cut})
    per_step = common.BLOCK // (32 * common.NUM_WARPS)  # elements per thread
    assert ".local" not in forward and ".local" not in backward
    assert forward.count("mul.rn.f32") == products * common.K * per_step
    assert backward.count("mul.rn.f32") == (products * common.K - unused) * per_step


INTERPRETED = ("test_alif_cuba.py", "test_memory_format.py", "test_mixed_precision.py")
"""The other files whose ``triton-cpu`` cases ``test_triton_interpreter`` runs."""


@pytest.mark.skipif(INTERPRETING or not _can_run("numba", "cpu"), reason="runs the interpreter itself")
def test_triton_interpreter() -> None:
    """This file's Triton cases and those of ``INTERPRETED``, on the CPU through ``TRITON_INTERPRET=1`` (read at
    import, hence the subprocess, one for all)."""
    pytest.importorskip("triton")
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__,
         *(str(Path(__file__).with_name(name)) for name in INTERPRETED), "-k", "triton-cpu"],
        env=env, cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
