"""Checkpoints and resume: a run stopped anywhere (in-process or by SIGKILL) continues to the same numbers."""

from __future__ import annotations

import csv
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from snnlab import checkpoint
from snnlab.config import resolve_experiment, validate
from snnlab.errors import Interrupted, SnnlabError
from snnlab.objectives import Classification
from snnlab.rules import BPTT
from snnlab.runner import run


def stochastic(folder: Path) -> dict:
    """The quickstart, shortened and made to use every generator: Poisson input, dropout, Adam, a cosine schedule."""
    raw = yaml.safe_load(resolve_experiment(None).read_text())
    raw["data"].update(encoder={"name": "poisson"}, batch_size=128)
    raw["network"]["blocks"][0] = {"linear": 64, "dropout": 0.2}
    raw["output"] = {"dir": str(folder), "plots": False, "checkpoint_every": 4}
    raw["train"]["epochs"] = 3
    return raw


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a run never stopped (do not write into it)."""
    folder = tmp_path_factory.mktemp("reference") / "whole"
    run(validate(stochastic(folder)), "test", progress=False)
    return folder


def metrics(folder: Path) -> list[dict]:
    with open(folder / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.mark.parametrize("stop_after", [3, 11, 22])
def test_interrupted_run_resumes_to_the_same_metrics(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_after: int
) -> None:
    """Stopped mid-epoch (with and without a mid-epoch checkpoint) or at an epoch end, then resumed."""
    calls = {"n": 0}
    train_step = BPTT.train_step

    def stops(self, network, batch):
        calls["n"] += 1
        if calls["n"] > stop_after:
            raise KeyboardInterrupt
        return train_step(self, network, batch)

    folder = tmp_path / "stopped"
    cfg = validate(stochastic(folder))
    with monkeypatch.context() as m:
        m.setattr(BPTT, "train_step", stops)
        with pytest.raises(Interrupted, match=rf"`snnlab resume {folder}` (continues from it|starts the run)"):
            run(cfg, "test", progress=False)
    resumed = run(cfg, "test", progress=False, resume=folder)
    assert metrics(folder) == metrics(reference)
    assert resumed.summary["test_accuracy"] == float(metrics(reference)[-1]["test_accuracy"])
    weights, expected = load_file(folder / "last.safetensors"), load_file(reference / "last.safetensors")
    assert all(torch.equal(weights[k], expected[k]) for k in expected)


def test_checkpoint_holds_every_state(reference: Path) -> None:
    """Weights, rule buffers, optimizer and schedule, generators of each process, position and metrics."""
    state = checkpoint.load(reference / "checkpoint.pt")
    assert set(state) == {"format", "config", "network", "rule", "optimizers", "schedulers", "rng", "progress"}
    assert set(state["optimizers"]) == {"network"} and state["optimizers"]["network"]["state"]
    assert state["schedulers"]["network"]["last_epoch"] == 3
    assert len(state["rng"]) == 1 and set(state["rng"][0]) == {"python", "numpy", "torch", "cuda"}
    assert state["progress"]["epoch"] == 4 and state["progress"]["step"] == 0
    assert len(state["progress"]["rows"]) == 3


def test_rule_state_is_checkpointed_by_declaring_it(quick_raw: dict) -> None:
    """A rule's buffers (traces, adaptive thresholds, ...) travel with the checkpoint with no rule-specific code."""
    from snnlab.builder import build_network

    cfg = validate(quick_raw)

    def rule_with_trace() -> tuple[torch.nn.Module, BPTT]:
        torch.manual_seed(0)
        network = build_network(cfg.network, (64,), membrane_output=True)
        rule = BPTT(cfg.rule, network, Classification(), cfg.train)
        rule.register_buffer("trace", torch.zeros(5))
        return network, rule

    network, rule = rule_with_trace()
    rule.trace += torch.arange(5.0)
    state = checkpoint.capture({}, network, rule, checkpoint.Progress(epoch=2), [])
    network2, rule2 = rule_with_trace()
    progress = checkpoint.restore(state, Path("x.pt"), network2, rule2)
    assert torch.equal(rule2.trace, torch.arange(5.0)) and progress.epoch == 2


def test_checkpoint_that_does_not_fit_names_the_tensor(reference: Path, quick_raw: dict) -> None:
    state = checkpoint.load(reference / "checkpoint.pt")
    quick_raw["network"]["blocks"][0] = {"linear": 32}
    from snnlab.builder import build_network

    cfg = validate(quick_raw)
    network = build_network(cfg.network, (64,), membrane_output=True)
    with pytest.raises(
        SnnlabError, match=r"tensor 'blocks.0.synapse.weight' has shape \[64, 64\] in the checkpoint but \[32, 64\]"
    ):
        checkpoint.restore(state, Path("x.pt"), network, BPTT(cfg.rule, network, Classification(), cfg.train))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited",))


