"""Extensions that live outside the package: modules that register neurons, synapses, rules or objectives.

A plugin is an importable module whose import registers its entries (``NEURONS.register(...)``). snnlab imports
the modules named in the environment variable ``SNNLAB_PLUGINS`` (comma-separated) and those published under
the entry-point group ``snnlab.plugins``, before it reads any experiment; the variable reaches every process
that ``--nproc`` starts, so a plugin works the same under torchrun.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from .errors import SnnlabError

ENV = "SNNLAB_PLUGINS"
_loaded: set[str] = set()


def load_plugins() -> None:
    """Import every plugin module not imported yet; a module that cannot be imported is an error naming it."""
    names = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    names += [ep.value for ep in entry_points(group="snnlab.plugins")]
    for name in names:
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise SnnlabError(
                f"plugin {name!r} (from {ENV} or the snnlab.plugins entry points) cannot be imported: {exc}"
            ) from None
        _loaded.add(name)
