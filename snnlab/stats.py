"""Activity statistics: firing rates and synaptic operations per block, gathered by forward hooks.

The hooks are added only while an ``ActivityMonitor`` is active (evaluation,
plots), so training pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .network import Network


@dataclass
class BlockActivity:
    """What one block did, summed over the samples seen."""

    index: int
    neurons: int = 0
    spiking: bool = False
    spikes: float = 0.0
    neuron_steps: float = 0.0
    synaptic_ops: float = 0.0
    binary_input: bool = True
    has_synapse: bool = False
    records: list[Tensor] = field(default_factory=list)

    @property
    def firing_rate(self) -> float | None:
        """Spikes per neuron per time step, or None for a non-spiking block."""
        return self.spikes / self.neuron_steps if self.spiking and self.neuron_steps else None


class ActivityMonitor:
    """Context manager that counts each block's spikes and the synaptic operations its input triggers.

    With ``keep=True`` the neuron outputs are also kept (for rasters of one sample).
    Synaptic operations of a block whose input is not binary are multiply-accumulates
    (the first layer under direct encoding), and are reported apart from spike-driven accumulates.
    """

    def __init__(self, network: Network, keep: bool = False) -> None:
        self.network = network
        self.keep = keep
        self.samples = 0
        self.blocks = [BlockActivity(i) for i in range(len(network.blocks))]
        self._handles: list[Any] = []

    def __enter__(self) -> ActivityMonitor:
        for block, activity in zip(self.network.blocks, self.blocks):
            if block.neuron is not None:
                activity.spiking = block.neuron.spiking
                self._handles.append(block.neuron.register_forward_hook(self._neuron_hook(activity)))
            if hasattr(block.synapse, "synaptic_ops"):
                activity.has_synapse = True
                self._handles.append(block.synapse.register_forward_hook(self._synapse_hook(activity)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _neuron_hook(self, activity: BlockActivity) -> Any:
        def hook(module: Any, inputs: Any, output: tuple[Tensor, Any]) -> None:
            out = output[0].detach()  # [T, B, ...]
            activity.neurons = out[0, 0].numel()
            activity.spikes += float(out.sum())
            activity.neuron_steps += out.numel()
            if self.keep:
                activity.records.append(out.cpu())

        return hook

    def _synapse_hook(self, activity: BlockActivity) -> Any:
        def hook(module: Any, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x = inputs[0].detach()
            activity.synaptic_ops += float(module.synaptic_ops(x))
            if activity.binary_input:
                activity.binary_input = bool(((x == 0) | (x == 1)).all())

        return hook

    def count(self, batch_size: int) -> None:
        """Tell the monitor how many samples the last forward pass held."""
        self.samples += batch_size

    def combine(self, sum_across: Callable[[list[float]], list[float]]) -> None:
        """Replace this process's counts by the sums over all processes (``sum_across`` does the reduction)."""
        counts = [float(self.samples)]
        for a in self.blocks:
            counts += [a.spikes, a.neuron_steps, a.synaptic_ops, float(not a.binary_input)]
        totals = sum_across(counts)
        self.samples = int(totals[0])
        for i, a in enumerate(self.blocks):
            a.spikes, a.neuron_steps, a.synaptic_ops, analog = totals[1 + 4 * i : 5 + 4 * i]
            a.binary_input = analog == 0

    def summary(self) -> dict[str, Any]:
        """Per-block and total figures, per sample."""
        n = max(self.samples, 1)
        blocks = []
        for a in self.blocks:
            entry: dict[str, Any] = {"block": a.index}
            if a.neurons:
                entry["neurons"] = a.neurons
                entry["firing_rate"] = a.firing_rate
            if a.has_synapse:
                entry["input"] = "spikes" if a.binary_input else "analog"
                entry["synaptic_ops_per_sample"] = a.synaptic_ops / n
            blocks.append(entry)
        spiking = [a for a in self.blocks if a.spiking and a.neuron_steps]
        spikes = sum(a.spikes for a in spiking)
        steps = sum(a.neuron_steps for a in spiking)
        return {
            "firing_rate": spikes / steps if steps else None,
            "synops_per_sample": sum(a.synaptic_ops for a in self.blocks if a.has_synapse and a.binary_input) / n,
            "macs_per_sample": sum(a.synaptic_ops for a in self.blocks if a.has_synapse and not a.binary_input) / n,
            "blocks": blocks,
        }


def parameter_count(module: torch.nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
