"""Honest model selection (a seeded validation hold-out chooses the best epoch; test is only reported), readable
output when piped, and run folders named by what the command line changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from snnlab.cli import folder_label
from snnlab.config import validate
from snnlab.datasets import DATASETS
from snnlab.datasets.validation import with_validation
from snnlab.errors import SnnlabError
from snnlab.runner import run


def test_validation_is_a_seeded_hold_out_disjoint_from_training() -> None:
    splits = DATASETS.build(validate({"network": {"blocks": [{"linear": 10}]}}).data)
    held = with_validation(splits, 0.1, seed=0)
    train, validation = held.train.split.indices(0), held.validation.split.indices(1)
    assert len(validation) == 135 and len(train) == 1347 - 135
    assert not set(train) & set(validation) and sorted(train + validation) == list(range(1347))
    assert with_validation(splits, 0.1, seed=0).validation.split.indices(1) == validation  # fixed by its seed
    assert with_validation(splits, 0.1, seed=1).validation.split.indices(1) != validation
    assert with_validation(splits, 0.0, seed=0).validation is None


def test_the_best_epoch_is_chosen_on_validation(quick_raw: dict) -> None:
    """best.safetensors and best_epoch follow val_accuracy; the summary reports test at the best and last epoch."""
    quick_raw["train"]["epochs"] = 4
    result = run(validate(quick_raw), "test", progress=False)
    rows = result.metrics
    best = max(range(len(rows)), key=lambda i: (rows[i]["val_accuracy"], -i))
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["best_epoch"] == best + 1 and summary["best_chosen_on"] == "validation"
    assert summary["best_val_accuracy"] == rows[best]["val_accuracy"]
    assert summary["best_test_accuracy"] == rows[best]["test_accuracy"]
    assert summary["test_accuracy"] == rows[-1]["test_accuracy"]


def test_without_validation_the_last_epoch_is_kept(quick_raw: dict) -> None:
    quick_raw["data"]["validation_fraction"] = 0
    summary = run(validate(quick_raw), "test", progress=False).summary
    assert summary["best_epoch"] == 2 and summary["best_val_accuracy"] is None
    assert summary["best_chosen_on"].startswith("last epoch")


def test_piped_output_is_one_line_per_epoch(tmp_path: Path) -> None:
    """As on a cluster: stderr to a file gets one line per epoch and no progress bar."""
    command = [sys.executable, "-m", "snnlab", "run", "train.epochs=2", f"output.root={tmp_path}", "output.plots=false"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "val_accuracy" in lines[0] and "\r" not in done.stderr
    assert "at the last epoch" in done.stdout and "best on validation" in done.stdout
    quiet = subprocess.run([*command, "--quiet"], capture_output=True, text=True, timeout=300)
    assert quiet.stderr == ""


def test_folder_names_say_what_the_command_line_changed() -> None:
    assert folder_label(["train.epochs=5", "train.optimizer.lr=0.01", "output.root=/x"]) == "epochs5_lr0.01"
    assert folder_label(["network.neuron={model: if}"]) == "neuronmodelif"
    assert folder_label([]) == ""


def test_a_start_that_fails_leaves_no_folder(quick_raw: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import snnlab.runner as runner

    def broken(*args: object, **kwargs: object) -> None:
        raise SnnlabError("the data could not be loaded")

    monkeypatch.setattr(runner, "data_loaders", broken)
    with pytest.raises(SnnlabError, match="could not be loaded"):
        run(validate(quick_raw), "test", progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_finished_run_extends_and_fine_tunes(quick_raw: dict, tmp_path: Path) -> None:
    """resume --epochs N trains on past the end (the cosine schedule as if planned for N: a learning rate left
    to climb from 0 would not move); train.init starts a new run from a finished run's weights."""
    from typer.testing import CliRunner

    from snnlab.cli import app

    quick_raw["output"] = {"dir": str(tmp_path / "a"), "plots": False}
    first = run(validate(quick_raw), "test", progress=False)
    extended = CliRunner().invoke(app, ["resume", str(first.run_dir), "--epochs", "3", "-q"])
    assert extended.exit_code == 0, extended.stderr
    rows = (first.run_dir / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"] and rows[3].split(",")[1] != rows[2].split(",")[1]
    assert CliRunner().invoke(app, ["resume", str(first.run_dir), "--epochs", "2"]).exit_code == 2
    quick_raw["output"] = {"dir": str(tmp_path / "b"), "plots": False}
    quick_raw["train"] = {**quick_raw["train"], "epochs": 1, "init": str(first.run_dir)}
    tuned = run(validate(quick_raw), "test", progress=False)
    assert tuned.metrics[0]["loss"] < first.metrics[0]["loss"]  # it starts where the first run's best was
