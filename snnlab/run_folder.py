"""The run folder: resolved config, per-epoch metrics, checkpoints, summary and plots of one run."""

from __future__ import annotations

import csv
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from .config import ExperimentConfig
from .errors import SnnlabError
from .storage import save_weights, write_json, write_text

METRIC_COLUMNS = ["epoch", "loss", "train_accuracy", "test_accuracy", "firing_rate", "seconds"]


class RunFolder:
    """One run's files. Every file is written atomically; ``metrics.csv`` is appended and synced per epoch."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, cfg: ExperimentConfig) -> RunFolder:
        """A new, empty folder: ``output.dir`` or ``<output.root>/<name>-<date-time>``; fails before training if unusable."""
        if cfg.output.dir is not None:
            path = Path(cfg.output.dir)
            if path.exists() and any(path.iterdir()):
                raise SnnlabError(f"{path}: output folder already holds files; choose another output.dir")
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = Path(cfg.output.root) / f"{cfg.name}-{stamp}"
            suffix = 1
            while path.exists():
                path = Path(cfg.output.root) / f"{cfg.name}-{stamp}-{suffix}"
                suffix += 1
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SnnlabError(f"{path}: cannot create the run folder ({exc.strerror})") from None
        if not os.access(path, os.W_OK):
            raise SnnlabError(f"{path}: the run folder is not writable")
        return cls(path)

    def write_config(self, cfg: ExperimentConfig, source: str) -> None:
        """The validated config with every default filled in (unset options omitted), so the run repeats from this file alone."""
        body = yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False)
        write_text(self.path / "config.yaml", f"# resolved from {source}\n{body}")

    def append_metrics(self, row: dict[str, Any]) -> None:
        file = self.path / "metrics.csv"
        new = not file.exists()
        with open(file, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())

    def save_checkpoint(self, which: str, network: nn.Module, epoch: int, test_accuracy: float) -> None:
        """``last`` or ``best`` weights, as safetensors with the epoch and accuracy in its metadata."""
        metadata = {"epoch": str(epoch), "test_accuracy": repr(test_accuracy)}
        save_weights(self.path / f"{which}.safetensors", network, metadata)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / "summary.json", summary)
