"""The fused ops inside graphs: ``torch.library.opcheck`` on every fused op (schema, autograd registration, fake
tensors, AOT dispatch), ``torch.compile`` of a convolutional LIF network on the Numba kernels equal to the eager run
(forward and backward), and ``train.cuda_graphs``: refused by name where it cannot run, and on CUDA the same
training as without graphs.
"""

from __future__ import annotations

import pytest
import torch
from test_kernels import _can_run

from snnlab.builder import build_network
from snnlab.config import load_experiment, validate
from snnlab.errors import ConfigError
from snnlab.kernels import fused_op
from snnlab.rules.graphed import _FlatTrace, check_cuda_graphs

CUDA = torch.cuda.is_available()

# model: (states, parameters, options without the surrogate's)
OPS = {
    "lif": (1, 3, (-0.2, False, False, False)),
    "alif": (2, 6, (0.0, True, False)),
    "cuba": (2, 5, (0.0, False, True)),
    "ultralif": (1, 3, ()),
}


def op_arguments(model: str, device: str, stats: bool = False) -> tuple:
    """Random arguments of ``model``'s op ``[T, N]`` with gradients: states, and parameters per neuron (UltraLIF's:
    single values; each mix of single and per-neuron parameters compiles Numba kernels of its own)."""
    n_states, n_params, options = OPS[model]
    gen = torch.Generator().manual_seed(0)
    T, N = 5, 12

    def tensor(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return (torch.rand(*shape, generator=gen) * scale + shift).to(device).requires_grad_()

    x = tensor(T, N, scale=3.0, shift=-0.5)
    states = [tensor(N, scale=0.5) for _ in range(n_states)]
    params = [tensor(1 if model == "ultralif" else N, scale=0.4, shift=0.4) for _ in range(n_params)]
    surrogate = (1, 2.0) if model != "ultralif" else ()
    return (x, *states, *params, *options, *surrogate, True, stats)


@pytest.mark.parametrize("model", list(OPS))
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            "numba", marks=pytest.mark.skipif(not _can_run("numba", "cpu"), reason="needs numba"), id="numba-cpu"
        ),
        pytest.param(
            "triton",
            marks=pytest.mark.skipif(not CUDA or not _can_run("triton", "cuda"), reason="needs CUDA"),
            id="triton-cuda",
        ),
    ],
)
def test_fused_ops_pass_opcheck(backend: str, model: str) -> None:
    """Each op's schema, autograd registration, fake implementation and AOT dispatch agree with the op itself (LIF's
    also with the rate statistics)."""
    op = fused_op(model, backend).op
    device = "cuda" if backend == "triton" else "cpu"
    torch.library.opcheck(op, op_arguments(model, device))
    if model == "lif":
        torch.library.opcheck(op, op_arguments(model, device, stats=True))


def _conv_network(backend: str, **network: object) -> torch.nn.Module:
    conv = {"kernel_size": 3, "padding": 1}
    config = validate({
        "data": {"name": "digits", "flatten": False},
        "network": {
            "neuron": {"model": "lif", "backend": backend, "learn_tau": True},
            "blocks": [{"conv": {"out_channels": 6, **conv}, "norm": "batch", "pool": 2}, {"flatten": True},
                       {"linear": 10}],
            **network,
        },
    })  # fmt: skip
    torch.manual_seed(0)
    return build_network(config.network, (1, 8, 8))


@pytest.mark.skipif(not _can_run("numba", "cpu"), reason="needs numba")
def test_compiled_network_equals_eager() -> None:
    """``torch.compile`` (AOT autograd, eager kernels) traces a LIF conv network through the Numba op in one graph:
    outputs and every parameter's gradient equal the eager run's."""
    network = _conv_network("numba")
    x = torch.rand(4, 3, 1, 8, 8)
    compiled = torch.compile(network, backend="aot_eager", fullgraph=True)
    results = []
    for run in (network, compiled):
        out = run(x)[0]
        results.append((out, torch.autograd.grad(out.square().sum(), list(network.parameters()))))
    (out, grads), (out_c, grads_c) = results
    torch.testing.assert_close(out_c, out)
    for a, b in zip(grads_c, grads):
        torch.testing.assert_close(a, b)


def test_cuda_graphs_refused_by_name() -> None:
    """``train.cuda_graphs`` on the CPU, with a rule other than BPTT, or with a smaller last batch: a config error
    naming the key and the remedy."""
    cases = [
        (["train.cuda_graphs=true", "data.drop_last=true"], "cpu", "CUDA device"),
        (["train.cuda_graphs=true", "data.drop_last=true", "rule.name=sltt"], "cuda", "only rule bptt"),
        (["train.cuda_graphs=true"], "cuda", "data.drop_last: true"),
    ]
    for overrides, device, reason in cases:
        config, _ = load_experiment("quickstart", overrides)
        with pytest.raises(ConfigError, match=f"train.cuda_graphs.*{reason}"):
            check_cuda_graphs(config, torch.device(device))
    check_cuda_graphs(load_experiment("quickstart")[0], torch.device("cpu"))  # off: nothing to check


def test_graphed_trace_keeps_the_structure() -> None:
    """What the graphs replay, the trace as a flat tuple of tensors, rebuilds the output and every block's state."""
    network = _conv_network("torch")
    flat = _FlatTrace(network)
    x = torch.rand(4, 3, 1, 8, 8)
    leaves = flat(x)
    assert all(isinstance(leaf, torch.Tensor) for leaf in leaves)
    output, states, _ = flat.rebuild(leaves)
    trace = network.trace(x)
    assert torch.equal(output, trace.output) and len(states) == len(trace.states)
    assert torch.equal(states[0].neuron.v, trace.states[0].neuron.v)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_graphs_train_as_eager() -> None:
    """Two BPTT steps replayed from CUDA graphs give the eager steps' losses and weights."""
    from snnlab.runner import build_experiment, build_rule

    results = []
    for graphs in (False, True):
        config, _ = load_experiment("quickstart", [f"train.cuda_graphs={str(graphs).lower()}", "data.drop_last=true"])
        torch.manual_seed(0)
        experiment = build_experiment(config)
        network = experiment.network.cuda()
        rule = build_rule(config, network, experiment.objective).cuda()
        gen = torch.Generator().manual_seed(1)
        batches = [(torch.rand(8, 16, 64, generator=gen).cuda(), torch.randint(0, 10, (16,), generator=gen).cuda())]
        losses = [rule.train_step(network, batch)["loss"] for batch in batches * 2]
        results.append((losses, [p.detach().clone() for p in network.parameters()]))
    (losses, weights), (losses_g, weights_g) = results
    assert losses_g == pytest.approx(losses, rel=1e-5)
    for a, b in zip(weights_g, weights):
        torch.testing.assert_close(a, b)
