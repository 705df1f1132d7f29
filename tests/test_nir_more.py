"""NIR for the blocks added after the first exporter: the delay synapse as an exact Linear -> Delay -> Linear chain
(checked by stepping the exported nodes by hand), and the refusals, by name and reason, of the Ultra and meta
neurons and the quantal synapse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

from snnlab.export import NIRUnsupported, from_nir, to_nir  # noqa: E402
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


def test_delay_nodes_are_refused_on_import_with_the_reason() -> None:
    graph = to_nir(Network([Block(DelaySynapse(3, 2, max_delay=3, mode="random"))]), (3,), dt=DT)
    with pytest.raises(NIRUnsupported, match=r"\(Delay\): snnlab does not read Delay nodes back"):
        from_nir(graph)
