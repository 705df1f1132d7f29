"""Issue 12, item 9: the Python entry points an snnTorch user reaches for on the first day."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.utils.data import DataLoader

import snnlab
from snnlab.config import validate
from snnlab.network import Block, Network, OutputOnly, Sequential
from snnlab.neurons import LI, LIF
from snnlab.runner import run
from snnlab.surrogates import ATan, FunctionSurrogate, Surrogate
from snnlab.synapses import Linear


def test_dataset_builders_work_from_python_with_their_defaults() -> None:
    """`snnlab.datasets.digits()` crashed with "'str' object is not callable": its default encoder was a name."""
    splits = snnlab.datasets.digits()
    x, label = splits.train[0]
    assert x.shape == (8, 64) and 0 <= int(label) < 10
    assert snnlab.datasets.digits(time_steps=3, encoder="poisson").train[0][0].shape == (3, 64)
    with pytest.raises(ValidationError):
        snnlab.datasets.digits(encoder="nope")


def test_time_major_bridges_loaders_and_networks() -> None:
    """A loader's [B, T, ...] batch goes into a network as [T, B, ...]."""
    loader = DataLoader(snnlab.datasets.digits(time_steps=5).test, batch_size=7)
    x, y = next(snnlab.time_major_batches(loader))
    assert x.shape == (5, 7, 64) and y.shape == (7,)
    batch = next(iter(loader))[0]
    assert torch.equal(snnlab.time_major(batch), x) and torch.equal(snnlab.time_major(x), batch)


def test_load_run_rebuilds_a_finished_run_in_one_call(quick_raw: dict) -> None:
    quick_raw["train"]["epochs"] = 1
    quick_raw["data"]["time_steps"] = 2
    result = run(validate(quick_raw), "test.yaml", progress=False)
    loaded = snnlab.load_run(result.run_dir, checkpoint="last")
    assert loaded.config == validate(quick_raw) and loaded.rule.objective is loaded.objective
    assert not loaded.network.training
    x = torch.stack([loaded.data.test[i][0] for i in range(len(loaded.data.test))], 1)
    y = torch.stack([loaded.data.test[i][1] for i in range(len(loaded.data.test))])
    with torch.no_grad():
        out, _ = loaded.network(x)
    predicted = out.mean(0).argmax(1)  # the quickstart's mean_membrane readout
    accuracy = (predicted == y).float().mean().item()
    assert accuracy == pytest.approx(result.metrics[-1]["test_accuracy"], abs=1e-6)
    best = snnlab.load_run(result.run_dir)
    assert all(
        torch.equal(a, b) for a, b in zip(best.network.state_dict().values(), loaded.network.state_dict().values())
    )


def test_neurons_take_a_surrogate_of_ones_own() -> None:
    """A `Surrogate` subclass under its own name, or a plain function, gives the spike its gradient."""

    class Box(Surrogate):
        name: str = "box"
        alpha: float = 1.0

        def derivative(self, u: torch.Tensor) -> torch.Tensor:
            return (u.abs() < 0.5).to(u.dtype) * 7.0

    for surrogate, expected in ((Box(), 7.0), (lambda u: torch.full_like(u, 3.0), 3.0)):
        lif = LIF(surrogate=surrogate, backend="auto")
        x = torch.full((4, 1, 1), 0.9, requires_grad=True)
        spikes, _ = lif(x)
        spikes.sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        assert lif.surrogate.derivative(torch.zeros(1)).item() == expected
    assert isinstance(LIF(surrogate=lambda u: u).surrogate, FunctionSurrogate)
    assert LIF(surrogate="atan").surrogate == ATan()  # names still work

    class FakeATan(Box):
        name: str = "atan"

    with pytest.raises(ValidationError, match="registered surrogate"):
        LIF(surrogate=FakeATan())


def test_membranes_are_recorded_per_block_as_the_network_runs() -> None:
    torch.manual_seed(0)
    net = Network([Block(Linear(6, 5), neuron=LIF()), Block(Linear(5, 3), neuron=LI())])
    x = torch.rand(7, 2, 6)
    recording = snnlab.record(net, x)
    assert [tuple(v.shape) for v in recording.fields] == [(7, 2, 5), (7, 2, 3)]
    out, _ = net(x)
    assert torch.allclose(recording.output, out)
    assert torch.allclose(recording.fields[1], out)  # an LI's output is its membrane
    trace = net.trace(x)
    spikes = trace.blocks[0].spikes
    assert torch.equal(spikes, (recording.fields[0] + spikes * 1.0 > 1.0).float())  # soft reset: v = h - s


def test_stateful_layers_compose_in_sequence() -> None:
    """`nn.Sequential` cannot chain a layer returning (out, state): `Sequential` carries states, `OutputOnly`
    drops them per call; both give what the network gives."""
    torch.manual_seed(0)
    l1, l2 = Linear(6, 5), Linear(5, 3)
    net = Network([Block(l1, neuron=LIF()), Block(l2, neuron=LIF())])
    x = torch.rand(9, 2, 6)
    expected, _ = net(x)
    seq = Sequential(l1, LIF(), l2, LIF())
    out, states = seq(x)
    assert torch.equal(out, expected)
    assert torch.equal(nn.Sequential(l1, OutputOnly(LIF()), l2, OutputOnly(LIF()))(x), expected)
    first, states = seq(x[:4])
    steps = []
    for x_t in x[4:]:
        y_t, states = seq.step(x_t, states)
        steps.append(y_t)
    assert torch.equal(torch.cat([first, torch.stack(steps)]), expected)  # the state carries across calls


def test_import_snnlab_stays_light() -> None:
    """The entry points load on first use: `import snnlab` alone imports no torch."""
    code = "import sys, snnlab; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
