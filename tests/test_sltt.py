"""SLTT and SLTT-K against their definition: the gradient of BPTT with every state detached at every step, written
out here by hand from the LIF equations (per-step batch norm, per-step losses over T), for chunks of any length, on
the torch loop and the fused kernels, on feed-forward, convolutional and recurrent networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnlab.network import Block, Network, Residual
from snnlab.neurons import LI, LIF
from snnlab.objectives import Classification
from snnlab.optim import TrainConfig
from snnlab.rules import SLTT
from snnlab.rules.cut_trace import unchunkable
from snnlab.synapses import Conv2d, Linear
from snnlab.synapses.recurrent import dense

T, B = 8, 6
NEURONS = {
    "lif": dict(tau=2.0, decay_input=False),
    "plif-hard": dict(
        tau=3.0, learn_tau=True, learn_threshold=True, reset="hard", v_reset=-0.1, decay_input=True, threshold=0.8
    ),
    "lif-detach-reset": dict(tau=1.5, detach_reset=True, surrogate={"name": "sigmoid", "alpha": 4.0}),
}


def mlp(neuron: dict, backend: str = "torch", recurrent: bool = False) -> Network:
    torch.manual_seed(0)
    return Network(
        [
            Block(Linear(5, 9), nn.BatchNorm1d(9), LIF(**neuron, backend=backend), recurrent=dense((9,)) if recurrent else None),
            Residual([Block(Linear(9, 9), neuron=LIF(**neuron, backend=backend))]),
            Block(Linear(9, 4), neuron=LI(tau=2.0, learn_tau="learn_tau" in neuron)),
        ]
    )  # fmt: skip


def convnet(backend: str) -> Network:
    torch.manual_seed(0)
    return Network(
        [
            Block(Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), LIF(tau=2.0, learn_tau=True, backend=backend),
                  post=[nn.AvgPool2d(2), nn.Flatten()]),
            Block(Linear(12, 4), neuron=LI(tau=2.0)),
        ]
    )  # fmt: skip


def lif_step(neuron: nn.Module, c: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """The LIF (or LI) equations with the membrane entering as a constant."""
    beta = neuron.leak.beta
    h = beta * v.detach() + ((1 - beta) if neuron.decay_input else 1.0) * c
    if not isinstance(neuron, LIF):
        return h, h
    s = neuron.surrogate.spike(h - neuron.threshold)
    r = s.detach() if neuron.detach_reset else s
    v = h - neuron.threshold * r if neuron.reset == "soft" else h * (1 - r) + neuron.v_reset * r
    return s, v


def reference(net: Network, x: Tensor, y: Tensor, steps: list[int], tet: float | None = None) -> dict[str, Tensor]:
    """dL/dtheta of sum over ``steps`` of the per-step loss, every state detached, batch norm per step (on copies, so
    that ``net``'s running statistics stay for the rule)."""
    blocks = [b for block in net.blocks for b in (block.blocks if isinstance(block, Residual) else [block])]
    norms = {id(b): _copy_norm(b.norm) for b in blocks if b.norm is not None}
    v, prev, total = {}, {}, 0.0
    for t in range(len(x)):
        h = x[t]
        for block in net.blocks:
            inner = block.blocks if isinstance(block, Residual) else [block]
            start = h
            for b in inner:
                c = b.synapse(h)
                if b.norm is not None:
                    stats = norms[id(b)]
                    c = F.batch_norm(c, stats.running_mean, stats.running_var, b.norm.weight, b.norm.bias, True, 0.1)
                if b.recurrent is not None and id(b) in prev:
                    c = c + b.recurrent(prev[id(b)].detach())
                s, v[id(b)] = lif_step(b.neuron, c, v.get(id(b), torch.zeros_like(c)))
                prev[id(b)] = s
                h = b.post(s)
            h = start + h if isinstance(block, Residual) else h
        if t in steps:
            loss = F.cross_entropy(h, y)
            if tet is not None:
                loss = (1 - tet) * loss + tet * F.mse_loss(h, torch.ones_like(h))
            total = total + loss / len(x)
    names, params = zip(*net.named_parameters())
    grads = torch.autograd.grad(total, params)
    running = {f"{n}.running_{k}": getattr(m, f"running_{k}") for n, m in _norms(net, norms) for k in ("mean", "var")}
    return {**dict(zip(names, grads)), **running}


def _copy_norm(norm: nn.Module) -> nn.Module:
    copy = type(norm)(norm.num_features, eps=norm.eps, momentum=norm.momentum)
    copy.load_state_dict(norm.state_dict())
    return copy.train()


def _norms(net: Network, copies: dict) -> list[tuple[str, nn.Module]]:
    return [(n.removesuffix(".norm"), copies[id(m)]) for n, m in net.named_modules() if id(m) in copies]


def rule_gradients(net: Network, x: Tensor, y: Tensor, **options) -> tuple[dict[str, Tensor], SLTT]:
    """The gradients the rule applied and the running statistics after its step."""
    objective = Classification(tet=options.pop("tet", None))
    train = TrainConfig(epochs=1, optimizer={"name": "sgd", "lr": 1e-3})
    rule = SLTT(SLTT.Config(**options), net, objective, train)
    net.train()
    rule.train_step(net, (x, y))
    grads = {n: p.grad for n, p in net.named_parameters()}
    running = {n: b for n, b in net.named_buffers() if "running" in n}
    return {**grads, **{n.replace(".norm", ""): b for n, b in running.items()}}, rule


def data(shape: tuple[int, ...], seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((T, B, *shape), generator=gen) * 2.5, torch.randint(0, 4, (B,), generator=gen)


def assert_same(got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("chunk", [1, 3, T])
@pytest.mark.parametrize("neuron", list(NEURONS))
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_sltt_is_bptt_with_every_state_detached(backend: str, neuron: str, chunk: int) -> None:
    """Chunks of 1, 3 (the last 2) and T steps, on the loop and the fused kernel: the hand-written gradient and
    running statistics of T per-step backwards."""
    x, y = data((5,))
    want = reference(mlp(NEURONS[neuron], backend), x, y, list(range(T)))
    got, rule = rule_gradients(mlp(NEURONS[neuron], backend), x, y, chunk=chunk)
    assert rule.by_chunks
    assert_same(got, want)


def test_convolutional_network_with_tet() -> None:
    """Conv, per-step BatchNorm2d, PLIF, average pooling on the fused kernel, with TET's MSE term."""
    x, y = data((2, 4, 4))
    want = reference(convnet("numba"), x, y, list(range(T)), tet=0.3)
    got, _ = rule_gradients(convnet("numba"), x, y, chunk=4, tet=0.3)
    assert_same(got, want)


@pytest.mark.parametrize("chunk", [1, 4])
def test_recurrent_network_runs_step_by_step(chunk: int) -> None:
    """A recurrent block cannot be chunked: the rule runs ``trace_step``, its recurrent input cut like the membrane."""
    x, y = data((5,))
    assert "recurrent connection" in unchunkable(mlp(NEURONS["lif"], recurrent=True))
    want = reference(mlp(NEURONS["lif"], recurrent=True), x, y, list(range(T)))
    got, rule = rule_gradients(mlp(NEURONS["lif"], recurrent=True), x, y, chunk=chunk)
    assert not rule.by_chunks
    assert_same(got, want)


def test_sltt_k() -> None:
    """K = T is SLTT; K < T backpropagates K distinct steps that the rule's seed and batch count fix (the others
    only advance the state), each batch another draw."""
    x, y = data((5,))
    sltt, _ = rule_gradients(mlp(NEURONS["lif"]), x, y)
    all_steps, _ = rule_gradients(mlp(NEURONS["lif"]), x, y, k=T)
    assert_same(all_steps, sltt)

    got, rule = rule_gradients(mlp(NEURONS["lif"], "numba"), x, y, k=3, chunk=2)
    rule.draws.zero_()
    chosen = [t for t, c in enumerate(rule.chosen_steps(T)) if c]
    assert len(chosen) == 3 and chosen != [t for t, c in enumerate(rule.chosen_steps(T)) if c]
    assert_same(got, reference(mlp(NEURONS["lif"]), x, y, chosen))
