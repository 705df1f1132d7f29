"""The fused block (batch norm -> LIF -> pooling in one op, ``snnlab.block_fusion``) against the unfused path it
replaces: pooled spikes, final membranes and the norm's running statistics bit for bit, gradients of the input, the
synapse's weight, the norm's gamma and beta, the learnable tau and threshold and the initial membrane to float
rounding; for conv and linear blocks, max, average and sum pooling (and none), both resets, odd map sizes, both
memory formats, training and evaluation; and the cases where a block must not be fused (a watching hook, the
activity monitor, ``unfused()``, ``network.fuse_blocks: off``, the CPU's own backends).

The Triton kernels run on CUDA when there is a GPU, and on the CPU through the interpreter in a subprocess
(``TRITON_INTERPRET=1`` is read when triton is imported): ``test_triton_interpreter`` reruns this file's cases so.
On the CPU the unfused batch norm is torch's, whose rounding the kernel reproduces, so the spikes are equal bit for
bit; on CUDA torch's batch norm is cuDNN's, whose rounding is not documented, and the spikes are held equal in all
but a few neuron-steps (a current within one rounding of the threshold).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from snnlab.block_fusion import matches, unfused
from snnlab.kernels import unsupported
from snnlab.network import Block, BlockState, Network
from snnlab.neurons import IF, LIF, MembraneState
from snnlab.stats import ActivityMonitor
from snnlab.synapses import Conv2d, Linear

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
CUDA = torch.cuda.is_available()
DEVICES = [
    pytest.param(d, id=f"triton-{d}")
    for d in ["cpu", "cuda"]
    if (d == "cuda") != INTERPRETING and (d == "cpu" or CUDA) and unsupported("triton", d, torch.float32) is None
]
POOLS = {
    "max": lambda: [nn.MaxPool2d(2)],
    "avg": lambda: [nn.AvgPool2d(2)],
    "sum": lambda: [nn.AvgPool2d(2, divisor_override=1)],
    "max3": lambda: [nn.MaxPool2d(3)],
    "none": lambda: [],
}


def pair(block: Block, device: str) -> tuple[Block, Block]:
    """``block`` unfused with its neuron on the torch loop (the reference), and a copy that fuses on Triton."""
    reference = copy.deepcopy(block).to(device)
    reference.fuse, reference.neuron.backend = False, "torch"
    fused = copy.deepcopy(block).to(device)
    fused.neuron.backend = "triton"
    return reference, fused


def conv_block(pool: str, cin: int = 2, channels: int = 3, **neuron) -> Block:
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(channels)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(0.0, 0.6)
        norm.running_mean.uniform_(-0.5, 0.5), norm.running_var.uniform_(0.5, 2.0)
    return Block(Conv2d(cin, channels, 3, padding=1), norm, LIF(**{"threshold": 0.5, **neuron}), post=POOLS[pool]())


def assert_same_spikes(a: Tensor, b: Tensor, device: str) -> None:
    if device == "cpu":
        assert torch.equal(a, b), "spikes differ from the unfused path"
    else:  # cuDNN's batch norm rounds as it will: a current within one rounding of the threshold may flip
        assert (a != b).float().mean() < 1e-3


def assert_same_statistics(a: nn.Module, b: nn.Module, device: str) -> None:
    """The running statistics (and batch counts): equal on the CPU, to float rounding against cuDNN's."""
    for (name, p), q in zip(a.named_buffers(), b.buffers()):
        if device == "cpu":
            assert torch.equal(p, q), name
        else:
            torch.testing.assert_close(q, p, msg=name)


