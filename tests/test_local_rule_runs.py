"""STDP and the tempotron as runs: each trains from YAML, its state (STDP's label assignments and adaptive
thresholds) survives SIGKILL and ``snnlab resume`` to the metrics of a run never stopped, and ``snnlab eval``
rebuilds the same predictor from the saved weights and rule state."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from sigkill import kill_at_first_checkpoint
from typer.testing import CliRunner

from snnlab.cli import app
from snnlab.config import validate
from snnlab.distributed import Context
from snnlab.network import Network
from snnlab.runner import Training, build_experiment, build_rule, data_loaders, run, to_device
from snnlab.storage import load_weights

STDP = {
    "name": "stdp",
    "device": "cpu",
    "data": {"name": "digits", "encoder": {"name": "poisson", "gain": 0.25}, "time_steps": 32, "batch_size": 32},
    "network": {
        "neuron": {"model": "lif", "tau": 20.0, "threshold": 0.5, "reset": "hard", "decay_input": False},
        "blocks": [
            {
                "linear": {"out_features": 30, "bias": False},
                "recurrent": {"kind": "lateral_inhibition", "strength": 2.0},
            }
        ],
    },
    "rule": {
        "name": "stdp",
        "a_plus": 0.001,
        "a_minus": 0.0001,
        "trace": "all_to_all",
        "normalize": 0.25,
        "normalize_norm": "l2",
        "theta_plus": 0.05,
        "tau_theta": 32000,
    },
    "train": {"epochs": 2},
}
TEMPOTRON = {
    "name": "tempotron",
    "device": "cpu",
    "data": {"name": "digits", "encoder": "latency", "time_steps": 16, "batch_size": 64},
    "network": {"neuron": {"model": "psp", "tau": 8.0}, "blocks": [{"linear": {"out_features": 10, "bias": False}}]},
    "rule": "tempotron",
    "train": {"epochs": 2, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
}
EXPERIMENTS = {"stdp": STDP, "tempotron": TEMPOTRON}


def config(raw: dict, folder: Path) -> dict:
    return {**raw, "output": {"dir": str(folder), "plots": False, "checkpoint_every": 3}}


def rows(folder: Path) -> list[dict[str, float]]:
    with open(folder / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if k != "seconds" and v != ""} for row in csv.DictReader(f)]


@torch.no_grad()
def predictions(cfg, network: Network, rule) -> torch.Tensor:  # type: ignore[no-untyped-def]
    test = data_loaders(cfg, build_experiment(cfg).splits, Context(torch.device("cpu"))).test
    network.eval()
    return torch.cat([rule.predict(network, to_device(x, y, torch.device("cpu"))[0]) for x, y in test])


@pytest.fixture(scope="module", params=sorted(EXPERIMENTS))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, torch.Tensor]:
    """A run never stopped: its folder and its test predictions at the end."""
    name = request.param
    folder = tmp_path_factory.mktemp(name) / "whole"
    cfg = validate(config(EXPERIMENTS[name], folder))
    training = Training(cfg, "test", Context(torch.device("cpu")), None)
    training.fit(show_progress=False)
    return name, folder, predictions(cfg, training.network, training.rule)


def test_trains_from_yaml_and_saves_its_state(trained: tuple[str, Path, torch.Tensor]) -> None:
    name, folder, _ = trained
    metrics = rows(folder)
    assert [r["epoch"] for r in metrics] == [1.0, 2.0]
    assert metrics[-1]["test_accuracy"] > (0.45 if name == "stdp" else 0.6)
    saved = load_file(folder / "last.safetensors")
    if name == "stdp":
        assert saved["rule.assignments"].shape == (30,) and (saved["rule.assignments"] >= 0).sum() > 15
        assert int(saved["rule.classes"]) == 10
        assert (saved["network.blocks.0.neuron.threshold"] > 0.5).any()  # homeostasis
        assert metrics[-1]["train_spikes"] > 0


def test_sigkill_and_resume_give_the_uninterrupted_metrics(
    trained: tuple[str, Path, torch.Tensor], tmp_path: Path
) -> None:
    name, folder, _ = trained
    stopped = tmp_path / "stopped"
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config(EXPERIMENTS[name], stopped)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "snnlab", "run", str(path), "-q"]
    process = subprocess.Popen(
        command, env={**env, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    kill_at_first_checkpoint(process, stopped)
    run(validate(yaml.safe_load(path.read_text())), str(path), progress=False, resume=stopped)
    assert rows(stopped) == rows(folder)


def test_eval_rebuilds_the_predictor_from_weights_and_rule_state(trained: tuple[str, Path, torch.Tensor]) -> None:
    _, folder, expected = trained
    cfg = validate(yaml.safe_load((folder / "config.yaml").read_text()))
    torch.manual_seed(123)  # other initial weights: everything must come from the file
    network, objective = build_experiment(cfg)[1:3]
    rule = build_rule(cfg, network, objective)
    load_weights(folder / "last.safetensors", {"network": network, "rule": rule})
    assert torch.equal(predictions(cfg, network, rule), expected)
    shown = CliRunner().invoke(app, ["eval", str(folder), "--checkpoint", "last"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["test_accuracy"] == rows(folder)[-1]["test_accuracy"]