def test_checkpoint_with_python_objects_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint that would run code when unpickled is refused and nothing runs."""
    path = tmp_path / "checkpoint.pt"  # with a valid trailer, as an attacker can write one
    path.write_bytes(checkpoint.pack(pickle.dumps({"format": 1, "payload": _Exploit()}, protocol=2)))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SnnlabError, match="refused: the file holds Python objects"):
        checkpoint.load(path)
    assert not (tmp_path / "exploited").exists()


def test_truncated_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"format": 1, "w": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(SnnlabError, match=r"checkpoint.pt: not a readable checkpoint, truncated or corrupt"):
        checkpoint.load(path)


def test_resume_of_a_finished_run_only_rewrites_its_summary(reference: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(reference, folder)
    (folder / "summary.json").unlink()
    result = run(validate(stochastic(folder)), "test", progress=False, resume=folder)
    assert (folder / "summary.json").exists() and metrics(folder) == metrics(reference)
    assert result.summary["test_accuracy"] == float(metrics(reference)[-1]["test_accuracy"])


def test_resume_refuses_a_changed_config(reference: Path) -> None:
    changed = validate({**stochastic(reference), "seed": 5})
    with pytest.raises(SnnlabError, match=r"config.yaml: seed differs from the config the checkpoint was trained with"):
        run(changed, "test", progress=False, resume=reference)


# ---- a real `snnlab run` process, killed with SIGKILL --------------------------------------------------------------

SLOW_CHECKPOINTS = """
import os, pathlib, time

real_write_bytes = pathlib.Path.write_bytes

def slow_write_bytes(self, data):
    if not self.name.startswith(".checkpoint.pt."):
        return real_write_bytes(self, data)
    # write half the bytes, pause, then the rest: a kill during the pause leaves a half-written temporary
    with open(self, "wb") as out:
        out.write(data[: len(data) // 2])
        out.flush()
        time.sleep(float(os.environ["SNNLAB_TEST_PAUSE"]))
        out.write(data[len(data) // 2 :])
    return len(data)

pathlib.Path.write_bytes = slow_write_bytes
from snnlab.cli import app
app(prog_name="snnlab")
"""


def _snnlab(args: list[str], tmp_path: Path, slow: bool = False) -> subprocess.Popen:
    env = {**os.environ, "SNNLAB_TEST_PAUSE": "1.0"}
    if slow:
        script = tmp_path / "slow_snnlab.py"
        script.write_text(SLOW_CHECKPOINTS)
        command = [sys.executable, str(script), *args]
    else:
        command = [sys.executable, "-m", "snnlab", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before the kill point:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.005)


def test_sigkill_at_any_point_then_resume(tmp_path: Path) -> None:
    """`snnlab run` killed during an epoch and during a checkpoint write; `snnlab resume` finishes both runs
    with the metrics of a run that was never killed."""
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(stochastic(tmp_path / "unused")))
    folders = {name: tmp_path / name for name in ("whole", "mid_epoch", "mid_write")}
    whole = _snnlab(["run", str(config), "-q", f"output.dir={folders['whole']}"], tmp_path)

    # during an epoch: after the first mid-epoch checkpoint, while later batches train
    mid_epoch = _snnlab(["run", str(config), "-q", f"output.dir={folders['mid_epoch']}"], tmp_path)
    _wait_for(lambda: (folders["mid_epoch"] / "checkpoint.pt").exists(), mid_epoch)
    time.sleep(0.3)
    mid_epoch.send_signal(signal.SIGKILL)
    mid_epoch.wait()

    # during a checkpoint write: the second checkpoint's temporary file is half written
    mid_write = _snnlab(["run", str(config), "-q", f"output.dir={folders['mid_write']}"], tmp_path, slow=True)

    def temporaries() -> list[Path]:
        return list(folders["mid_write"].glob(".checkpoint.pt.*tmp"))

    _wait_for(lambda: (folders["mid_write"] / "checkpoint.pt").exists() and bool(temporaries()), mid_write)
    mid_write.send_signal(signal.SIGKILL)
    mid_write.wait()
    assert temporaries(), "the kill should have left a half-written temporary"
    assert checkpoint.load(folders["mid_write"] / "checkpoint.pt")["progress"]["step"] == 4  # the first, whole

    assert whole.wait(timeout=300) == 0, whole.stdout.read()
    for name in ("mid_epoch", "mid_write"):
        resumed = _snnlab(["resume", str(folders[name]), "-q"], tmp_path)
        assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
        assert metrics(folders[name]) == metrics(folders["whole"]), name
        assert not list(folders[name].glob(".*.tmp"))
    assert len(metrics(folders["whole"])) == 3
