"""End to end: `snnlab run` trains, fills its run folder, repeats bit for bit, and reaches the quickstart's accuracy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from snnlab.builder import build_network
from snnlab.cli import app
from snnlab.config import read_yaml, validate
from snnlab.errors import SnnlabError
from snnlab.objectives import Classification
from snnlab.rules import BPTT
from snnlab.runner import run
from snnlab.storage import load_weights

cli = CliRunner()


def run_raw(raw: dict, source: str = "test.yaml"):
    return run(validate(raw), source, progress=False)


def metrics_without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_run_folder_contents(quick_raw: dict) -> None:
    """Config, metrics, summary, both checkpoints and the three plots, each usable on its own."""
    quick_raw["output"]["plots"] = True
    result = run_raw(quick_raw)
    folder = result.run_dir
    assert {p.name for p in folder.iterdir()} == {
        "config.yaml",
        "metrics.csv",
        "summary.json",
        "last.safetensors",
        "best.safetensors",
        "checkpoint.pt",
        "curves.png",
        "raster.png",
        "membrane.png",
        ".lock",
    }
    # the resolved config reproduces the experiment on its own
    assert validate(read_yaml(folder / "config.yaml")) == validate(quick_raw)
    with open(folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == [
        "epoch",
        "loss",
        "train_accuracy",
        "val_accuracy",
        "test_accuracy",
        "firing_rate",
        "seconds",
    ]
    summary = json.loads((folder / "summary.json").read_text())
    assert 0.5 < summary["test_accuracy"] <= 1.0
    assert summary["test_accuracy"] == pytest.approx(float(rows[-1]["test_accuracy"]))
    assert summary["parameters"] == 64 * 128 + 128 + 128 * 10 + 10
    assert 0 < summary["firing_rate"] < 1
    assert summary["blocks"][0]["input"] == "analog" and summary["blocks"][1]["input"] == "spikes"
    assert summary["synops_per_sample"] > 0 and summary["macs_per_sample"] > 0
    assert summary["wall_time_seconds"] > 0
    for png in ("curves.png", "raster.png", "membrane.png"):
        assert (folder / png).read_bytes()[:4] == b"\x89PNG"
    cfg = validate(quick_raw)
    network = build_network(cfg.network, (64,), membrane_output=True)
    load_weights(
        folder / "best.safetensors", {"network": network, "rule": BPTT(cfg.rule, network, Classification(), cfg.train)}
    )


def test_same_seed_same_metrics(quick_raw: dict, tmp_path: Path) -> None:
    """On the CPU a seed fixes every metric but wall time, bit for bit; another seed changes them."""
    first = run_raw(quick_raw).metrics
    second = run_raw(quick_raw).metrics
    assert metrics_without_time(first) == metrics_without_time(second)
    quick_raw["seed"] = 1
    assert metrics_without_time(run_raw(quick_raw).metrics) != metrics_without_time(first)


def test_short_quickstart_learns(quick_raw: dict) -> None:
    """Six epochs of the quickstart already classify digits well (the full run is checked below)."""
    quick_raw["train"]["epochs"] = 6
    assert run_raw(quick_raw).summary["test_accuracy"] >= 0.95


def test_full_quickstart_reaches_96_percent(quick_raw: dict) -> None:
    """The bundled quickstart, unchanged but for the output folder, reaches at least 96% test accuracy."""
    quick_raw["train"]["epochs"] = 20
    assert run_raw(quick_raw).summary["test_accuracy"] >= 0.96


def test_t1_nonspiking_is_a_plain_mlp(quick_raw: dict) -> None:
    """T = 1 with the non-spiking neuron trains an ordinary MLP through the same runner and BPTT rule."""
    quick_raw["data"]["time_steps"] = 1
    quick_raw["network"]["neuron"] = {"model": "nonspiking", "activation": "relu"}
    quick_raw["train"]["epochs"] = 6
    result = run_raw(quick_raw)
    assert result.summary["test_accuracy"] >= 0.93
    assert result.summary["firing_rate"] is None  # nothing spikes


def test_cli_run_and_eval(quick_raw: dict, tmp_path: Path) -> None:
    """`snnlab run CONFIG overrides...` prints accuracy and the run folder; `snnlab eval` re-measures it."""
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(quick_raw))
    result = cli.invoke(app, ["run", str(config), "train.epochs=1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    folder = Path(result.output.split("run folder: ")[1].strip())
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["epochs"] == 1
    evaluated = cli.invoke(app, ["eval", str(folder), "--checkpoint", "last"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["test_accuracy"] == pytest.approx(summary["test_accuracy"])


def test_output_dir_must_be_empty(quick_raw: dict, tmp_path: Path) -> None:
    """An explicit output folder that already holds a run is refused before training, and left untouched."""
    target = tmp_path / "taken"
    target.mkdir()
    (target / "metrics.csv").write_text("precious")
    quick_raw["output"]["dir"] = str(target)
    with pytest.raises(SnnlabError, match="already holds files"):
        run_raw(quick_raw)
    assert (target / "metrics.csv").read_text() == "precious"


def test_unusable_output_fails_before_training(quick_raw: dict, tmp_path: Path) -> None:
    """An output root that cannot hold folders (here: a file) is reported before any training."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    quick_raw["output"]["root"] = str(blocker / "runs")
    with pytest.raises(SnnlabError, match="not-a-folder/runs.*: cannot write the run folder there"):
        run_raw(quick_raw)


