"""NIR files exchanged with Norse, Sinabs and Rockpool (each skipped where it is not installed): their exports
import into snnlab with their spikes where their files describe their neurons, and snnlab's exports run in their
importers. Each loss the tests find is theirs, and each test names it and shows it:

* Norse 1.1 writes tau = dt / tau_mem_inv, which is dt * tau (a 5 ms membrane at dt = 1e-3 s is written 5e-6 s):
  its file reads right with a step of dt**2, and its own importer (tau_mem_inv = 1 / tau) does not give its
  module's spikes back. Its ``LIFCell`` adds the input to the current in full, and writes w_in = 1 where that is
  w_in = tau_syn / dt. Its importer ignores LIF's r and drops v_reset.
* Sinabs 3.1 counts time in steps (dt = 1) and steps with exp(-1/tau) (snnlab's ``exp``), and writes every LIF
  with a reset to 0 and one spike per step; its default neuron (``MultiSpike``, ``MembraneSubtract``) is neither.
  Its importer builds that default, and ignores r.
* Rockpool 3.1's ``LIFTorch`` scales the input by the synaptic decay, adds it to the current in full and subtracts
  the threshold (a soft reset), and writes w_in = 1, r = tau_mem exp(-dt/tau_mem) / dt and a reset to 0: its file
  is not its neuron. Its importer fails on NIR's LIF, ignores w_in and guesses dt as tau_mem / (1 + r).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")

from nir_spikes import firing, ours  # noqa: E402

from snnlab.export import from_nir, to_nir  # noqa: E402
from snnlab.network import Block, Network  # noqa: E402
from snnlab.neurons import LIF, CubaLIF  # noqa: E402
from snnlab.synapses import Linear  # noqa: E402


def inputs(steps: int = 30, batch: int = 4) -> torch.Tensor:
    return torch.rand(steps, batch, 6, generator=torch.Generator().manual_seed(5)) * 1.5


def snnlab_net(decay_input: bool, discretization: str, v_reset: float = 0.0, cuba: bool = True) -> Network:
    torch.manual_seed(3)
    options = {"reset": "hard", "discretization": discretization, "v_reset": v_reset, "backend": "torch"}
    second = CubaLIF(tau=2.5, tau_syn=2.0, threshold=0.2, decay_input=False, **options) if cuba else None
    blocks = [Block(Linear(6, 10), neuron=LIF(tau=4.0, threshold=0.3, decay_input=decay_input, **options))]
    if second is not None:
        blocks.append(Block(Linear(10, 4), neuron=second))
    return Network(blocks).eval()


# --- Norse ---------------------------------------------------------------------------------------------------------

NORSE_DT = 1e-3  # what Norse's to_nir and from_nir assume


def norse_run(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Step a Norse module (state passed in and returned) from rest over ``x`` ``[T, B, ...]``."""
    out, state = [], None
    with torch.no_grad():
        for x_t in x:
            y, state = module(x_t, state)
            out.append(y)
    return torch.stack(out)


def norse_net(cell, first: dict, second: dict) -> torch.nn.Module:
    import norse.torch as norse

    torch.manual_seed(0)
    return norse.SequentialState(torch.nn.Linear(6, 10), cell(first), torch.nn.Linear(10, 4), cell(second))


def test_norse_export_imports_with_its_spikes_read_with_a_step_of_dt_squared() -> None:
    norse = pytest.importorskip("norse.torch")
    theirs = norse_net(
        norse.LIFBoxCell,
        norse.LIFBoxParameters(tau_mem_inv=torch.tensor(1 / 5e-3), v_th=torch.tensor(0.3)),
        norse.LIFBoxParameters(tau_mem_inv=torch.tensor(1 / 3e-3), v_th=torch.tensor(0.2)),
    )
    graph = norse.to_nir(theirs, torch.rand(6), dt=NORSE_DT)
    assert float(graph.nodes["1"].tau) == pytest.approx(5e-3 * NORSE_DT)  # dt / tau_mem_inv: dt * tau
    x = inputs() * 2
    expected = firing(norse_run(theirs, x))
    imported = from_nir(graph, dt=NORSE_DT**2)
    assert imported.config["blocks"][0]["neuron"]["tau"] == pytest.approx(5.0)  # steps, as Norse's module runs
    assert torch.equal(ours(imported.network, x), expected)
    assert not torch.equal(norse_run(norse.from_nir(graph, dt=NORSE_DT), x), expected)  # theirs, not snnlab's


