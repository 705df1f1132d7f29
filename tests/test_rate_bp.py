"""Rate-based backpropagation against its rate-level surrogate graph built here by hand (rates and eligibilities
from the LIF recursion of METHODS.md B.3, parameter slopes by reverse mode, batch norm with phase 1's statistics);
at T = 1 BPTT, SLTT and rate-BP give one gradient; which networks it refuses; and two processes train like one
with the doubled batch, for SLTT-K and rate-BP."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn

from snnlab.errors import ConfigError, UnsupportedNetwork
from snnlab.network import Block, Network, Residual, fold
from snnlab.neurons import LI, LIF
from snnlab.objectives import Classification
from snnlab.optim import TrainConfig
from snnlab.rules import BPTT, SLTT, RateBP
from snnlab.synapses import Conv2d, Linear
from snnlab.synapses.recurrent import one_to_one

T, B = 6, 5
NEURONS = {
    "lif-soft-detached": dict(tau=1.25, discretization="euler", decay_input=False, detach_reset=True,
                              surrogate={"name": "sigmoid", "alpha": 4.0}),
    "plif-hard": dict(tau=2.0, learn_tau=True, learn_threshold=True, reset="hard", v_reset=0.0, threshold=0.9),
    "lif-soft": dict(tau=2.0, decay_input=False),
}  # fmt: skip


def mlp(neuron: dict, backend: str) -> Network:
    torch.manual_seed(0)
    return Network(
        [
            Block(Linear(4, 8), nn.BatchNorm1d(8), LIF(**neuron, backend=backend)),
            Residual([Block(Linear(8, 8), neuron=LIF(**neuron, backend=backend))]),
            Block(Linear(8, 3), neuron=LI(tau=2.0, learn_tau="learn_tau" in neuron)),
        ]
    )


def convnet(backend: str) -> Network:
    torch.manual_seed(0)
    plif = dict(tau=2.0, learn_tau=True, learn_threshold=True, backend=backend)
    return Network(
        [
            Block(Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), LIF(**plif), post=[nn.AvgPool2d(2), nn.Flatten()]),
            Block(Linear(12, 3), neuron=LI(tau=2.0, learn_tau=True)),
        ]
    )


def rates(neuron: nn.Module, c_seq: Tensor) -> tuple[Tensor, Tensor]:
    """r and e by the recursion: k[0] = gain, k[t] = gain + beta k[t-1] dv/dh[t-1], e = mean g(u) k (for a leaky
    integrator the output is h, so g = 1 and dv/dh = 1)."""
    beta = neuron.leak.beta.detach() if isinstance(neuron.leak.beta, Tensor) else neuron.leak.beta
    gain = (1 - beta) if neuron.decay_input else 1.0
    spiking = isinstance(neuron, LIF)
    v, k, r, e = torch.zeros_like(c_seq[0]), torch.zeros_like(c_seq[0]), 0.0, 0.0
    for c in c_seq:
        h, kh = beta * v + gain * c, gain + beta * k
        if not spiking:
            r, e, v, k = r + h, e + kh, h, kh
            continue
        theta = float(neuron.threshold)
        s, g = (h > theta).float(), neuron.surrogate.derivative(h - theta)
        keep = 0.0 if neuron.detach_reset else 1.0
        if neuron.reset == "soft":
            dv_dh, v = 1 - theta * g * keep, h - theta * s
        else:
            dv_dh, v = (1 - s) + (neuron.v_reset - h) * g * keep, h * (1 - s) + neuron.v_reset * s
        r, e, k = r + s, e + g * kh, kh * dv_dh
    return r / len(c_seq), e / len(c_seq)


def slopes(neuron: nn.Module, c_seq: Tensor) -> list[tuple[nn.Parameter, Tensor]]:
    """dr/dp of every learnable parameter, by reverse mode through the neuron's loop (``torch.func`` runs it)."""
    out = []
    for name, p in neuron.named_parameters():
        rate = lambda value, name=name: torch.func.functional_call(neuron, {name: value}, (c_seq,))[0].mean(0)  # noqa: E731
        out.append((p, torch.func.jacrev(rate)(p.detach()).detach()))
    return out