def test_bptt_rule_contract() -> None:
    """BPTT is distributable, and its train step returns the loss and the batch accuracy."""
    assert BPTT.distributable and BPTT.name == "bptt"
    raw = {"network": {"blocks": [{"linear": 16}, {"linear": 10}]}}
    cfg = validate(raw)
    net = build_network(cfg.network, (64,), membrane_output=True)
    rule = BPTT(cfg.rule, net, Classification(), cfg.train)
    before = net.blocks[0].synapse.weight.clone()
    metrics = rule.train_step(net, (torch.rand(4, 8, 64), torch.randint(0, 10, (8,))))
    assert set(metrics) == {"loss", "accuracy"}
    assert not torch.equal(before, net.blocks[0].synapse.weight)


def test_non_finite_loss_stops_the_run(quick_raw: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN loss stops training with a message naming where it happened; earlier checkpoints stay."""
    calls = {"n": 0}
    train_step = BPTT.train_step

    def poisoned(self, network, batch):
        calls["n"] += 1
        metrics = train_step(self, network, batch)
        return {**metrics, "loss": float("nan")} if calls["n"] > 25 else metrics

    monkeypatch.setattr(BPTT, "train_step", poisoned)
    with pytest.raises(SnnlabError, match=r"loss became nan at epoch 2, step 6") as info:
        run_raw(quick_raw)
    folder = Path(str(info.value).rsplit("in ", 1)[1])
    assert (folder / "last.safetensors").exists()


def test_too_little_disk_space_fails_before_training(quick_raw: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 50_000, 50_000))
    with pytest.raises(SnnlabError, match=r"only 0.0 MiB free on this disk, but the run's checkpoints need about"):
        run_raw(quick_raw)
    (folder,) = Path(quick_raw["output"]["root"]).iterdir()
    assert not list(folder.glob("*.safetensors")) and not (folder / "metrics.csv").exists()


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(
    quick_raw: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write fails with a clear error; the last checkpoint stays whole and no temporary is left."""
    import errno

    from snnlab import checkpoint

    real_write = Path.write_bytes
    calls = {"n": 0}

    def fills_the_disk(self: Path, data: bytes) -> int:
        if self.name.startswith(".checkpoint.pt."):
            calls["n"] += 1
            if calls["n"] == 2:
                real_write(self, b"half a checkpoint")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", fills_the_disk)
    quick_raw["output"]["dir"] = str(tmp_path / "run")
    with pytest.raises(
        SnnlabError, match=r"checkpoint.pt: could not be written \(No space left on device\); the previous"
    ):
        run_raw(quick_raw)
    assert checkpoint.load(tmp_path / "run" / "checkpoint.pt")["progress"]["epoch"] == 2
    assert not list((tmp_path / "run").glob(".*.tmp"))
