"""Export to and import from NIR, the Neuromorphic Intermediate Representation that Lava (Loihi 2), SynSense's
Speck and Xylo, SpiNNaker2, BrainScaleS-2, snnTorch, SpikingJelly, Norse, Sinabs and Rockpool read.

``to_nir(network, input_shape, dt)`` gives the ``nir.NIRGraph``, ``from_nir(graph or file)`` a network that
computes it, and ``snnlab.export.run`` does both for run folders (``snnlab export``, ``snnlab import``). Each
layer's mapping lives in the layer's own file (``snnlab.export.registry``); ``graph`` chains them.

Example::

    >>> import torch
    >>> from snnlab.export import from_nir, to_nir
    >>> from snnlab.network import Block, Network
    >>> from snnlab.neurons import LIF
    >>> from snnlab.synapses import Linear
    >>> net = Network([Block(Linear(4, 3), neuron=LIF(tau=5.0, reset="hard"))])
    >>> graph = to_nir(net, (4,), dt=1e-3)             # tau = 5 ms for 1 ms steps, in the graph's metadata
    >>> back = from_nir(graph)
    >>> x = torch.rand(10, 2, 4) * 2
    >>> bool((back.network(x)[0] == net(x)[0]).all())
    True
"""

from .registry import NIRUnsupported

__all__ = ["DEFAULT_DT", "ImportedNetwork", "NIRUnsupported", "from_nir", "read_nir", "to_nir", "write_nir"]


def __getattr__(name: str):  # the API module imports nir, torch's builder and the schema: only when asked for
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
