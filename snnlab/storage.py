"""Writing run files so that a crash at any instant leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save
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
    except (OSError, RuntimeError) as exc:  # h5py (the frame cache) reports some failed writes as RuntimeError
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


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically: content serialised in memory first, so the only write that can fail is this one,
    and it fails as a plain ``OSError`` (a full disk reads "No space left on device")."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_bytes(path: Path, what: str) -> bytes:
    """The whole file, or an error naming it when it is missing, a folder, unreadable or empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SnnlabError(f"{path}: no {what} here") from None
    except IsADirectoryError:
        raise SnnlabError(f"{path}: is a folder, not a {what} file") from None
    except OSError as exc:
        raise SnnlabError(f"{path}: the {what} cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise SnnlabError(f"{path}: not a readable {what}: the file is empty (0 bytes)")
    return data


DIGEST_KEY = "snnlab.sha256"
"""The safetensors metadata key holding ``weights_digest`` of the file's tensors and other metadata."""


def weights_digest(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> str:
    """SHA-256 (hex) of the tensors (name, dtype, shape and bytes, by name) and the metadata (by key), so that any
    change to what ``load_weights`` returns, or to the epoch and metrics recorded with it, changes the digest."""
    h = hashlib.sha256()
    for key in sorted(metadata):
        h.update(json.dumps(["metadata", key, metadata[key]]).encode() + b"\n")
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(json.dumps(["tensor", name, str(t.dtype), list(t.shape)]).encode() + b"\n")
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_weights(path: Path, modules: Mapping[str, nn.Module], metadata: dict[str, str] | None = None) -> None:
    """The tensors (parameters and buffers) of each module as safetensors named ``<prefix>.<tensor>``, written
    atomically: ``{"network": net, "rule": rule}`` gives ``network.blocks.0...`` and ``rule.objective...``.

    The metadata gains ``snnlab.sha256``, the ``weights_digest`` that ``load_weights`` checks."""
    tensors = {
        f"{prefix}.{k}": v.detach().contiguous().cpu()
        for prefix, m in modules.items()
        for k, v in m.state_dict().items()
    }
    described = {k: v for k, v in (metadata or {}).items() if k != DIGEST_KEY}
    write_bytes(path, save(tensors, metadata={**described, DIGEST_KEY: weights_digest(tensors, described)}))


def check_tensors(found: Mapping[str, Tensor], expected: Mapping[str, Tensor], where: str) -> None:
    """Raise naming the first tensor that is missing, extra, or of another shape or dtype in ``found``."""
    for name, value in expected.items():
        if name not in found:
            raise SnnlabError(f"{where}: checkpoint has no tensor {name!r} that the network needs")
        if found[name].shape != value.shape:
            raise SnnlabError(
                f"{where}: tensor {name!r} has shape {list(found[name].shape)} in the checkpoint "
                f"but {list(value.shape)} in the network"
            )
        if found[name].dtype != value.dtype:
            raise SnnlabError(
                f"{where}: tensor {name!r} has dtype {found[name].dtype} in the checkpoint but {value.dtype} in the network"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise SnnlabError(f"{where}: checkpoint has tensor {extra[0]!r} that the network does not")


def read_weights(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file, after checking them against its ``snnlab.sha256`` digest.

    A file without the digest (written by snnlab before digests, or whose header is damaged) is refused, as are
    one whose digest does not match and one safetensors cannot parse: an error naming the file."""
    data = read_bytes(path, "safetensors checkpoint")
    try:
        tensors = load(data)
        header_size = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_size]).get("__metadata__") or {}
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise SnnlabError(f"{path}: not a readable safetensors checkpoint, truncated or corrupt ({exc})") from None
    described = {k: v for k, v in metadata.items() if k != DIGEST_KEY}
    if DIGEST_KEY not in metadata:
        raise SnnlabError(
            f"{path}: not a readable safetensors checkpoint: it has no {DIGEST_KEY} digest to check its tensors "
            f"against (written by snnlab before digests, or its header is damaged)"
        )
    if metadata[DIGEST_KEY] != weights_digest(tensors, described):
        raise SnnlabError(
            f"{path}: not a readable safetensors checkpoint, corrupt: its tensors or metadata do not match the "
            f"{DIGEST_KEY} digest it was written with"
        )
    return tensors


def load_weights(path: Path, modules: Mapping[str, nn.Module]) -> None:
    """Load safetensors written by ``save_weights`` into the same modules, after its digest is checked, naming
    the first tensor that is missing, extra or of another shape or dtype."""
    tensors = read_weights(path)
    expected = {f"{prefix}.{k}": v for prefix, m in modules.items() for k, v in m.state_dict().items()}
    check_tensors(tensors, expected, str(path))
    with torch.no_grad():
        for prefix, module in modules.items():
            module.load_state_dict({k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{prefix}.")})
