"""NIR export and import: round trips through files, hand-written graphs checked against hand-stepped equations,
refusals by name, and files exchanged with snnTorch and SpikingJelly (their spikes against snnlab's)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

from snnlab.export import NIRUnsupported, from_nir, read_nir, to_nir, write_nir  # noqa: E402
from snnlab.network import Block, Network, Residual  # noqa: E402
from snnlab.neurons import IF, LI, LIF, NonSpiking  # noqa: E402
from snnlab.synapses import Conv2d, Linear  # noqa: E402
from snnlab.synapses.ei import EILinear  # noqa: E402
from snnlab.synapses.norms import L2Normalize  # noqa: E402
from snnlab.synapses.post import pool  # noqa: E402
from snnlab.synapses.recurrent import dense, one_to_one  # noqa: E402


def lif(discretization: str, **options) -> LIF:
    return LIF(reset="hard", discretization=discretization, backend="torch", **options)


def mlp(d: str) -> tuple[Network, tuple[int, ...]]:
    return Network(
        [
            Block(Linear(6, 8), neuron=lif(d, tau=3.0, decay_input=False, threshold=0.8, v_reset=-0.2)),
            Block(Linear(8, 7), neuron=lif(d, tau=1.7, decay_input=True), post=[nn.Dropout(0.5)]),
            Block(Linear(7, 3, bias=False), neuron=LI(tau=4.0, discretization=d)),
        ]
    ), (6,)


def conv(d: str) -> tuple[Network, tuple[int, ...]]:
    return Network(
        [
            Block(Conv2d(2, 4, 3, padding=1), neuron=lif(d, tau=2.5), post=[pool((4, 6, 6), 2, "avg")]),
            Block(Conv2d(4, 3, 3, stride=1, bias=False), neuron=IF(reset="hard", backend="torch")),
            Block(post=[pool((3, 1, 1), 1, "sum"), nn.Flatten()]),
            Block(Linear(3, 2), neuron=NonSpiking("identity")),
        ]
    ), (2, 6, 6)


def recurrent(d: str) -> tuple[Network, tuple[int, ...]]:
    return Network(
        [
            Block(Linear(5, 6), neuron=lif(d, tau=5.0, learn_tau=True, learn_threshold=True), recurrent=dense((6,))),
            Block(Linear(6, 4), neuron=lif(d, tau=2.0), recurrent=one_to_one((4,), init=-0.3)),
            Block(Conv2d(1, 2, 1), neuron=lif(d, tau=3.0), recurrent=one_to_one((2, 1, 1), init=0.4)),
        ]
    ), (5,)


def randomize(network: Network) -> Network:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in network.parameters():
            if p.dim() > 0:
                p.normal_(0, 0.8)
    return network


def spikes_of(network: Network, x: torch.Tensor) -> list[torch.Tensor]:
    """Every block's output, so a wrong block is seen even when the network's output hides it."""
    with torch.no_grad():
        return [t.output for t in network.trace(x).blocks]


def round_trip(network: Network, shape: tuple[int, ...], tmp_path: Path, dt: float = 1e-3) -> Network:
    path = tmp_path / "net.nir"
    write_nir(path, to_nir(network, shape, dt=dt))
    return from_nir(path).network


@pytest.mark.parametrize("discretization", ["exp", "euler"])
@pytest.mark.parametrize("make", [mlp, conv])
def test_round_trip_through_a_file_gives_identical_spikes(make, discretization: str, tmp_path: Path) -> None:
    network, shape = make(discretization)
    network = randomize(network).eval()
    back = round_trip(network, shape, tmp_path)
    x = torch.rand(12, 3, *shape) * 2
    for i, (a, b) in enumerate(zip(spikes_of(network, x), spikes_of(back, x))):
        assert torch.equal(a, b), f"block {i}"


@pytest.mark.parametrize("discretization", ["exp", "euler"])
def test_recurrent_loops_and_learned_parameters_round_trip(discretization: str, tmp_path: Path) -> None:
    network, _ = recurrent(discretization)
    flat = randomize(Network(list(network.blocks)[:2])).eval()
    back = round_trip(flat, (5,), tmp_path)
    x = torch.rand(15, 3, 5) * 2
    for a, b in zip(spikes_of(flat, x), spikes_of(back, x)):
        assert torch.equal(a, b)
    assert back.blocks[0].neuron.leak.learnable and isinstance(back.blocks[0].neuron.threshold, nn.Parameter)
    assert type(back.blocks[1].recurrent).__name__ == "OneToOne"
    maps = randomize(Network([network.blocks[2]])).eval()
    back = round_trip(maps, (1, 1, 1), tmp_path)
    x = torch.rand(15, 3, 1, 1, 1) * 2
    assert torch.equal(spikes_of(maps, x)[0], spikes_of(back, x)[0])
    graph = to_nir(flat, (5,), dt=1e-3)
    assert isinstance(graph.nodes["blocks_0_neuron"], nir.NIRGraph)
    assert ("recurrent", "neuron") in graph.nodes["blocks_0_neuron"].edges


def test_batch_norm_exports_as_its_inference_map(tmp_path: Path) -> None:
    torch.manual_seed(1)
    network = Network(
        [
            Block(Linear(4, 6), norm=nn.BatchNorm1d(6), neuron=lif("exp", tau=2.0)),
            Block(Linear(6, 3), neuron=LI()),
        ]
    )
    bn = network.blocks[0].norm
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.normal_()
        bn.bias.normal_()
    network.eval()
    back = round_trip(network, (4,), tmp_path)
    x = torch.rand(10, 4, 4) * 3
    with torch.no_grad():
        assert torch.allclose(network(x)[0], back(x)[0], atol=1e-5)
    assert len(back.blocks) == 3  # the norm's Affine is a block of its own, with the identity as its neuron


def test_dt_and_reset_are_in_the_metadata_and_read_back(tmp_path: Path) -> None:
    network, _ = mlp("euler")
    path = tmp_path / "net.nir"
    write_nir(path, to_nir(network, (6,), dt=2e-3))
    graph = read_nir(path)
    assert float(graph.metadata["dt"]) == 2e-3
    node = graph.nodes["blocks_0_neuron"]
    assert node.metadata["discretization"] == "euler" and np.allclose(node.v_reset, -0.2)
    assert np.allclose(node.tau, 3.0 * 2e-3) and np.allclose(node.r, 3.0)  # euler: tau = dt/(1-beta), r = 1/(1-beta)
    imported = from_nir(path)
    assert imported.dt == 2e-3
    neuron = imported.config["blocks"][0]["neuron"]
    assert neuron["tau"] == 3.0 and neuron["reset"] == "hard" and neuron["discretization"] == "euler"
    # Another dt rescales every time constant: the same file read with half the step is twice as slow.
    assert from_nir(path, dt=1e-3).config["blocks"][0]["neuron"]["tau"] == 6.0


def test_exp_export_is_the_exact_solution_of_nirs_equation() -> None:
    """tau = dt / ln(1/beta): exp(-dt/tau) is beta again (Euler's 1 - dt/tau would not be)."""
    neuron = lif("exp", tau=2.0)
    node = to_nir(Network([Block(neuron=neuron)]), (3,), dt=1e-4).nodes["blocks_0_neuron"]
    assert np.allclose(np.exp(-1e-4 / node.tau), math.exp(-0.5), rtol=1e-12) and np.allclose(node.r, 1.0)


def hand_graph(discretization: str) -> nir.NIRGraph:
    """Affine -> LIF (r and v_leak that no snnlab option gives) -> Affine -> LI, written with nir by hand."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    w2, b2 = rng.normal(size=(2, 4)).astype(np.float32), np.zeros(2, dtype=np.float32)
    lif_node = nir.LIF(
        tau=np.full(4, 5e-3), r=np.array([1.0, 2.0, 0.5, 3.0]), v_leak=np.array([0.0, 0.1, -0.2, 0.0]),
        v_threshold=np.full(4, 0.9), v_reset=np.full(4, 0.0),
    )  # fmt: skip
    li_node = nir.LI(tau=np.full(2, 1e-2), r=np.full(2, 1.0), v_leak=np.zeros(2))
    graph = nir.NIRGraph.from_list(nir.Affine(w1, b1), lif_node, nir.Affine(w2, b2), li_node)
    graph.nodes["lif"].metadata = {"discretization": discretization}
    return graph


def stepped(graph: nir.NIRGraph, x: np.ndarray, dt: float, discretization: str) -> np.ndarray:
    """The graph's equations stepped by hand in float64: v += (1 - beta)(v_leak - v + r I), spike on v > thr."""
    affine1, lif_node, affine2, li_node = (graph.nodes[k] for k in ("affine", "lif", "affine_1", "li"))

    def beta(tau: np.ndarray) -> np.ndarray:
        return np.exp(-dt / tau) if discretization == "exp" else 1 - dt / tau

    v, u, out = np.zeros((x.shape[1], 4)), np.zeros((x.shape[1], 2)), []
    for x_t in x:
        current = x_t @ affine1.weight.T + affine1.bias
        b = beta(lif_node.tau)
        v = b * v + (1 - b) * (lif_node.v_leak + lif_node.r * current)
        s = (v > lif_node.v_threshold).astype(np.float64)
        v = np.where(s > 0, lif_node.v_reset, v)
        b2 = beta(li_node.tau)
        u = b2 * u + (1 - b2) * li_node.r * (s @ affine2.weight.T + affine2.bias)
        out.append(u)
    return np.stack(out)


@pytest.mark.parametrize("discretization", ["exp", "euler"])
def test_a_graph_written_by_hand_imports_and_runs_its_equations(discretization: str) -> None:
    graph = hand_graph(discretization)
    imported = from_nir(graph, dt=1e-3)
    assert any("folded" in note for note in imported.notes)  # r and v_leak went into the first Affine
    x = np.random.default_rng(1).uniform(0, 2, size=(20, 5, 3))
    with torch.no_grad():
        out = imported.network(torch.as_tensor(x, dtype=torch.float32))[0].double().numpy()
    assert np.allclose(out, stepped(graph, x, 1e-3, discretization), atol=1e-4)


def test_a_file_without_dt_needs_one() -> None:
    graph = hand_graph("exp")
    with pytest.raises(NIRUnsupported, match="records no time step.*1e-4"):
        from_nir(graph)


@pytest.mark.parametrize(
    ("block", "shape", "says"),
    [
        (Block(Linear(3, 2), neuron=LIF(reset="soft")), (3,), r"blocks\[0\]\.neuron: LIF: reset: soft"),
        (Block(post=[nn.MaxPool2d(2)]), (1, 4, 4), r"blocks\[0\]\.post\[0\]: MaxPool2d: max pooling has no NIR node"),
        (Block(EILinear(3, 4), neuron=LIF(reset="hard")), (3,), r"blocks\[0\]\.synapse: EILinear: .*division"),
        (Block(norm=L2Normalize()), (3,), r"blocks\[0\]\.norm: L2Normalize: .*statistic of each sample"),
        (Block(Linear(3, 2), neuron=NonSpiking("relu")), (3,), r"NonSpiking: activation relu"),
        (Residual([Block(Linear(3, 3))]), (3,), r"blocks\[0\]: Residual"),
    ],
)
def test_what_nir_cannot_express_is_refused_by_name(block: nn.Module, shape: tuple[int, ...], says: str) -> None:
    with pytest.raises(NIRUnsupported, match=says):
        to_nir(Network([block]), shape, dt=1e-3)


def test_the_balanced_current_of_an_e_i_output_block_exports_as_one_linear_map() -> None:
    torch.manual_seed(2)
    synapse = EILinear(5, 4, ei_ratio=2, divisive=False)
    network = Network([Block(synapse, neuron=LI())]).eval()
    back = from_nir(to_nir(network, (5,), dt=1e-3)).network
    x = torch.rand(6, 3, 5)
    with torch.no_grad():
        assert torch.allclose(network(x)[0], back(x)[0], atol=1e-5)


def test_imported_nodes_snnlab_cannot_express_are_named() -> None:
    graph = nir.NIRGraph.from_list(nir.Affine(np.ones((2, 2)), np.zeros(2)), nir.Threshold(np.ones(2)))
    with pytest.raises(NIRUnsupported, match=r"node 'threshold' \(Threshold\): NIR Threshold has no snnlab"):
        from_nir(graph, dt=1e-3)
    per_neuron = nir.NIRGraph.from_list(
        nir.Affine(np.ones((2, 2)), np.zeros(2)),
        nir.LIF(tau=np.array([1e-2, 2e-2]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
    )
    with pytest.raises(NIRUnsupported, match="tau differs between neurons"):
        from_nir(per_neuron, dt=1e-3)


def test_cli_exports_a_run_and_imports_it_into_a_folder_eval_reads(quick_raw: dict, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from snnlab.cli import app
    from snnlab.config import validate
    from snnlab.runner import run

    quick_raw["train"]["epochs"] = 1
    quick_raw["data"]["time_steps"] = 4
    quick_raw["network"]["neuron"]["reset"] = "hard"
    result = run(validate(quick_raw), "test.yaml", progress=False)
    cli = CliRunner()
    out = cli.invoke(app, ["export", str(result.run_dir), "-o", str(tmp_path / "q.nir"), "--dt", "1e-3"])
    assert out.exit_code == 0, out.output
    assert "dt 0.001 s" in out.output
    out = cli.invoke(app, ["import", str(tmp_path / "q.nir"), "-o", str(tmp_path / "imported")])
    assert out.exit_code == 0, out.output
    metrics = json.loads(out.output[out.output.index("{") :])
    assert metrics["test_accuracy"] == pytest.approx(result.summary["best_test_accuracy"], abs=1e-9)
    assert (tmp_path / "imported" / "config.yaml").is_file() and (tmp_path / "imported" / "best.safetensors").is_file()
    write_nir(tmp_path / "bare.nir", hand_graph("exp"))
    out = cli.invoke(app, ["import", str(tmp_path / "bare.nir"), "--no-evaluate"])
    assert out.exit_code == 2 and "records no time step" in out.output