def spike_pass(blocks: nn.ModuleList, x_seq: Tensor, records: dict) -> Tensor:
    """Phase 1 by hand: each block's sequence, and per block (r, e, slopes, batch-norm input statistics)."""
    for block in blocks:
        if isinstance(block, Residual):
            x_seq = x_seq + spike_pass(block.blocks, x_seq, records)
            continue
        with torch.no_grad():
            c = fold(block.synapse, x_seq)
            stats = None
            if block.norm is not None:
                dims = [d for d in range(c.dim()) if d != 2]
                stats = (c.mean(dims), c.var(dims, correction=0))
                c = fold(block.norm, c)
            s, _ = block.neuron(c)
            r, e = rates(block.neuron, c)
        records[id(block)] = (r, e, slopes(block.neuron, c), stats)
        x_seq = fold(block.post, s)
    return x_seq


def rate_pass(blocks: nn.ModuleList, h: Tensor, records: dict) -> Tensor:
    """Phase 2 by hand: the rate graph of METHODS.md B.3."""
    for block in blocks:
        if isinstance(block, Residual):
            h = h + rate_pass(block.blocks, h, records)
            continue
        r, e, tangents, stats = records[id(block)]
        c = block.synapse(h)
        if stats is not None:
            dims, shape = [d for d in range(c.dim()) if d != 1], [1, -1] + [1] * (c.dim() - 2)
            m = c.mean(dims, keepdim=True)
            mu = stats[0].view(shape) + m - m.detach()
            w = (c - mu).square().mean(dims, keepdim=True)
            var = stats[1].view(shape) + w - w.detach()
            c = (c - mu) / (var + block.norm.eps).sqrt() * block.norm.weight.view(shape) + block.norm.bias.view(shape)
        out = r + c * e - (c * e).detach()
        for p, slope in tangents:
            out = out + p * slope - (p * slope).detach()
        h = block.post(out)
    return h


def reference(net: Network, x: Tensor, y: Tensor, readout: str = "mean_membrane") -> dict[str, Tensor]:
    """The gradient of CE(scores of the rate output) / T through the hand-built graph, and the running statistics."""
    records: dict = {}
    net.train()
    spike_pass(net.blocks, x, records)
    h = rate_pass(net.blocks, x.mean(0), records)
    scores = h * len(x) if readout == "spike_count" else h
    names, params = zip(*net.named_parameters())
    grads = torch.autograd.grad(F.cross_entropy(scores, y) / len(x), params)
    return {**dict(zip(names, grads)), **{n: b for n, b in net.named_buffers() if "running" in n}}


def gradients(rule_class: type, net: Network, x: Tensor, y: Tensor, readout: str = "mean_membrane", **options) -> dict:
    rule = rule_class(rule_class.Config(**options), net, Classification(readout=readout), TrainConfig(epochs=1))
    net.train()
    rule.train_step(net, (x, y))
    grads = {n: p.grad for n, p in net.named_parameters()}
    return {**grads, **{n: b for n, b in net.named_buffers() if "running" in n}}


def data(shape: tuple[int, ...], steps: int = T) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand((steps, B, *shape), generator=gen) * 3, torch.randint(0, 3, (B,), generator=gen)


def assert_same(got: dict[str, Tensor], want: dict[str, Tensor], rtol: float = 1e-5) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=rtol, atol=1e-6, msg=name)


@pytest.mark.parametrize("neuron", list(NEURONS))
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_rate_bp_is_the_gradient_of_its_rate_graph(backend: str, neuron: str) -> None:
    """MLP with batch norm, a residual block and a leaky-integrator output; soft and hard resets, detached reset,
    PLIF with a learnable threshold; the kernels' accumulators or forward-mode AD through the loop."""
    x, y = data((4,))
    assert_same(gradients(RateBP, mlp(NEURONS[neuron], backend), x, y), reference(mlp(NEURONS[neuron], "torch"), x, y))