def test_norses_lifcell_writes_w_in_1_where_its_current_jumps_by_the_whole_input() -> None:
    """Norse's LIFCell adds x to the current and the membrane reads the new current: NIR's CubaLIF with
    w_in = tau_syn / dt. Its file says w_in = 1; with the w_in its step means, snnlab gives its spikes."""
    norse = pytest.importorskip("norse.torch")
    theirs = norse_net(
        norse.LIFCell,
        norse.LIFParameters(tau_mem_inv=torch.tensor(1 / 5e-3), tau_syn_inv=torch.tensor(1 / 2e-3), v_th=torch.tensor(0.3)),
        norse.LIFParameters(tau_mem_inv=torch.tensor(1 / 3e-3), tau_syn_inv=torch.tensor(1 / 4e-3), v_th=torch.tensor(0.2)),
    )  # fmt: skip
    graph = norse.to_nir(theirs, torch.rand(6), dt=NORSE_DT)
    x = inputs() * 2
    expected = firing(norse_run(theirs, x))
    step = NORSE_DT**2  # the step its time constants are written for (test above)
    assert not torch.equal(ours(from_nir(graph, dt=step).network, x), expected)
    for name in ("1", "3"):
        assert np.allclose(graph.nodes[name].w_in, 1.0)
        graph.nodes[name].w_in = np.asarray(graph.nodes[name].tau_syn) / step
    assert torch.equal(ours(from_nir(graph, dt=step).network, x), expected)


def test_snnlab_export_runs_in_norse_with_snnlabs_spikes() -> None:
    """Euler, LIF with decay_input (r = 1: Norse ignores r) and CubaLIF, reset to 0 (Norse drops v_reset)."""
    norse = pytest.importorskip("norse.torch")
    network, x = snnlab_net(decay_input=True, discretization="euler"), inputs()
    theirs = norse.from_nir(to_nir(network, (6,), dt=NORSE_DT), dt=NORSE_DT)
    assert torch.equal(norse_run(theirs, x), firing(ours(network, x)))
    lossy = snnlab_net(decay_input=True, discretization="euler", v_reset=0.2, cuba=False)
    spikes = norse_run(norse.from_nir(to_nir(lossy, (6,), dt=NORSE_DT), dt=NORSE_DT), x)
    assert not torch.equal(spikes, firing(ours(lossy, x)))
    assert torch.equal(spikes, ours(snnlab_net(decay_input=True, discretization="euler", cuba=False), x))


# --- Sinabs --------------------------------------------------------------------------------------------------------


