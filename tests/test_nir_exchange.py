"""NIR files exchanged with snnTorch and SpikingJelly 2.0: their exports import into snnlab with their spikes (read
with the dt they assume, 1e-4 s, and their Euler step), and snnlab's exports run in their importers with snnlab's
spikes. Where their importers lose something, the test names the loss and shows that it is theirs.

snnTorch's ``Synaptic`` is NIR's ``CubaLIF`` both ways. Norse, Sinabs and Rockpool: ``tests/test_nir_exchange_more.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")

from nir_spikes import firing, ours  # noqa: E402

from snnlab.export import from_nir, to_nir  # noqa: E402
from snnlab.network import Block, Network  # noqa: E402
from snnlab.neurons import IF, LIF, CubaLIF  # noqa: E402
from snnlab.synapses import Linear  # noqa: E402

DT = 1e-4  # what both libraries' NIR code assumes


def snnlab_net(discretization: str = "euler") -> Network:
    torch.manual_seed(3)
    options = {"reset": "hard", "decay_input": False, "discretization": discretization, "backend": "torch"}
    return Network(
        [
            Block(Linear(6, 10), neuron=LIF(tau=4.0, threshold=0.7, **options)),
            Block(Linear(10, 4), neuron=LIF(tau=2.5, **options)),
        ]
    ).eval()


def inputs(steps: int = 30, batch: int = 4) -> torch.Tensor:
    return torch.rand(steps, batch, 6, generator=torch.Generator().manual_seed(5)) * 1.5


# --- snnTorch ------------------------------------------------------------------------------------------------------

snn = pytest.importorskip("snntorch")


def snntorch_run(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Step an snnTorch network (hidden state kept in its modules) from rest; the output spikes ``[T, B, ...]``."""
    from snntorch import utils

    utils.reset(module)
    out = []
    with torch.no_grad():
        for x_t in x:
            y = module(x_t)
            y = y[0] if isinstance(y, tuple) else y
            out.append(y[0] if isinstance(y, tuple) else y)
    return torch.stack(out)


def test_snntorch_export_imports_with_its_spikes() -> None:
    """snnTorch writes Leaky(beta) as tau = dt/(1-beta), r = 1/(1-beta): an Euler step of 1e-4 s gives beta back."""
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(4)
    leaky = {"init_hidden": True, "reset_mechanism": "zero", "reset_delay": False}
    theirs = torch.nn.Sequential(
        torch.nn.Linear(6, 10),
        snn.Leaky(beta=torch.full((10,), 0.8), threshold=torch.full((10,), 0.7), **leaky),
        torch.nn.Linear(10, 4),
        snn.Leaky(beta=torch.full((4,), 0.6), threshold=torch.ones(4), output=True, **leaky),
    )
    # snnTorch 1.0 needs per-neuron beta and threshold, and a sample without a batch axis, to pass nir's type check.
    graph = export_to_nir(theirs, torch.rand(6))
    assert not graph.metadata  # no dt written: the reader must know it is 1e-4
    x = inputs() * 4
    imported = from_nir(graph, dt=DT)
    assert imported.config["blocks"][0]["neuron"]["decay_input"] is False
    assert torch.equal(ours(imported.network, x), firing(snntorch_run(theirs, x)))


def test_snnlab_export_runs_in_snntorch_with_snnlabs_spikes() -> None:
    from snntorch.import_nir import import_from_nir

    network, x = snnlab_net("euler"), inputs()
    theirs = import_from_nir(to_nir(network, (6,), dt=DT))
    assert torch.equal(snntorch_run(theirs, x), firing(ours(network, x)))