def compare(reference: Block, fused: Block, x: Tensor, v0: Tensor | None, device: str) -> None:
    """Both blocks on ``x`` (from ``v0``, or rest): outputs, states, running statistics and gradients."""
    results = []
    for block in (reference, fused):
        inputs = [x, *([] if v0 is None else [v0])]
        state = None if v0 is None else BlockState(neuron=MembraneState(v0))
        trace = block.trace(x, state)
        gen = torch.Generator().manual_seed(3)
        weights = torch.randn(trace.output.shape, generator=gen).to(device)
        v = trace.state.neuron.v
        loss = (trace.output * weights).sum() + (v * torch.randn(v.shape, generator=gen).to(device)).sum()
        grads = torch.autograd.grad(loss, [*inputs, *block.parameters()])
        results.append((trace, grads))
    (t_ref, g_ref), (t, g) = results
    assert t.current is None and t_ref.current is not None, "the fused path should run (and the reference not)"
    assert 0.05 < t_ref.spikes.mean() < 0.8, "the input should make some, not all, neurons fire"
    assert_same_spikes(t.output, t_ref.output, device)
    if x.dim() == 5 and t.output.dim() == 5:  # the current's memory format is kept (the unfused loop makes NCHW)
        layout = torch.channels_last if x.flatten(0, 1).is_contiguous(memory_format=torch.channels_last) else None
        assert t.output.flatten(0, 1).is_contiguous(memory_format=layout or torch.contiguous_format)
    if device == "cpu":
        assert torch.equal(t.state.neuron.v, t_ref.state.neuron.v)
    assert_same_statistics(reference, fused, device)
    names = ["x", *([] if v0 is None else ["v0"]), *dict(fused.named_parameters())]
    tolerance = 2e-5 if device == "cpu" else 1e-2
    for name, a, r in zip(names, g, g_ref):
        torch.testing.assert_close(a, r, rtol=tolerance, atol=tolerance * max(1.0, r.abs().max().item()), msg=name)


def maps(T: int, B: int, C: int, H: int, W: int, device: str, channels_last: bool, seed: int = 1) -> Tensor:
    """Random input maps ``[T, B, C, H, W]``, laid out NCHW or channels_last per sample."""
    x = torch.randn(T * B, C, H, W, generator=torch.Generator().manual_seed(seed)) * 1.5 + 0.4
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.to(device).unflatten(0, (T, B)).requires_grad_()


