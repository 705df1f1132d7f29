"""The run folder: resolved config, per-epoch metrics, checkpoints, summary and plots of one run.

Every file is written atomically, so a run killed at any instant leaves each file either
as it was or as it was meant to be, and ``snnlab resume`` continues from ``checkpoint.pt``.
"""

from __future__ import annotations

import csv
import io
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from . import checkpoint
from .config import ExperimentConfig
from .errors import SnnlabError
from .storage import save_weights, write_json, write_text

FIRST_COLUMNS = ["epoch", "loss"]
LAST_COLUMNS = ["firing_rate", "seconds"]
CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"


class RunFolder:
    """One run's files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, cfg: ExperimentConfig) -> RunFolder:
        """A new, empty, writable folder: ``output.dir`` or ``<output.root>/<name>-<date-time>``; fails before training
        if it cannot be made or written to."""
        if cfg.output.dir is not None:
            path = Path(cfg.output.dir)
            if path.exists() and any(path.iterdir()):
                raise SnnlabError(
                    f"{path}: output folder already holds files; choose another output.dir, "
                    f"or continue that run with `snnlab resume {path}`"
                )
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = Path(cfg.output.root) / f"{cfg.name}-{stamp}"
            suffix = 1
            while path.exists():
                path = Path(cfg.output.root) / f"{cfg.name}-{stamp}-{suffix}"
                suffix += 1
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_bytes(b"snnlab")
            probe.unlink()
        except OSError as exc:
            raise SnnlabError(f"{path}: cannot write the run folder there ({exc.strerror or exc})") from None
        return cls(path)

    @classmethod
    def existing(cls, path: Path) -> RunFolder:
        """A folder written by an earlier ``snnlab run``, to resume or evaluate."""
        if not (path / CONFIG).is_file():
            raise SnnlabError(f"{path}: not a run folder (no {CONFIG}); give the folder `snnlab run` printed")
        return cls(path)

    def check_space(self, needed: int) -> None:
        """Refuse to start when the disk cannot hold the checkpoints (``needed`` bytes, with room to spare)."""
        free = shutil.disk_usage(self.path).free
        if free < needed:
            raise SnnlabError(
                f"{self.path}: only {free / 2**20:.1f} MiB free on this disk, but the run's checkpoints need about "
                f"{needed / 2**20:.1f} MiB; free some space or set output.root to another disk"
            )

    def write_config(self, cfg: ExperimentConfig, source: str) -> None:
        """The validated config with every default filled in (unset options omitted), so the run repeats from this file alone."""
        body = yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False)
        write_text(self.path / CONFIG, f"# resolved from {source}\n{body}")

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """All epochs' metrics so far, rewriting the file whole (so a resumed run never repeats a row): ``epoch``,
        ``loss``, the rule's other metrics as ``train_<name>``, the objective's as ``test_<name>``, ``firing_rate``,
        ``seconds``."""
        keys = list(dict.fromkeys(k for row in rows for k in row))
        middle = [k for k in keys if k not in FIRST_COLUMNS + LAST_COLUMNS]
        middle = [k for k in middle if k.startswith("train_")] + [k for k in middle if not k.startswith("train_")]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIRST_COLUMNS + middle + LAST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path / "metrics.csv", buffer.getvalue())

    def save_weights(
        self, which: str, network: nn.Module, rule: nn.Module, epoch: int, metrics: dict[str, float]
    ) -> None:
        """``last`` or ``best``: the network's and the rule's tensors (``network.*``, ``rule.*``) as safetensors,
        with the epoch and the evaluation metrics in its metadata."""
        metadata = {"epoch": str(epoch), **{k: repr(v) for k, v in metrics.items()}}
        save_weights(self.path / f"{which}.safetensors", {"network": network, "rule": rule}, metadata)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        checkpoint.save(self.checkpoint, state)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / "summary.json", summary)

    def discard_temporaries(self) -> None:
        """Delete what a killed run left half-written; never read, since every real file is renamed into place."""
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