def test_snntorchs_importer_steps_with_euler_and_gives_if_a_leak() -> None:
    """Their losses, not snnlab's: (1) snnTorch reads NIR's continuous tau with an Euler step (beta = 1 - dt/tau)
    where the exact solution snnlab's ``exp`` export is written for is exp(-dt/tau); (2) it reads NIR's IF (no
    leak) as Leaky(beta=0.9). The file holds the exact numbers in both cases."""
    from snntorch.import_nir import import_from_nir

    network = snnlab_net("exp")
    graph = to_nir(network, (6,), dt=DT)
    tau = float(graph.nodes["blocks_0_neuron"].tau[0])
    assert np.exp(-DT / tau) == pytest.approx(network.blocks[0].neuron.leak.beta, rel=1e-12)
    theirs = import_from_nir(graph)
    leaky = [m for m in theirs.modules() if isinstance(m, snn.Leaky)]
    assert float(leaky[0].beta.flatten()[0]) == pytest.approx(1 - DT / tau, rel=1e-6)
    assert float(leaky[0].beta.flatten()[0]) != pytest.approx(network.blocks[0].neuron.leak.beta, rel=1e-3)
    if_graph = to_nir(Network([Block(Linear(6, 4), neuron=IF(reset="hard"))]), (6,), dt=DT)
    if_node = if_graph.nodes["blocks_0_neuron"]
    assert isinstance(if_node, nir.IF) and np.allclose(if_node.r, 1 / DT)  # v += dt r I = I per step
    with pytest.raises(AssertionError, match="r != 1 not supported"):
        import_from_nir(if_graph)
    if_node.r = np.ones_like(if_node.r)  # what it accepts: then it leaks, which NIR's IF does not
    (if_as_leaky,) = [m for m in import_from_nir(if_graph).modules() if isinstance(m, snn.Leaky)]
    assert float(if_as_leaky.beta.flatten()[0]) == pytest.approx(0.9)


def test_snntorch_synaptic_export_imports_with_its_spikes() -> None:
    """snnTorch writes Synaptic(alpha, beta) as tau_syn = dt/(1-alpha), tau_mem = dt/(1-beta), w_in = tau_syn/dt,
    r = tau_mem/dt (METHODS.md 1.4): cuba_lif without decay_input, its Euler step at 1e-4 s."""
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(4)
    synaptic = {"init_hidden": True, "reset_mechanism": "zero", "reset_delay": False}
    theirs = torch.nn.Sequential(
        torch.nn.Linear(6, 10),
        snn.Synaptic(alpha=torch.full((10,), 0.7), beta=torch.full((10,), 0.8), threshold=torch.full((10,), 0.7),
                     **synaptic),
        torch.nn.Linear(10, 4),
        snn.Synaptic(alpha=torch.full((4,), 0.5), beta=torch.full((4,), 0.6), threshold=torch.ones(4), output=True,
                     **synaptic),
    )  # fmt: skip
    graph = export_to_nir(theirs, torch.rand(6))
    x = inputs() * 2
    imported = from_nir(graph, dt=DT)
    neuron = imported.config["blocks"][0]["neuron"]
    assert neuron["model"] == "cuba_lif" and neuron["decay_input"] is False and not imported.notes
    assert torch.equal(ours(imported.network, x), firing(snntorch_run(theirs, x)))


def cuba_net(decay_input: bool = False, v_reset: float = 0.0) -> Network:
    torch.manual_seed(3)
    options = {"reset": "hard", "decay_input": decay_input, "discretization": "euler", "v_reset": v_reset}
    return Network(
        [
            Block(Linear(6, 10), neuron=CubaLIF(tau=4.0, tau_syn=2.0, threshold=0.7, **options)),
            Block(Linear(10, 4), neuron=CubaLIF(tau=2.5, tau_syn=3.0, **options)),
        ]
    ).eval()


def test_snnlab_cuba_export_runs_in_snntorch_with_snnlabs_spikes() -> None:
    from snntorch.import_nir import import_from_nir

    network, x = cuba_net(), inputs()
    theirs = import_from_nir(to_nir(network, (6,), dt=DT))
    assert sum(isinstance(m, snn.Synaptic) for m in theirs.modules()) == 2
    assert torch.equal(snntorch_run(theirs, x), firing(ours(network, x)))


