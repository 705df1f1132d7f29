"""Entry points for using snnlab from Python: the bridge from batch-major loaders to time-major networks, and
loading a finished run in one call.

Datasets serve samples ``[T, ...]``, so a ``DataLoader`` yields batches ``[B, T, ...]``; networks are time-major
(``[T, B, ...]``). ``time_major`` turns a batch around; ``time_major_batches`` does it for a whole loader.

Example::

    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> import snnlab
    >>> splits = snnlab.datasets.digits(time_steps=4)
    >>> x, y = next(snnlab.time_major_batches(DataLoader(splits.test, batch_size=16)))
    >>> x.shape, y.shape
    (torch.Size([4, 16, 64]), torch.Size([16]))
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from torch import Tensor

from .config import ExperimentConfig
from .datasets import DatasetSplits
from .network import Network
from .objectives import Objective
from .rules import Rule


def time_major(x: Tensor) -> Tensor:
    """A batch ``[B, T, ...]`` as a sequence ``[T, B, ...]`` (a view: no copy), and back again.

    Example::

        >>> import torch
        >>> time_major(torch.zeros(32, 8, 64)).shape
        torch.Size([8, 32, 64])
    """
    return x.transpose(0, 1)


def time_major_batches(loader: Iterable[tuple[Tensor, Any]]) -> Iterator[tuple[Tensor, Any]]:
    """The ``(x, y)`` batches of ``loader`` with ``x`` made time-major (``[B, T, ...]`` to ``[T, B, ...]``)."""
    for x, y in loader:
        yield time_major(x), y


class LoadedRun(NamedTuple):
    """A finished run rebuilt from its folder: what ``load_run`` returns."""

    network: Network
    rule: Rule
    """The rule with its saved state (its learnable parts, e.g. a readout's); ``rule.objective`` scores outputs."""
    objective: Objective
    config: ExperimentConfig
    data: DatasetSplits


def load_run(run_dir: str | Path, checkpoint: Literal["best", "last"] = "best") -> LoadedRun:
    """Rebuild a run's network, rule and objective from its ``config.yaml`` and load ``best.safetensors`` or
    ``last.safetensors`` into them (as ``snnlab eval`` does); the network is left on the CPU in eval mode.

    Args:
        run_dir: a run folder written by ``snnlab run``.
        checkpoint: ``best`` (the selected epoch) or ``last`` (the final one).

    Example::

        >>> run = snnlab.load_run("runs/quickstart-2026-01-01_12-00-00")          # doctest: +SKIP
        >>> x, y = run.data.test[0]                                               # doctest: +SKIP
        >>> out, _ = run.network(x.unsqueeze(1))  # [T, 1, classes]               # doctest: +SKIP
    """
    from .config import read_yaml, validate
    from .errors import ConfigError
    from .run_folder import CONFIG, RunFolder
    from .runner import build_experiment, build_rule
    from .storage import load_weights

    if checkpoint not in ("best", "last"):
        raise ConfigError([("checkpoint", f"must be 'best' or 'last', got {checkpoint!r}")])
    folder = RunFolder.existing(Path(run_dir)).path
    config_file = folder / CONFIG
    config = validate(read_yaml(config_file), str(config_file))
    splits, network, objective, _ = build_experiment(config)
    rule = build_rule(config, network, objective)
    load_weights(folder / f"{checkpoint}.safetensors", {"network": network, "rule": rule})
    network.eval()
    return LoadedRun(network, rule, objective, config, splits)
