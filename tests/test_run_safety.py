"""Runs that lose nothing: a non-finite update, a folder without its checkpoint, a start killed while writing its
config, two processes on one folder, signals at any point, and a run repeated from its own config.yaml."""

from __future__ import annotations

import csv
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from snnlab import checkpoint
from snnlab.config import read_yaml, validate
from snnlab.errors import SnnlabError
from snnlab.run_folder import RunFolder, _new_folder, is_leftover
from snnlab.runner import run


def test_non_finite_update_is_never_saved(quick_raw: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An update that turns the weights into NaN (as lr=inf does) stops the run; the checkpoint of the epoch before
    stays finite and resumes."""
    step = torch.optim.Adam.step
    calls = {"n": 0}

    def exploding(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 30:  # epoch 2, step 8
            with torch.no_grad():
                self.param_groups[0]["params"][0].mul_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", exploding)
    quick_raw["output"]["dir"] = str(tmp_path / "run")
    with pytest.raises(
        SnnlabError, match=r"the update made network\.blocks\.0\.synapse\.weight NaN or Inf at epoch 2, step \d+"
    ) as info:
        run(validate(quick_raw), "test", progress=False)
    assert "nothing from that update was saved: the last good checkpoint (end of epoch 1)" in str(info.value)
    state = checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    assert all(torch.isfinite(t).all() for t in state["network"].values())
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    assert len(run(validate(quick_raw), "test", progress=False, resume=tmp_path / "run").metrics) == 2


def test_resume_without_checkpoint_keeps_the_results(quick_raw: dict, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    quick_raw["output"]["dir"] = str(folder)
    run(validate(quick_raw), "test", progress=False)
    (folder / "checkpoint.pt").unlink()
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    with pytest.raises(SnnlabError, match=r"no checkpoint\.pt to resume from, but the folder holds results \(best"):
        run(validate(quick_raw), "test", progress=False, resume=folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_resume_of_a_folder_with_only_its_config_starts_again(quick_raw: dict, tmp_path: Path) -> None:
    """Stopped before the first checkpoint there is nothing to lose: resume trains from the folder's config."""
    folder = tmp_path / "run"
    quick_raw["output"]["dir"] = str(folder)
    made = RunFolder.create(validate(quick_raw))
    made.write_config(validate(quick_raw), "test")
    made.release()
    result = run(validate(quick_raw), "test", progress=False, resume=folder)
    assert len(result.metrics) == 2


def test_a_start_killed_while_writing_its_config_is_no_dead_end(quick_raw: dict, tmp_path: Path) -> None:
    """The folder holds only a temporary and the write probe: resume explains, run uses the folder."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / f".config.yaml.{os.getpid() + 1}.tmp").write_text("name: half")
    (folder / ".write-test.123").write_bytes(b"snnlab")
    with pytest.raises(SnnlabError, match="stopped before it wrote config.yaml, so nothing was trained"):
        RunFolder.existing(folder)
    quick_raw["output"]["dir"] = str(folder)
    quick_raw["train"]["epochs"] = 1
    run(validate(quick_raw), "test", progress=False)
    assert not any(p.name.endswith(".tmp") or p.name.startswith(".write-test") for p in folder.iterdir())


def test_a_locked_folder_is_refused_and_foreign_temporaries_are_kept(quick_raw: dict, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    quick_raw["output"]["dir"] = str(folder)
    quick_raw["train"]["epochs"] = 1
    run(validate(quick_raw), "test", progress=False)
    mine = folder / ".notes.4.tmp"
    mine.write_text("a user's file")
    holder = RunFolder(folder)
    holder.lock()
    try:
        with pytest.raises(
            SnnlabError, match=rf"another snnlab process \(pid {os.getpid()}\) is using this run folder"
        ):
            run(validate(quick_raw), "test", progress=False, resume=folder)
    finally:
        holder.release()
    run(validate(quick_raw), "test", progress=False, resume=folder)
    assert mine.read_text() == "a user's file" and not is_leftover(mine)


def _make(root: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(str(_new_folder(Path(root), "same")))


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    queue: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()
    workers = [multiprocessing.get_context("fork").Process(target=_make, args=(str(tmp_path), queue)) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    folders = [queue.get() for _ in workers]
    assert len(set(folders)) == 6


def test_config_yaml_of_a_run_with_output_dir_repeats_the_run(quick_raw: dict, tmp_path: Path) -> None:
    quick_raw["output"]["dir"] = str(tmp_path / "first")
    quick_raw["train"]["epochs"] = 1
    first = run(validate(quick_raw), "test", progress=False)
    again = validate(read_yaml(first.run_dir / "config.yaml"))
    assert again.output.dir is None
    second = run(again, str(first.run_dir / "config.yaml"), progress=False)
    assert second.run_dir != first.run_dir and second.metrics[0]["loss"] == first.metrics[0]["loss"]


# ---- signals, in a real process ------------------------------------------------------------------------------


def _start(tmp_path: Path, raw: dict) -> tuple[subprocess.Popen, Path]:
    folder = tmp_path / "run"
    raw["output"] = {"dir": str(folder), "plots": False, "checkpoint_every": 3}
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "snnlab", "run", str(config), "-q"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), folder


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.002)


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(quick_raw: dict, tmp_path: Path) -> None:
    process, folder = _start(tmp_path, quick_raw)
    _wait_for(folder / "checkpoint.pt", process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "terminated (SIGTERM); the last checkpoint (epoch" in err and f"snnlab resume {folder}" in err
    resumed = subprocess.run(
        [sys.executable, "-m", "snnlab", "resume", str(folder), "-q"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    with open(folder / "metrics.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2"]


def test_ctrl_c_during_start_up_names_the_folder(quick_raw: dict, tmp_path: Path) -> None:
    process, folder = _start(tmp_path, quick_raw)
    _wait_for(folder / "config.yaml", process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    if process.returncode == 130 and "before the first checkpoint" in err:
        assert f"`snnlab resume {folder}` starts the run in {folder} again" in err
    else:  # the first checkpoint was written before the signal arrived
        assert process.returncode == 130 and "the last checkpoint (" in err, err
    assert "Traceback" not in err


def test_a_signal_during_a_checkpoint_write_waits_for_it() -> None:
    """Ctrl-C inside the deferred block is delivered when the block ends, not in the middle of it."""
    from snnlab.stopping import interrupts_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            done.append("the block finished")
    assert done == ["the block finished"]
