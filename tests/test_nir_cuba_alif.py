"""NIR for CUBA-LIF and ALIF: cuba_lif and cuba_li as NIR's CubaLIF and CubaLI (round trips through files for both
discretisations, the exported numbers stepped by hand with NIR's equations, a hand-written graph with per-neuron
w_in and r), and ALIF refused by name unless it does not adapt."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from snnlab.export import NIRUnsupported, from_nir, to_nir, write_nir  # noqa: E402
from snnlab.network import Block, Network  # noqa: E402
from snnlab.neurons import ALIF, CubaLI, CubaLIF  # noqa: E402
from snnlab.synapses import Linear  # noqa: E402
from snnlab.synapses.recurrent import dense  # noqa: E402

DT = 1e-3


def cuba_net(discretization: str, decay_input: bool) -> Network:
    torch.manual_seed(0)
    options = {"discretization": discretization, "decay_input": decay_input}
    spiking = {"reset": "hard", "backend": "torch", **options}
    return Network(
        [
            Block(Linear(6, 8), neuron=CubaLIF(tau=3.0, tau_syn=2.0, threshold=0.3, v_reset=-0.1, **spiking)),
            Block(
                Linear(8, 5),
                neuron=CubaLIF(tau=4.0, tau_syn=1.5, threshold=0.2, learn_tau=True, learn_tau_syn=True, **spiking),
                recurrent=dense((5,)),
            ),
            Block(Linear(5, 3), neuron=CubaLI(tau=5.0, tau_syn=2.5, **options)),
        ]
    ).eval()


def outputs(network: Network, x: torch.Tensor) -> list[torch.Tensor]:
    """Every block's output, on the torch loop (a file of another tool carries no backend: a fresh process would
    compile a fused kernel for it)."""
    for module in network.modules():
        if hasattr(module, "backend"):
            module.backend = "torch"
    with torch.no_grad():
        return [t.output for t in network.trace(x).blocks]


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("discretization", ["exp", "euler"])
def test_cuba_round_trip_through_a_file_gives_identical_spikes(
    discretization: str, decay_input: bool, tmp_path: Path
) -> None:
    network = cuba_net(discretization, decay_input)
    write_nir(tmp_path / "cuba.nir", to_nir(network, (6,), dt=DT))
    imported = from_nir(tmp_path / "cuba.nir")
    assert [b["neuron"]["model"] for b in imported.config["blocks"]] == ["cuba_lif", "cuba_lif", "cuba_li"]
    assert imported.config["blocks"][0]["neuron"]["tau_syn"] == 2.0 and not imported.notes
    x = torch.rand(25, 3, 6) * (1 if decay_input else 0.3)
    for i, (a, b) in enumerate(zip(outputs(network, x), outputs(imported.network, x))):
        assert torch.equal(a, b), f"block {i}"
    spikes = outputs(network, x)[0]
    assert 0.02 < float(spikes.mean()) < 0.8
    assert imported.network.blocks[1].neuron.synaptic.learnable


def stepped_cuba(node, x: np.ndarray, dt: float, discretization: str) -> np.ndarray:
    """NIR's CubaLIF stepped by hand in float64: I += (1 - alpha)(w_in S - I), then
    v += (1 - beta)(v_leak - v + r I), spike on v > v_threshold, v = v_reset."""

    def decay(tau: np.ndarray) -> np.ndarray:
        return np.exp(-dt / tau) if discretization == "exp" else 1 - dt / tau

    alpha, beta = decay(np.asarray(node.tau_syn)), decay(np.asarray(node.tau_mem))
    current, v, out = np.zeros(x.shape[1:]), np.zeros(x.shape[1:]), []
    for s in x:
        current = alpha * current + (1 - alpha) * node.w_in * s
        v = beta * v + (1 - beta) * (node.v_leak + node.r * current)
        spikes = v > node.v_threshold
        v = np.where(spikes, node.v_reset, v)
        out.append(spikes)
    return np.stack(out).astype(np.float64)


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("discretization", ["exp", "euler"])
def test_the_exported_numbers_give_snnlabs_spikes_under_nirs_equation(discretization: str, decay_input: bool) -> None:
    """tau_syn, tau_mem from alpha, beta as LIF's tau; w_in = r = 1 with decay_input, else 1/(1 - alpha) and
    1/(1 - beta) (snnTorch's tau_syn/dt and tau_mem/dt for Euler)."""
    neuron = CubaLIF(tau=4.0, tau_syn=2.0, threshold=0.4, reset="hard", v_reset=0.1, backend="torch",
                     discretization=discretization, decay_input=decay_input)  # fmt: skip
    (node,) = [n for n in to_nir(Network([Block(neuron=neuron)]), (7,), dt=DT).nodes.values() if "Cuba" in str(type(n))]
    alpha, beta = neuron.synaptic.beta, neuron.leak.beta
    assert np.allclose(node.w_in, 1.0 if decay_input else 1 / (1 - alpha))
    assert np.allclose(node.r, 1.0 if decay_input else 1 / (1 - beta)) and not np.asarray(node.v_leak).any()
    if discretization == "euler":
        assert np.allclose(node.tau_syn, DT / (1 - alpha)) and np.allclose(node.tau_mem, 4.0 * DT)
    else:
        assert np.allclose(np.exp(-DT / node.tau_syn), alpha, rtol=1e-12)
    x = np.random.default_rng(2).uniform(0, 1 if decay_input else 0.3, size=(30, 4, 7))
    with torch.no_grad():
        ours = neuron(torch.as_tensor(x))[0].numpy()
    assert 0.02 < ours.mean() < 0.8
    assert np.array_equal(ours, stepped_cuba(node, x, DT, discretization))


@pytest.mark.parametrize("discretization", ["exp", "euler"])
def test_a_hand_written_cuba_graph_with_per_neuron_gains_imports_and_runs(discretization: str) -> None:
    """w_in and r per neuron (which no option gives) fold into the Affine before the neuron."""
    rng = np.random.default_rng(0)
    affine = nir.Affine(rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32))
    cuba = nir.CubaLIF(
        tau_syn=np.full(4, 4e-3), tau_mem=np.full(4, 6e-3), r=np.array([1.0, 2.0, 30.0, 4.0]), v_leak=np.zeros(4),
        v_threshold=np.full(4, 0.4), v_reset=np.zeros(4), w_in=np.array([1.0, 0.5, 2.0, 5.0]),
    )  # fmt: skip
    graph = nir.NIRGraph.from_list(affine, cuba)
    imported = from_nir(graph, dt=DT, discretization=discretization)
    assert any("folded" in note for note in imported.notes)
    x = rng.uniform(0, 2, size=(30, 5, 3))
    currents = x @ affine.weight.T.astype(np.float64) + affine.bias
    ours = outputs(imported.network, torch.as_tensor(x, dtype=torch.float32))[0].double().numpy()
    expected = stepped_cuba(cuba, currents, DT, discretization)
    assert 0.02 < expected.mean() < 0.8
    assert np.mean(ours != expected) < 0.01  # float32 against float64 near the threshold


