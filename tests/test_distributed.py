"""Training on several processes through torchrun and DDP (gloo on the CPU) follows the single-process run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snnlab.config import validate
from snnlab.distributed import Context
from snnlab.errors import SnnlabError
from snnlab.rules import BPTT
from snnlab.runner import Training


def snnlab(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "snnlab", *args], env=env, capture_output=True, text=True, timeout=600)


def rows(folder: Path) -> list[dict[str, float]]:
    with open(folder / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_two_processes_match_one_with_the_double_batch(tmp_path: Path) -> None:
    """2 processes x batch 32 give the loss curve of 1 process x batch 64; rank 0 alone writes the folder."""
    common = ["-q", "device=cpu", "train.epochs=2", "data.drop_last=true", "output.plots=false"]
    one = snnlab("run", *common, "data.batch_size=64", f"output.root={tmp_path / 'one'}")
    two = snnlab("run", "--nproc", "2", *common, "data.batch_size=32", f"output.root={tmp_path / 'two'}")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("run folder:") == 1  # printed by rank 0 only
    ((single,), (double,)) = (list((tmp_path / name).iterdir()) for name in ("one", "two"))
    assert {p.name for p in double.iterdir()} == {p.name for p in single.iterdir()}
    expected, got = rows(single), rows(double)
    assert [r["epoch"] for r in got] == [1, 2]
    for a, b in zip(expected, got):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["train_accuracy"] == pytest.approx(a["train_accuracy"], abs=1e-9)
        assert b["test_accuracy"] == pytest.approx(a["test_accuracy"], abs=1e-9)
        assert b["firing_rate"] == pytest.approx(a["firing_rate"], rel=1e-4)

    # a run of 2 processes resumes on 2, and says so when asked to resume on 1
    wrong = snnlab("resume", str(double), "-q")
    assert wrong.returncode == 2 and "resume it with --nproc 2" in wrong.stderr
    again = snnlab("resume", "--nproc", "2", str(double), "-q")
    assert again.returncode == 0, again.stderr
    assert rows(double) == got


def test_rules_that_are_not_distributable_are_refused(quick_raw: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BPTT, "distributable", False)
    with pytest.raises(SnnlabError, match="rule 'bptt' cannot train on several processes"):
        Training(validate(quick_raw), "test", Context(torch.device("cpu"), rank=0, world=2), None)
