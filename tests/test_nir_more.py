"""NIR for the blocks added after the first exporter: the delay synapse as an exact Linear -> Delay -> Linear chain
(checked by stepping the exported nodes by hand) read back as a delay synapse, hand-written Delay graphs, and the
refusals, by name and reason, of the Ultra and meta neurons, the quantal synapse and the delays no synapse gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

from snnlab.export import NIRUnsupported, from_nir, to_nir, write_nir  # noqa: E402
from snnlab.network import Block, Network  # noqa: E402
from snnlab.neurons import LIF, Meta, UltraDLIF, UltraLIF  # noqa: E402
from snnlab.synapses import Linear, MetaLinear  # noqa: E402
from snnlab.synapses.delay import DelaySynapse  # noqa: E402

DT = 1e-3


@pytest.mark.parametrize(
    ("block", "says"),
    [
        (
            Block(Linear(3, 2), neuron=UltraLIF(tau=0.9, eps=1.0)),
            r"blocks\[0\]\.neuron: UltraLIF: its log-sum-exp \(soft max\) membrane update and sigmoid output",
        ),
        (
            Block(Linear(3, 2), neuron=UltraDLIF()),
            r"blocks\[0\]\.neuron: UltraDLIF: its log-sum-exp \(soft max\) membrane update.*sigmoid output",
        ),
        (
            Block(Linear(3, 2), neuron=Meta(tau=2.0, threshold=1.0)),
            r"blocks\[0\]\.neuron: Meta: stochastic: its Bernoulli firing",
        ),
        (
            Block(MetaLinear(3, 2, p_syn=0.5, b=2.0), neuron=LIF(reset="hard")),
            r"blocks\[0\]\.synapse: MetaLinear: stochastic: its Bernoulli transmission",
        ),
    ],
)
def test_ultra_and_meta_blocks_are_refused_by_name_and_reason(block: nn.Module, says: str) -> None:
    with pytest.raises(NIRUnsupported, match=says):
        to_nir(Network([block]), (3,), dt=DT)


def chain(graph) -> list:
    """The graph's nodes from its input to its output (a chain)."""
    after = dict(graph.edges)
    nodes, name = [], after["input"]
    while name != "output":
        nodes.append(graph.nodes[name])
        name = after[name]
    return nodes


def step_by_hand(nodes: list, x: torch.Tensor, dt: float) -> torch.Tensor:
    """NIR's equations for Linear (Wx), Affine (Wx + b) and Delay (y(t) = x(t - tau), silence before t = 0) over
    ``x`` ``[T, B, in]``, time in steps of ``dt``."""
    x = x.double()
    for node in nodes:
        kind = type(node).__name__
        if kind in ("Linear", "Affine"):
            x = x @ torch.as_tensor(node.weight, dtype=torch.float64).T
            if kind == "Affine":
                x = x + torch.as_tensor(node.bias, dtype=torch.float64)
        elif kind == "Delay":
            steps = np.rint(np.asarray(node.delay) / dt).astype(int)
            assert np.allclose(steps * dt, node.delay), "a delay that is not a whole number of steps"
            delayed = torch.zeros_like(x)
            for m, d in enumerate(steps):
                delayed[d:, :, m] = x[: len(x) - d, :, m]
            x = delayed
        else:
            raise AssertionError(f"unexpected node {kind}")
    return x


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("mode", ["learned", "random"])
def test_the_delay_synapse_exports_as_an_exact_linear_delay_linear_chain(mode: str, bias: bool) -> None:
    torch.manual_seed(3)
    synapse = DelaySynapse(5, 4, max_delay=6, mode=mode, bias=bias)
    with torch.no_grad():
        synapse.positions.uniform_(0, 5)  # rounded by eval(): several distinct delays, some shared
    graph = to_nir(Network([Block(synapse)]).eval(), (5,), dt=DT)
    nodes = chain(graph)
    assert [type(n).__name__ for n in nodes] == ["Linear", "Delay", "Affine" if bias else "Linear"]
    distinct = len(torch.unique(synapse.delays()))
    assert distinct > 1
    assert nodes[1].delay.shape == (distinct * 5,) and nodes[2].weight.shape == (4, distinct * 5)
    x = (torch.rand(20, 3, 5) < 0.3).float()
    with torch.no_grad():
        expected = synapse(x)[0]
    assert torch.allclose(step_by_hand(nodes, x, DT).float(), expected, atol=1e-5)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("mode", ["learned", "random", "fixed"])