def test_snntorchs_cuba_importer_reads_only_its_own_gains_and_resets_to_zero() -> None:
    """Their losses: snnTorch's CubaLIF importer (1) asserts r = tau_mem/dt, so a decay_input file (r = 1, exact as
    written) is refused, and (2) builds Synaptic(reset_mechanism="zero"): NIR's v_reset is dropped, and the neuron
    runs as snnlab's with v_reset 0."""
    from snntorch.import_nir import import_from_nir

    with pytest.raises(AssertionError, match="r not supported in CubaLIF"):
        import_from_nir(to_nir(cuba_net(decay_input=True), (6,), dt=DT))

    def first_layer(v_reset: float) -> Network:
        return Network(list(cuba_net(v_reset=v_reset).blocks)[:1]).eval()

    network, x = first_layer(0.6), inputs()
    graph = to_nir(network, (6,), dt=DT)
    assert np.allclose(graph.nodes["blocks_0_neuron"].v_reset, 0.6)
    theirs = snntorch_run(import_from_nir(graph), x)
    assert not torch.equal(theirs, firing(ours(network, x)))
    assert torch.equal(theirs, ours(first_layer(0.0), x))


# --- SpikingJelly 2.0 ----------------------------------------------------------------------------------------------


def sj_modules():
    sj = pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir, import_from_nir

    del sj
    return functional, layer, neuron, export_to_nir, import_from_nir


def test_spikingjelly_export_imports_with_its_spikes() -> None:
    """SpikingJelly writes LIFNode(tau=k) as tau = k dt, r = 1 (decay_input) or k, IF as r = 1/dt."""
    functional, layer, neuron, export_to_nir, _ = sj_modules()
    torch.manual_seed(6)
    theirs = torch.nn.Sequential(
        layer.Linear(6, 10),
        neuron.LIFNode(tau=3.0, decay_input=False, v_reset=0.0, v_threshold=0.8),
        layer.Linear(10, 8),
        neuron.LIFNode(tau=2.0, decay_input=True, v_reset=0.0),
        layer.Linear(8, 4),
        neuron.IFNode(v_reset=0.0),
    )
    functional.set_step_mode(theirs, "m")
    x = inputs()
    graph = export_to_nir(theirs, x[:, :1], dt=DT)
    functional.reset_net(theirs)
    with torch.no_grad():
        expected = theirs(x)
    imported = from_nir(graph, dt=DT)
    assert [b["neuron"]["model"] for b in imported.config["blocks"]] == ["lif", "lif", "if"]
    assert torch.equal(ours(imported.network, x), firing(expected))


def test_snnlab_export_runs_in_spikingjelly_with_snnlabs_spikes() -> None:
    """SpikingJelly fires on v >= threshold and snnlab on v > threshold: random inputs never meet it exactly."""
    _, _, _, _, import_from_nir = sj_modules()
    network, x = snnlab_net("euler"), inputs()
    theirs = import_from_nir(to_nir(network, (6,), dt=DT), dt=DT, step_mode="m")
    with torch.no_grad():
        spikes, _ = theirs(x)
    assert torch.equal(spikes, firing(ours(network, x)))


def test_spikingjelly_refuses_soft_reset_itself() -> None:
    """SpikingJelly 2.0 refuses to export a soft reset (METHODS.md 1.6 says it converts it silently; 2.0 no longer
    does), as snnlab does."""
    functional, layer, neuron, export_to_nir, _ = sj_modules()
    net = torch.nn.Sequential(layer.Linear(6, 4), neuron.LIFNode(v_reset=None))
    functional.set_step_mode(net, "m")
    with pytest.raises(NotImplementedError, match="soft reset"):
        export_to_nir(net, inputs()[:, :1], dt=DT)
