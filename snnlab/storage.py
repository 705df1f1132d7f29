"""Writing run files so that a crash at any instant leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .errors import SnnlabError


def atomic_write(path: Path, write: Callable[[Path], None], sync: bool = True) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    The temporary name is per process, so concurrent writers (DataLoader workers) never share one.
    ``sync=False`` skips the flushes: the rename is still atomic, only durability across a power cut is
    given up, which suits caches that are rebuilt when an entry is unreadable.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        if sync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write (disk full) as RuntimeError
        kept = "the previous version is intact" if path.exists() else "nothing was written"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise SnnlabError(f"{path}: could not be written ({reason}); {kept}") from None
    finally:
        tmp.unlink(missing_ok=True)
    if not sync:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_weights(path: Path, modules: Mapping[str, nn.Module], metadata: dict[str, str] | None = None) -> None:
    """The tensors (parameters and buffers) of each module as safetensors named ``<prefix>.<tensor>``, written
    atomically: ``{"network": net, "rule": rule}`` gives ``network.blocks.0...`` and ``rule.objective...``."""
    tensors = {
        f"{prefix}.{k}": v.detach().contiguous().cpu()
        for prefix, m in modules.items()
        for k, v in m.state_dict().items()
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def check_tensors(found: Mapping[str, Tensor], expected: Mapping[str, Tensor], where: str) -> None:
    """Raise naming the first tensor that is missing, extra or of another shape in ``found``."""
    for name, value in expected.items():
        if name not in found:
            raise SnnlabError(f"{where}: checkpoint has no tensor {name!r} that the network needs")
        if found[name].shape != value.shape:
            raise SnnlabError(
                f"{where}: tensor {name!r} has shape {list(found[name].shape)} in the checkpoint "
                f"but {list(value.shape)} in the network"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise SnnlabError(f"{where}: checkpoint has tensor {extra[0]!r} that the network does not")


def load_weights(path: Path, modules: Mapping[str, nn.Module]) -> None:
    """Load safetensors written by ``save_weights`` into the same modules, naming the first tensor that is
    missing, extra or of another shape."""
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise SnnlabError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise SnnlabError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    expected = {f"{prefix}.{k}": v for prefix, m in modules.items() for k, v in m.state_dict().items()}
    check_tensors(tensors, expected, str(path))
    with torch.no_grad():
        for prefix, module in modules.items():
            module.load_state_dict({k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{prefix}.")})
