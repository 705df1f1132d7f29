"""Shared fixtures: small, fast experiment configs and a private run root per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

# Two threads, as on CI, and identical results run to run.
torch.set_num_threads(2)


@pytest.fixture
def quick_raw(tmp_path: Path) -> dict[str, Any]:
    """The quickstart as a raw mapping, shortened, writing under ``tmp_path``."""
    import yaml

    from snnlab.config import resolve_experiment

    raw = yaml.safe_load(resolve_experiment(None).read_text())
    raw["train"]["epochs"] = 2
    raw["output"] = {"root": str(tmp_path / "runs"), "plots": False}
    return raw
