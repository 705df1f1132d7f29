"""snnlab: spiking neural networks with interchangeable neuron models, learning rules and backends.

Networks are time-major (``[T, B, ...]``); every neuron has a pure ``step`` and a
sequence ``forward``; experiments are YAML files run by ``snnlab run``.
"""

__version__ = "0.1.0"
