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

from .network import Network  # noqa: E402
from .stateful import find_field  # noqa: E402
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


@torch.no_grad()
def plot_activity(network: Network, x_seq: Tensor, raster_path: Path, membrane_path: Path, neurons: int = 6) -> None:
    """Raster of every spiking block and membrane traces of a few neurons, for one sample ``x_seq [T, 1, ...]``."""
    network.eval()
    with ActivityMonitor(network, keep=True) as monitor:
        network(x_seq)
    spiking = [a for a in monitor.blocks if a.spiking and a.records]
    if spiking:
        fig, axes = plt.subplots(len(spiking), 1, figsize=(8, 2.2 * len(spiking)), squeeze=False)
        for ax, activity in zip(axes[:, 0], spiking):
            s = activity.records[0][:, 0].flatten(1)  # [T, N]
            t, n = torch.nonzero(s, as_tuple=True)
            ax.scatter(t.numpy(), n.numpy(), s=4, marker="|", color="black")
            ax.set(
                ylabel=f"block {activity.index}\nneuron", xlim=(-0.5, s.shape[0] - 0.5), ylim=(-0.5, s.shape[1] - 0.5)
            )
        axes[-1, 0].set_xlabel("time step")
        fig.suptitle("Spike raster, one test sample")
        fig.tight_layout()
        save_figure(fig, raster_path)

    traces: dict[int, list[Tensor]] = {}
    states = None
    for x_t in x_seq:
        _, states = network.step(x_t, states)
        for i, state in enumerate(states):
            v = find_field(state, "v")
            if v is not None:
                traces.setdefault(i, []).append(v[0].flatten().cpu())
    if not traces:
        return
    shown = sorted(traces)[:1] + sorted(traces)[-1:] if len(traces) > 1 else sorted(traces)
    fig, axes = plt.subplots(len(shown), 1, figsize=(8, 2.6 * len(shown)), squeeze=False)
    for ax, i in zip(axes[:, 0], shown):
        v = torch.stack(traces[i])  # [T, N]
        picks = v.abs().amax(0).argsort(descending=True)[:neurons]
        for k in picks.tolist():
            ax.plot(range(len(v)), v[:, k].numpy(), marker=".", label=f"neuron {k}")
        neuron = getattr(network.blocks[i], "neuron", None)
        threshold = getattr(neuron, "threshold", None)
        if threshold is not None and neuron.spiking and torch.as_tensor(threshold).numel() == 1:
            ax.axhline(float(threshold), color="gray", linestyle="--", linewidth=1, label="threshold")
        ax.set(ylabel=f"block {i}\nmembrane v")
        ax.legend(fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle("Membrane after reset, one test sample")
    fig.tight_layout()
    save_figure(fig, membrane_path)
