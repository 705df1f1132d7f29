"""Figures of a run: training curves, and a spike raster and membrane traces for one test sample.

Each PNG is written through ``storage.atomic_write``, so a kill leaves the previous figure or none, never a
0-byte one, and a full or read-only disk is reported as a ``SnnlabError`` naming the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from .monitor import record  # noqa: E402
from .network import Network  # noqa: E402
from .stats import ActivityMonitor  # noqa: E402
from .storage import atomic_write  # noqa: E402


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, metric: str) -> None:
    """Training loss, and ``metric`` on the training and test data, per epoch."""
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["loss"] for r in rows], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss")
    for split in ("train", "test"):
        if f"{split}_{metric}" in rows[0]:
            ax_acc.plot(epochs, [r[f"{split}_{metric}"] for r in rows], marker="o", label=split)
    ax_acc.set(xlabel="epoch", ylabel=metric, title=metric.replace("_", " ").capitalize())
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically, then release it (also when the write fails)."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)


RASTER_NEURONS = 200
"""The most neurons a raster shows per block: a larger block (a convolution's channels times pixels) is shown as a
random subset of this many, drawn with a fixed seed, so that the spikes stay readable rather than a solid bar."""


def raster_neurons(count: int, limit: int = RASTER_NEURONS, seed: int = 0) -> Tensor:
    """The neurons (sorted indices) a raster of a block of ``count`` neurons shows: all, or ``limit`` of them drawn
    at random with ``seed`` (the same ones in every plot of the run).

    Example::

        >>> raster_neurons(5).tolist()
        [0, 1, 2, 3, 4]
        >>> len(raster_neurons(10_000))
        200
    """
    if count <= limit:
        return torch.arange(count)
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def membrane_lines(
    v: Tensor, output: bool, label: int | None, predicted: int | None, neurons: int
) -> list[tuple[int, str]]:
    """(neuron, legend) of the membrane traces to draw from ``v [T, N]``: for the output block the true class
    (``label``) and the predicted one, else the ``neurons`` with the largest |v|.

    Example::

        >>> import torch
        >>> membrane_lines(torch.zeros(4, 10), output=True, label=3, predicted=7, neurons=6)
        [(3, 'class 3 (true)'), (7, 'class 7 (predicted)')]
    """
    if output and (label is not None or predicted is not None):
        if label is not None and label == predicted:
            return [(label, f"class {label} (true, predicted)")]
        lines = [] if label is None else [(label, f"class {label} (true)")]
        return lines + ([] if predicted is None else [(predicted, f"class {predicted} (predicted)")])
    picks = v.abs().amax(0).argsort(descending=True)[:neurons]
    return [(k, f"neuron {k}") for k in picks.tolist()]


@torch.no_grad()
def plot_activity(
    network: Network,
    x_seq: Tensor,
    raster_path: Path,
    membrane_path: Path,
    neurons: int = 6,
    label: int | None = None,
) -> None:
    """Raster of every spiking block and membrane traces, for one sample ``x_seq [T, 1, ...]``.

    A block of more than ``RASTER_NEURONS`` neurons is shown by a fixed random subset of them. The membranes are,
    for the output block, those of the true class (``label``, when given) and of the predicted class (the largest
    output summed over time: the ``spike_count`` and ``mean_membrane`` readouts' choice); for the first block, the
    ``neurons`` with the largest |v|.
    """
    network.eval()
    with ActivityMonitor(network, keep=True) as monitor:
        network(x_seq)
    spiking = [a for a in monitor.blocks if a.spiking and a.records]
    if spiking:
        fig, axes = plt.subplots(len(spiking), 1, figsize=(8, 2.2 * len(spiking)), squeeze=False)
        for ax, activity in zip(axes[:, 0], spiking):
            s = activity.records[0][:, 0].flatten(1).cpu()  # [T, N]
            shown = raster_neurons(s.shape[1])
            t, n = torch.nonzero(s[:, shown], as_tuple=True)
            few = len(shown) <= 50
            ax.scatter(t.numpy(), n.numpy(), s=6 if few else 2, marker="|", linewidths=1 if few else 0.5, color="black")
            what = "neuron" if len(shown) == s.shape[1] else f"{len(shown)} of {s.shape[1]}\nneurons (random)"
            ax.set(
                ylabel=f"block {activity.index}\n{what}", xlim=(-0.5, s.shape[0] - 0.5), ylim=(-0.5, len(shown) - 0.5)
            )
        axes[-1, 0].set_xlabel("time step")
        fig.suptitle("Spike raster, one test sample")
        fig.tight_layout()
        save_figure(fig, raster_path)

    recording = record(network, x_seq)
    traces = {i: v[:, 0].flatten(1).cpu() for i, v in enumerate(recording.fields) if v is not None}
    if not traces:
        return
    predicted = int(recording.output[:, 0].flatten(1).sum(0).argmax())
    last = len(recording.fields) - 1
    shown_blocks = sorted(traces)[:1] + sorted(traces)[-1:] if len(traces) > 1 else sorted(traces)
    fig, axes = plt.subplots(len(shown_blocks), 1, figsize=(8, 2.6 * len(shown_blocks)), squeeze=False)
    for ax, i in zip(axes[:, 0], shown_blocks):
        v = traces[i]  # [T, N]
        for k, legend in membrane_lines(v, i == last, label, predicted, neurons):
            ax.plot(range(len(v)), v[:, k].numpy(), marker=".", label=legend)
        neuron = getattr(network.blocks[i], "neuron", None)
        threshold = getattr(neuron, "threshold", None)
        if threshold is not None and neuron.spiking and torch.as_tensor(threshold).numel() == 1:
            ax.axhline(float(threshold), color="gray", linestyle="--", linewidth=1, label="threshold")
        ax.set(ylabel=f"block {i}{' (output)' if i == last else ''}\nmembrane v")
        ax.legend(fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle("Membrane after reset, one test sample")
    fig.tight_layout()
    save_figure(fig, membrane_path)
