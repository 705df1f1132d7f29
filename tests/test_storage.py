"""Run files: written atomically, checkpoints loaded strictly with clear errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from snnlab.errors import SnnlabError
from snnlab.storage import atomic_write, load_weights, save_weights, write_text


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    """A crash while writing leaves the previous content and no temporary file behind."""
    target = tmp_path / "summary.json"
    write_text(target, "old")

    def crash(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(
        SnnlabError,
        match=r"summary.json: could not be written \(No space left on device\); the previous version is intact",
    ):
        atomic_write(target, crash)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_weights_round_trip(tmp_path: Path) -> None:
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    save_weights(tmp_path / "w.safetensors", {"network": a}, {"epoch": "3"})
    load_weights(tmp_path / "w.safetensors", {"network": b})
    torch.testing.assert_close(a.weight, b.weight)


def test_shape_mismatch_names_tensor_and_shapes(tmp_path: Path) -> None:
    save_weights(tmp_path / "w.safetensors", {"network": nn.Linear(3, 2)})
    with pytest.raises(SnnlabError, match=r"'network.weight' has shape \[2, 3\] in the checkpoint but \[4, 3\]"):
        load_weights(tmp_path / "w.safetensors", {"network": nn.Linear(3, 4)})


def test_corrupt_checkpoint_names_file(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(SnnlabError, match="not a readable safetensors checkpoint"):
        load_weights(path, {"network": nn.Linear(3, 2)})