def sinabs_run(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a Sinabs network of ``Squeeze`` layers (batch and time folded into one axis) from rest."""
    steps, batch = x.shape[:2]
    for layer in module.modules():
        if hasattr(layer, "reset_states"):
            layer.reset_states()
    with torch.no_grad():
        out = module(x.transpose(0, 1).reshape(batch * steps, -1))
    out = out[0] if isinstance(out, tuple) else out
    return out.reshape(batch, steps, -1).transpose(0, 1)


def test_sinabs_export_imports_with_its_spikes_read_with_exp_steps_of_1() -> None:
    pytest.importorskip("sinabs")
    import sinabs
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, SingleSpike

    x = inputs() * 2
    steps = len(x)
    as_written = {"spike_fn": SingleSpike, "reset_fn": MembraneReset(), "num_timesteps": steps}
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(
        torch.nn.Linear(6, 10),
        sl.LIFSqueeze(tau_mem=5.0, spike_threshold=torch.tensor(0.3), **as_written),
        torch.nn.Linear(10, 4),
        sl.LIFSqueeze(tau_mem=3.0, spike_threshold=torch.tensor(0.2), **as_written),
    )
    graph = sinabs.to_nir(theirs, x[:, 0])
    default = sinabs.to_nir(sl.LIFSqueeze(tau_mem=5.0, spike_threshold=torch.tensor(0.3), num_timesteps=steps), x[:, 0])
    written, plain = graph.nodes["1"], next(n for n in default.nodes.values() if isinstance(n, nir.LIF))
    for field in ("tau", "r", "v_leak", "v_threshold", "v_reset"):  # the same node for a subtracting MultiSpike
        assert np.allclose(np.asarray(getattr(written, field)), np.asarray(getattr(plain, field)))
    imported = from_nir(graph, dt=1.0, discretization="exp")
    assert torch.equal(ours(imported.network, x), firing(sinabs_run(theirs, x)))


def test_snnlab_export_runs_in_sinabs_once_its_reset_is_the_files() -> None:
    """exp at dt = 1 without decay_input (Sinabs imports norm_input=False and ignores r): its importer's
    subtracting MultiSpike neuron gives other spikes; with the file's reset to 0 and one spike, snnlab's."""
    pytest.importorskip("sinabs")
    import sinabs
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, SingleSpike

    network, x = snnlab_net(decay_input=False, discretization="exp", cuba=False), inputs() * 2
    expected = firing(ours(network, x))
    theirs = sinabs.from_nir(to_nir(network, (6,), dt=1.0), batch_size=x.shape[1])
    assert not torch.equal(sinabs_run(theirs, x), expected)
    for layer in theirs.modules():
        if isinstance(layer, sl.LIF):
            layer.reset_fn, layer.spike_fn = MembraneReset(), SingleSpike
    assert torch.equal(sinabs_run(theirs, x), expected)


# --- Rockpool ------------------------------------------------------------------------------------------------------

ROCKPOOL_DT = 1e-3  # LIFTorch's default


def test_rockpools_export_is_not_its_neuron() -> None:
    """LIFTorch steps i = a (i + x), v = b v + i, then subtracts the threshold: snnlab's soft-reset cuba_lif without
    decay_input on the input a x, spike for spike. Its file says w_in = 1 and r = tau_mem b / dt, an input gain
    (1 - a)(1 - b) r w_in per step where its neuron has a, and a reset to 0: snnlab reads the file as written,
    which does not give its spikes, and no file could (NIR has no soft reset)."""
    pytest.importorskip("rockpool")
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch
    from rockpool.nn.modules import to_nir as rockpool_to_nir

    torch.manual_seed(0)
    tau_mem, tau_syn = 5e-3, 2e-3
    neuron = LIFTorch(10, tau_mem=tau_mem, tau_syn=tau_syn, threshold=0.5, dt=ROCKPOOL_DT, max_spikes_per_dt=1)
    theirs = Sequential(LinearTorch((6, 10), has_bias=True), neuron)
    x = inputs()
    with torch.no_grad():
        theirs.reset_state()
        out = theirs(x.transpose(0, 1))
        expected = firing((out[0] if isinstance(out, tuple) else out).transpose(0, 1))
        a, b = math.exp(-ROCKPOOL_DT / tau_syn), math.exp(-ROCKPOOL_DT / tau_mem)
        current = x @ theirs[0].weight + theirs[0].bias
        soft = CubaLIF(tau=5.0, tau_syn=2.0, threshold=0.5, decay_input=False, reset="soft", backend="torch")
        assert torch.equal(soft(a * current)[0], expected)
    graph = rockpool_to_nir(theirs)
    node = next(n for n in graph.nodes.values() if isinstance(n, nir.CubaLIF))
    gain = (1 - a) * (1 - b) * float(node.r[0]) * float(node.w_in[0])
    assert gain == pytest.approx((1 - a) * (1 - b) * tau_mem * b / ROCKPOOL_DT, rel=1e-5) and abs(gain - a) > 0.1
    imported = from_nir(graph, dt=ROCKPOOL_DT, discretization="exp")
    assert imported.config["blocks"][0]["neuron"]["reset"] == "hard"
    assert not torch.equal(ours(imported.network, x), expected)


def test_rockpools_importer_fails_on_lif_and_guesses_dt() -> None:
    pytest.importorskip("rockpool")
    from rockpool.nn.modules import LIFTorch
    from rockpool.nn.modules import from_nir as rockpool_from_nir

    with pytest.raises(AttributeError, match="tau_mem"):  # it reads NIR's LIF as if it had CubaLIF's fields
        rockpool_from_nir(to_nir(snnlab_net(decay_input=True, discretization="exp", cuba=False), (6,), dt=1e-3))
    graph = to_nir(Network([Block(Linear(6, 4), neuron=CubaLIF(tau=4.0, tau_syn=2.0, reset="hard"))]), (6,), dt=1e-3)
    (neuron,) = [m for m in rockpool_from_nir(graph).modules() if isinstance(m, LIFTorch)]
    node = graph.nodes["blocks_0_neuron"]
    assert neuron.dt == pytest.approx(float(node.tau_mem[0] / (1 + node.r[0])), rel=1e-5)
    assert abs(neuron.dt - 1e-3) > 1e-4  # the file's step is 1e-3 s
