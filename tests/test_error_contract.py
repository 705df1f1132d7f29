"""The command line's error contract, as README.md's table "Errors and exit codes" writes it: every case there is
provoked here, and gives its exit code and one message without a traceback."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from snnlab import storage
from snnlab.cli import app
from snnlab.config import resolve_experiment
from snnlab.errors import Terminated
from snnlab.rules import BPTT
from snnlab.run_folder import RunFolder
from snnlab.runner import Training

README = Path(__file__).resolve().parents[1] / "README.md"


def documented() -> dict[str, str]:
    """case -> documented exit code, from the README's table."""
    section = README.read_text().split("## Errors and exit codes", 1)[1].split("\n## ", 1)[0]
    return {m[0]: m[1] for m in re.findall(r"^\| `(\w+)` \| [^|]+ \| (\d+|as above) \|", section, re.M)}


class Case:
    """One provoked failure: the command line and the exit code it gave, with stderr."""

    def __init__(self, code: int, err: str) -> None:
        self.code, self.err = code, err


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    raw = yaml.safe_load(resolve_experiment(None).read_text())
    raw["train"]["epochs"] = 1
    raw["output"] = {"dir": str(tmp_path / "run"), "plots": False}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cli(*args: str) -> Case:
    result = CliRunner().invoke(app, list(args))
    return Case(result.exit_code, result.stderr)


def trained(exp: Path) -> Path:
    assert cli("run", str(exp), "-q").code == 0
    return exp.parent / "run"


def case_ok(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    return cli("run", str(exp), "-q")


def case_config(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    return cli("run", str(exp), "train.epochz=2")


def case_folder(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    (exp.parent / "run").mkdir()
    (exp.parent / "run" / "mine.txt").write_text("keep")
    return cli("run", str(exp), "-q")


def case_locked(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    folder = RunFolder(trained(exp))
    folder.lock()
    try:
        return cli("resume", str(folder.path), "-q")
    finally:
        folder.release()


def case_resume(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    folder = trained(exp)
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.005", "lr: 0.006"))
    return cli("resume", str(folder), "-q")


def case_checkpoint(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    folder = trained(exp)
    (folder / "last.safetensors").write_bytes(b"\x00" * 100)
    return cli("eval", str(folder), "--checkpoint", "last")


def case_data(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    return cli(
        "run", str(exp), "-q", "data=nmnist", f"data.root={exp.parent / 'no-data'}", "network.blocks.0={flatten: true}"
    )


def case_non_finite(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    step = BPTT.train_step
    monkeypatch.setattr(BPTT, "train_step", lambda self, n, b: {**step(self, n, b), "loss": float("nan")})
    return cli("run", str(exp), "-q")


def case_disk(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    replace = os.replace

    def full(src: object, dst: object) -> None:
        if str(dst).endswith("metrics.csv"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(storage.os, "replace", full)
    return cli("run", str(exp), "-q")


def case_memory(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    def exhausted(self, show_progress):  # type: ignore[no-untyped-def]
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 25600000000 bytes")

    monkeypatch.setattr(Training, "fit", exhausted)
    return cli("run", str(exp), "-q")


def stopped_by(exc: BaseException) -> Callable[[Path, pytest.MonkeyPatch], Case]:
    def provoke(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
        def stop(self, show_progress):  # type: ignore[no-untyped-def]
            raise exc

        monkeypatch.setattr(Training, "fit", stop)
        return cli("run", str(exp), "-q")

    return provoke


def case_nproc(exp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    command = [
        sys.executable,
        "-m",
        "snnlab",
        "run",
        "--nproc",
        "2",
        str(exp),
        "-q",
        "device=cpu",
        "output.dir=/dev/null",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    return Case(done.returncode, done.stderr)


CASES = {
    "ok": case_ok,
    "config": case_config,
    "folder": case_folder,
    "locked": case_locked,
    "resume": case_resume,
    "checkpoint": case_checkpoint,
    "data": case_data,
    "non_finite": case_non_finite,
    "disk": case_disk,
    "memory": case_memory,
    "interrupt": stopped_by(KeyboardInterrupt()),
    "sigterm": stopped_by(Terminated()),
    "nproc": case_nproc,
}


def test_every_documented_case_is_provoked_here() -> None:
    assert sorted(documented()) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_gives_its_exit_code_and_one_message(name: str, exp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name](exp, monkeypatch)
    expected = documented()[name]
    assert case.code == (2 if expected == "as above" else int(expected)), case.err
    assert "Traceback" not in case.err
    if case.code == 2:
        lines = [line for line in case.err.splitlines() if line.strip()]
        assert lines[0].startswith("error: ") and case.err.count("error: ") == 1, case.err
    if name == "folder":
        assert (exp.parent / "run" / "mine.txt").read_text() == "keep"
    if name in ("interrupt", "sigterm"):
        assert "snnlab resume" in case.err