# Each pooling, reset, memory format and mode in several combinations; surrogates and learnable parameters cycled.
CONV_CASES = [
    ("max", "soft", False, True, dict(learn_tau=True, surrogate="atan")),
    ("max", "hard", True, True, dict(learn_threshold=True, detach_reset=True, v_reset=-0.2, surrogate="sigmoid")),
    ("max", "hard", False, False, dict(learn_tau=True, decay_input=False, tau=4.0, surrogate="fast_sigmoid")),
    ("avg", "soft", True, False, dict(learn_tau=True, learn_threshold=True, surrogate="triangle")),
    ("avg", "hard", False, True, dict(decay_input=False, tau=3.0, surrogate="rectangle")),
    ("sum", "soft", False, True, dict(threshold=0.8, learn_tau=True)),
    ("max3", "soft", True, True, dict(learn_tau=True)),
    ("none", "hard", True, True, dict(learn_tau=True, detach_reset=True)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("pool", "reset", "channels_last", "train", "options"),
    CONV_CASES,
    ids=[f"{p}-{r}-{'cl' if c else 'nchw'}-{'train' if t else 'eval'}" for p, r, c, t, _ in CONV_CASES],
)
def test_conv_block_matches_unfused(
    device: str, pool: str, reset: str, channels_last: bool, train: bool, options: dict
) -> None:
    """T = 9 (a partial checkpoint segment), 7 x 5 maps (odd: floor-mode pooling drops a row and a column, whose
    neurons still run), 3 x 4 x 3 windows (a partial block), from a random initial membrane (with max pooling)."""
    reference, fused = pair(conv_block(pool, reset=reset, **options), device)
    reference.train(train), fused.train(train)
    x = maps(9, 1, 2, 7, 5, device, channels_last)
    v0 = (torch.randn(1, 3, 7, 5, generator=torch.Generator().manual_seed(2)) * 0.3).to(device).requires_grad_()
    compare(reference, fused, x, v0 if pool == "max" else None, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("reset", "train", "model"), [("soft", True, "lif"), ("hard", False, "lif"), ("soft", True, "if")]
)
def test_linear_block_matches_unfused(device: str, reset: str, train: bool, model: str) -> None:
    """linear -> batch norm -> LIF (PLIF) or IF over 37 features (not a multiple of any block)."""
    torch.manual_seed(0)
    neuron = (
        LIF(reset=reset, threshold=0.4, learn_tau=True, learn_threshold=True) if model == "lif" else IF(reset=reset)
    )
    block = Block(Linear(11, 37), nn.BatchNorm1d(37), neuron)
    reference, fused = pair(block, device)
    reference.train(train), fused.train(train)
    x = (torch.randn(10, 3, 11, generator=torch.Generator().manual_seed(1)) * 2 + 0.5).to(device).requires_grad_()
    compare(reference, fused, x, None, device)


@pytest.mark.parametrize("device", DEVICES)
def test_network_with_dropout_and_flatten_after_the_pool(device: str) -> None:
    """Two conv blocks (PLIF, hard reset, max then average pooling, dropout, flatten) and a linear block: the same
    outputs, gradients of every parameter and running statistics as unfused, training then evaluation."""

    def network(fuse: bool) -> Network:
        torch.manual_seed(1)
        options = dict(backend="triton" if fuse else "torch")
        blocks = [
            Block(Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), LIF(learn_tau=True, reset="hard", **options),
                  post=[nn.MaxPool2d(2), nn.Dropout(0.3)], fuse=fuse),
            Block(Conv2d(4, 3, 3, padding=1), nn.BatchNorm2d(3), LIF(**options), post=[nn.AvgPool2d(2), nn.Flatten()],
                  fuse=fuse),
            Block(Linear(3, 5), nn.BatchNorm1d(5), LIF(**options), fuse=fuse),
        ]  # fmt: skip
        return Network(blocks).to(device)

    x = (torch.rand(6, 3, 2, 7, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float().to(device)
    reference, fused = network(False), network(True)
    for net in (reference, fused):
        torch.manual_seed(5)  # the same dropout masks
        (net(x)[0] * torch.arange(5.0, device=device)).sum().backward()
    for (name, p), q in zip(reference.named_parameters(), fused.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-4 * max(1.0, p.grad.abs().max().item()), msg=name)
    assert_same_statistics(reference, fused, device)
    reference.eval(), fused.eval()
    assert_same_spikes(fused(x)[0], reference(x)[0], device)


@pytest.mark.parametrize("device", DEVICES)
def test_blocks_that_must_not_fuse(device: str) -> None:
    """A hook on a part, the activity monitor (spike counts), ``unfused()`` (code that reads every block's spikes)
    and a recurrent or unmatched block run unfused, and the monitor counts the same spikes as the fused output."""
    _, block = pair(conv_block("max"), device)
    x = maps(3, 2, 2, 4, 4, device, False)
    assert block.trace(x).current is None
    with unfused():
        assert block.trace(x).current is not None
    handle = block.neuron.register_forward_hook(lambda *args: None)
    assert block.trace(x).current is not None
    handle.remove()
    network = Network([block])
    with ActivityMonitor(network) as monitor:
        trace = network.trace(x)
    assert trace.blocks[0].current is not None
    assert monitor.blocks[0].spikes == float(trace.blocks[0].spikes.detach().sum())
    layer_norm = copy.deepcopy(block)
    layer_norm.norm = nn.LayerNorm([3, 4, 4]).to(device)
    assert matches(layer_norm) == "its norm is not a batch norm"


def test_cpu_backends_run_unfused() -> None:
    """On the CPU ``auto`` (and ``numba``) run the unfused composition: it is the CPU path."""
    block = conv_block("max")
    trace = block.trace(maps(3, 2, 2, 4, 4, "cpu", False))
    assert matches(block) is None and trace.current is not None


def test_fuse_blocks_option(tmp_path: Path) -> None:
    """``network.fuse_blocks``: ``auto`` (default) or ``off`` (also YAML's boolean reading of a bare off), else a
    clear error naming the key."""
    from snnlab.builder import build_network
    from snnlab.config import load_experiment
    from snnlab.errors import ConfigError

    path = tmp_path / "e.yaml"
    body = "data: {name: digits, flatten: false}\nnetwork:\n  {fuse}blocks: [{conv: {out_channels: 4}, norm: batch, pool: 2}]\n"
    for line, expected in [("", True), ("fuse_blocks: off\n  ", False), ("fuse_blocks: auto\n  ", True)]:
        path.write_text(body.replace("{fuse}", line))
        cfg = load_experiment(path)[0]
        assert build_network(cfg.network, (1, 8, 8)).blocks[0].fuse is expected
    path.write_text(body.replace("{fuse}", "fuse_blocks: always\n  "))
    with pytest.raises(ConfigError, match="network.fuse_blocks"):
        load_experiment(path)


@pytest.mark.skipif(not CUDA or unsupported("triton", "cuda", torch.float32) is not None, reason="needs CUDA, triton")
def test_fused_block_under_compile_graphs_and_bf16_cuda() -> None:
    """The fused op under ``torch.compile`` and in a CUDA graph gives its eager outputs and gradients; under bf16
    autocast its output is bf16 (the membrane float32 inside) and close to the unfused path's."""
    _, block = pair(conv_block("max", channels=8, learn_tau=True), "cuda")
    x = maps(6, 4, 2, 16, 16, "cuda", True)
    weights = torch.randn(6, 4, 8, 8, 8, device="cuda")

    class Out(nn.Module):
        def __init__(self, block: Block) -> None:
            super().__init__()
            self.block = block

        def forward(self, x: Tensor) -> Tensor:
            return self.block(x)[0]

    block.eval()  # running statistics: a CUDA graph replays no statistics update
    eager = Out(block)(x)
    g_eager = torch.autograd.grad((eager * weights).sum(), [x, *block.parameters()])
    for run in (torch.compile(Out(block)), torch.cuda.make_graphed_callables(Out(block), (x,))):
        out = run(x)
        grads = torch.autograd.grad((out * weights).sum(), [x, *block.parameters()])
        assert_same_spikes(out, eager, "cuda")  # (the same kernels; Inductor may pick another convolution)
        for a, b in zip(grads, g_eager):
            torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2 * max(1.0, b.abs().max().item()))
    reference, fused = pair(conv_block("max", channels=8), "cuda")
    reference.neuron.backend = "triton"  # the unfused kernel: a float32 membrane, as the fused one keeps
    with torch.autocast("cuda", torch.bfloat16):
        out, out_ref = fused(x)[0], reference(x)[0]
    assert out.dtype == torch.bfloat16 and out.shape == out_ref.shape
    assert (out.float() != out_ref.float()).float().mean() < 1e-2


@pytest.mark.skipif(INTERPRETING, reason="compiles for a GPU")
def test_block_kernels_compile_for_hopper() -> None:
    """Without a GPU: both kernels compile for sm_90 with fusion on (as Inductor compiles them), keep nothing in local
    memory, round the norm's affine map as fused multiply-adds and the products that decide spikes as ``mul.rn``."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget

    from snnlab.kernels.block import triton as kernels

    def ptx(kernel, constexprs: dict) -> str:
        names = kernel.arg_names
        signature = {n: "constexpr" if n in constexprs else ("*fp32" if n.endswith("_ptr") else "i32") for n in names}
        signature.update({n: "fp32" for n in ("v_reset", "alpha") if n in names})
        source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
        options = {"num_warps": kernels.NUM_WARPS, "enable_fp_fusion": True}
        return triton.compiler.compile(source, target=GPUTarget("cuda", 90, 32), options=options).asm["ptx"]

    common = dict(POOL=1, SIZE=2, DIVISOR=1, SOFT=True, HAS_V0=True, FMA=True, EXACT=True, CL=True, KK=4, K=kernels.K)
    common["BLOCK"] = kernels.NEURONS // 4
    forward = ptx(kernels._forward_kernel, {**common, "SAVE": True})
    backward = ptx(
        kernels._backward_kernel,
        {**common, "DETACH": False, "SURROGATE": 1, "HAS_GO": True, "HAS_GV": True, "PARAM_GRADS": True},
    )
    per_step = kernels.NEURONS // (32 * kernels.NUM_WARPS)  # neurons per thread
    for code in (forward, backward):
        assert ".local" not in code
        assert code.count("mul.rn.f32") >= 2 * kernels.K * per_step  # beta v and gain z, every step
        assert "fma.rn.f32" in code


@pytest.mark.skipif(INTERPRETING or unsupported("numba", "cpu", torch.float32) is not None, reason="runs it itself")
def test_triton_interpreter() -> None:
    """This file's Triton cases on the CPU through ``TRITON_INTERPRET=1`` (read at import, hence the subprocess)."""
    pytest.importorskip("triton")
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__, "-k", "triton-cpu"],
        env=env, cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
