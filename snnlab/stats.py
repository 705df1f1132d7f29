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

    It finds the neurons by the contract (every module of the network with a ``spiking`` flag and a ``step``,
    wherever it sits: in a block, a residual block, a composite layer) and counts their outputs whether they
    run a sequence (``forward``) or one step at a time (``step``: recurrent blocks, rules that step by hand);
    synapses are the modules that can count ``synaptic_ops``. Figures are summed per top-level block.
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
        self._patched: list[Any] = []
        self._in_forward: set[int] = set()
        self._steps: dict[int, list[Tensor]] = {}

    def _parts(self) -> list[tuple[Any, BlockActivity]]:
        parts = []
        for name, module in self.network.named_modules():
            head = name.split(".")
            if len(head) > 2 and head[0] == "blocks":
                parts.append((module, self.blocks[int(head[1])]))
        return parts

    def __enter__(self) -> ActivityMonitor:
        for module, activity in self._parts():
            if isinstance(getattr(module, "spiking", None), bool) and callable(getattr(module, "step", None)):
                activity.spiking = activity.spiking or module.spiking
                self._handles.append(module.register_forward_pre_hook(self._entered))
                self._handles.append(module.register_forward_hook(self._neuron_hook(activity)))
                self._patch_step(module, activity)
            if callable(getattr(module, "synaptic_ops", None)):
                activity.has_synapse = True
                self._handles.append(module.register_forward_hook(self._synapse_hook(activity)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        for module in self._patched:
            del module.step  # the class's step again
        self._handles.clear()
        self._patched.clear()
        for key, steps in self._steps.items():
            self.blocks[key].records.append(torch.stack(steps))
        self._steps.clear()

    def _entered(self, module: Any, inputs: Any) -> None:
        self._in_forward.add(id(module))

    def _record(self, activity: BlockActivity, out: Tensor, per_step: bool) -> None:
        activity.neurons = out[0].numel() if per_step else out[0, 0].numel()
        activity.spikes += float(out.sum())
        activity.neuron_steps += out.numel()
        if self.keep and per_step:
            self._steps.setdefault(activity.index, []).append(out.cpu())
        elif self.keep:
            activity.records.append(out.cpu())

    def _neuron_hook(self, activity: BlockActivity) -> Any:
        def hook(module: Any, inputs: Any, output: tuple[Tensor, Any]) -> None:
            self._in_forward.discard(id(module))
            self._record(activity, output[0].detach(), per_step=False)

        return hook

    def _patch_step(self, module: Any, activity: BlockActivity) -> None:
        step = module.step

        def counted(x_t: Tensor, state: Any) -> Any:
            out, state = step(x_t, state)
            if id(module) not in self._in_forward:  # a forward that loops step is counted once, by its hook
                self._record(activity, out.detach(), per_step=True)
            return out, state

        module.step = counted
        self._patched.append(module)

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
