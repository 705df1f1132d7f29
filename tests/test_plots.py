"""Issue 12, item 7: the membrane plot shows the output block's true and predicted classes, and a large layer's
raster is a readable sample rather than a solid bar."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from snnlab import plots
from snnlab.network import Block, Network
from snnlab.neurons import LI, LIF
from snnlab.synapses import Linear


def test_output_membranes_are_the_true_and_the_predicted_class() -> None:
    """Picking the largest |v| left both out; now they are drawn and named, and hidden blocks keep a few."""
    v = torch.zeros(5, 10)
    v[:, 0] = 9.0  # the largest |v|, neither true nor predicted
    assert plots.membrane_lines(v, True, 3, 7, 6) == [(3, "class 3 (true)"), (7, "class 7 (predicted)")]
    assert plots.membrane_lines(v, True, 4, 4, 6) == [(4, "class 4 (true, predicted)")]
    assert plots.membrane_lines(v, True, None, 7, 6) == [(7, "class 7 (predicted)")]
    hidden = plots.membrane_lines(v, False, 3, 7, 2)
    assert len(hidden) == 2 and hidden[0] == (0, "neuron 0")


def test_a_large_block_is_rastered_as_a_fixed_sample() -> None:
    assert torch.equal(plots.raster_neurons(50), torch.arange(50))
    sample = plots.raster_neurons(8 * 16 * 16)
    assert len(sample) == plots.RASTER_NEURONS and torch.equal(sample, plots.raster_neurons(8 * 16 * 16))
    assert torch.equal(sample, sample.sort().values) and len(set(sample.tolist())) == len(sample)


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    saved: dict[str, Figure] = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.__setitem__(Path(path).stem, fig))
    yield saved
    for fig in saved.values():
        plots.plt.close(fig)


def test_plot_activity_of_a_conv_network_with_its_label(figures: dict[str, Figure]) -> None:
    torch.manual_seed(0)
    conv = Block(nn.Conv2d(1, 8, 3, padding=1), neuron=LIF(threshold=0.1), post=[nn.Flatten()])
    network = Network([conv, Block(Linear(8 * 16 * 16, 10), neuron=LI())])
    x = torch.rand(6, 1, 1, 16, 16)
    out, _ = network(x)
    predicted = int(out[:, 0].sum(0).argmax())
    label = (predicted + 1) % 10
    plots.plot_activity(network, x, Path("raster.png"), Path("membrane.png"), label=label)
    (raster,) = figures["raster"].axes
    assert raster.get_ylim()[1] <= plots.RASTER_NEURONS and "200 of 2048" in raster.get_ylabel()
    assert 0 < len(raster.collections[0].get_offsets()) <= 6 * plots.RASTER_NEURONS
    hidden, output = figures["membrane"].axes
    legend = [t.get_text() for t in output.get_legend().get_texts()]
    assert legend == [f"class {label} (true)", f"class {predicted} (predicted)"]
    assert "output" in output.get_ylabel() and len(hidden.get_lines()) == 6 + 1  # six neurons and the threshold