def test_convolutional_network_with_spike_counts() -> None:
    """Conv, BatchNorm2d, PLIF, average pooling; spike counts read out (scores = T times the output rate)."""
    x, y = data((2, 4, 4))
    got = gradients(RateBP, convnet("numba"), x, y, readout="spike_count")
    assert_same(got, reference(convnet("numba"), x, y, readout="spike_count"))


def test_at_one_step_bptt_sltt_and_rate_bp_agree() -> None:
    """At T = 1 there is no temporal path to cut or average over: the three rules give one gradient."""
    x, y = data((2, 4, 4), steps=1)
    bptt = gradients(BPTT, convnet("numba"), x, y)
    assert_same(gradients(SLTT, convnet("numba"), x, y), bptt)
    assert_same(gradients(RateBP, convnet("numba"), x, y), bptt, rtol=1e-4)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (Block(Conv2d(2, 2, 3, padding=1), neuron=LIF(), post=[nn.MaxPool2d(2)]), r"blocks\[0\]: its post layer MaxPool2d is not linear"),
        (Block(Linear(4, 4), neuron=LIF(), post=[nn.Dropout(0.5)]), r"blocks\[0\]: its post layer Dropout is a new mask"),
        (Block(Linear(4, 4), neuron=LIF(), recurrent=one_to_one((4,))), r"blocks\[0\]: a recurrent connection"),
        (Block(Linear(4, 4), nn.LayerNorm([4]), LIF()), r"blocks\[0\].norm: LayerNorm of the average"),
        (Residual([Block(post=[nn.Dropout(0.1)])]), r"blocks\[0\].residual\[0\]: its post layer Dropout"),
    ],
)  # fmt: skip
def test_blocks_that_are_not_linear_in_the_time_average_are_refused(block: nn.Module, message: str) -> None:
    with pytest.raises(UnsupportedNetwork, match=message):
        RateBP.supports(RateBP.Config(), Network([block]))
    with pytest.raises(ConfigError, match="objective.readout: .*mean_membrane or spike_count"):
        RateBP(
            RateBP.Config(),
            mlp(NEURONS["lif-soft"], "torch"),
            Classification(readout="max_membrane"),
            TrainConfig(epochs=1),
        )


def _train_on(rank: int, world: int, folder: str) -> None:
    """Each rule for one step on this process's share of the batch (world 1: all of it); the weights after it."""
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x, y = data((4,), steps=T)
    x, y = torch.cat([x, x.flip(1)], 1), torch.cat([y, y.flip(0)])  # 2B samples
    share = slice(rank * len(y) // world, (rank + 1) * len(y) // world)
    out = {}
    for rule_class, options in ((SLTT, {"k": 3, "chunk": 2}), (RateBP, {})):
        torch.manual_seed(0)  # the run's seed: SLTT-K's generator is seeded from it when the rule is built
        net = Network([Block(Linear(4, 8), neuron=LIF(tau=2.0)), Block(Linear(8, 3), neuron=LI(tau=2.0))])
        rule = rule_class(rule_class.Config(**options), net, Classification(), TrainConfig(epochs=1))
        torch.manual_seed(rank)  # as the runner reseeds each process
        for _ in range(2):
            rule.train_step(net, (x[:, share], y[share]))
        out[rule_class.name] = {n: p.detach().clone() for n, p in net.named_parameters()}
    torch.save(out, f"{folder}/{world}-{rank}.pt")
    if world > 1:
        dist.destroy_process_group()


def test_two_processes_match_one_with_the_double_batch(tmp_path) -> None:
    """SLTT-K (the same steps drawn on both processes) and rate-BP: two updates on 2 processes x B samples leave the
    weights of 1 process x 2B (the gradients averaged in ``GradientRule.step``)."""
    _train_on(0, 1, str(tmp_path))
    mp.spawn(_train_on, args=(2, str(tmp_path)), nprocs=2)
    one = torch.load(tmp_path / "1-0.pt")
    for rank in (0, 1):
        two = torch.load(tmp_path / f"2-{rank}.pt")
        for rule in ("sltt", "rate_bp"):
            for name, want in one[rule].items():
                torch.testing.assert_close(two[rule][name], want, rtol=1e-5, atol=1e-6, msg=f"{rule} {name}")