def test_the_delay_chain_imports_back_as_the_delay_synapse(mode: str, bias: bool, tmp_path: Path) -> None:
    torch.manual_seed(3)
    fixed = {"delays": [[(i + 2 * j) % 6 for j in range(5)] for i in range(4)]} if mode == "fixed" else {}
    synapse = DelaySynapse(5, 4, max_delay=6, mode=mode, bias=bias, **fixed)
    if mode != "fixed":
        with torch.no_grad():
            synapse.positions.uniform_(0, 5)
    options = {"reset": "hard", "backend": "torch"}
    network = Network(
        [
            Block(Linear(3, 5), neuron=LIF(threshold=0.3, **options)),
            Block(synapse, neuron=LIF(tau=3.0, threshold=0.8, **options)),
        ]
    ).eval()
    with torch.no_grad():
        network.blocks[0].synapse.weight.uniform_(0, 1)  # both layers fire, whatever the draws before
        synapse.weight.normal_(0.2, 0.5)
    write_nir(tmp_path / "delay.nir", to_nir(network, (3,), dt=DT))
    imported = from_nir(tmp_path / "delay.nir")
    spec = imported.config["blocks"][1]["delay"]
    assert spec["mode"] == mode and spec["max_delay"] == 6 and spec["bias"] == bias
    back = imported.network.blocks[1].synapse
    assert torch.equal(back.delays()[synapse.weight != 0], synapse.delays()[synapse.weight != 0])
    assert torch.equal(back.weight, synapse.weight)
    x = torch.rand(25, 4, 3) * 2
    with torch.no_grad():
        ours, theirs = network.trace(x).blocks, imported.network.trace(x).blocks
    assert all(torch.equal(a.output, b.output) for a, b in zip(ours, theirs))
    assert 0.02 < float(ours[1].output.mean()) < 0.8
    if mode == "learned":
        assert float(back.sigma) == float(synapse.sigma)


@pytest.mark.parametrize(("before", "after"), [("linear", None), (None, "affine"), (None, None)])
def test_a_hand_written_delay_graph_imports_and_runs(before: str | None, after: str | None) -> None:
    """Linear -> Delay -> LIF (one delay per output: row i delayed by d_i), Delay -> Affine -> LIF (one per input),
    and a Delay alone before the LIF (the identity on either side)."""
    rng = np.random.default_rng(4)
    size = 4
    nodes = [nir.Linear(weight=rng.normal(size=(size, 3)).astype(np.float32))] if before else []
    nodes.append(nir.Delay(delay=np.array([0, 3, 1, 3]) * DT))
    if after:
        nodes.append(nir.Affine(weight=rng.normal(size=(2, size)).astype(np.float32), bias=np.ones(2, np.float32)))
    out = 2 if after else size
    lif_node = nir.LIF(tau=np.full(out, 3e-3), r=np.ones(out), v_leak=np.zeros(out), v_threshold=np.full(out, 0.3),
                       v_reset=np.zeros(out))  # fmt: skip
    imported = from_nir(nir.NIRGraph.from_list(*nodes, lif_node), dt=DT)
    assert imported.config["blocks"][0]["delay"]["mode"] == "fixed"
    block = imported.network.blocks[0]
    block.neuron.backend = "torch"
    x = torch.rand(20, 3, 3 if before else size) * 2
    currents = step_by_hand(nodes, x, DT).float()
    with torch.no_grad():
        assert torch.allclose(block.synapse(x)[0], currents, atol=1e-5)
        spikes = imported.network(x)[0]
        assert torch.equal(spikes, block.neuron(block.synapse(x)[0])[0])
    assert spikes.any()


@pytest.mark.parametrize(
    ("nodes", "says"),
    [
        (
            [nir.Linear(weight=np.ones((2, 1))), nir.Delay(delay=np.array([1, 2]) * DT), nir.Linear(np.ones((1, 2)))],
            r"node 'delay' \(Delay\): the connection from input 0 to output 0 passes through delays \[1, 2\]",
        ),
        (
            [nir.Affine(weight=np.ones((2, 2)), bias=np.ones(2)), nir.Delay(delay=np.array([0, 2]) * DT)],
            r"the Affine before the Delay has a bias on channels delayed by up to 2 steps",
        ),
        ([nir.Delay(delay=np.array([0.5, 1]) * DT)], r"not whole steps of dt = 0\.001 s"),
    ],
)
def test_delays_snnlab_cannot_express_are_refused_on_import(nodes: list, says: str) -> None:
    with pytest.raises(NIRUnsupported, match=says):
        from_nir(nir.NIRGraph.from_list(*nodes), dt=DT)
