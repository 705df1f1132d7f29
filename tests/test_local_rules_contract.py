"""Forward-Forward, DFA and the forward gradient through the whole platform: each trains from YAML (spiking FF
with its softmax head, spiking DFA, activity-perturbed forward gradient at T = 1), saves its own state (heads,
feedback matrices, random draws) beside the weights, continues after SIGKILL to the metrics of the run never
stopped, is evaluated by ``snnlab eval`` from the saved state alone, and on two processes follows one process
with the double batch (all three are gradient rules, averaged by ``GradientRule.step``)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from snnlab import cli
from snnlab.config import validate
from snnlab.distributed import Context
from snnlab.runner import Training, build_experiment, build_rule, data_loaders, to_device
from snnlab.storage import load_weights, read_weights

pytestmark = pytest.mark.filterwarnings(  # torch compiles its forward-mode decompositions by torch.jit.script
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)
DIGITS = {"name": "digits", "batch_size": 64, "drop_last": True}
LIF = {"model": "lif", "decay_input": False, "threshold": 0.2}
EXPERIMENTS = {
    "forward_forward": {
        "data": {**DIGITS, "time_steps": 2},
        "network": {
            "neuron": {**LIF, "threshold": 0.1},
            "blocks": [{"norm": "l2"}, {"linear": 32}, {"norm": "l2"}, {"linear": 32}],
        },
        "rule": {"name": "forward_forward", "loss": "swish", "scale": 10.0, "readout": "softmax"},
        "state": {"head.weight", "draws.seed", "draws.count"},
        "accuracy": 0.2,
    },
    "dfa": {
        "data": {**DIGITS, "time_steps": 2},
        "network": {"neuron": LIF, "blocks": [{"linear": 32}, {"linear": 10}]},
        "rule": {"name": "dfa"},
        "state": {"feedback_0"},
        "accuracy": 0.4,
    },
    "forward_gradient": {
        "data": {**DIGITS, "time_steps": 1},
        "network": {"neuron": "nonspiking", "blocks": [{"linear": 32}, {"linear": 10}]},
        "rule": {"name": "forward_gradient"},
        "state": {"heads.0.weight", "draws.seed", "draws.count"},
        "accuracy": 0.18,
    },
}


def config(name: str, folder: Path, **changes: object) -> dict:
    spec = EXPERIMENTS[name]
    raw = {
        "name": name,
        "device": "cpu",
        "data": spec["data"],
        "network": spec["network"],
        "rule": spec["rule"],
        "train": {"epochs": 1, "optimizer": {"lr": 0.01}},
        "output": {"dir": str(folder), "plots": False, "checkpoint_every": 3},
    }
    for key, value in changes.items():
        raw[key] = {**raw[key], **value}  # type: ignore[dict-item]
    return raw


def rows(folder: Path) -> list[dict[str, float | None]]:
    with open(folder / "metrics.csv") as f:
        return [{k: float(v) if v else None for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def environment() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.Tensor]]:
    """Each experiment trained in this process, never stopped: its folder and its test predictions at the end."""
    out = {}
    for name in EXPERIMENTS:
        folder = tmp_path_factory.mktemp(name) / "whole"
        cfg = validate(config(name, folder))
        training = Training(cfg, "test", Context(torch.device("cpu")), None)
        training.fit(show_progress=False)
        test = data_loaders(cfg, training.splits, Context(torch.device("cpu"))).test
        training.network.eval()
        with torch.no_grad():
            scores = [training.rule.predict(training.network, to_device(x, y, torch.device("cpu"))[0]) for x, y in test]
        out[name] = (folder, torch.cat(scores))
    return out


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_trains_from_yaml_and_saves_its_state_beside_the_weights(name: str, trained: dict) -> None:
    folder, _ = trained[name]
    assert [r["epoch"] for r in rows(folder)] == [1.0]
    assert rows(folder)[-1]["test_accuracy"] > EXPERIMENTS[name]["accuracy"]  # one epoch: well above chance (0.1)
    for weights in ("best", "last"):
        saved = {
            k.removeprefix("rule.") for k in read_weights(folder / f"{weights}.safetensors") if k.startswith("rule.")
        }
        assert EXPERIMENTS[name]["state"] <= saved


def test_sigkill_and_resume_give_the_uninterrupted_metrics(trained: dict, tmp_path: Path) -> None:
    """All three started at once; each is killed at its first mid-epoch checkpoint, then resumed."""
    started = {}
    for name in EXPERIMENTS:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config(name, tmp_path / name)))
        command = [sys.executable, "-m", "snnlab", "run", str(path), "-q"]
        started[name] = subprocess.Popen(command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while started:
        for name, process in list(started.items()):
            if (tmp_path / name / "checkpoint.pt").exists():
                process.send_signal(signal.SIGKILL)
                process.wait()
                del started[name]
            else:
                assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    torch.manual_seed(1234)  # nothing of this process's generator may reach the resumed runs
    for name in EXPERIMENTS:
        assert not (tmp_path / name / "summary.json").exists()
        cfg = validate(yaml.safe_load((tmp_path / name / "config.yaml").read_text()))
        Training(cfg, "test", Context(torch.device("cpu")), tmp_path / name).fit(show_progress=False)
        assert rows(tmp_path / name) == rows(trained[name][0]), name


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_eval_gives_the_predictions_of_the_end_of_training(
    name: str, trained: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, expected = trained[name]
    cfg = validate(yaml.safe_load((folder / "config.yaml").read_text()))
    torch.manual_seed(123)  # other initial weights, feedback matrices and heads: everything must come from the file
    network, objective = build_experiment(cfg)[1:3]
    rule = build_rule(cfg, network, objective)
    load_weights(folder / "last.safetensors", {"network": network, "rule": rule})
    test = data_loaders(cfg, build_experiment(cfg).splits, Context(torch.device("cpu"))).test
    network.eval()
    with torch.no_grad():
        got = torch.cat([rule.predict(network, to_device(x, y, torch.device("cpu"))[0]) for x, y in test])
    assert torch.equal(got, expected)
    cli.evaluate_run(folder, checkpoint="last")
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == rows(folder)[-1]["test_accuracy"]


def test_two_processes_follow_one_with_the_double_batch(trained: dict, tmp_path: Path) -> None:
    """Batch 32 on each of 2 processes against the in-process runs with 64: the same curves to the rounding of
    the batch partition (every random draw of these rules is made for the whole batch and shared out). The two
    processes are started as torchrun starts its workers (rank, world and store in the environment) and train the
    three experiments in turn."""
    paths = []
    for name in EXPERIMENTS:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config(name, tmp_path / name, data={"batch_size": 32})))
        paths.append(str(path))
    with socket.socket() as free:  # a port for the process group's store (what torchrun would choose)
        free.bind(("localhost", 0))
        port = free.getsockname()[1]
    script = str(Path(__file__).parent / "run_experiments.py")
    group = {"MASTER_ADDR": "localhost", "MASTER_PORT": str(port), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    workers = [
        subprocess.Popen(
            [sys.executable, script, *paths],
            env={**environment(), **group, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in range(2)
    ]
    for worker in workers:
        output = worker.communicate(timeout=600)[0]
        assert worker.returncode == 0, output[-3000:]
    for name in EXPERIMENTS:
        one, two = rows(trained[name][0]), rows(tmp_path / name)
        assert [r["epoch"] for r in two] == [1.0]
        for a, b in zip(one, two):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-3, abs=1e-4), name
            assert b["test_accuracy"] == pytest.approx(a["test_accuracy"], abs=3 / 450), name
