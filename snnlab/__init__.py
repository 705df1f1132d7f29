"""snnlab: spiking neural networks with interchangeable neuron models, learning rules and backends.

Networks are time-major (``[T, B, ...]``); every neuron has a pure ``step`` and a
sequence ``forward``; experiments are YAML files run by ``snnlab run``.

The Python entry points are imported on first use (``import snnlab`` itself loads no torch):

Example::

    >>> import torch
    >>> import snnlab
    >>> from snnlab.neurons import LIF
    >>> net = snnlab.Sequential(torch.nn.Linear(64, 10), LIF())
    >>> x = snnlab.time_major(torch.rand(32, 8, 64))              # a loader's [B, T, ...] to [T, B, ...]
    >>> [v.shape for v in snnlab.membranes(net, x) if v is not None]
    [torch.Size([8, 32, 10])]
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_run": "api",
    "LoadedRun": "api",
    "time_major": "api",
    "time_major_batches": "api",
    "record": "monitor",
    "membranes": "monitor",
    "Recording": "monitor",
    "Sequential": "network",
    "OutputOnly": "network",
    "Network": "network",
    "Block": "network",
    "Surrogate": "surrogates",
    "FunctionSurrogate": "surrogates",
}
_SUBMODULES = ("datasets", "neurons", "surrogates", "synapses", "network", "monitor", "api")

__all__ = ["__version__", *_EXPORTS, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