@pytest.mark.parametrize(
    ("neuron", "says"),
    [
        (CubaLIF(reset="soft"), r"blocks\[0\]\.neuron: CubaLIF: reset: soft"),
        (CubaLIF(reset="hard", tau=math.inf), r"CubaLIF: tau: \.inf \(a membrane without leak\) has no NIR node"),
        (CubaLI(tau=math.inf), r"CubaLI: tau: \.inf"),
    ],
)
def test_what_nirs_cuba_nodes_cannot_express_is_refused(neuron: torch.nn.Module, says: str) -> None:
    with pytest.raises(NIRUnsupported, match=says):
        to_nir(Network([Block(Linear(3, 2), neuron=neuron)]), (3,), dt=DT)


def test_a_cuba_node_with_a_leak_potential_is_refused_on_import() -> None:
    cuba = nir.CubaLI(tau_syn=np.full(2, 4e-3), tau_mem=np.full(2, 6e-3), r=np.ones(2), v_leak=np.full(2, 0.1))
    graph = nir.NIRGraph.from_list(nir.Linear(np.ones((2, 2))), cuba)
    with pytest.raises(NIRUnsupported, match=r"\(CubaLI\): v_leak != 0: it drives the membrane behind"):
        from_nir(graph, dt=DT)


def test_alif_is_refused_by_name_with_the_reason() -> None:
    network = Network([Block(Linear(3, 4), neuron=ALIF(reset="hard", beta_a=1.8))])
    with pytest.raises(NIRUnsupported, match=r"blocks\[0\]\.neuron: ALIF: .*NIR has no adaptive neuron"):
        to_nir(network, (3,), dt=DT)
    assert not hasattr(nir, "ALIF") and not hasattr(nir, "AdaptiveLIF")  # nir 1.0.8 has no adaptive node


@pytest.mark.parametrize("options", [{"beta_a": 0.0}, {"adaptive_fraction": 0.0, "in_shape": (4,)}])
def test_an_alif_that_does_not_adapt_exports_as_lif(options: dict, tmp_path: Path) -> None:
    torch.manual_seed(1)
    alif = ALIF(tau=3.0, tau_a=20.0, reset="hard", threshold=0.3, backend="torch", **options)
    network = Network([Block(Linear(3, 4), neuron=alif)]).eval()
    graph = to_nir(network, (3,), dt=DT)
    assert isinstance(graph.nodes["blocks_0_neuron"], nir.LIF)
    write_nir(tmp_path / "alif.nir", graph)
    back = from_nir(tmp_path / "alif.nir")
    assert back.config["blocks"][0]["neuron"]["model"] == "lif"
    x = torch.rand(20, 3, 3) * 6
    assert torch.equal(outputs(network, x)[0], outputs(back.network, x)[0])
    assert 0.02 < float(outputs(network, x)[0].mean()) < 0.8
