"""The training checkpoint: everything needed to continue a run exactly where it stopped.

One file, ``checkpoint.pt``, written atomically (temporary file, fsync, rename), holding:
the network's tensors; the rule's own state (its ``state_dict``: buffers such as traces or
adaptive thresholds, which is how every rule declares what must survive a restart); every
optimizer and schedule the rule names in ``rule.optimizers`` / ``rule.schedulers``; every
generator's state on every process; and ``Progress`` (epoch, batch within it, metrics so
far).

Layout: the ``torch.save`` archive of that state, then a 52-byte trailer: ``MAGIC`` (16 bytes),
the format (uint32, little-endian) and the SHA-256 of the archive, magic and format. ``load``
checks the trailer and the digest before anything is unpickled, so a truncated file or one
flipped bit is refused instead of resuming to other numbers; then it reads the archive with
``torch.load(weights_only=True)`` (tensors and plain values only, never arbitrary Python
objects) and checks its structure. Plain ``torch.load(weights_only=True)`` still reads the file
(it ignores the trailer), without those checks.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_type_hints

import torch
from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from torch import Tensor, nn
from typing_extensions import TypedDict

from .errors import SnnlabError
from .rules import Rule
from .storage import check_tensors, read_bytes, write_bytes

FORMAT = 3
"""Of the file (in its trailer) and of the state (its ``format`` key); 2 was a bare ``torch.save`` archive."""
MAGIC = b"\x89snnlab-ckpt\r\n\x1a\n"
TRAILER_SIZE = len(MAGIC) + 4 + 32


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


_STRICT = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)


@with_config(_STRICT)
class _NumpyState(TypedDict):
    name: str
    keys: Tensor
    pos: int
    has_gauss: int
    gauss: float


_Progress = with_config(_STRICT)(TypedDict("_Progress", get_type_hints(Progress)))  # type: ignore[operator]


@with_config(_STRICT)
class _RngState(TypedDict):
    python: tuple[int, tuple[int, ...], float | None]
    numpy: _NumpyState
    torch: Tensor
    cuda: list[Tensor]


@with_config(_STRICT)
class _State(TypedDict):
    format: Literal[3]  # FORMAT
    config: dict[str, Any]
    network: dict[str, Tensor]
    rule: dict[str, Tensor]
    optimizers: dict[str, dict[str, Any]]
    schedulers: dict[str, dict[str, Any]]
    rng: list[_RngState]
    progress: _Progress


_STATE = TypeAdapter(_State)
"""What ``capture`` returns, as ``load`` checks it: every key, and the type of each value."""


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


def pack(payload: bytes, format: int = FORMAT) -> bytes:
    """``payload`` followed by the trailer that ``load`` checks."""
    tail = MAGIC + format.to_bytes(4, "little")
    return payload + tail + hashlib.sha256(payload + tail).digest()


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` so that a crash at any instant leaves the previous checkpoint whole. It is serialised in
    memory first, so a full disk is reported as such (not as a torch archive error)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, pack(buffer.getvalue()))


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint after checking its digest, refusing anything but tensors and plain values, and anything
    not shaped like ``capture``'s result."""
    data = read_bytes(path, "checkpoint")
    damaged = f"{path}: not a readable checkpoint, truncated or corrupt"
    if len(data) < TRAILER_SIZE or data[-TRAILER_SIZE:][: len(MAGIC)] != MAGIC:
        raise SnnlabError(
            f"{damaged}: it does not end with snnlab's checkpoint trailer (cut short, not a snnlab checkpoint, "
            f"or written by snnlab before format {FORMAT})"
        )
    payload, tail, digest = data[:-TRAILER_SIZE], data[-TRAILER_SIZE:-32], data[-32:]
    if hashlib.sha256(payload + tail).digest() != digest:
        raise SnnlabError(f"{damaged}: its contents do not match the SHA-256 digest it was written with")
    found = int.from_bytes(tail[len(MAGIC) :], "little")
    if found != FORMAT:
        raise SnnlabError(f"{path}: a checkpoint of format {found}; this snnlab reads format {FORMAT}")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise SnnlabError(
            f"{path}: refused: the file holds Python objects other than tensors and plain values, which "
            f"snnlab never writes and will not execute ({str(exc).splitlines()[0]})"
        ) from None
    except Exception as exc:  # the digest matched, so the archive was written this way: say what torch says
        raise SnnlabError(f"{path}: not a readable checkpoint: torch cannot read its archive ({exc})") from None
    try:
        return _STATE.validate_python(state)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise SnnlabError(
            f"{path}: not a snnlab checkpoint of format {FORMAT}: {where}: {error['msg']} "
            f"({len(exc.errors())} problem(s) in all)"
        ) from None


def restore(state: Mapping[str, Any], path: Path, network: nn.Module, rule: Rule) -> Progress:
    """Put the checkpoint's tensors into ``network`` and ``rule`` (and its optimizers and schedules)."""
    for name, target, found in (("network", network, state["network"]), ("rule", rule, state["rule"])):
        check_tensors(found, target.state_dict(), f"{path} ({name})")
        target.load_state_dict(found)
    for kind, owners in (("optimizers", rule.optimizers), ("schedulers", rule.schedulers)):
        if set(state[kind]) != set(owners):
            raise SnnlabError(f"{path}: holds {kind} {sorted(state[kind])} but the rule has {sorted(owners)}")
        for name, owner in owners.items():
            try:
                owner.load_state_dict(state[kind][name])
            except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
                raise SnnlabError(f"{path}: the state of {kind[:-1]} {name!r} does not fit it ({exc})") from None
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
