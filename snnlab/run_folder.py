"""The run folder: resolved config, per-epoch metrics, checkpoints, summary and plots of one run.

Every file is written atomically, so a run killed at any instant leaves each file either
as it was or as it was meant to be, and ``snnlab resume`` continues from ``checkpoint.pt``.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import re
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


RUN_FILES = (CONFIG, "metrics.csv", CHECKPOINT, "last.safetensors", "best.safetensors", "summary.json")
LOCK = ".lock"
_LEFTOVER = re.compile(r"\.(.+)\.\d+\.tmp|\.write-test\.\d+|\.lock")


def is_leftover(path: Path) -> bool:
    """Whether ``path`` is something only snnlab leaves in a run folder: the lock, the write probe, or the
    temporary of one of its own files (``.<file>.<pid>.tmp``)."""
    match = _LEFTOVER.fullmatch(path.name)
    return match is not None and (
        match.group(1) is None or match.group(1) in RUN_FILES or match.group(1).endswith(".png")
    )


class RunFolder:
    """One run's files, and the lock that keeps two processes from writing them at once."""

    def __init__(self, path: Path, made: bool = False) -> None:
        self.path = path
        self.made = made
        """Whether this process made the folder itself (so ``undo`` may remove it whole)."""
        self._lock: int | None = None

    @classmethod
    def create(cls, cfg: ExperimentConfig, label: str = "") -> RunFolder:
        """A new, empty, writable folder, locked by this process: ``output.dir`` (which may exist, empty or holding
        only what a killed start left) or a new ``<output.root>/<name>[-<label>]-<date-time>`` (the label says what
        the command line changed); fails before training if it cannot be made or written to."""
        try:
            if cfg.output.dir is not None:
                path = Path(cfg.output.dir)
                if path.exists() and not path.is_dir():
                    raise SnnlabError(f"{path}: output.dir is a file, not a folder; choose a folder for the run")
                held = sorted(p.name for p in path.iterdir() if not is_leftover(p)) if path.exists() else []
                if held:
                    raise SnnlabError(
                        f"{path}: output folder already holds files ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}); "
                        f"choose another output.dir, or continue that run with `snnlab resume {path}`"
                    )
                made = not path.exists()
                path.mkdir(parents=True, exist_ok=True)
            else:
                path, made = _new_folder(Path(cfg.output.root), f"{cfg.name}-{label}" if label else cfg.name), True
            folder = cls(path, made)
            folder.lock()
            folder.discard_temporaries()
            probe = path / f".write-test.{os.getpid()}"
            probe.write_bytes(b"snnlab")
            probe.unlink()
        except OSError as exc:
            where = cfg.output.dir if cfg.output.dir is not None else cfg.output.root
            raise SnnlabError(f"{where}: cannot write the run folder there ({exc.strerror or exc})") from None
        return folder

    @classmethod
    def existing(cls, path: Path) -> RunFolder:
        """A folder written by an earlier ``snnlab run``, to resume or evaluate."""
        if not path.is_dir():
            raise SnnlabError(f"{path}: not a folder; give the run folder `snnlab run` printed")
        if not (path / CONFIG).is_file():
            if any(is_leftover(p) for p in path.iterdir()):
                raise SnnlabError(
                    f"{path}: the run was stopped before it wrote {CONFIG}, so nothing was trained; start it again "
                    f"with `snnlab run` (output.dir may name this folder again)"
                )
            raise SnnlabError(f"{path}: not a run folder (no {CONFIG}); give the folder `snnlab run` printed")
        return cls(path)

    def lock(self) -> None:
        """Hold the folder's lock while this process lives (released by the OS however the process ends); another
        process that asks for it is refused with a message naming the holder."""
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SnnlabError(
                f"{self.path}: another snnlab process (pid {holder}) is using this run folder; wait for it to end, "
                f"or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock = fd

    def release(self) -> None:
        """Give the lock back (a run that ends in this process; the OS does it for one that dies)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def undo(self) -> None:
        """Remove what a start that failed before training wrote: the whole folder if this process made it, else
        its config and leftovers (the folder was empty before). Gives the lock back."""
        self.release()
        if self.made:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for path in self.path.iterdir():
            if path.name == CONFIG or is_leftover(path):
                path.unlink(missing_ok=True)

    def holds_results(self) -> list[str]:
        """The files of this folder besides its config and what snnlab leaves behind (what a fresh start would
        overwrite)."""
        return sorted(p.name for p in self.path.iterdir() if p.name != CONFIG and not is_leftover(p))

    def check_space(self, needed: int) -> None:
        """Refuse to start when the disk cannot hold the checkpoints (``needed`` bytes, with room to spare)."""
        free = shutil.disk_usage(self.path).free
        if free < needed:
            raise SnnlabError(
                f"{self.path}: only {free / 2**20:.1f} MiB free on this disk, but the run's checkpoints need about "
                f"{needed / 2**20:.1f} MiB; free some space or set output.root to another disk"
            )

    def write_config(self, cfg: ExperimentConfig, source: str) -> None:
        """The validated config with every default filled in (unset options omitted), so the run repeats from this
        file alone: ``output.dir`` is left out, so that ``snnlab run`` of this file makes a new folder."""
        raw = cfg.model_dump(mode="json", exclude_none=True)
        raw["output"].pop("dir", None)
        body = yaml.safe_dump(raw, sort_keys=False)
        write_text(self.path / CONFIG, f"# resolved from {source}; run folder {self.path}\n{body}")

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
        """Delete what a killed run of this folder left half-written (its own temporaries and write probe only;
        never read, since every real file is renamed into place). Call it holding the lock, so no live run owns them."""
        for path in self.path.iterdir():
            if is_leftover(path) and path.name != LOCK:
                path.unlink(missing_ok=True)


def _new_folder(root: Path, name: str) -> Path:
    """Make ``<root>/<name>-<date-time>`` (then ``-1``, ``-2``, ...): ``mkdir`` without ``exist_ok`` is atomic, so
    two runs started in the same second never get one folder."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for suffix in range(1000):
        path = root / (f"{name}-{stamp}" if suffix == 0 else f"{name}-{stamp}-{suffix}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise SnnlabError(f"{root}: a thousand runs named {name}-{stamp} already exist")
