"""The training checkpoint: everything needed to continue a run exactly where it stopped.

One file, ``checkpoint.pt``, written atomically (temporary file, fsync, rename), holding:
the network's tensors; the rule's own state (its ``state_dict``: buffers such as traces or
adaptive thresholds, which is how every rule declares what must survive a restart); every
optimizer and schedule the rule names in ``rule.optimizers`` / ``rule.schedulers``; every
generator's state on every process; and ``Progress`` (epoch, batch within it, metrics so
far). It is read with ``torch.load(weights_only=True)``: tensors and plain values only,
never arbitrary Python objects.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import SnnlabError
from .rules import Rule
from .storage import atomic_write, check_tensors

FORMAT = 2


@dataclass
class Progress:
    """Where training stands, besides weights, optimizer and generators."""

    epoch: int = 1
    """The epoch in progress (from 1)."""
    step: int = 0
    """Batches of that epoch already trained (by each process)."""
    sums: dict[str, float] = field(default_factory=dict)
    seen: int = 0
    """Sample-weighted sums of the rule's metrics in that epoch so far, and the samples, over all processes."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """One row of metrics per finished epoch."""
    best_value: float | None = None
    """The best value so far of the objective's ``best`` metric, and its epoch."""
    best_epoch: int = 0
    activity: dict[str, Any] = field(default_factory=dict)
    """Activity statistics of the latest evaluation, for the summary."""
    seconds: float = 0.0
    """Wall time of the run up to the checkpoint, earlier sessions included."""


def capture(
    config: dict[str, Any], network: nn.Module, rule: Rule, progress: Progress, rng: list[dict[str, Any]]
) -> dict[str, Any]:
    """The checkpoint's contents: tensors and plain values only. ``rng`` holds each process's generators, by rank."""
    return {
        "format": FORMAT,
        "config": config,
        "network": network.state_dict(),
        "rule": rule.state_dict(),
        "optimizers": {name: o.state_dict() for name, o in rule.optimizers.items()},
        "schedulers": {name: s.state_dict() for name, s in rule.schedulers.items()},
        "rng": rng,
        "progress": asdict(progress),
    }


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` so that a crash at any instant leaves the previous checkpoint whole."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint, refusing anything but tensors and plain values."""
    if not path.exists():
        raise SnnlabError(f"{path}: no checkpoint here")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise SnnlabError(
            f"{path}: refused: the file holds Python objects other than tensors and plain values, which "
            f"snnlab never writes and will not execute ({str(exc).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise SnnlabError(f"{path}: not a readable checkpoint, truncated or corrupt ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        older = f" (it has format {found}, written by an older snnlab)" if isinstance(found, int) else ""
        raise SnnlabError(f"{path}: not a snnlab checkpoint of format {FORMAT}{older}")
    return state


def restore(state: Mapping[str, Any], path: Path, network: nn.Module, rule: Rule) -> Progress:
    """Put the checkpoint's tensors into ``network`` and ``rule`` (and its optimizers and schedules)."""
    for name, target, found in (("network", network, state["network"]), ("rule", rule, state["rule"])):
        check_tensors(found, target.state_dict(), f"{path} ({name})")
        target.load_state_dict(found)
    for kind, owners in (("optimizers", rule.optimizers), ("schedulers", rule.schedulers)):
        if set(state[kind]) != set(owners):
            raise SnnlabError(f"{path}: holds {kind} {sorted(state[kind])} but the rule has {sorted(owners)}")
        for name, owner in owners.items():
            owner.load_state_dict(state[kind][name])
    return Progress(**state["progress"])


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first key path at which two nested configs differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}.{i}")
            if found is not None:
                return found
        return None
    return None if a == b else path or "(top level)"


def tensor_bytes(tensors: Mapping[str, Tensor]) -> int:
    """Bytes the tensors of a state dict take."""
    return sum(t.numel() * t.element_size() for t in tensors.values() if isinstance(t, Tensor))
